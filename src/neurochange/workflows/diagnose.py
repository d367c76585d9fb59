"""Robustness diagnostics of an analysis: in memory (:func:`diagnose_analysis`), or added to a results folder
(``neurochange diagnose RESULT_DIR``, :func:`diagnose`).

An :class:`Analysis` is a corrected result with its cluster labels and table, its corrector
and the experiments' fields (moderators). The review builds it from the objects it has;
:func:`load_analysis`, the thin loader for folders, from what the analysis wrote
(``foci.tsv``, ``experiments.tsv``, ``mask.nii.gz``, ``params.json``, ``nulls.npz``,
``clusters_index.nii.gz``, ``clusters.tsv``, fields from ``studies.tsv`` / ``studyset.tsv``),
refitting the estimator (checked against ``stat.nii.gz``) without re-running the main Monte
Carlo. Any estimator with Monte Carlo FWE (ALE, MKDA density, KDA). What is added:

=================================  ==========================================================
``clusters.tsv`` (new columns,     ``jackknife_survived`` ("k/K"), ``jackknife_k``, ``rests_on``
repeated on sub-peak rows)         (experiments without which the cluster is lost),
                                   ``max_contribution``, ``max_contributor``,
                                   ``n_foci_in_cluster``; ``fail_safe_n``, ``fail_safe_n_ci_low``,
                                   ``fail_safe_n_ci_high``, ``fail_safe_n_censored`` (share of
                                   repetitions that reached the search limit);
                                   ``moderator_<name>_stat``, ``moderator_<name>_p``
``cluster_experiments.tsv``        one row per (cluster, experiment): cluster_id, experiment_id,
                                   n_foci, contribution, survives_without
``cluster_moderators.tsv``         one row per (cluster, moderator): kind, n_experiments,
                                   statistic (Spearman rho or F), p_perm
``failsafe.tsv``                   one row per (cluster, repetition): fail_safe_n, censored
``moderator_<name>.png``           per-cluster scatter / box plots
``stat_desc-<name>_moderator``,    whole-brain option: the voxelwise statistic and its
``logp_desc-<name>_level-voxel_    max-statistic FWE -log10 p (``.nii.gz``)
corr-FWE_method-permutation``
``diagnostics.json``               settings, seed, counts, the fail-safe null grid (no timings)
=================================  ==========================================================

Files are computed first, written to a hidden folder inside the results folder and then
renamed into place: a failure leaves the folder as it was. Running again replaces earlier output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange.diagnostics import failsafe as failsafe_mod
from neurochange.diagnostics import jackknife as diagnostics
from neurochange.diagnostics import moderators as moderators_mod
from neurochange.errors import InputError
from neurochange.inference.executors import resolve_seed
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.registry import estimator_from_record
from neurochange.meta.result import MetaResult
from neurochange.results import provenance
from neurochange.space import Grid
from neurochange.studyset import StudySet
from neurochange.workflows.settings import DiagnosticsSettings

#: Columns ``diagnose`` adds to clusters.tsv (moderator columns besides).
CLUSTER_COLUMNS = ("jackknife_survived", "jackknife_k", "rests_on", "max_contribution", "max_contributor",
                   "n_foci_in_cluster", "fail_safe_n", "fail_safe_n_ci_low", "fail_safe_n_ci_high",
                   "fail_safe_n_censored")
PER_CLUSTER_TABLE = "cluster_experiments.tsv"


@dataclass
class Analysis:
    """A corrected result, its significant clusters (3-D labels, ``clusters.tsv`` table), the corrector that
    made them, the ``cluster_p`` they pass, and the experiments' fields (moderators) indexed by experiment id."""

    result: MetaResult
    labels: np.ndarray
    clusters: pd.DataFrame
    corrector: MonteCarloFWE
    cluster_p: float
    fields: pd.DataFrame
    folder: Path | None = None

    @property
    def settings(self) -> dict:
        """The correction, as ``diagnostics.json`` records it."""
        return {"cluster_forming_p": self.corrector.cluster_forming_p, "null_mask": self.corrector.null_mask,
                "vfwe_only": self.corrector.vfwe_only, "cluster_p": self.cluster_p,
                "main_n_iters": int(self.result.params.get("montecarlo", {}).get("n_iters", 0))}


def analysis_of(result: MetaResult, labels: np.ndarray, clusters: pd.DataFrame, corrector: MonteCarloFWE,
                cluster_p: float, studyset: StudySet | None = None) -> Analysis:
    """An :class:`Analysis` from in-memory objects (``studyset``: the experiments' fields)."""
    fields = pd.DataFrame({"n": result.sample_sizes}, index=pd.Index(result.experiment_ids, name="experiment_id"))
    if studyset is not None:
        table = studyset.filter_experiments(result.experiment_ids).resolved_experiments()
        table = table.drop_duplicates("experiment_id").set_index("experiment_id")
        fields = fields.join(table.drop(columns=["n"], errors="ignore"), how="left")
    return Analysis(result, labels, clusters, corrector, cluster_p, fields)


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.exists():
        raise InputError(f"{name} not found: diagnose needs a results folder written by `neurochange ale`, "
                         f"`mkda` or `kda` (this version or later); re-run the analysis", file=folder)
    return path


def load_analysis(folder: str | Path) -> Analysis:
    """Reload a results folder (see the module docstring for the files it reads)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", file=folder)
    params = json.loads(_need(folder, "params.json").read_text())
    estimator = estimator_from_record(params.get("estimator", {}), file=folder / "params.json")
    run = params.get("montecarlo")
    if not run or run.get("method", "montecarlo") != "montecarlo":
        raise InputError("the result has no Monte Carlo FWE correction to diagnose", file=folder / "params.json")
    if run.get("null_mask") not in ("brain", "gm"):
        raise InputError(f"null mask {run.get('null_mask')!r} cannot be rebuilt from the folder",
                         file=folder / "params.json", field="null_mask")
    mask_img = nib.load(str(_need(folder, "mask.nii.gz")))
    grid = Grid.from_img(mask_img)
    foci = pd.read_csv(_need(folder, "foci.tsv"), sep="\t", dtype={"experiment_id": str})
    experiments = pd.read_csv(_need(folder, "experiments.tsv"), sep="\t", dtype={"experiment_id": str})
    ids = experiments["experiment_id"].tolist()
    index = {eid: i for i, eid in enumerate(ids)}
    unknown = ~foci["experiment_id"].isin(index)
    if unknown.any():
        raise InputError(f"focus of unknown experiment {foci['experiment_id'][unknown].iloc[0]!r}",
                         file=folder / "foci.tsv", line=int(np.flatnonzero(unknown)[0]) + 2, field="experiment_id")
    inputs = AnalysisInputs.from_arrays(grid, ids, foci[["i", "j", "k"]].to_numpy(np.int64),
                                        foci[["x", "y", "z"]].to_numpy(float),
                                        foci["experiment_id"].map(index).to_numpy(np.int64),
                                        experiments["n"].to_numpy(float))
    result = estimator.fit_inputs(inputs)
    stat = np.asarray(nib.load(str(_need(folder, "stat.nii.gz"))).dataobj, dtype=float)[grid.mask]
    if not np.allclose(result.maps["stat"], stat, rtol=1e-5, atol=1e-7):
        raise InputError("the foci in foci.tsv do not reproduce stat.nii.gz: the folder was changed after the "
                         "analysis", file=folder / "foci.tsv")
    with np.load(_need(folder, "nulls.npz")) as npz:
        nulls = {key: npz[key] for key in npz.files}
    result = result.with_maps(nulls=nulls, params={"montecarlo": run})
    labels = np.asarray(nib.load(str(_need(folder, "clusters_index.nii.gz"))).dataobj).astype(np.int32)
    clusters = pd.read_csv(_need(folder, "clusters.tsv"), sep="\t")
    corrector = MonteCarloFWE(n_iters=max(1, int(run.get("n_iters", 1))),
                              cluster_forming_p=float(run["cluster_forming_p"]),
                              null_mask=run["null_mask"], vfwe_only=bool(run.get("vfwe_only", False)))
    return Analysis(result, labels, clusters, corrector, float(params.get("cluster_p", 0.05)),
                    experiment_fields(folder, experiments), folder)


def experiment_fields(folder: Path, experiments: pd.DataFrame) -> pd.DataFrame:
    """Experiment-level fields (tags, dose, n, year) of a results folder, indexed by experiment id."""
    fields = experiments.set_index("experiment_id")[["n"]]
    studies = folder / "studies.tsv"
    if studies.exists():
        table = pd.read_csv(studies, sep="\t", dtype={"experiment_id": str}).drop_duplicates("experiment_id")
        fields = fields.join(table.set_index("experiment_id").drop(columns=["n"], errors="ignore"), how="left")
    studyset = folder / "studyset.tsv"
    if studyset.exists():
        table = pd.read_csv(studyset, sep="\t", dtype={"study": str, "experiment": str})
        table["experiment_id"] = table["study"] + "-" + table["experiment"]
        extra = table.drop_duplicates("experiment_id").set_index("experiment_id")
        missing = [c for c in extra.columns if c not in fields.columns and c not in ("x", "y", "z", "space")]
        fields = fields.join(extra[missing], how="left")
    return fields


# ---------------------------------------------------------------------------- the run
@dataclass
class Diagnostics:
    """What :func:`diagnose_analysis` found: the updated ``clusters`` table, the per-cluster tables,
    fail-safe N, moderator plots and maps (``files``), ``diagnostics.json``'s ``record``, timings."""

    clusters: pd.DataFrame
    per_cluster: pd.DataFrame
    moderators: pd.DataFrame | None
    failsafe: dict | None
    files: dict
    record: dict
    timings: dict


def diagnose(folder, settings: DiagnosticsSettings | None = None, *, seed: int | None = None,
             n_cores: int | None = None, progress=None) -> dict:
    """Add per-cluster diagnostics to the results folder ``folder`` (see the module docstring).

    Returns a dict: ``seed``, ``clusters`` (the updated clusters.tsv), ``per_cluster``
    (cluster_experiments.tsv), ``moderators`` (DataFrame or None), ``failsafe`` (dict or
    None), ``files`` (names written), ``timings`` (s).
    """
    start = time.perf_counter()
    analysis = load_analysis(folder)
    load = time.perf_counter() - start
    seed = resolve_seed(seed)
    found = diagnose_analysis(analysis, settings or DiagnosticsSettings(), seed=seed, n_cores=n_cores,
                              progress=progress)
    written = write_diagnostics(found, analysis.folder, analysis.result)
    return {"seed": seed, "clusters": found.clusters, "per_cluster": found.per_cluster,
            "moderators": found.moderators, "failsafe": found.failsafe, "files": written,
            "timings": {"load": load, **found.timings}}


def diagnose_analysis(analysis: Analysis, settings: DiagnosticsSettings, *, seed: int, n_cores: int | None = None,
                      progress=None) -> Diagnostics:
    """Jackknife, contributions, focus counts, fail-safe N and moderator tests of ``analysis``'s clusters.

    ``settings.n_iters``: Monte Carlo iterations of each leave-one-out analysis and of each
    fail-safe null grid point. ``progress(done, total)`` over all steps.
    """
    names = [m.strip() for m in settings.moderators if m.strip()]
    timings: dict[str, float] = {}
    result, labels = analysis.result, analysis.labels
    unknown = [m for m in names if m not in analysis.fields.columns]
    if unknown:
        raise InputError(f"unknown moderator {unknown[0]!r}; experiment fields: {', '.join(analysis.fields.columns)}",
                         field="moderators")
    n_clusters = int(labels.max()) if labels.size else 0
    k = result.n_experiments
    steps = (k if settings.jackknife else 0) + (len(names) * (2 if settings.whole_brain else 1))
    n_grid = 0
    if settings.failsafe and n_clusters:
        limit = int(settings.max_added) if settings.max_added is not None else 10 * k
        n_grid = len({min(limit, int(round(f * k))) for f in failsafe_mod.GRID_FACTORS} | {limit})
        steps += n_grid + settings.n_repetitions
    done = 0

    def step(n=1):
        nonlocal done
        done += n
        if progress is not None:
            progress(done, steps)

    start = time.perf_counter()
    share = diagnostics.contributions(result, labels)
    counts = diagnostics.focus_counts(result, labels)
    survived = None
    if settings.jackknife and n_clusters:
        survived, _ = diagnostics.jackknife(result, labels, analysis.corrector, analysis.cluster_p,
                                            n_iters=settings.n_iters, seed=seed, n_cores=n_cores,
                                            progress=lambda d, t: step())
    elif settings.jackknife:
        step(k)
    timings["jackknife"] = time.perf_counter() - start
    summary, per_cluster = diagnostics.cluster_summary(result.experiment_ids, share, counts, survived)

    fs = None
    if settings.failsafe and n_clusters:
        start = time.perf_counter()
        base = done
        fs = failsafe_mod.fail_safe_n(result, labels, analysis.corrector, analysis.cluster_p,
                                      n_repetitions=settings.n_repetitions, n_iters=settings.n_iters,
                                      max_added=settings.max_added, seed=seed, n_cores=n_cores,
                                      progress=lambda d, t: step(base + d - done))
        summary["fail_safe_n"] = fs["median"]
        summary["fail_safe_n_ci_low"] = fs["ci_low"]
        summary["fail_safe_n_ci_high"] = fs["ci_high"]
        summary["fail_safe_n_censored"] = fs["censored"].mean(axis=0) if settings.n_repetitions else np.nan
        timings["failsafe"] = time.perf_counter() - start

    files: dict[str, object] = {}
    mod_rows = None
    n_perm = settings.n_perm
    if names:
        start = time.perf_counter()
        response = moderators_mod.cluster_response(result, labels)
        mod_rows = moderators_mod.cluster_moderators(result, labels, analysis.fields, names, n_perm=n_perm,
                                                     seed=seed, response=response)
        for name in names:
            rows = mod_rows[mod_rows.moderator == name].set_index("cluster_id")
            summary[f"moderator_{name}_stat"] = rows["statistic"].reindex(summary["cluster_id"]).to_numpy()
            summary[f"moderator_{name}_p"] = rows["p_perm"].reindex(summary["cluster_id"]).to_numpy()
            values, kind = moderators_mod.moderator_values(analysis.fields, name, result.experiment_ids)
            files[f"moderator_{name}.png"] = ("plot", name, values, kind, response)
            step()
        timings["moderators"] = time.perf_counter() - start
        if settings.whole_brain:
            start = time.perf_counter()
            for name in names:
                out = moderators_mod.whole_brain(result, analysis.fields, name, n_perm=min(n_perm, 1000), seed=seed)
                files[f"stat_desc-{name}_moderator.nii.gz"] = result.grid.to_img(out["stat"], dtype=np.float32)
                logp = -np.log10(out["p"])
                files[f"logp_desc-{name}_level-voxel_corr-FWE_method-permutation.nii.gz"] = \
                    result.grid.to_img(logp, dtype=np.float32)
                files.setdefault("_whole_brain", {})[name] = {
                    key: out[key] for key in ("kind", "n_experiments", "n_voxels", "n_perm", "min_experiments")
                    if key in out} | {"n_voxels_fwe_05": int((out["p"] < 0.05).sum()),
                                      "min_p_fwe": float(out["p"].min())}
                step()
            timings["whole_brain"] = time.perf_counter() - start

    clusters = _merge(analysis.clusters, summary, names)
    stat = result.estimator.name if result.estimator.name == "ALE" else "the statistic"
    record = {
        "command": "diagnose",
        "seed": seed,
        "settings": {"jackknife": settings.jackknife, "failsafe": settings.failsafe, "moderators": names,
                     "whole_brain": settings.whole_brain, "n_iters": settings.n_iters,
                     "n_repetitions": settings.n_repetitions, "n_perm": n_perm, "max_added": settings.max_added,
                     "correction": analysis.settings},
        "methods": {
            "contribution": f"NiMARE 0.22.1 Jackknife: mean over cluster voxels of 1 - {stat} without the experiment "
                            f"/ {stat}",
            "focus_counts": "NiMARE 0.22.1 FocusCounter: foci whose voxel lies in the cluster",
            "jackknife": f"each leave-one-out set re-analysed ({stat}, approximate-null threshold, new Monte Carlo with "
                         "n_iters); survives = a cluster passing FWE at cluster_p overlaps it",
            "fail_safe_n": failsafe_mod.__doc__.split("\n\n")[0].strip(),
            "moderators": "permutation tests of moderator vs modelled activation (see neurochange.diagnostics.moderators)",
        },
        "n_clusters": n_clusters,
        "n_experiments": k,
        "failsafe": None if fs is None else {
            **fs["settings"],
            "evaluations": fs["evaluations"],
            "null_grid": {"added": fs["curve"].added.tolist(), "threshold": fs["curve"].threshold.tolist(),
                          "critical": fs["curve"].critical.tolist(), "level": fs["curve"].level},
        },
        "whole_brain": files.pop("_whole_brain", None),
        "versions": provenance.versions(),
    }  # no timings here: same folder and seed give the same diagnostics.json (timings are returned)
    return Diagnostics(clusters, per_cluster, mod_rows, fs, files, record, timings)


def _merge(clusters: pd.DataFrame, summary: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """clusters.tsv with earlier diagnostic columns dropped and the new ones joined on cluster_id."""
    stale = [c for c in clusters.columns if c in CLUSTER_COLUMNS or c.startswith("moderator_")]
    base = clusters.drop(columns=stale)
    if summary.empty:
        return base
    return base.merge(summary, on="cluster_id", how="left")


def write_diagnostics(found: Diagnostics, folder: Path, result: MetaResult) -> list[str]:
    """Write the diagnostics into a hidden folder inside the results ``folder``, then rename each file into place."""
    clusters, per_cluster, mod_rows, fs = found.clusters, found.per_cluster, found.moderators, found.failsafe
    files, record = found.files, found.record
    staging = Path(tempfile.mkdtemp(prefix=".diagnose.tmp-", dir=folder))
    names = []
    try:
        clusters.to_csv(staging / "clusters.tsv", sep="\t", index=False, float_format="%.6g")
        per_cluster.to_csv(staging / PER_CLUSTER_TABLE, sep="\t", index=False, float_format="%.6g")
        if mod_rows is not None:
            mod_rows.to_csv(staging / "cluster_moderators.tsv", sep="\t", index=False, float_format="%.6g")
        if fs is not None:
            reps, n_clusters = fs["values"].shape
            pd.DataFrame({
                "cluster_id": np.tile(np.arange(1, n_clusters + 1), reps),
                "repetition": np.repeat(np.arange(reps), n_clusters),
                "fail_safe_n": fs["values"].ravel(),
                "censored": fs["censored"].ravel(),
            }).to_csv(staging / "failsafe.tsv", sep="\t", index=False)
        for name, obj in files.items():
            if isinstance(obj, tuple):
                _, mod, values, kind, response = obj
                moderators_mod.plot_moderator(staging / name, mod, values, kind, response, mod_rows,
                                              result.experiment_ids)
            else:
                nib.save(obj, staging / name)
        provenance.write_json(staging / "diagnostics.json", record)
        names = sorted(p.name for p in staging.iterdir())
        for name in names:
            os.replace(staging / name, folder / name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    return names
