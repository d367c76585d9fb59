"""A GingerALE-style cluster report: each significant cluster's size, weighted centre, extrema and the foci of
every experiment that contributes to it, in MNI and Talairach coordinates.

Written beside ``clusters.tsv`` as ``clusters.txt`` (to read) and ``cluster_foci.tsv`` (one row per focus
inside a cluster: ``cluster_id``, ``experiment_id``, ``n``, ``x``, ``y``, ``z`` in MNI mm, ``x_tal``,
``y_tal``, ``z_tal``, ``stat`` at its voxel). The weighted centre is the statistic-weighted mean of the
cluster's voxel coordinates, as GingerALE's "Weighted Center"; extrema are the rows of ``clusters.tsv``
(a cluster's peak and sub-peaks at least 8 mm apart). Talairach coordinates are MNI ones through Lancaster
et al. (2007)'s ``icbm_other`` transform (GingerALE's "MNI to Talairach (Lancaster)"), rounded to 0.1 mm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from neurochange import space as _space
from neurochange.inference.clusters import focus_clusters
from neurochange.meta.result import MetaResult

FOCI_COLUMNS = ["cluster_id", "experiment_id", "n", "x", "y", "z", "x_tal", "y_tal", "z_tal", "stat"]


def weighted_centres(stat: np.ndarray, labels: np.ndarray, n_clusters: int, affine: np.ndarray) -> np.ndarray:
    """Statistic-weighted centre of each cluster 1..n in mm, (n_clusters, 3)."""
    if n_clusters == 0:
        return np.zeros((0, 3))
    index = np.arange(1, n_clusters + 1)
    ijk = np.column_stack([ndimage.sum_labels(stat * g, labels, index) for g in np.indices(labels.shape)])
    ijk = ijk / ndimage.sum_labels(stat, labels, index)[:, None]
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def cluster_foci(result: MetaResult, labels: np.ndarray) -> pd.DataFrame:
    """The analysed foci that fall inside a cluster of ``labels`` (3-D, 0 outside), cluster by cluster."""
    ijk = np.asarray(result.foci_ijk, dtype=np.int64).reshape(-1, 3)
    cluster = focus_clusters(labels, ijk)
    keep = np.flatnonzero(cluster > 0)
    xyz = np.asarray(result.foci_xyz, dtype=float).reshape(-1, 3)[keep]
    tal = np.round(_space.mni_to_tal(xyz), 1) if len(keep) else np.zeros((0, 3))
    stat = result.get_volume("stat")
    experiment = np.asarray(result.focus_experiment)[keep]
    table = pd.DataFrame({
        "cluster_id": cluster[keep],
        "experiment_id": np.asarray(result.experiment_ids, dtype=object)[experiment] if len(keep) else [],
        "n": np.asarray(result.sample_sizes, dtype=float)[experiment],
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "x_tal": tal[:, 0], "y_tal": tal[:, 1], "z_tal": tal[:, 2],
        "stat": stat[tuple(ijk[keep].T)] if len(keep) else [],
    }, columns=FOCI_COLUMNS)
    return table.sort_values(["cluster_id", "experiment_id"], kind="stable").reset_index(drop=True)


def _xyz(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in np.round(np.asarray(values, dtype=float), 1)) + ")"


def _n(value) -> str:
    return "n unknown" if pd.isna(value) else f"n = {int(value)}"


def cluster_report(result: MetaResult, labels: np.ndarray, clusters: pd.DataFrame, foci: pd.DataFrame,
                   title: str) -> str:
    """The text of ``clusters.txt`` for the clusters of ``labels`` (``clusters``: their ``clusters.tsv`` rows,
    ``foci``: :func:`cluster_foci`), headed by ``title`` (which map and threshold)."""
    stat_name = result.params.get("estimator", {}).get("name", "stat")
    n = int(clusters["cluster_id"].nunique()) if len(clusters) else 0
    centres = weighted_centres(result.get_volume("stat"), labels, n, result.grid.affine)
    label_column = next((c for c in ("label_harvard_oxford", "label_aal") if c in clusters.columns), None)
    lines = [title, "Coordinates: MNI152 mm; Talairach by Lancaster et al. (2007), icbm_other.", ""]
    if n == 0:
        lines.append("No significant cluster.")
    for c in range(1, n + 1):
        rows = clusters[clusters["cluster_id"] == c]
        first = rows.iloc[0]
        p = "" if pd.isna(first["p_fwe"]) else f", FWE p = {first['p_fwe']:.4g}"
        centre = centres[c - 1]
        lines += [f"Cluster {c}: {int(first['size_vox']):,} voxels, {first['size_mm3']:,.0f} mm3{p}",
                  f"  Weighted centre: MNI {_xyz(centre)}, Talairach {_xyz(_space.mni_to_tal(centre)[0])}",
                  "  Extrema:"]
        for k, row in enumerate(rows.itertuples(index=False), start=1):
            mni = (row.peak_x, row.peak_y, row.peak_z)
            label = f", {getattr(row, label_column)}" if label_column else ""
            lines.append(f"    {k}. {stat_name} {row.peak_stat:.6g}, z {row.peak_zscore:.2f} at MNI {_xyz(mni)}, "
                         f"Talairach {_xyz(_space.mni_to_tal(mni)[0])}{label}")
        inside = foci[foci["cluster_id"] == c]
        experiments = list(dict.fromkeys(inside["experiment_id"]))
        lines.append(f"  Contributing experiments: {len(experiments)}")
        for experiment in experiments:
            own = inside[inside["experiment_id"] == experiment]
            lines.append(f"    {experiment} ({_n(own['n'].iloc[0])}): {len(own)} "
                         f"{'focus' if len(own) == 1 else 'foci'} in the cluster")
            for focus in own.itertuples(index=False):
                lines.append(f"      MNI {_xyz((focus.x, focus.y, focus.z))}, "
                             f"Talairach {_xyz((focus.x_tal, focus.y_tal, focus.z_tal))}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
