"""Monte Carlo FWE on local threads vs a Dask LocalCluster on the same cores, in one run: seconds, ratio, equal nulls.

    .venv/bin/python benchmarks/dask_vs_threads.py [--experiments 200] [--iters 2000] [--cores 2]
        [--mirror ../shared/data] [--seed 1]

``--experiments`` Neurosynth studies reported in MNI (drawn with ``--seed``; n = 20 each) are
fitted with ALE once; then the same corrector (``--iters`` iterations, ``--seed``) runs on
``--cores`` threads and on a LocalCluster of ``--cores`` one-thread worker processes (started
beforehand; its start-up is printed apart). The numba kernels are compiled (and cached) before
timing. Prints one JSON line: both times, the ratio and whether the nulls are byte-identical.
Not a test: the machine is shared, so compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    from test_ale import neurosynth_subset

    from neurochange.inference.executors import DaskExecutor, ThreadExecutor
    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.meta.ale import ALE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mirror", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    studyset = neurosynth_subset(args.mirror, args.experiments, seed=args.seed)
    result = ALE().fit(studyset)
    corrector = MonteCarloFWE(n_iters=args.iters, seed=args.seed, n_cores=args.cores)
    MonteCarloFWE(n_iters=100, seed=0, n_cores=1).null_distributions(result)  # compile
    out = {"experiments": args.experiments, "foci": int(len(studyset.foci)), "iters": args.iters,
           "cores": args.cores}
    with ThreadExecutor(args.cores) as threads:
        t = time.perf_counter()
        local, _ = corrector.null_distributions(result, executor=threads)
        out["threads_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    with DaskExecutor("local", args.cores) as cluster:
        out["cluster_start_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        remote, _ = corrector.null_distributions(result, executor=cluster)
        out["dask_local_s"] = round(time.perf_counter() - t, 2)
    out["dask_over_threads"] = round(out["dask_local_s"] / out["threads_s"], 2)
    out["nulls_identical"] = all(np.array_equal(local[k], remote[k]) for k in local)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
