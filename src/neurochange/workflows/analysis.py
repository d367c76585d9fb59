"""One meta-analysis, from an input file to results (``neurochange ale | mkda | kda``), signed or not.

:func:`analyse` fits the estimator and runs Monte Carlo FWE on an in-memory StudySet (the
review calls it per group). :func:`run_analysis` reads an input file, pools dependent
contrasts (Turkeltaub 2012) unless ``keep_contrasts``, analyses it, and returns an
:class:`AnalysisRun` whose :class:`~neurochange.results.write.Output` the writer turns into
the results folder: maps and tables (:mod:`neurochange.results.write`), ``studies.tsv``,
``provenance.json`` (identical for the same input and seed, whatever the core count) and
``timings.json``. :func:`run_signed` does the same on the increases and on the decreases
(:mod:`neurochange.compare.signed`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from neurochange.compare.overlap import overlap
from neurochange.compare.signed import DIRECTIONS, combine_signed, split_by_direction, thresholded_z
from neurochange.corpus.pooling import pool_experiments
from neurochange.errors import InputError
from neurochange.inference.fdr import correct_fdr
from neurochange.meta.result import MetaResult
from neurochange.results import provenance
from neurochange.results.write import Output
from neurochange.sources.io import read_studyset
from neurochange.space import Grid, load_grid
from neurochange.studyset import StudySet
from neurochange.workflows.settings import MIN_EXPERIMENTS, InferenceSettings, KernelSettings, RunSettings


@dataclass
class AnalysisRun:
    """A finished run: its main result(s), what was pooled, provenance, timings, and the ``output`` to write."""

    output: Output
    record: dict
    results: dict[str, MetaResult] = field(default_factory=dict)
    pooled: object = None
    timings: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def analyse(studyset: StudySet, grid: Grid, kernel: KernelSettings, inference: InferenceSettings, seed: int,
            n_cores: int | None = None, progress=None) -> MetaResult:
    """Fit ``kernel``'s estimator on ``studyset`` and correct it with Monte Carlo FWE (and ``inference``'s
    extra thresholds, :func:`add_thresholds`)."""
    result = kernel.make().fit(studyset, grid)
    return add_thresholds(inference.corrector(seed, n_cores).correct(result, progress=progress), inference)


def add_thresholds(result: MetaResult, inference: InferenceSettings) -> MetaResult:
    """``result`` with FDR maps when ``inference.fdr`` is set, and its FDR q and uncorrected p recorded
    (``params["thresholds"]``) for the writer's thresholded maps and cluster tables."""
    if inference.fdr is None and inference.uncorrected_p is None:
        return result
    result = correct_fdr(result) if inference.fdr is not None else result
    return result.with_maps(params={"thresholds": {"fdr_q": inference.fdr, "uncorrected_p": inference.uncorrected_p}})


def read_input(path, keep_contrasts: bool, kernel: KernelSettings = KernelSettings()) -> tuple[StudySet, list | str]:
    """A coordinate file, its dependent contrasts pooled unless ``keep_contrasts``; and what was pooled.

    Talairach foci are converted by ``kernel``'s convention; the JALE convention keeps contrasts
    apart (JALE's ``pool_experiments = False``)."""
    studyset = read_studyset(path, space_transform=kernel.space_transform)
    if kernel.convention == "jale":
        return studyset, "contrasts kept apart (JALE convention)"
    if keep_contrasts:
        return studyset, "contrasts kept apart (--keep-contrasts)"
    return pool_experiments(studyset)


def read_signed_input(source, kernel: KernelSettings = KernelSettings()) -> StudySet:
    """The experiments of a signed analysis: one file whose experiments carry directions, or GingerALE's
    two files (``{"increase": path, "decrease": path}``), each file's experiments taking its direction.

    An experiment id found in both files gets ``" (increase)"``/``" (decrease)"`` after its contrast.
    At least one experiment must have a direction, else an :class:`InputError` says how to give one.
    """
    if isinstance(source, Mapping):
        parts = {d: read_studyset(path, space_transform=kernel.space_transform) for d, path in source.items()}
        shared = set.intersection(*(set(p.experiments["experiment_id"]) for p in parts.values()))
        for d, part in parts.items():
            e, f = part.experiments, part.foci
            e["direction"] = d
            clash = e["experiment_id"].isin(shared)
            e.loc[clash, "contrast_id"] = e.loc[clash, "contrast_id"] + f" ({d})"
            new_ids = e.loc[clash, "study_id"] + "-" + e.loc[clash, "contrast_id"]
            renamed = dict(zip(e.loc[clash, "experiment_id"], new_ids))
            e["experiment_id"] = e["experiment_id"].replace(renamed)
            f["experiment_id"] = f["experiment_id"].replace(renamed)
        studyset = StudySet.concat(list(parts.values()))
        where = " and ".join(f"--{d} {Path(path).name}" for d, path in source.items())
    else:
        studyset = read_studyset(source, space_transform=kernel.space_transform)
        where = str(source)
    direction = studyset.experiments["direction"].astype("string")
    if not direction.isin(DIRECTIONS).any():
        raise InputError(
            f"no experiment has a direction (increase or decrease) in {where}: add a '// Direction=increase' or "
            "'// Direction=decrease' line to each Sleuth experiment (a 'direction' column in a table, "
            "metadata.direction in NiMARE JSON), or give the two GingerALE files as --increase FILE --decrease FILE",
            field="direction")
    return studyset


def analysis_grid(kernel: KernelSettings, mask: str | Path | None = None) -> Grid:
    """The grid of a run: JALE's grey-matter prior in the JALE convention, else the ``mask`` file or NiMARE's."""
    if kernel.convention == "jale":
        if mask is not None:
            raise InputError("the JALE convention analyses JALE's grey-matter prior: leave out --mask", field="mask")
        from neurochange.sources.jale_prior import jale_grid

        return jale_grid()
    return load_grid(mask)


def predicted_record(result: MetaResult) -> dict:
    """JALE's predicted vFWE, cFWE and TFCE cut-offs for ``result``'s experiments (Frahm et al. 2025), labelled
    as predicted, beside the Monte Carlo ones they are compared with (``params["montecarlo"]["cutoffs_95"]``)."""
    from neurochange.inference.predicted import predict_thresholds
    from neurochange.sources.jale_models import CITATION

    predicted = predict_thresholds(result.sample_sizes, result.inputs.foci_per_experiment())
    return {"method": "predicted (not Monte Carlo)", "vfwe_ale": predicted.vfwe_ale,
            "cfwe_voxels": predicted.cfwe_voxels, "tfce": predicted.tfce,
            "out_of_distribution": list(predicted.out_of_distribution), "models": CITATION,
            "montecarlo_cutoffs_95": result.params.get("montecarlo", {}).get("cutoffs_95")}


def power_warnings(counts: dict, what: str = "") -> list[str]:
    """A warning when fewer than :data:`MIN_EXPERIMENTS` experiments were analysed (``counts`` as params)."""
    k = int(counts.get("experiments", 0))
    if k >= MIN_EXPERIMENTS:
        return []
    return [f"{what}{k} experiment{'' if k == 1 else 's'}: fewer than {MIN_EXPERIMENTS}, the least Eickhoff et al. "
            "(2016) recommend for ALE; the analysis is underpowered and a cluster may rest on one or two experiments "
            "(see clusters.txt and neurochange diagnose)"]


def settings_record(kernel: KernelSettings, inference: InferenceSettings, run: RunSettings) -> dict:
    """The ``settings`` of ``provenance.json``."""
    kernel_record = {"radius_mm": kernel.radius}
    if kernel.estimator == "ale":
        kernel_record = {"fwhm": kernel.ale_fwhm}
        if kernel.sample_size is not None:
            kernel_record["sample_size"] = kernel.sample_size
    if kernel.convention != "nimare":
        kernel_record.update(convention=kernel.convention, null_histogram=kernel.null_histogram,
                             tfce=kernel.tfce is not False)
    elif kernel.tfce:
        kernel_record["tfce"] = True
    return {
        "n_iters": inference.n_iters,
        "seed": run.seed,
        **kernel_record,
        "cluster_forming_p": inference.cluster_forming_p,
        "cluster_p": inference.cluster_p,
        **run.mask_record("MNI152 2 mm brain mask (NiMARE ALE default)"),
        "null_mask": inference.null_mask,
        "vfwe_only": inference.vfwe_only,
        "early_stop": inference.early_stop,
        "keep_contrasts": run.keep_contrasts,
        **{k: v for k, v in (("fdr", inference.fdr), ("uncorrected_p", inference.uncorrected_p)) if v is not None},
    }


def run_analysis(input_path: str | Path, kernel: KernelSettings, inference: InferenceSettings, run: RunSettings,
                 progress=None) -> AnalysisRun:
    """Read ``input_path``, fit, correct; the results folder as an :class:`AnalysisRun`.

    ``progress(done, total)`` is called during the Monte Carlo iterations.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    studyset, pooled = read_input(input_path, run.keep_contrasts, kernel)
    grid = analysis_grid(kernel, run.mask)
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    result = kernel.make().fit(studyset, grid)
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    result = add_thresholds(inference.corrector(run.seed, run.n_cores).correct(result, progress=progress), inference)
    timings["montecarlo"] = time.perf_counter() - start

    params = dict(result.params)
    if kernel.predicted_thresholds:
        params["predicted_thresholds"] = predicted_record(result)
    montecarlo = dict(params.get("montecarlo", {}))
    cores_used = montecarlo.pop("n_cores", None)
    params["montecarlo"] = montecarlo
    warnings = power_warnings(params.get("counts", {}))
    outside = params.get("predicted_thresholds", {}).get("out_of_distribution", [])
    warnings += [f"predicted thresholds: {sentence}" for sentence in outside]
    record = {
        "command": kernel.estimator,
        "input": {"file": Path(input_path).name, "sources": studyset.provenance.get("sources", [])},
        "settings": settings_record(kernel, inference, run),
        "pooled": pooled,
        "params": params,
        **({"warnings": warnings} if warnings else {}),
        "versions": provenance.versions(),
    }
    output = Output(results={"": (result, studyset)}, records={"provenance.json": record}, timings=timings,
                    timings_extra={"n_cores": cores_used}, cluster_p=inference.cluster_p)
    return AnalysisRun(output, record, {"": result}, pooled, timings,
                       {"seed": run.seed, "counts": params.get("counts", {}), "n_iters": montecarlo.get("n_iters"),
                        "warnings": warnings, "predicted_thresholds": params.get("predicted_thresholds")})


def run_signed(input_path: str | Path | Mapping, kernel: KernelSettings, inference: InferenceSettings, run: RunSettings,
               progress=None) -> AnalysisRun:
    """The analysis on the increases and on the decreases of ``input_path``, and their combined maps.

    ``input_path``: one file, or ``{"increase": path, "decrease": path}`` (:func:`read_signed_input`).

    Both directions use the run's seed (their nulls differ because their experiments differ).
    Folder layout: ``dir-increase_est-<est>/`` and ``dir-decrease_est-<est>/`` (each a full
    results folder), ``z_desc-signed`` and ``z_desc-conflict``, ``overlap.json`` (increase vs
    decrease), ``provenance.json`` (with ``directions``: experiments per direction and those left
    out, by reason) and ``timings.json``. Summary: per-direction counts, left-out experiments,
    overlap of the two directions.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    studyset = read_signed_input(input_path, kernel)
    grid = analysis_grid(kernel, run.mask)
    parts, left_out = split_by_direction(studyset)
    timings["read"] = time.perf_counter() - start

    results, analysed, pooled, directions, warnings = {}, {}, {}, {}, []
    for d in DIRECTIONS:
        if parts[d] is None:
            directions[d] = {"experiments": 0, "note": f"no {d} experiments: no {d} map"}
            continue
        part = parts[d]
        if not run.keep_contrasts:
            part, pooled[d] = pool_experiments(part)
        start = time.perf_counter()
        results[d] = analyse(part, grid, kernel, inference, run.seed, run.n_cores, progress)
        analysed[d] = part
        timings[d] = time.perf_counter() - start
        directions[d] = dict(results[d].params["counts"])
        warnings += power_warnings(directions[d], f"{d}: ")

    zero = np.zeros(grid.shape)
    z_thr = {d: thresholded_z(results[d], inference.cluster_p) if d in results else zero for d in DIRECTIONS}
    stats = overlap(z_thr["increase"], z_thr["decrease"], voxel_mm3=float(np.prod(grid.voxel_size)))
    names = {"a": "increase", "b": "decrease"}
    stats = {"_".join(names.get(w, w) for w in k.split("_")): v for k, v in stats.items()}
    record = {
        "command": f"{kernel.estimator} --signed",
        "input": {**({f"file_{d}": Path(p).name for d, p in input_path.items()} if isinstance(input_path, Mapping)
                     else {"file": Path(input_path).name}), "sources": studyset.provenance.get("sources", [])},
        "settings": settings_record(kernel, inference, run),
        "directions": {**directions, "left_out": left_out},
        "pooled": pooled if not run.keep_contrasts else "contrasts kept apart (--keep-contrasts)",
        "params": {d: {k: v for k, v in results[d].params.items() if k != "counts"} for d in results},
        **({"warnings": warnings} if warnings else {}),
        "versions": provenance.versions(),
    }
    images = {f"{name}.nii.gz": nib.Nifti1Image(volume.astype(np.float32), grid.affine)
              for name, volume in combine_signed(z_thr["increase"], z_thr["decrease"]).items()}
    output = Output(results={f"dir-{d}_est-{kernel.estimator}": (results[d], analysed[d]) for d in results},
                    images=images, records={"overlap.json": stats, "provenance.json": record}, timings=timings,
                    cluster_p=inference.cluster_p)
    summary = {"seed": run.seed, "directions": directions, "left_out": left_out, "pooled": pooled, "overlap": stats,
               "n_iters": inference.n_iters, "warnings": warnings}
    return AnalysisRun(output, record, results, pooled, timings, summary)
