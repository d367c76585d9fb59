"""ALE subtraction: neurochange against NiMARE 0.22.1's ALESubtraction, side by side, one JSON line.

The pain test set split in two (first 11 / last 10 experiments by id). Each run is a child
process (same input, cores); NiMARE runs ``--nimare-iters`` permutations and its time is
extrapolated per permutation to ``--iters`` (flagged). Prints seconds and peak MB for each,
the speedup, and the correlation of the uncorrected z maps (at NiMARE's iteration count,
neurochange with ``ties="nimare"``).

    /work/venv/bin/python benchmarks/subtraction_vs_nimare.py --iters 10000 --nimare-iters 1000 --cores 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, time, resource, warnings, numpy as np
warnings.simplefilter("ignore")
which, n_iters, cores, ties, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
import nimare
from pathlib import Path
path = Path(nimare.__file__).parent / "tests/data/test_pain_dataset.json"
start = time.perf_counter()
if which == "nimare":
    from nimare.dataset import Dataset
    from nimare.meta.cbma.ale import ALESubtraction
    from neurochange.space import mask_img
    dset = Dataset(str(path)); ids = sorted(dset.ids)
    res = ALESubtraction(n_iters=n_iters, n_cores=cores, mask=mask_img()).fit(dset.slice(ids[:11]), dset.slice(ids[11:]))
    z = res.get_map("z_desc-group1MinusGroup2", return_type="array")
else:
    from neurochange.compare.subtraction import Subtraction
    from neurochange.sources.io import read_studyset
    ss = read_studyset(path); ids = sorted(ss.experiments["experiment_id"])
    res = Subtraction(n_iters=n_iters, seed=1, n_cores=cores, ties=ties).fit(
        ss.filter_experiments(ids[:11]), ss.filter_experiments(ids[11:]))
    z = res.maps["z_desc-group1MinusGroup2"]
seconds = time.perf_counter() - start
np.save(out, z)
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run(which, n_iters, cores, ties, out):
    res = subprocess.run([sys.executable, "-c", CHILD, which, str(n_iters), str(cores), ties, out],
                         capture_output=True, text=True, check=True)
    seconds, mb = res.stdout.split()[-2:]
    return float(seconds), float(mb)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--nimare-iters", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run("neurochange", 64, args.cores, "exact", str(tmp / "warmup.npy"))  # numba cache
        nc_s, nc_mb = run("neurochange", args.iters, args.cores, "exact", str(tmp / "nc.npy"))
        ni_s, ni_mb = run("nimare", args.nimare_iters, args.cores, "exact", str(tmp / "ni.npy"))
        run("neurochange", args.nimare_iters, args.cores, "nimare", str(tmp / "nc_ties.npy"))
        corr = float(np.corrcoef(np.load(tmp / "ni.npy"), np.load(tmp / "nc_ties.npy"))[0, 1])
    ni_full = ni_s * args.iters / args.nimare_iters
    print(json.dumps({
        "dataset": "test_pain_dataset.json split 11/10", "iterations": args.iters, "cores": args.cores,
        "neurochange_s": round(nc_s, 2), "neurochange_peak_mb": round(nc_mb),
        "nimare_s": round(ni_full, 2), "nimare_extrapolated_from": args.nimare_iters, "nimare_peak_mb": round(ni_mb),
        "speedup": round(ni_full / nc_s, 1), "z_correlation_at_nimare_iters": round(corr, 5),
    }))


if __name__ == "__main__":
    main()
