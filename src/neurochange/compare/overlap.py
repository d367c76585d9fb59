"""Where two maps meet: minimum-statistic conjunction (Nichols et al. 2005) and overlap indices.

**Conjunction**: where both maps are positive, the smaller value; where both are negative,
the one nearer zero; elsewhere 0. On thresholded (non-negative) maps this is NiMARE's
``conjunction_analysis``. **Overlap** indices count the voxels > 0 in each map.
"""

from __future__ import annotations

import numpy as np


def conjunction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimum-statistic conjunction of two maps of one shape (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    pos = (a > 0) & (b > 0)
    neg = (a < 0) & (b < 0)
    out[pos] = np.minimum(a, b)[pos]
    out[neg] = np.maximum(a, b)[neg]
    return out


def overlap(a: np.ndarray, b: np.ndarray, voxel_mm3: float = 8.0) -> dict:
    """Overlap of the significant (> 0) voxels of two maps.

    Returns voxel counts (``voxels_a``, ``voxels_b``, ``voxels_both``), volumes in mm3, the Dice
    coefficient ``2 |A and B| / (|A| + |B|)`` (None when both are empty), and the share of each
    map's significant volume inside the other (``share_a_in_b``, ``share_b_in_a``; None when empty).
    """
    sig_a = np.asarray(a) > 0
    sig_b = np.asarray(b) > 0
    na, nb, both = int(sig_a.sum()), int(sig_b.sum()), int((sig_a & sig_b).sum())
    return {
        "voxels_a": na,
        "voxels_b": nb,
        "voxels_both": both,
        "volume_a_mm3": na * voxel_mm3,
        "volume_b_mm3": nb * voxel_mm3,
        "volume_both_mm3": both * voxel_mm3,
        "dice": 2 * both / (na + nb) if na + nb else None,
        "share_a_in_b": both / na if na else None,
        "share_b_in_a": both / nb if nb else None,
    }
