"""Clusters of a thresholded map: face-connected labels, peaks and sub-peaks, contributing experiments.

Works on 3-D arrays of one grid. Clusters are numbered by size, largest first (as
GingerALE lists them); sub-peaks are local maxima at least ``min_distance`` mm from
every stronger peak of the same cluster (nilearn's and GingerALE's 8 mm default).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from neurochange.meta.result import FWE_SUFFIX, NULL_SIZE, MetaResult

FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)
#: The corrected maps that decide which clusters are significant (cluster size, else voxel level).
SIZE_MAP = f"logp_desc-size_level-cluster{FWE_SUFFIX}"
VOXEL_MAP = f"logp_level-voxel{FWE_SUFFIX}"


def label_clusters(supra: np.ndarray, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Label face-connected clusters of a 3-D boolean map, numbered by size (largest = 1).

    Returns ``labels`` (int32, same shape, 0 = background) and ``sizes`` (voxels per
    cluster, in label order). Clusters smaller than ``min_size`` voxels are dropped.
    """
    raw, n = ndimage.label(supra, structure=FACE_CONNECTIVITY)
    if n == 0:
        return np.zeros(supra.shape, dtype=np.int32), np.zeros(0, dtype=np.int64)
    sizes = np.bincount(raw.ravel())[1:]
    # stable order: size descending, then first voxel in C order (label order) ascending
    order = np.lexsort((np.arange(n), -sizes))
    order = order[sizes[order] >= min_size]
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, len(order) + 1, dtype=np.int32)
    return relabel[raw], sizes[order]


def cluster_peaks(
    values: np.ndarray, labels: np.ndarray, cluster: int, affine: np.ndarray, min_distance: float = 8.0,
    box: tuple[slice, ...] | None = None,
) -> np.ndarray:
    """Peak and sub-peaks of one cluster: voxel indices (k, 3), strongest first.

    A candidate is a voxel of the cluster no smaller than any of its 26 neighbours within
    the cluster; candidates closer than ``min_distance`` mm to a stronger kept peak are dropped.
    ``box``: the cluster's bounding box (``ndimage.find_objects(labels)[cluster - 1]``), when known.
    """
    box = box or ndimage.find_objects((labels == cluster).astype(np.int8))[0]
    box = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in box)  # one voxel around: outside the cluster
    inside = labels[box] == cluster
    vals = np.where(inside, values[box], -np.inf)
    local_max = (vals == ndimage.maximum_filter(vals, size=3, mode="constant", cval=-np.inf)) & inside
    ijk = np.argwhere(local_max)
    ijk = ijk[np.argsort(-vals[tuple(ijk.T)], kind="stable")] + np.array([b.start for b in box])
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    kept: list[int] = []
    for i in range(len(ijk)):
        if not kept or np.all(np.linalg.norm(xyz[kept] - xyz[i], axis=1) >= min_distance):
            kept.append(i)
    return ijk[kept]


def focus_clusters(labels: np.ndarray, foci_ijk: np.ndarray) -> np.ndarray:
    """The cluster of each focus (n_foci,) int64: its voxel's label, 0 outside every cluster or the grid."""
    ijk = np.asarray(foci_ijk, dtype=np.int64).reshape(-1, 3)
    inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape)), axis=1)
    hit = np.zeros(len(ijk), dtype=np.int64)
    hit[inside] = labels[tuple(ijk[inside].T)]
    return hit


def contributing_experiments(
    labels: np.ndarray, foci_ijk: np.ndarray, focus_experiment: np.ndarray, n_clusters: int
) -> list[np.ndarray]:
    """For each cluster (1..n), the indices of experiments with at least one focus inside it."""
    hit = focus_clusters(labels, foci_ijk)
    return [np.unique(focus_experiment[hit == c]) for c in range(1, n_clusters + 1)]


def cluster_table(
    stat: np.ndarray,
    z: np.ndarray,
    labels: np.ndarray,
    sizes: np.ndarray,
    affine: np.ndarray,
    *,
    p_fwe: np.ndarray | None = None,
    foci_ijk: np.ndarray | None = None,
    focus_experiment: np.ndarray | None = None,
    experiment_ids: list[str] | None = None,
    min_distance: float = 8.0,
    peak_on: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per peak (a cluster's main peak first, then its sub-peaks).

    ``stat``, ``z``, ``labels``: 3-D arrays of one grid; peaks are found on ``stat`` (or on
    ``peak_on``, e.g. the absolute value of a signed difference, whose ``stat`` is then reported).
    ``p_fwe``: corrected p per cluster (label order). Columns: cluster_id, peak_x,
    peak_y, peak_z (mm), size_vox, size_mm3, peak_stat, peak_zscore (z at the peak), p_fwe, n_experiments,
    experiments (";"-joined ids), is_subpeak.
    """
    voxel_mm3 = float(np.prod(np.sqrt((affine[:3, :3] ** 2).sum(axis=0))))
    contrib = (
        contributing_experiments(labels, foci_ijk, focus_experiment, len(sizes))
        if foci_ijk is not None
        else [np.zeros(0, dtype=int)] * len(sizes)
    )
    rows = []
    boxes = ndimage.find_objects(labels, max_label=len(sizes))  # every cluster's bounding box in one pass
    for c in range(1, len(sizes) + 1):
        peaks = cluster_peaks(stat if peak_on is None else peak_on, labels, c, affine, min_distance, boxes[c - 1])
        exps = contrib[c - 1]
        for k, ijk in enumerate(peaks):
            x, y, zz = ijk @ affine[:3, :3].T + affine[:3, 3]
            rows.append(
                {
                    "cluster_id": c,
                    "peak_x": float(x),
                    "peak_y": float(y),
                    "peak_z": float(zz),
                    "size_vox": int(sizes[c - 1]),
                    "size_mm3": float(sizes[c - 1] * voxel_mm3),
                    "peak_stat": float(stat[tuple(ijk)]),
                    "peak_zscore": float(z[tuple(ijk)]),
                    "p_fwe": float(p_fwe[c - 1]) if p_fwe is not None else np.nan,
                    "n_experiments": int(len(exps)),
                    "experiments": ";".join(experiment_ids[i] for i in exps) if experiment_ids else "",
                    "is_subpeak": k > 0,
                }
            )
    columns = ["cluster_id", "peak_x", "peak_y", "peak_z", "size_vox", "size_mm3", "peak_stat", "peak_zscore",
               "p_fwe", "n_experiments", "experiments", "is_subpeak"]
    return pd.DataFrame(rows, columns=columns)


def n_clusters(table: pd.DataFrame) -> int:
    """Clusters of a ``clusters.tsv`` table (its sub-peak rows share their cluster's id)."""
    return int(table["cluster_id"].nunique()) if len(table) else 0


def significant_clusters(result: MetaResult, cluster_p: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Clusters that survive FWE correction, numbered by size.

    Uses cluster-size FWE when the result has it (voxels above the cluster-forming
    threshold in clusters with corrected p < ``cluster_p``), else voxel-level FWE
    (voxels with corrected p < ``cluster_p``). Returns the 3-D label array, cluster
    sizes (voxels), each cluster's corrected p, and the name of the map used.
    """
    name = SIZE_MAP if SIZE_MAP in result.maps else VOXEL_MAP
    if name not in result.maps:
        raise KeyError("the result has no FWE-corrected map; run Monte Carlo correction first")
    logp = result.get_volume(name)
    run = result.params.get("montecarlo", {})
    if name == SIZE_MAP and run.get("cutoff_rule") == "percentile":
        # JALE's rule: clusters larger than the null's (100 - 100 * cluster_p)th percentile of largest clusters
        cutoff = float(np.percentile(result.nulls[NULL_SIZE], 100 * (1 - cluster_p)))
        supra = result.get_volume(run["cluster_forming_map"]) > run["cluster_forming_stat"]
        labels, sizes = label_clusters(supra, min_size=int(np.floor(cutoff)) + 1)
    else:
        labels, sizes = label_clusters(logp > -np.log10(cluster_p))
    # cluster-size maps are constant within a cluster; for voxel-level, the best voxel
    best = ndimage.maximum(logp, labels, np.arange(1, len(sizes) + 1)) if len(sizes) else []
    p_fwe = 10 ** -np.asarray(best, dtype=float)
    return labels, sizes, p_fwe, name


def max_cluster(volume: np.ndarray, mask: np.ndarray, values: np.ndarray, thresh: float) -> tuple[float, float]:
    """Largest face-connected cluster (voxels) and largest mass (sum of value - thresh) of masked ``values``
    above ``thresh``, by scipy labelling of ``volume`` (a 3-D scratch array, overwritten inside ``mask``)."""
    volume[mask] = values
    supra = volume > thresh
    labels, n = ndimage.label(supra, structure=FACE_CONNECTIVITY)
    if n == 0:
        return 0.0, 0.0
    sizes = np.bincount(labels.ravel())[1:]
    masses = np.bincount(labels.ravel(), weights=np.where(supra, volume - thresh, 0.0).ravel())[1:]
    return float(sizes.max()), float(masses.max())
