"""Monte Carlo with TFCE in the JALE convention: neurochange vs JALE 0.2.10, one JSON line.

    .venv/bin/python benchmarks/tfce_vs_jale.py --jale-python /tmp/jale-env/bin/python \\
        [--iters 200] [--cores 2] [--rule per_null|observed] [--tag high]

Input: JALE's bundled example (``experiment_info.xlsx`` from its wheel), the experiments
tagged ``--tag``. JALE needs an environment of its own (``python3.11 -m venv /tmp/jale-env &&
/tmp/jale-env/bin/pip install jale==0.2.10``). Both sides run the same number of Monte Carlo
iterations with TFCE on the same cores, one after the other: JALE's
``compute_monte_carlo_null`` through joblib with ``--cores`` processes (as its
``main_effect``), neurochange's ``MonteCarloFWE`` with ``--cores`` threads. Timed: the
iterations only (fitting and reading are left out on both sides); neurochange's first call
compiles, so one warm-up chunk runs before the clock starts. neurochange hands out chunks of 100
iterations, so use at least 100 x ``--cores`` iterations. Not a test: the machine is
shared; compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

JALE_SIDE = r"""
import sys, time
import numpy as np
from joblib import Parallel, delayed
from jale.core.utils import compute
from jale.core.utils.input import read_experiment_info
from jale.core.utils.kernel import create_kernel_array
path, tag, iters, cores, rule = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
exp_all, tasks = read_experiment_info(path, False)
exp = exp_all.loc[tasks.loc[tasks["Name"] == tag, "ExpIndex"].iloc[0]].reset_index(drop=True)
kernels = create_kernel_array(exp)
max_ma = np.prod([1 - np.max(k) for k in kernels])
edges = np.arange(0.00005, 1 - max_ma + 0.001, 0.0001)
centres = np.arange(0, 1 - max_ma + 0.001, 0.0001)
observed = None
if rule == "observed":
    ma = compute.compute_ma(exp.Coordinates.values, kernels)
    observed = compute.compute_hx_conv(compute.compute_hx(ma, edges), centres, 10000)
start = time.perf_counter()
Parallel(n_jobs=cores)(delayed(compute.compute_monte_carlo_null)(
    num_foci=exp.NumberOfFoci, kernels=kernels, bin_edges=edges, bin_centers=centres, step=10000,
    cluster_forming_threshold=0.001, hx_conv=observed, tfce_enabled=True) for _ in range(iters))
print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jale-python", required=True, help="Python of an environment with jale==0.2.10")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--rule", choices=["per_null", "observed"], default="per_null")
    parser.add_argument("--tag", default="high")
    args = parser.parse_args()

    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.meta.inputs import analysis_inputs
    from neurochange.meta.jale import JaleALE
    from neurochange.sources.download import fetch_package_file
    from neurochange.sources.io import read_studyset
    from neurochange.sources.io.jale_excel import experiments_with_tags
    from neurochange.sources.jale_prior import WHEEL, jale_grid

    with tempfile.TemporaryDirectory() as tmp:
        example = Path(tmp) / "experiment_info.xlsx"
        with zipfile.ZipFile(fetch_package_file(WHEEL)) as wheel:
            example.write_bytes(wheel.read("jale/assets/examples/experiment_info.xlsx"))
        studyset = read_studyset(example, space_transform="jale")
        studyset = studyset.filter_experiments(experiments_with_tags(studyset, [args.tag]))
        result = JaleALE(null_histogram=args.rule, tfce=True).fit_inputs(analysis_inputs(studyset, jale_grid()))
        MonteCarloFWE(n_iters=100, seed=0, n_cores=args.cores).null_distributions(result)  # compile, warm
        start = time.perf_counter()
        MonteCarloFWE(n_iters=args.iters, seed=1, n_cores=args.cores).null_distributions(result)
        ours = time.perf_counter() - start
        done = subprocess.run([args.jale_python, "-c", JALE_SIDE, str(example), args.tag, str(args.iters),
                               str(args.cores), args.rule], capture_output=True, text=True, check=True)
        theirs = float(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"benchmark": "tfce_vs_jale", "input": f"JALE example, tag {args.tag}",
                      "experiments": int(result.n_experiments), "iters": args.iters, "cores": args.cores,
                      "null_histogram": args.rule, "jale_s": round(theirs, 2), "neurochange_s": round(ours, 2),
                      "jale_s_per_iter": round(theirs / args.iters, 4),
                      "neurochange_s_per_iter": round(ours / args.iters, 5), "ratio": round(theirs / ours, 1)}))


if __name__ == "__main__":
    sys.exit(main())
