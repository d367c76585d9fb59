"""Writing one meta-analysis as a results folder, with NiMARE 0.22.1's file names.

``write_result(result, folder)`` writes every map as ``<name>.nii.gz``, the Monte
Carlo nulls as ``nulls.npz`` (NiMARE's keys), GingerALE-style extras (the z map
restricted to clusters that survive cluster-level FWE at ``cluster_p``:
``z_desc-size_level-cluster_corr-FWE_method-montecarlo_thresh-05.nii.gz``, and
``clusters_index.nii.gz``, clusters numbered by size), ``clusters.tsv``, GingerALE's cluster
report (``clusters.txt`` and ``cluster_foci.tsv``, :mod:`neurochange.results.cluster_report`) and
``experiments.tsv``. A result with extra voxel thresholds (``params["thresholds"]``: FDR q,
uncorrected p) also gets, per threshold, its z map (``z_corr-FDR_method-indep_thresh-05``,
``z_level-voxel_corr-none_thresh-001``) and cluster table (``clusters_corr-FDR.tsv``,
``clusters_corr-none.tsv``; every cluster, no size cut-off).
So that later steps (``neurochange diagnose``) can work from the
folder alone, it also writes what was analysed: ``foci.tsv`` (experiment_id, x, y, z in
MNI mm, i, j, k voxel indices, one row per focus that entered), ``mask.nii.gz`` (the
analysis mask), ``params.json`` (the result's settings: estimator, counts, Monte Carlo,
plus ``fixed_fwhm`` and ``cluster_p``) and, when a StudySet is passed, ``studyset.tsv``
(its table form, :meth:`StudySet.to_table`, for the analysed experiments).

Workflows compute; they do not write. They return an :class:`Output` (results, images,
tables, JSON records, as objects) and :func:`write_output`, the one writer of results
folders, makes the folder atomically (``outdir.atomic_dir``: all of it or nothing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange.inference.clusters import SIZE_MAP, VOXEL_MAP, cluster_table, label_clusters, significant_clusters
from neurochange.inference.fdr import FDR_SUFFIX
from neurochange.meta.result import FWE_SUFFIX, MetaResult
from neurochange.results import provenance
from neurochange.results.atlas import add_labels
from neurochange.results.cluster_report import cluster_foci, cluster_report
from neurochange.results.outdir import atomic_dir


def thresh_text(p: float) -> str:
    """The digits of ``p`` after ``0.``, as GingerALE-style names give a threshold: ``05`` for .05."""
    return np.format_float_positional(p).split(".")[1]


def thresh_name(cluster_p: float) -> str:
    """GingerALE-style name of the cluster-thresholded z map, e.g. ``..._thresh-05`` for p = .05."""
    return f"z_desc-size_level-cluster{FWE_SUFFIX}_thresh-{thresh_text(cluster_p)}"


def voxel_thresholds(result: MetaResult) -> dict[str, tuple[str, np.ndarray]]:
    """The extra voxel thresholds of ``result``: cluster-table suffix -> (z map name, 3-D boolean volume)."""
    chosen, mask = result.params.get("thresholds", {}), result.grid.mask
    out = {}
    if chosen.get("fdr_q") is not None:
        q = chosen["fdr_q"]
        out["corr-FDR"] = (f"z{FDR_SUFFIX}_thresh-{thresh_text(q)}", mask & (result.get_volume(f"p{FDR_SUFFIX}") < q))
    if chosen.get("uncorrected_p") is not None:
        p = chosen["uncorrected_p"]
        out["corr-none"] = (f"z_level-voxel_corr-none_thresh-{thresh_text(p)}", mask & (result.get_volume("p") < p))
    return out


def result_clusters(result: MetaResult, cluster_p: float = 0.05, min_distance: float = 8.0,
                    supra: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """``clusters.tsv`` rows and the 3-D cluster label array of a corrected result (of the voxels ``supra``,
    every cluster, when given)."""
    if supra is None:
        labels, sizes, p_fwe, _ = significant_clusters(result, cluster_p)
    else:
        (labels, sizes), p_fwe = label_clusters(supra), None
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
    write_maps(result, folder)
    if SIZE_MAP in result.maps or VOXEL_MAP in result.maps:
        table, labels = result_clusters(result, cluster_p)
        table = add_labels(table)  # label_<atlas> columns for each peak
        z = result.get_volume("z")
        thresh = np.where(labels > 0, z, 0.0).astype(np.float32)
        nib.save(nib.Nifti1Image(thresh, result.grid.affine), folder / f"{thresh_name(cluster_p)}.nii.gz")
        nib.save(nib.Nifti1Image(labels.astype(np.int16), result.grid.affine), folder / "clusters_index.nii.gz")
        write_table(table, folder / "clusters.tsv")
        foci = cluster_foci(result, labels)
        write_table(foci, folder / "cluster_foci.tsv")
        level = "cluster-size" if SIZE_MAP in result.maps else "voxel-level"
        estimator = result.params.get("estimator", {}).get("name", "")
        title = f"Clusters with {level} FWE p < {cluster_p} (Monte Carlo), {estimator}"
        (folder / "clusters.txt").write_text(cluster_report(result, labels, table, foci, title), encoding="utf-8")
    else:
        table = pd.DataFrame()
    for suffix, (name, supra) in voxel_thresholds(result).items():
        extra, labels = result_clusters(result, cluster_p, supra=supra)
        nib.save(nib.Nifti1Image(np.where(labels > 0, result.get_volume("z"), 0.0).astype(np.float32),
                                 result.grid.affine), folder / f"{name}.nii.gz")
        write_table(add_labels(extra), folder / f"clusters_{suffix}.tsv")
    experiments = pd.DataFrame(
        {
            "experiment_id": result.experiment_ids,
            "n": result.sample_sizes,
            **result.estimator.experiment_columns(result.inputs),
            "n_foci": result.inputs.foci_per_experiment(),
        }
    )
    write_table(experiments, folder / "experiments.tsv")
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
    estimator = result.params.get("estimator", {})
    params = {**result.params, "cluster_p": cluster_p}
    if estimator.get("name") == "ALE":  # whether the kernel FWHM was fixed (ALE only)
        params["fixed_fwhm"] = estimator.get("fwhm") is not None
    if "n_cores" in params.get("montecarlo", {}):  # results do not depend on it: keep params.json identical
        params["montecarlo"] = {k: v for k, v in params["montecarlo"].items() if k != "n_cores"}
    provenance.write_json(folder / "params.json", params)
    if studyset is not None:
        kept = studyset.filter_experiments(result.experiment_ids)
        kept.to_table().to_csv(folder / "studyset.tsv", sep="\t", index=False)


#: ``float_format`` of the tables written with rounded floats (others: full precision).
TABLE_FLOATS = {"decoding.tsv": "%.6g", "overlap.tsv": "%.6g", "experiments.tsv": "%.6g", "clusters.tsv": "%.6g",
                "cluster_foci.tsv": "%.6g", "clusters_corr-FDR.tsv": "%.6g", "clusters_corr-none.tsv": "%.6g"}


@dataclass
class Output:
    """What a workflow produced, as objects; :func:`write_output` turns it into a folder.

    Paths are relative to the results folder ("" is the folder itself).

    Attributes
    ----------
    results : dict[str, tuple[MetaResult, StudySet or None]]
        Full results folders (:func:`write_result`), with the experiments analysed
        (their ``studies.tsv``).
    maps : dict[str, MetaResult]
        Maps and ``nulls.npz`` only (comparisons, whose tables are given in ``tables``).
    images : dict[str, nibabel image]
    tables : dict[str, DataFrame]
        Written as TSV (``TABLE_FLOATS`` says which round floats).
    records : dict[str, dict]
        Written as key-sorted JSON (``provenance.json``, ``overlap.json``, ...).
    timings : dict[str, float] or None
        Seconds per step; ``timings.json`` gets them with the time spent writing.
    cluster_p : float
        Corrected p of the clusters in ``clusters.tsv`` of each result.
    """

    results: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    timings: dict | None = None
    timings_extra: dict = field(default_factory=dict)
    cluster_p: float = 0.05


def combine(outputs: dict[str, Output], **extra) -> Output:
    """One Output of several, each under its subfolder (``{"macm": ..., "decode": ...}``), plus ``extra``
    fields (``tables``, ``records``, ...) at the top; timings are named ``<subfolder>/<step>``."""
    out = Output(**extra)
    for sub, part in outputs.items():
        for name in ("results", "maps", "images", "tables", "records"):
            getattr(out, name).update({f"{sub}/{key}".rstrip("/"): value for key, value in getattr(part, name).items()})
        if part.timings is not None:
            out.timings = {**(out.timings or {}), **{f"{sub}/{k}": v for k, v in part.timings.items()}}
    return out


def write_table(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, sep="\t", index=False, float_format=TABLE_FLOATS.get(path.name))


def write_maps(result: MetaResult, folder: Path) -> None:
    """Every map of ``result`` as ``<name>.nii.gz`` and its nulls as ``nulls.npz``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in result.maps:
        nib.save(result.get_map(name), folder / f"{name}.nii.gz")
    if result.nulls:
        np.savez_compressed(folder / "nulls.npz", **result.nulls)


def write_output(output: Output, out: str | Path, overwrite: bool = False, finish=None) -> dict[str, pd.DataFrame]:
    """Write ``output`` into the folder ``out`` (all of it or nothing); return the cluster tables by subfolder.

    ``finish(folder)``, when given, adds to the written folder before it takes its place (a report page)."""
    start = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        clusters = fill_folder(output, tmp)
        if finish is not None:
            finish(tmp)
        if output.timings is not None:
            seconds = {**output.timings, "write": time.perf_counter() - start}
            provenance.write_json(tmp / "timings.json", {"seconds": seconds, **output.timings_extra})
    return clusters


def fill_folder(output: Output, folder: Path) -> dict[str, pd.DataFrame]:
    """Write ``output`` into an existing (temporary) ``folder``, without timings; return the cluster
    tables of its results by subfolder."""
    clusters = {}
    for sub, (result, studyset) in output.results.items():
        target = folder / sub
        analysed = None if studyset is None else studyset.filter_experiments(result.experiment_ids)
        clusters[sub] = write_result(result, target, cluster_p=output.cluster_p, studyset=analysed)
        if analysed is not None:
            analysed.resolved_experiments().to_csv(target / "studies.tsv", sep="\t", index=False)
    for sub, result in output.maps.items():
        write_maps(result, folder / sub)
    for name, img in output.images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, folder / name)
    for name, table in output.tables.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_table(table, folder / name)
    for name, record in output.records.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        provenance.write_json(folder / name, record)
    return clusters
