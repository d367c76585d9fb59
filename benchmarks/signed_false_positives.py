"""Signed ALE on simulated data: detection of planted effects and the false-positive rate outside them.

Each replicate simulates increase and decrease experiments (``--experiments`` each, 8 foci, n = 20);
increases converge near (40, 20, 30) and decreases
near (-30, -60, 10) in ``--hits`` experiments, every other focus uniform in the brain mask.
Per replicate and direction: whether a cluster (FWE p < .05, cluster-size) lies within 12 mm of the
planted centre, and whether any cluster lies elsewhere (a false positive; its expected rate per
direction is at most 5%). Prints one JSON line with the rates and their 95% binomial intervals.

    /work/venv/bin/python benchmarks/signed_false_positives.py --replicates 100 --iters 1000
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats

from neurochange.compare.signed import split_by_direction
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.results.write import result_clusters
from neurochange.simulate import simulate_studyset

CENTRES = {"increase": (40, 20, 30), "decrease": (-30, -60, 10)}


def interval(k: int, n: int) -> list[float]:
    """Clopper-Pearson 95% interval of a binomial share."""
    lo = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    hi = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return [round(float(lo), 4), round(float(hi), 4)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--experiments", type=int, default=14)
    parser.add_argument("--hits", type=int, default=10, help="experiments per direction near its centre (0: null)")
    args = parser.parse_args()
    found = {d: 0 for d in CENTRES}
    false = {d: 0 for d in CENTRES}
    for rep in range(args.replicates):
        ss = simulate_studyset([
            {"n": args.experiments, "direction": d, "centre": c, "hits": args.hits} for d, c in CENTRES.items()
        ], seed=1000 + rep)
        parts, _ = split_by_direction(ss)
        for d, centre in CENTRES.items():
            res = MonteCarloFWE(n_iters=args.iters, seed=rep, n_cores=None).correct(ALE().fit(parts[d]))
            table, _ = result_clusters(res)
            peaks = table.loc[~table["is_subpeak"], ["peak_x", "peak_y", "peak_z"]].to_numpy(float)
            near = np.linalg.norm(peaks - np.asarray(centre, float), axis=1) <= 12.0
            found[d] += bool(near.any())
            false[d] += bool((~near).any())
    n = args.replicates
    print(json.dumps({
        "replicates": n, "iterations": args.iters, "experiments_per_direction": args.experiments, "hits": args.hits,
        **{f"detected_{d}": [found[d] / n, interval(found[d], n)] for d in CENTRES},
        **{f"false_positive_{d}": [false[d] / n, interval(false[d], n)] for d in CENTRES},
    }))


if __name__ == "__main__":
    main()
