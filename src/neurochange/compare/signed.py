"""Signed meta-analysis: convergent increases, convergent decreases, and where both meet.

Experiments carry a direction (``increase`` after treatment, ``decrease``, ``unsigned``,
``unknown``). The estimator and Monte Carlo FWE run on the increases and on the decreases
separately (each with its own null, sample sizes and foci); unsigned and unknown experiments
never enter either and are counted, with their ids, as left out. Dependent contrasts are
pooled within each direction (a study with an increase and a decrease contrast gives one
experiment to each side).

Combined maps (on each direction's cluster-FWE thresholded z map, ``z_thr``):

- ``z_desc-signed``: ``+z_thr(increase)`` where only increases converge, ``-z_thr(decrease)``
  where only decreases converge, 0 elsewhere and where both converge;
- ``z_desc-conflict``: the minimum-statistic conjunction (Nichols et al. 2005) of the two
  thresholded maps, non-zero only where both directions converge.

Any estimator with a Monte Carlo FWE correction fits; the run from a file to a folder is
:func:`neurochange.workflows.analysis.run_signed`.
"""

from __future__ import annotations

import numpy as np

from neurochange.compare.overlap import conjunction
from neurochange.inference.clusters import significant_clusters
from neurochange.studyset import StudySet

DIRECTIONS = ("increase", "decrease")
LEFT_OUT_REASONS = {
    "unsigned": "the contrast has no sign (e.g. an F-test or pooled tables)",
    "unknown": "direction not curated",
}


def split_by_direction(studyset: StudySet) -> tuple[dict[str, StudySet | None], dict]:
    """The experiments of each direction (None where there are none), and what was left out.

    ``left_out``: per reason (``unsigned``, ``unknown``; a missing direction counts as
    ``unknown``), ``{"experiments": count, "ids": [...], "why": text}``.
    """
    direction = studyset.experiments["direction"].fillna("unknown").astype(str)
    parts = {d: (studyset.filter_experiments((direction == d).to_numpy()) if (direction == d).any() else None)
             for d in DIRECTIONS}
    left_out = {}
    for reason in sorted(set(direction) - set(DIRECTIONS)):
        ids = sorted(studyset.experiments["experiment_id"][direction == reason].astype(str))
        left_out[reason] = {"experiments": len(ids), "ids": ids,
                            "why": LEFT_OUT_REASONS.get(reason, "not a direction")}
    return parts, left_out


def combine_signed(z_increase: np.ndarray, z_decrease: np.ndarray) -> dict[str, np.ndarray]:
    """Signed and conflict maps from the two thresholded (non-negative) z maps of one shape."""
    inc = np.asarray(z_increase, dtype=np.float64)
    dec = np.asarray(z_decrease, dtype=np.float64)
    only_inc = (inc > 0) & ~(dec > 0)
    only_dec = (dec > 0) & ~(inc > 0)
    signed = np.where(only_inc, inc, 0.0) - np.where(only_dec, dec, 0.0)
    return {"z_desc-signed": signed, "z_desc-conflict": conjunction(inc, dec)}


def thresholded_z(result, cluster_p: float = 0.05) -> np.ndarray:
    """A corrected result's z volume restricted to its significant clusters (3-D float64)."""
    labels, _, _, _ = significant_clusters(result, cluster_p)
    return np.where(labels > 0, result.get_volume("z"), 0.0)
