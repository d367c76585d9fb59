"""One ALE meta-analysis, from an input file to a results folder (``neurochange ale``).

Reads the input, fits ALE, runs Monte Carlo FWE, and writes the folder atomically:
maps and tables (:mod:`neurochange.results.write`), ``experiments.tsv``, ``provenance.json``
(identical for the same input and seed, whatever the core count) and ``timings.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

from neurochange.corpus.pooling import pool_experiments
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.results import provenance
from neurochange.results.outdir import atomic_dir, check_out
from neurochange.results.write import write_result
from neurochange.sources.io import read_studyset
from neurochange.space import load_grid


def run_ale(
    input_path: str | Path,
    out: str | Path,
    *,
    n_iters: int = 10000,
    seed: int | None = None,
    n_cores: int | None = None,
    fwhm: float | None = None,
    cluster_forming_p: float = 0.001,
    cluster_p: float = 0.05,
    mask: str | Path | None = None,
    null_mask: str = "brain",
    vfwe_only: bool = False,
    early_stop: float | None = None,
    keep_contrasts: bool = False,
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Run ALE + Monte Carlo FWE on ``input_path`` and write the results folder ``out``.

    Several contrasts of one study are pooled into one experiment (Turkeltaub 2012) unless
    ``keep_contrasts`` (NiMARE's behaviour); ``provenance.json`` lists what was pooled.

    Returns a summary dict: seed, counts, iterations run, clusters (DataFrame), timings (s).
    ``progress(done, total)`` is called during the Monte Carlo iterations.
    """
    check_out(out, overwrite)  # fail before any computing
    seed = provenance.resolve_seed(seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    studyset = read_studyset(input_path)
    pooled = []
    if not keep_contrasts:
        studyset, pooled = pool_experiments(studyset)
    grid = load_grid(mask)
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    result = ALE(fwhm=fwhm).fit(studyset, grid)
    timings["ale"] = time.perf_counter() - start

    start = time.perf_counter()
    corrector = MonteCarloFWE(
        n_iters=n_iters,
        cluster_forming_p=cluster_forming_p,
        null_mask=null_mask,
        early_stop=early_stop,
        seed=seed,
        n_cores=n_cores,
        vfwe_only=vfwe_only,
    )
    result = corrector.correct(result, progress=progress)
    timings["montecarlo"] = time.perf_counter() - start

    start = time.perf_counter()
    params = dict(result.params)
    run = dict(params.get("montecarlo", {}))
    cores_used = run.pop("n_cores", None)
    params["montecarlo"] = run
    record = {
        "command": "ale",
        "input": {"file": Path(input_path).name, "sources": studyset.provenance.get("sources", [])},
        "settings": {
            "n_iters": n_iters,
            "seed": seed,
            "fwhm": fwhm,
            "cluster_forming_p": cluster_forming_p,
            "cluster_p": cluster_p,
            "mask": "MNI152 2 mm brain mask (NiMARE ALE default)" if mask is None else Path(mask).name,
            "mask_sha256": None if mask is None else provenance.sha256_file(mask),
            "null_mask": null_mask,
            "vfwe_only": vfwe_only,
            "early_stop": early_stop,
            "keep_contrasts": keep_contrasts,
        },
        "pooled": "contrasts kept apart (--keep-contrasts)" if keep_contrasts else pooled,
        "params": params,
        "versions": provenance.versions(),
    }
    kept = studyset.filter_experiments(result.experiment_ids)
    with atomic_dir(out, overwrite) as tmp:
        clusters = write_result(result, tmp, cluster_p=cluster_p, studyset=kept)
        kept.resolved_experiments().to_csv(tmp / "studies.tsv", sep="\t", index=False)
        provenance.write_json(tmp / "provenance.json", record)
        timings["write"] = time.perf_counter() - start
        provenance.write_json(tmp / "timings.json", {"seconds": timings, "n_cores": cores_used})
    return {
        "seed": seed,
        "counts": params.get("counts", {}),
        "n_iters": run.get("n_iters"),
        "clusters": clusters,
        "pooled": pooled,
        "timings": timings,
    }
