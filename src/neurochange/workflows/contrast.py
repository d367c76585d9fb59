"""Comparisons from files to results folders: ``neurochange contrast`` and ``neurochange conjunction``.

``run_contrast(a, b, ...)``: reads two inputs (Sleuth, NiMARE JSON or table), pools dependent
contrasts unless told not to, runs the label-permutation subtraction
(:class:`neurochange.compare.subtraction.Subtraction`) and writes its maps (NiMARE names), ``nulls.npz``,
``experiments.tsv`` (with each experiment's group), ``provenance.json`` and ``timings.json``
(as an :class:`~neurochange.results.write.Output`; :func:`contrast` is the in-memory step the review calls).
With ``balanced=True`` it runs the balanced ALE subtraction instead
(:class:`neurochange.compare.balanced.BalancedSubtraction`, NiMARE's ``BalancedALESubtraction``):
both groups compared at one matched size, maps ``*_desc-balancedGroup1MinusGroup2``,
``prob_desc-group{1,2}`` and ``stat_desc-conjunction``.

``run_conjunction(dir_a, dir_b)``: reads one map from each of two results folders (by
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
from scipy import ndimage

from neurochange.compare.balanced import BalancedSubtraction
from neurochange.compare.overlap import conjunction, overlap
from neurochange.compare.subtraction import DIFF, Subtraction
from neurochange.errors import InputError
from neurochange.inference.clusters import cluster_table, label_clusters, n_clusters
from neurochange.meta.result import FWE_SUFFIX, MetaResult
from neurochange.results import provenance
from neurochange.results.write import Output, thresh_name
from neurochange.space import Grid, load_grid
from neurochange.studyset import StudySet
from neurochange.workflows.analysis import AnalysisRun, read_input
from neurochange.workflows.settings import BalancedSettings, InferenceSettings, KernelSettings, RunSettings

#: The map a conjunction reads from each results folder by default.
DEFAULT_CONJUNCTION_MAP = thresh_name(0.05)


def contrast(set_a: StudySet, set_b: StudySet, grid: Grid, kernel: KernelSettings, inference: InferenceSettings,
             seed: int, n_cores: int | None = None, balanced: BalancedSettings | None = None,
             progress=None) -> MetaResult:
    """Group A minus group B by label permutation (or the balanced subtraction), in memory."""
    if balanced is not None:
        if inference.device == "gpu":
            raise InputError("the balanced subtraction has no GPU engine: use --device cpu", field="device")
        return BalancedSubtraction(
            kernel.make(), target_n=balanced.target_n, n_subsamples=balanced.n_subsamples,
            difference_iterations=balanced.difference_iterations, n_iters=inference.n_iters,
            null_method=balanced.null_method, mask_coverage=balanced.prior, seed=seed, n_cores=n_cores,
        ).fit(set_a, set_b, grid, progress=progress)
    return Subtraction(kernel.make(), n_iters=inference.n_iters, seed=seed, n_cores=n_cores,
                       vfwe_only=inference.vfwe_only, cluster_forming_p=inference.cluster_forming_p,
                       early_stop=inference.early_stop, device=inference.device).fit(
        set_a, set_b, grid, progress=progress)


def contrast_clusters(result: MetaResult, cluster_p: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Clusters of a contrast: voxels with cluster-size FWE p < ``cluster_p`` (else voxel-level FWE), peaks
    on |difference|, ``peak_stat`` the difference A minus B there (positive: A > B) and ``peak_zscore`` its z.
    Returns ``clusters.tsv``'s table and the 3-D labels."""
    def as_written(name):  # the float32 values of the map's file, so the table matches it
        return result.get_volume(name).astype(np.float32).astype(np.float64)

    z = as_written(f"z_desc-{DIFF}")
    for name in (f"p_desc-{DIFF}Size_level-cluster{FWE_SUFFIX}", f"p_desc-{DIFF}_level-voxel{FWE_SUFFIX}"):
        if name in result.maps:
            p = as_written(name)
            break
    diff = as_written(f"stat_desc-{DIFF}")
    labels, sizes = label_clusters((p < cluster_p) & (z != 0))
    p_fwe = ndimage.minimum(p, labels, np.arange(1, len(sizes) + 1)) if len(sizes) else None
    table = cluster_table(diff, z, labels, sizes, result.grid.affine, p_fwe=p_fwe, peak_on=np.abs(diff))
    return table.drop(columns=["n_experiments", "experiments"]), labels


def contrast_output(result: MetaResult, inputs: dict, kernel: KernelSettings, inference: InferenceSettings,
                    run: RunSettings, balanced: BalancedSettings | None, pooled) -> tuple[Output, dict]:
    """A contrast's folder (maps, ``nulls.npz``, ``experiments.tsv`` with each experiment's group,
    ``clusters.tsv`` unless ``balanced``, ``provenance.json``) and its provenance record; ``inputs``
    names the two groups."""
    if balanced is not None:
        settings = {"balanced": True, **balanced.to_dict()}
    else:
        settings = {"vfwe_only": inference.vfwe_only, "cluster_forming_p": inference.cluster_forming_p,
                    "early_stop": inference.early_stop}
    record = {
        "command": "contrast",
        "input": inputs,
        "settings": {"n_iters": inference.n_iters, "seed": run.seed, "fwhm": kernel.ale_fwhm,
                     **({"sample_size": kernel.sample_size} if kernel.sample_size is not None else {}),
                     "keep_contrasts": run.keep_contrasts, **settings,
                     "mask": run.mask_record("MNI152 2 mm brain mask (NiMARE ALE default)")["mask"]},
        "params": result.params,
        "pooled": pooled,
        "versions": provenance.versions(),
    }
    n1 = result.params["counts"]["group1"]["experiments"]
    experiments = pd.DataFrame({
        "experiment_id": result.experiment_ids,
        "group": ["group1"] * n1 + ["group2"] * (len(result.experiment_ids) - n1),
        "n": result.sample_sizes,
        **result.estimator.experiment_columns(result.inputs),
        "n_foci": result.inputs.foci_per_experiment(),
    })
    output = Output(maps={"": result}, tables={"experiments.tsv": experiments}, records={"provenance.json": record})
    if balanced is None:
        output.tables["clusters.tsv"], _ = contrast_clusters(result, inference.cluster_p)
    return output, record


def run_contrast(input_a: str | Path, input_b: str | Path, kernel: KernelSettings, inference: InferenceSettings,
                 run: RunSettings, balanced: BalancedSettings | None = None, progress=None) -> AnalysisRun:
    """Group A minus group B (ALE subtraction) from two input files.

    ``balanced``: the balanced subtraction instead (``vfwe_only`` and ``cluster_forming_p`` do
    not apply). Summary: seed, counts per group, what was pooled, voxels with p < .05 / .001
    (and for ``balanced``: the matched size and voxels where A > B and where A < B at p < .05).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    sets, pooled = [], {}
    for label, path in (("group1", input_a), ("group2", input_b)):
        studyset, pooled[label] = read_input(path, run.keep_contrasts)
        sets.append(studyset)
    shared = sorted(set(sets[0].experiments["experiment_id"]) & set(sets[1].experiments["experiment_id"]))
    if shared:
        raise InputError(f"experiment {shared[0]} is in both groups" + (f" (and {len(shared) - 1} more)" if len(
            shared) > 1 else "") + "; a contrast needs two disjoint groups", file=str(input_b), field="experiment")
    grid = load_grid(run.mask)
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    result = contrast(sets[0], sets[1], grid, kernel, inference, run.seed, run.n_cores, balanced, progress)
    timings["subtraction"] = time.perf_counter() - start
    inputs = {"group1": Path(input_a).name, "group2": Path(input_b).name}
    output, record = contrast_output(result, inputs, kernel, inference, run, balanced,
                                     pooled if not run.keep_contrasts else "contrasts kept apart (--keep-contrasts)")
    output.timings = timings
    desc = "balancedGroup1MinusGroup2" if balanced is not None else DIFF
    p, z = result.maps[f"p_desc-{desc}"], result.maps[f"z_desc-{desc}"]
    summary = {"seed": run.seed, "counts": result.params["counts"], "pooled": pooled,
               "voxels_p05": int((p < 0.05).sum()), "voxels_p001": int((p < 0.001).sum()), "timings": timings}
    if balanced is not None:
        summary.update(target_n=result.params["subtraction"]["target_n"],
                       voxels_a_greater=int(((p < 0.05) & (z > 0)).sum()),
                       voxels_b_greater=int(((p < 0.05) & (z < 0)).sum()))
    else:
        summary.update(distinct_splits=result.params["subtraction"]["distinct_splits"],
                       n_clusters=n_clusters(output.tables["clusters.tsv"]))
    return AnalysisRun(output, record, {"": result}, pooled, timings, summary)


def read_map(folder: str | Path, name: str = DEFAULT_CONJUNCTION_MAP) -> nib.Nifti1Image:
    """The map ``<name>.nii.gz`` of a results folder (InputError naming the file when absent)."""
    name = name.removesuffix(".gz").removesuffix(".nii")
    path = Path(folder) / f"{name}.nii.gz"
    if not Path(folder).is_dir():
        raise InputError("not a results folder: give a folder written by `neurochange ale`", file=str(folder))
    if not path.is_file():
        raise InputError(f"no map {path.name} in this results folder; choose one with --map", file=str(folder))
    return nib.load(path)


def conjoin(a: np.ndarray, b: np.ndarray, affine: np.ndarray, min_distance: float = 8.0):
    """Minimum-statistic conjunction of two volumes on one grid: (conjunction volume, 3-D cluster labels,
    ``clusters.tsv``'s table, overlap indices)."""
    conj = conjunction(a, b)
    voxel_mm3 = float(np.prod(nib.affines.voxel_sizes(affine)))
    stats = overlap(a, b, voxel_mm3=voxel_mm3)
    labels, sizes = label_clusters(conj > 0)
    table = cluster_table(conj, conj, labels, sizes, affine, min_distance=min_distance)
    return conj, labels, table.drop(columns=["p_fwe", "n_experiments", "experiments"]), stats


def conjunction_output(a: np.ndarray, b: np.ndarray, affine: np.ndarray, names: tuple[str, str],
                       map_name: str) -> tuple[Output, dict]:
    """The conjunction folder of two volumes (``names``: what ``overlap.json`` calls them) and its record."""
    conj, labels, table, stats = conjoin(a, b, affine)
    record = {
        "a": names[0], "b": names[1], "map": map_name,
        "method": "minimum statistic (Nichols et al. 2005): where both maps > 0, the smaller value",
        **stats,
        "clusters": int(labels.max()) if labels.size else 0,
    }
    output = Output(images={"z_desc-conjunction.nii.gz": nib.Nifti1Image(conj.astype(np.float32), affine),
                            "clusters_index.nii.gz": nib.Nifti1Image(labels.astype(np.int16), affine)},
                    tables={"clusters.tsv": table}, records={"overlap.json": record})
    return output, record


def run_conjunction(dir_a: str | Path, dir_b: str | Path, map_name: str = DEFAULT_CONJUNCTION_MAP) -> tuple[Output, dict]:
    """Minimum-statistic conjunction of one map from each of two results folders: the output and ``overlap.json``'s dict."""
    img_a, img_b = read_map(dir_a, map_name), read_map(dir_b, map_name)
    if img_a.shape != img_b.shape or not np.allclose(img_a.affine, img_b.affine):
        raise InputError(f"the two maps lie on different grids ({img_a.shape} vs {img_b.shape}); "
                         "run both analyses with the same mask", file=str(dir_b), field=map_name)
    a = np.asarray(img_a.get_fdata(), dtype=np.float64)
    b = np.asarray(img_b.get_fdata(), dtype=np.float64)
    return conjunction_output(a, b, img_a.affine, (str(dir_a), str(dir_b)), map_name)
