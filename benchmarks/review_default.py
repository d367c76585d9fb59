"""The built-in review end to end, timed: `neurochange review --out DIR` at 10,000 iterations.

    python benchmarks/review_default.py [--iters 10000] [--cores 2] [--out /tmp/review_bench]

Needs the corpus (built on first use from NEUROCHANGE_DATA_MIRROR or the network). Prints the
time of every step from timings.json, the iterations each group's Monte Carlo ran (early
stopping), the total wall time and peak memory (this process and its children). NiMARE has no
review to compare with; per-analysis ratios against NiMARE are in ale_vs_nimare.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from neurochange.workflows.review import run_review


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--cores", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="/tmp/review_bench")
    args = parser.parse_args()

    start = time.perf_counter()
    summary = run_review(None, args.out, n_iters=args.iters, seed=args.seed, n_cores=args.cores, overwrite=True,
                         log=lambda m: print(f"[{time.perf_counter() - start:7.1f} s] {m}", flush=True))
    wall = time.perf_counter() - start
    timings = json.loads((Path(args.out) / "timings.json").read_text())["seconds"]
    print(f"\n{'step':62s} {'seconds':>8s}")
    for step, seconds in timings.items():
        print(f"{step:62s} {seconds:8.1f}")
    print("\niterations run per group (early stopping at the spec's precision):")
    for g in summary["groups"]:
        print(f"  {g['name']:32s} {g['n_experiments']:4d} experiments  {g.get('n_iters_run', 0):6d} iterations")
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"\ntotal {wall:.0f} s ({wall / 60:.1f} min) with --iters {args.iters}; peak memory {peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()
