"""Writing one meta-analysis as a results folder, with NiMARE 0.22.1's file names.

``write_result(result, folder)`` writes every map as ``<name>.nii.gz``, the Monte
Carlo nulls as ``nulls.npz`` (NiMARE's keys), GingerALE-style extras (the z map
restricted to clusters that survive cluster-level FWE at ``cluster_p``:
``z_desc-size_level-cluster_corr-FWE_method-montecarlo_thresh-05.nii.gz``, and
``clusters_index.nii.gz``, clusters numbered by size), ``clusters.tsv`` and
``experiments.tsv``. So that later steps (``neurochange diagnose``) can work from the
folder alone, it also writes what was analysed: ``foci.tsv`` (experiment_id, x, y, z in
MNI mm, i, j, k voxel indices, one row per focus that entered), ``mask.nii.gz`` (the
analysis mask), ``params.json`` (the result's settings: estimator, counts, Monte Carlo,
plus ``fixed_fwhm`` and ``cluster_p``) and, when a StudySet is passed, ``studyset.tsv``
(its table form, :meth:`StudySet.to_table`, for the analysed experiments).
The folder itself is made atomic by the caller (``outdir.atomic_dir``).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from neurochange.inference.clusters import cluster_table, label_clusters
from neurochange.meta.result import FWE_SUFFIX, MetaResult
from neurochange.results import provenance
from neurochange.results.atlas import add_labels

SIZE_MAP = f"logp_desc-size_level-cluster{FWE_SUFFIX}"
VOXEL_MAP = f"logp_level-voxel{FWE_SUFFIX}"


def thresh_name(cluster_p: float) -> str:
    """GingerALE-style name of the cluster-thresholded z map, e.g. ``..._thresh-05`` for p = .05."""
    return f"z_desc-size_level-cluster{FWE_SUFFIX}_thresh-{f'{cluster_p:.3f}'.rstrip('0').split('.')[1]}"


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
    labels, sizes = label_clusters(logp > -np.log10(cluster_p))
    # cluster-size maps are constant within a cluster; for voxel-level, the best voxel
    best = ndimage.maximum(logp, labels, np.arange(1, len(sizes) + 1)) if len(sizes) else []
    p_fwe = 10 ** -np.asarray(best, dtype=float)
    return labels, sizes, p_fwe, name


def result_clusters(result: MetaResult, cluster_p: float = 0.05, min_distance: float = 8.0) -> tuple[pd.DataFrame, np.ndarray]:
    """``clusters.tsv`` rows and the 3-D cluster label array of a corrected result."""
    labels, sizes, p_fwe, _ = significant_clusters(result, cluster_p)
    table = cluster_table(
        result.get_volume("stat"),
        result.get_volume("z"),
        labels,
        sizes,
        result.grid.affine,
        p_fwe=p_fwe,
        foci_ijk=result.foci_ijk,
        focus_experiment=result.focus_experiment,
        experiment_ids=result.experiment_ids,
        min_distance=min_distance,
    )
    return table, labels


def write_result(result: MetaResult, folder: str | Path, cluster_p: float = 0.05, *, studyset=None) -> pd.DataFrame:
    """Write maps, nulls, cluster table and extras of ``result`` into ``folder``; return the cluster table.

    ``studyset`` (optional): the StudySet analysed; its analysed experiments go to ``studyset.tsv``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in result.maps:
        nib.save(result.get_map(name), folder / f"{name}.nii.gz")
    if result.nulls:
        np.savez_compressed(folder / "nulls.npz", **result.nulls)
    if SIZE_MAP in result.maps or VOXEL_MAP in result.maps:
        table, labels = result_clusters(result, cluster_p)
        table = add_labels(table)  # label_<atlas> columns for each peak
        z = result.get_volume("z")
        thresh = np.where(labels > 0, z, 0.0).astype(np.float32)
        nib.save(nib.Nifti1Image(thresh, result.grid.affine), folder / f"{thresh_name(cluster_p)}.nii.gz")
        nib.save(nib.Nifti1Image(labels.astype(np.int16), result.grid.affine), folder / "clusters_index.nii.gz")
        table.to_csv(folder / "clusters.tsv", sep="\t", index=False, float_format="%.6g")
    else:
        table = pd.DataFrame()
    experiments = pd.DataFrame(
        {
            "experiment_id": result.experiment_ids,
            "n": result.sample_sizes,
            "fwhm_mm": result.experiment_fwhm,
            "n_foci": np.bincount(result.focus_experiment, minlength=result.n_experiments),
        }
    )
    experiments.to_csv(folder / "experiments.tsv", sep="\t", index=False, float_format="%.6g")
    write_analysed(result, folder, cluster_p, studyset)
    return table


def write_analysed(result: MetaResult, folder: Path, cluster_p: float, studyset=None) -> None:
    """``foci.tsv``, ``mask.nii.gz``, ``params.json`` (and ``studyset.tsv``): what ``result`` analysed."""
    ids = np.asarray(result.experiment_ids, dtype=object)
    xyz = np.asarray(result.foci_xyz, dtype=float).reshape(-1, 3)
    ijk = np.asarray(result.foci_ijk, dtype=np.int64).reshape(-1, 3)
    foci = pd.DataFrame({"experiment_id": ids[result.focus_experiment] if len(ids) else [],
                         "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                         "i": ijk[:, 0], "j": ijk[:, 1], "k": ijk[:, 2]})
    foci.to_csv(folder / "foci.tsv", sep="\t", index=False, float_format="%.10g")
    nib.save(nib.Nifti1Image(result.grid.mask.astype(np.uint8), result.grid.affine), folder / "mask.nii.gz")
    params = {**result.params, "fixed_fwhm": bool(result.fixed_fwhm), "cluster_p": cluster_p}
    if "n_cores" in params.get("montecarlo", {}):  # results do not depend on it: keep params.json identical
        params["montecarlo"] = {k: v for k, v in params["montecarlo"].items() if k != "n_cores"}
    provenance.write_json(folder / "params.json", params)
    if studyset is not None:
        kept = studyset.filter_experiments(result.experiment_ids)
        kept.to_table().to_csv(folder / "studyset.tsv", sep="\t", index=False)
