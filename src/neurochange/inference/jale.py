"""JALE's histogram null: p and z of an ALE value as JALE 0.2.10 (and pyALE) compute them.

The rules, from JALE's ``core/utils/compute.py`` (MIT; re-implemented, not copied):

- bins of 1e-4 (``STEP`` = 10,000 per unit ALE): bin edges ``arange(0.00005, 1 - T + 0.001, 1e-4)``
  and centres ``arange(0, 1 - T + 0.001, 1e-4)``, with ``T = prod(1 - max MA)`` over experiments;
- each experiment's MA values at the grey-matter prior's voxels (zeros included) are counted per
  bin (``numpy.digitize`` on the edges) and normalised;
- the histograms are combined one experiment after another: every pair of non-empty bins adds
  its probability to the bin ``round(STEP * (1 - (1 - a)(1 - b)))`` (half to even);
- p of an ALE value: the upper cumulative sum at bin ``round(STEP * ALE)``, floored at machine
  epsilon; z = ``norm.ppf(1 - p)``, negative z set to 0.

Clusters form where z > ``norm.ppf(1 - cluster_forming_p)``. Where JALE would index past the
histogram (an ALE above every bin, which its own maps cannot reach) the last bin is used.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import special

#: Bins per unit ALE (JALE's ``bin_steps`` = 1e-4).
STEP = 10000
EPS = np.finfo(float).eps


def bins(max_ma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edges, centres) of JALE's histogram for experiments whose largest MA values are ``max_ma``."""
    top = np.prod([1 - m for m in np.asarray(max_ma, dtype=float)])
    return np.arange(0.00005, 1 - top + 0.001, 0.0001), np.arange(0, 1 - top + 0.001, 0.0001)


def experiment_histogram(ma_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts (len(edges),) float64 of one experiment's MA values at every prior voxel (zeros included)."""
    return np.bincount(np.digitize(ma_values, edges), minlength=len(edges)).astype(np.float64)[: len(edges)]


@numba.njit(cache=True, nogil=True)
def convolve(hist: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Upper-tail probabilities (last used bin + 1,) of the ALE of experiments with bin counts ``hist``
    (n_experiments, n_bins): JALE's ``compute_hx_conv``, summed in the same order."""
    n_exp, n_bins = hist.shape
    ale_hist = hist[0] / hist[0].sum()
    for x in range(1, n_exp):
        v1 = ale_hist
        v2 = hist[x] / hist[x].sum()
        da1 = np.nonzero(v1 > 0)[0]
        da2 = np.nonzero(v2 > 0)[0]
        ale_hist = np.zeros(len(centres))
        for a in da2:
            for b in da1:
                score = 1 - (1 - centres[a]) * (1 - centres[b])
                ale_hist[int(np.rint(score * STEP))] += v2[a] * v1[b]
    last = 0
    for i in range(len(ale_hist)):
        if ale_hist[i] > 0:
            last = i
    tail = np.empty(last + 1)
    total = 0.0
    for i in range(last, -1, -1):
        total += ale_hist[i]
        tail[i] = total
    return tail


def z_lookup(tail: np.ndarray) -> np.ndarray:
    """z of every bin (len(tail),): ``norm.ppf(1 - p)`` of its p floored at epsilon, negatives 0."""
    p = np.maximum(tail, EPS)
    z = special.ndtri(1 - p)
    return np.nan_to_num(np.where(z < 0, 0.0, z), nan=0.0)


def ale_bin(ale: np.ndarray, n_bins: int) -> np.ndarray:
    """The histogram bin of each ALE value: ``round(STEP * ALE)`` (half to even), at most the last bin."""
    return np.minimum(np.rint(np.asarray(ale) * STEP).astype(np.int64), n_bins - 1)


def p_and_z(ale: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p (floored at epsilon) and z of ALE values under the histogram null ``tail``."""
    index = ale_bin(ale, len(tail))
    return np.maximum(tail, EPS)[index], z_lookup(tail)[index]


def z_threshold(cluster_forming_p: float) -> float:
    """The cluster-forming z: clusters are voxels with z above it (JALE's ``norm.ppf(1 - p)``)."""
    return float(special.ndtri(1 - cluster_forming_p))


__all__ = ["STEP", "ale_bin", "bins", "convolve", "experiment_histogram", "p_and_z", "z_lookup", "z_threshold"]
