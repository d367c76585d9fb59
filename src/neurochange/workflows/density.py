"""MKDA density, KDA and MKDA chi-square runs, from input files to results folders (``neurochange mkda|kda|chi2``).

Each run reads its input(s), pools dependent contrasts (Turkeltaub 2012) unless
``keep_contrasts``, fits, corrects, and writes the folder atomically: maps with NiMARE
0.22.1's names (:func:`neurochange.results.write.write_result`), ``studies.tsv``,
``provenance.json`` (identical for the same input and seed) and ``timings.json``.

``run_signed_density``: MKDA density or KDA on the increases and on the decreases
separately, combined as ``ale --signed`` does (:func:`neurochange.compare.signed.run_signed`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from neurochange.compare.signed import run_signed
from neurochange.corpus.pooling import pool_experiments
from neurochange.inference.engines import sphere as mkda_montecarlo
from neurochange.meta import chi2 as _chi2
from neurochange.meta import mkda
from neurochange.results import provenance
from neurochange.results.outdir import atomic_dir, check_out
from neurochange.results.write import write_result
from neurochange.sources.io import read_studyset
from neurochange.space import load_grid
from neurochange.studyset import StudySet


def _read(path, keep_contrasts: bool):
    studyset = read_studyset(path)
    pooled = []
    if not keep_contrasts:
        studyset, pooled = pool_experiments(studyset)
    return studyset, pooled


def _write(out, overwrite, result, record, timings, kept: list[StudySet], cluster_p=0.05):
    start = time.perf_counter()
    with atomic_dir(out, overwrite) as tmp:
        clusters = write_result(result, tmp, cluster_p=cluster_p)
        tables = [k.resolved_experiments() for k in kept]
        if len(tables) > 1:  # chi-square: selection, then rest
            tables = [t.assign(group=g) for t, g in zip(tables, ("selection", "rest"))]
        pd.concat(tables, ignore_index=True).to_csv(tmp / "studies.tsv", sep="\t", index=False)
        provenance.write_json(tmp / "provenance.json", record)
        timings["write"] = time.perf_counter() - start
        provenance.write_json(tmp / "timings.json", {"seconds": timings})
    return clusters


def run_density(
    kind: str, input_path, out, *, n_iters: int = 10000, seed: int | None = None, n_cores: int | None = None,
    radius: float = mkda.DEFAULT_RADIUS_MM, cluster_forming_p: float = 0.001, cluster_p: float = 0.05,
    mask=None, keep_contrasts: bool = False, overwrite: bool = False,
) -> dict:
    """``kind`` "mkda" (MKDADensity) or "kda": fit, Monte Carlo FWE, write ``out``; return a summary dict."""
    check_out(out, overwrite)
    seed = provenance.resolve_seed(seed)
    timings = {}
    start = time.perf_counter()
    studyset, pooled = _read(input_path, keep_contrasts)
    grid = load_grid(mask)
    timings["read"] = time.perf_counter() - start
    start = time.perf_counter()
    estimator = {"mkda": mkda.MKDADensity, "kda": mkda.KDA}[kind](radius=radius)
    result = estimator.fit(studyset, grid)
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    result = mkda_montecarlo.correct_fwe(result, n_iters=n_iters, seed=seed, voxel_thresh=cluster_forming_p,
                                         cores=n_cores or os.cpu_count() or 1)
    timings["montecarlo"] = time.perf_counter() - start
    record = {
        "command": kind,
        "input": {"file": Path(input_path).name, "sources": studyset.provenance.get("sources", [])},
        "settings": {"n_iters": n_iters, "seed": seed, "radius_mm": radius, "cluster_forming_p": cluster_forming_p,
                     "cluster_p": cluster_p, "mask": "MNI152 2 mm brain mask" if mask is None else Path(mask).name,
                     "mask_sha256": None if mask is None else provenance.sha256_file(mask),
                     "keep_contrasts": keep_contrasts},
        "pooled": "contrasts kept apart (--keep-contrasts)" if keep_contrasts else pooled,
        "params": result.params,
        "versions": provenance.versions(),
    }
    kept = studyset.filter_experiments(result.experiment_ids)
    clusters = _write(out, overwrite, result, record, timings, [kept], cluster_p)
    return {"seed": seed, "counts": result.params["counts"], "n_iters": n_iters, "clusters": clusters,
            "pooled": pooled, "timings": timings}


def run_signed_density(
    kind: str, input_path, out, *, n_iters: int = 10000, seed: int | None = None, n_cores: int | None = None,
    radius: float = mkda.DEFAULT_RADIUS_MM, cluster_forming_p: float = 0.001, cluster_p: float = 0.05,
    mask=None, keep_contrasts: bool = False, overwrite: bool = False,
) -> dict:
    """``kind`` "mkda" or "kda" with Monte Carlo FWE on increases and on decreases, combined into ``out``.

    Unsigned and uncurated experiments enter neither direction (counted in the summary's
    ``left_out``). Returns :func:`neurochange.compare.signed.run_signed`'s summary plus ``n_iters``.
    """
    check_out(out, overwrite)
    seed = provenance.resolve_seed(seed)
    estimator = {"mkda": mkda.MKDADensity, "kda": mkda.KDA}[kind](radius=radius)

    def analyse(part, grid):
        return mkda_montecarlo.correct_fwe(estimator.fit(part, grid), n_iters=n_iters, seed=seed,
                                           voxel_thresh=cluster_forming_p, cores=n_cores or os.cpu_count() or 1)

    settings = {"n_iters": n_iters, "seed": seed, "radius_mm": radius, "cluster_forming_p": cluster_forming_p,
                "cluster_p": cluster_p, "mask": "MNI152 2 mm brain mask" if mask is None else Path(mask).name,
                "mask_sha256": None if mask is None else provenance.sha256_file(mask),
                "keep_contrasts": keep_contrasts}
    summary = run_signed(input_path, out, analyse, est=kind, command=f"{kind} --signed", seed=seed,
                         settings=settings, cluster_p=cluster_p, mask=mask, keep_contrasts=keep_contrasts,
                         overwrite=overwrite)
    return {**summary, "n_iters": n_iters}


def run_chi2(
    selection_path, rest_path, out, *, n_iters: int = 0, seed: int | None = None, n_cores: int | None = None,
    radius: float = mkda.DEFAULT_RADIUS_MM, cluster_forming_p: float = 0.001, mask=None,
    keep_contrasts: bool = False, overwrite: bool = False,
) -> dict:
    """MKDA chi-square of SELECTION against REST with FDR, and FWE by label permutation when ``n_iters`` > 0."""
    check_out(out, overwrite)
    seed = provenance.resolve_seed(seed)
    timings = {}
    start = time.perf_counter()
    selection, pooled_sel = _read(selection_path, keep_contrasts)
    rest, pooled_rest = _read(rest_path, keep_contrasts)
    grid = load_grid(mask)
    timings["read"] = time.perf_counter() - start
    start = time.perf_counter()
    result = _chi2.correct_fdr(_chi2.MKDAChi2(radius=radius).fit(selection, rest, grid))
    timings["fit_fdr"] = time.perf_counter() - start
    if n_iters:
        start = time.perf_counter()
        result = _chi2.correct_fwe(result, n_iters=n_iters, seed=seed, voxel_thresh=cluster_forming_p,
                                   cores=n_cores or os.cpu_count() or 1)
        timings["montecarlo"] = time.perf_counter() - start
    params = dict(result.params)
    params.pop("groups", None)
    record = {
        "command": "chi2",
        "input": {"selection": Path(selection_path).name, "rest": Path(rest_path).name},
        "settings": {"n_iters": n_iters, "seed": seed, "radius_mm": radius, "cluster_forming_p": cluster_forming_p,
                     "mask": "MNI152 2 mm brain mask" if mask is None else Path(mask).name,
                     "keep_contrasts": keep_contrasts},
        "pooled": {"selection": pooled_sel, "rest": pooled_rest},
        "params": params,
        "versions": provenance.versions(),
    }
    kept = [selection.filter_experiments(result.params["groups"]["selection"]),
            rest.filter_experiments(result.params["groups"]["rest"])]
    _write(out, overwrite, result, record, timings, kept)
    return {"seed": seed, "counts": result.params["counts"], "n_iters": n_iters, "timings": timings,
            "n_significant_fdr": {label: int((result.maps[f"p_desc-{label}_level-voxel{_chi2.FDR_SUFFIX}"] < 0.05).sum())
                                  for label in ("uniformity", "association")}}
