"""Leave-one-out with the same correction on a Neurosynth subset: neurochange's jackknife vs NiMARE 0.22.1, one run.

    .venv/bin/python benchmarks/jackknife_vs_nimare.py [--experiments 30] [--iters 1000] [--cores 2]
        [--nimare-experiments 5] [--scheduler local] [--mirror ../shared/data] [--seed 1]

``--experiments`` Neurosynth studies reported in MNI (drawn with ``--seed``, n = 20 each) are analysed with
ALE and Monte Carlo FWE (``--iters``); then each experiment is left out in turn and the remaining ones are
analysed afresh with the same correction (``--iters`` iterations each). neurochange: ``jackknife`` (all
experiments; with ``--scheduler`` on a Dask cluster). NiMARE has no such routine: the same loop is written
with its ``ALE`` and ``FWECorrector(method="montecarlo")`` (NiMARE's own ``Jackknife`` reuses the full
analysis's correction), run for the first ``--nimare-experiments`` left-out experiments and extrapolated
linearly to all (flagged). Prints one JSON line with both times and the ratio. Not a test: the machine is
shared, compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # NiMARE's progress bars
    from test_ale import neurosynth_subset

    from neurochange.diagnostics.jackknife import jackknife
    from neurochange.inference.clusters import significant_clusters
    from neurochange.inference.executors import scheduler
    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.meta.ale import ALE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--nimare-experiments", type=int, default=5)
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mirror", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    studyset = neurosynth_subset(args.mirror, args.experiments, seed=args.seed)
    corrector = MonteCarloFWE(n_iters=args.iters, seed=args.seed, n_cores=args.cores)
    result = corrector.correct(ALE().fit(studyset))
    labels = significant_clusters(result, 0.05)[0]
    out = {"experiments": result.n_experiments, "foci": int(len(studyset.foci)), "iters": args.iters,
           "cores": args.cores, "scheduler": args.scheduler, "clusters": int(labels.max())}
    context = scheduler(args.scheduler, args.cores) if args.scheduler else contextlib.nullcontext()
    with context:
        started = time.perf_counter()
        survived, _ = jackknife(result, labels, corrector, n_iters=args.iters, seed=args.seed, n_cores=args.cores)
        out["neurochange_s"] = round(time.perf_counter() - started, 2)
    out["neurochange_survived_share"] = round(float(survived.mean()), 3) if survived.size else None

    from nimare.correct import FWECorrector
    from nimare.meta.cbma.ale import ALE as NimareALE

    from neurochange.space import mask_img

    logging.getLogger("nimare").setLevel(logging.ERROR)
    dataset = studyset.to_nimare_dataset()
    ids = sorted(dataset.ids)
    n = min(args.nimare_experiments, len(ids))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for left_out in ids[:n]:
            sub = dataset.slice([i for i in ids if i != left_out])
            fitted = NimareALE(mask=mask_img(), kernel__sample_size=20).fit(sub)
            FWECorrector(method="montecarlo", n_iters=args.iters, n_cores=args.cores).transform(fitted)
    per_refit = (time.perf_counter() - started) / n
    out["nimare_s"] = round(per_refit * len(ids), 2)
    out["nimare_extrapolated_from"] = n
    out["speedup"] = round(out["nimare_s"] / out["neurochange_s"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
