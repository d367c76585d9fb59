"""Fail-safe N on a 20-experiment set: wall time of the default settings, one JSON line.

    /work/venv/bin/python benchmarks/failsafe_20.py [--repetitions 10] [--iters 2000] [--cores 2]
        [--source simulated|pain] [--seed 0]

Input (``--source``):
- ``simulated`` (default): 20 experiments of 10 foci, sample sizes 12-40, with three
  planted clusters carried by 12, 8 and 6 experiments (``neurochange.simulate``);
- ``pain``: NiMARE's ``test_pain_dataset.json`` (21 experiments, 19 with foci).

The main analysis (ALE + ``--iters`` Monte Carlo FWE) is run first and not timed. Then
``fail_safe_n`` runs with the defaults of ``neurochange diagnose`` (10 repetitions, null grid
of 2,000 Monte Carlo iterations per point, search limit 10 K) and its time is printed,
split into the null grid and the repetitions, with the fail-safe N per cluster. Not a test:
the machine is shared; timings drift.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _studyset(source: str, seed: int):
    from neurochange.simulate import simulate_studyset

    if source == "pain":
        import nimare

        from neurochange.sources.io import read_studyset

        return read_studyset(Path(nimare.__file__).parent / "tests" / "data" / "test_pain_dataset.json")
    plan = [{"n": 12, "centre": (-40, 24, 30), "hits": 12},
            {"n": 8, "centre": (38, 4, 2), "hits": 8}]
    studyset = simulate_studyset(plan, n_foci=10, spread_mm=4.0, seed=seed)
    # a third, weaker cluster: the first 6 experiments also report a focus near (0, -52, 28)
    rng = np.random.default_rng(seed + 1)
    foci = studyset.foci
    first = foci.groupby("experiment_id").head(2).groupby("experiment_id").tail(1).index[:6]
    foci.loc[first, ["x", "y", "z"]] = np.array([0.0, -52.0, 28.0]) + rng.normal(0, 4.0, size=(len(first), 3))
    studyset.experiments["n"] = rng.integers(12, 41, size=len(studyset.experiments))
    return type(studyset)(studyset.studies, studyset.experiments, foci, studyset.provenance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--source", choices=["simulated", "pain"], default="simulated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from neurochange.diagnostics import failsafe
    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.meta.ale import ALE
    from neurochange.results.write import result_clusters

    result = ALE().fit(_studyset(args.source, args.seed))
    corrector = MonteCarloFWE(n_iters=args.iters, seed=args.seed, n_cores=args.cores)
    result = corrector.correct(result)
    table, labels = result_clusters(result)
    marks = []
    start = time.perf_counter()
    out = failsafe.fail_safe_n(result, labels, corrector, 0.05, n_repetitions=args.repetitions, n_iters=args.iters,
                               seed=args.seed, n_cores=args.cores,
                               progress=lambda done, total: marks.append((done, time.perf_counter() - start)))
    seconds = time.perf_counter() - start
    n_grid = len(out["curve"].added)
    grid_seconds = next(t for d, t in marks if d == n_grid)
    print(json.dumps({
        "benchmark": "failsafe_20",
        "source": args.source,
        "experiments": result.n_experiments,
        "foci": int(len(result.foci_ijk)),
        "clusters": int(labels.max()),
        "cluster_sizes_vox": table.drop_duplicates("cluster_id")["size_vox"].tolist(),
        "repetitions": args.repetitions,
        "iters": args.iters,
        "cores": args.cores,
        "max_added": out["settings"]["max_added"],
        "seconds_total": round(seconds, 1),
        "seconds_null_grid": round(grid_seconds, 1),
        "seconds_repetitions": round(seconds - grid_seconds, 1),
        "evaluations_per_repetition": out["evaluations"],
        "fail_safe_n_median": out["median"].tolist(),
        "fail_safe_n_ci": [out["ci_low"].tolist(), out["ci_high"].tolist()],
    }))


if __name__ == "__main__":
    main()
