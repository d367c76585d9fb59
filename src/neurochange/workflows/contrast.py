"""Comparisons from files to results folders: ``neurochange contrast`` and ``neurochange conjunction``.

``run_contrast(a, b, out)``: reads two inputs (Sleuth, NiMARE JSON or table), pools dependent
contrasts unless told not to, runs the label-permutation subtraction
(:class:`neurochange.compare.subtraction.Subtraction`) and writes its maps (NiMARE names), ``nulls.npz``,
``experiments.tsv`` (with each experiment's group), ``provenance.json`` and ``timings.json``.
With ``balanced=True`` it runs the balanced ALE subtraction instead
(:class:`neurochange.compare.balanced.BalancedSubtraction`, NiMARE's ``BalancedALESubtraction``):
both groups compared at one matched size, maps ``*_desc-balancedGroup1MinusGroup2``,
``prob_desc-group{1,2}`` and ``stat_desc-conjunction``.

``run_conjunction(dir_a, dir_b, out)``: reads one map from each of two results folders (by
default the cluster-FWE thresholded z map), writes their minimum-statistic conjunction
``z_desc-conjunction.nii.gz``, its clusters (``clusters.tsv``, ``clusters_index.nii.gz``) and
``overlap.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange.compare.balanced import BalancedSubtraction
from neurochange.compare.subtraction import Subtraction, conjunction, overlap
from neurochange.corpus.pooling import pool_experiments
from neurochange.errors import InputError
from neurochange.inference.clusters import cluster_table, label_clusters
from neurochange.meta.ale import ALE
from neurochange.results import provenance
from neurochange.results.outdir import atomic_dir, check_out
from neurochange.results.write import thresh_name
from neurochange.sources.io import read_studyset
from neurochange.space import load_grid

#: The map a conjunction reads from each results folder by default.
DEFAULT_CONJUNCTION_MAP = thresh_name(0.05)


def run_contrast(
    input_a: str | Path,
    input_b: str | Path,
    out: str | Path,
    *,
    n_iters: int = 10000,
    seed: int | None = None,
    n_cores: int | None = None,
    fwhm: float | None = None,
    mask: str | Path | None = None,
    keep_contrasts: bool = False,
    vfwe_only: bool = False,
    cluster_forming_p: float = 0.001,
    balanced: bool = False,
    target_n: int | None = None,
    difference_iterations: int = 1000,
    n_subsamples: int = 2500,
    null_method: str = "random-foci",
    prior: str = "gm",
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Group A minus group B (ALE subtraction) from two input files into the folder ``out``.

    ``balanced``: the balanced subtraction (``target_n``, ``difference_iterations``,
    ``n_subsamples``, ``null_method``, ``prior`` as :class:`neurochange.compare.balanced.BalancedSubtraction`'s
    ``target_n``, ..., ``mask_coverage``; ``vfwe_only`` and ``cluster_forming_p`` do not apply).
    Returns a summary: seed, counts per group, what was pooled, voxels with p < .05 / .001
    (and for ``balanced``: the matched size and voxels where A > B and where A < B at p < .05).
    """
    check_out(out, overwrite)
    seed = provenance.resolve_seed(seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sets, pooled = [], {}
    for label, path in (("group1", input_a), ("group2", input_b)):
        studyset = read_studyset(path)
        if not keep_contrasts:
            studyset, pooled[label] = pool_experiments(studyset)
        sets.append(studyset)
    shared = sorted(set(sets[0].experiments["experiment_id"]) & set(sets[1].experiments["experiment_id"]))
    if shared:
        raise InputError(f"experiment {shared[0]} is in both groups" + (f" (and {len(shared) - 1} more)" if len(
            shared) > 1 else "") + "; a contrast needs two disjoint groups", file=str(input_b), field="experiment")
    grid = load_grid(mask)
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    if balanced:
        estimator = BalancedSubtraction(
            ALE(fwhm=fwhm), target_n=target_n, n_subsamples=n_subsamples,
            difference_iterations=difference_iterations, n_iters=n_iters, null_method=null_method,
            mask_coverage=prior, seed=seed, n_cores=n_cores)
        result = estimator.fit(sets[0], sets[1], grid, progress=progress)
        settings = {"balanced": True, "target_n": target_n, "difference_iterations": difference_iterations,
                    "n_subsamples": n_subsamples, "null_method": null_method, "prior": prior}
        desc = "balancedGroup1MinusGroup2"
    else:
        result = Subtraction(ALE(fwhm=fwhm), n_iters=n_iters, seed=seed, n_cores=n_cores, vfwe_only=vfwe_only,
                             cluster_forming_p=cluster_forming_p).fit(
            sets[0], sets[1], grid, progress=progress)
        settings = {"vfwe_only": vfwe_only, "cluster_forming_p": cluster_forming_p}
        desc = "group1MinusGroup2"
    timings["subtraction"] = time.perf_counter() - start

    start = time.perf_counter()
    record = {
        "command": "contrast",
        "input": {"group1": Path(input_a).name, "group2": Path(input_b).name},
        "settings": {"n_iters": n_iters, "seed": seed, "fwhm": fwhm, "keep_contrasts": keep_contrasts,
                     **settings,
                     "mask": "MNI152 2 mm brain mask (NiMARE ALE default)" if mask is None else Path(mask).name},
        "params": result.params,
        "pooled": pooled if not keep_contrasts else "contrasts kept apart (--keep-contrasts)",
        "versions": provenance.versions(),
    }
    n1 = result.params["counts"]["group1"]["experiments"]
    experiments = pd.DataFrame({
        "experiment_id": result.experiment_ids,
        "group": ["group1"] * n1 + ["group2"] * (len(result.experiment_ids) - n1),
        "n": result.sample_sizes,
        "fwhm_mm": result.experiment_fwhm,
    })
    with atomic_dir(out, overwrite) as tmp:
        for name in result.maps:
            nib.save(result.get_map(name), tmp / f"{name}.nii.gz")
        np.savez_compressed(tmp / "nulls.npz", **result.nulls)
        experiments.to_csv(tmp / "experiments.tsv", sep="\t", index=False, float_format="%.6g")
        provenance.write_json(tmp / "provenance.json", record)
        timings["write"] = time.perf_counter() - start
        provenance.write_json(tmp / "timings.json", {"seconds": timings})
    p, z = result.maps[f"p_desc-{desc}"], result.maps[f"z_desc-{desc}"]
    summary = {
        "seed": seed,
        "counts": result.params["counts"],
        "pooled": pooled,
        "voxels_p05": int((p < 0.05).sum()),
        "voxels_p001": int((p < 0.001).sum()),
        "timings": timings,
    }
    if balanced:
        summary.update(target_n=result.params["subtraction"]["target_n"],
                       voxels_a_greater=int(((p < 0.05) & (z > 0)).sum()),
                       voxels_b_greater=int(((p < 0.05) & (z < 0)).sum()))
    else:
        summary["distinct_splits"] = result.params["subtraction"]["distinct_splits"]
    return summary


def read_map(folder: str | Path, name: str = DEFAULT_CONJUNCTION_MAP) -> nib.Nifti1Image:
    """The map ``<name>.nii.gz`` of a results folder (InputError naming the file when absent)."""
    name = name.removesuffix(".gz").removesuffix(".nii")
    path = Path(folder) / f"{name}.nii.gz"
    if not Path(folder).is_dir():
        raise InputError("not a results folder: give a folder written by `neurochange ale`", file=str(folder))
    if not path.is_file():
        raise InputError(f"no map {path.name} in this results folder; choose one with --map", file=str(folder))
    return nib.load(path)


def run_conjunction(
    dir_a: str | Path,
    dir_b: str | Path,
    out: str | Path,
    *,
    map_name: str = DEFAULT_CONJUNCTION_MAP,
    overwrite: bool = False,
    min_distance: float = 8.0,
) -> dict:
    """Minimum-statistic conjunction of one map from each of two results folders; returns overlap.json's dict."""
    check_out(out, overwrite)
    img_a, img_b = read_map(dir_a, map_name), read_map(dir_b, map_name)
    if img_a.shape != img_b.shape or not np.allclose(img_a.affine, img_b.affine):
        raise InputError(f"the two maps lie on different grids ({img_a.shape} vs {img_b.shape}); "
                         "run both analyses with the same mask", file=str(dir_b), field=map_name)
    a = np.asarray(img_a.get_fdata(), dtype=np.float64)
    b = np.asarray(img_b.get_fdata(), dtype=np.float64)
    conj = conjunction(a, b)
    voxel_mm3 = float(np.prod(img_a.header.get_zooms()[:3]))
    stats = overlap(a, b, voxel_mm3=voxel_mm3)
    labels, sizes = label_clusters(conj > 0)
    table = cluster_table(conj, conj, labels, sizes, img_a.affine, min_distance=min_distance)
    record = {
        "a": str(dir_a), "b": str(dir_b), "map": map_name,
        "method": "minimum statistic (Nichols et al. 2005): where both maps > 0, the smaller value",
        **stats,
        "clusters": int(len(sizes)),
    }
    with atomic_dir(out, overwrite) as tmp:
        nib.save(nib.Nifti1Image(conj.astype(np.float32), img_a.affine), tmp / "z_desc-conjunction.nii.gz")
        nib.save(nib.Nifti1Image(labels.astype(np.int16), img_a.affine), tmp / "clusters_index.nii.gz")
        table.drop(columns=["p_fwe", "n_experiments", "experiments"]).to_csv(
            tmp / "clusters.tsv", sep="\t", index=False, float_format="%.6g")
        provenance.write_json(tmp / "overlap.json", record)
    return record
