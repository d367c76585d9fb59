"""ALE + Monte Carlo FWE: neurochange against NiMARE 0.22.1, side by side, one JSON line.

Each run is its own child process (same input, iterations and cores), interleaved:
neurochange cold (empty numba cache: compilation included), NiMARE, neurochange warm, then
the ``neurochange ale`` command itself (warm cache). Each child reports its in-process
seconds and its own peak resident memory (ru_maxrss); the parent also times each child's
whole process (start-up, imports, reading, fitting, correcting and writing), so the line
gives the command's whole process against NiMARE's whole process (whose child only fits,
corrects and saves its maps: no tables, figure or report). The parent compares the maps
the children saved. NiMARE may run fewer iterations (``--nimare-iters``),
its time then extrapolated linearly per iteration to ``--iters`` and flagged as such.

    /work/venv/bin/python benchmarks/ale_vs_nimare.py --iters 10000 --cores 2
    /work/venv/bin/python benchmarks/ale_vs_nimare.py --iters 10000 --nimare-iters 500   # quicker
    git worktree add /tmp/before <commit>
    /work/venv/bin/python benchmarks/ale_vs_nimare.py --iters 1000 --baseline-src /tmp/before/src   # before/after

With ``--baseline-src`` (the ``src/`` folder of another checkout) the same child also runs on that
code (compiled once, then warm), interleaved with a second warm run of this one, and the line
adds ``this / baseline`` warm seconds (below 1: this checkout is faster).

Prints: dataset, experiments, foci, iterations, cores, seconds and peak MB for each,
speedup (NiMARE seconds / neurochange warm seconds), and the largest map differences.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAIN = "nimare/tests/data/test_pain_dataset.json"


def _child_ours(path: str, iters: int, cores: int, seed: int, out: str) -> dict:
    try:
        from neurochange.inference.montecarlo import MonteCarloFWE
        from neurochange.meta.ale import ALE
        from neurochange.sources.io import read_studyset
    except ImportError:  # a --baseline-src checkout from before the stage layout (commit d716d4d and earlier)
        from neurochange.estimators import ALE
        from neurochange.io import read_studyset
        from neurochange.montecarlo import MonteCarloFWE

    start = time.perf_counter()
    result = ALE().fit(read_studyset(path))
    fitted = time.perf_counter()
    result = MonteCarloFWE(n_iters=iters, seed=seed, n_cores=cores).correct(result)
    end = time.perf_counter()
    np.savez(out, **result.maps)
    counts = result.params["counts"]
    return {"seconds": end - start, "fit_seconds": fitted - start, "fwe_seconds": end - fitted,
            "experiments": counts["experiments"], "foci": counts["foci"]}


def _child_nimare(path: str, iters: int, cores: int, seed: int, out: str) -> dict:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from nimare.correct import FWECorrector
    from nimare.dataset import Dataset
    from nimare.meta.cbma.ale import ALE

    from neurochange.space import mask_img

    start = time.perf_counter()
    result = ALE(mask=mask_img(), random_state=seed).fit(Dataset(path))
    fitted = time.perf_counter()
    result = FWECorrector(method="montecarlo", n_iters=iters, n_cores=cores).transform(result)
    end = time.perf_counter()
    np.savez(out, **{k: np.asarray(v, dtype=np.float64) for k, v in result.maps.items()})
    return {"seconds": end - start, "fit_seconds": fitted - start, "fwe_seconds": end - fitted}


def child(args) -> None:
    import resource

    run = _child_ours if args.child == "ours" else _child_nimare
    report = run(args.input, args.iters, args.cores, args.seed, args.out)
    report["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report))


def _spawn(kind: str, args, iters: int, out: Path, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--input", args.input, "--iters", str(iters),
           "--cores", str(args.cores), "--seed", str(args.seed), "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_seconds"] = time.perf_counter() - start
    return report


def _command_seconds(args, out: Path, env: dict) -> float:
    """Wall seconds of the whole ``neurochange ale`` command (its console script, as a user runs it)."""
    script = Path(sys.executable).with_name("neurochange")
    cmd = [str(script), "ale", args.input, "--out", str(out), "--iters", str(args.iters), "--cores", str(args.cores),
           "--seed", str(args.seed)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=None, help=f"NiMARE JSON / Sleuth file (default: {PAIN})")
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--nimare-iters", type=int, default=None, help="NiMARE iterations (default: --iters)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-src", default=None,
                        help="src/ folder of another neurochange checkout to time beside this one (before/after)")
    parser.add_argument("--child", choices=["ours", "nimare"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.input is None:
        import nimare

        args.input = str(Path(nimare.__file__).parent.parent / PAIN)
    if args.child:
        child(args)
        return

    nimare_iters = args.nimare_iters or args.iters
    with tempfile.TemporaryDirectory(prefix="ale-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "numba-cache"), "TQDM_DISABLE": "1"}
        cold = _spawn("ours", args, args.iters, tmp / "ours_cold.npz", env)
        theirs = _spawn("nimare", args, nimare_iters, tmp / "nimare.npz", env)
        warm = _spawn("ours", args, args.iters, tmp / "ours_warm.npz", env)
        command = _command_seconds(args, tmp / "command_out", env)
        baseline = None
        if args.baseline_src:
            other = {**env, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
            _spawn("ours", args, args.iters, tmp / "baseline.npz", other)  # compile the baseline's kernels
            baseline = [_spawn("ours", args, args.iters, tmp / "baseline.npz", other),
                        _spawn("ours", args, args.iters, tmp / "ours_again.npz", env)]
            before, after = np.load(tmp / "baseline.npz"), np.load(tmp / "ours_again.npz")
            same = {name: bool(np.array_equal(before[name], after[name])) for name in after.files}
        ours_maps, their_maps = np.load(tmp / "ours_warm.npz"), np.load(tmp / "nimare.npz")
        diffs = {name: float(np.max(np.abs(ours_maps[name] - their_maps[name]))) for name in ("stat", "p", "z", "logp")}
        z_cut = 1.6448536269514722  # one-tailed p < 0.05
        dice = {
            name.split("_corr")[0]: _dice(ours_maps[name] > z_cut, their_maps[name] > z_cut)
            for name in their_maps.files
            if name.startswith("z_") and "corr-FWE" in name
        }
    scale = args.iters / nimare_iters
    nimare_seconds = theirs["seconds"] if scale == 1 else theirs["fit_seconds"] + theirs["fwe_seconds"] * scale
    nimare_process = theirs["process_seconds"] + (scale - 1) * theirs["fwe_seconds"]
    print(json.dumps({
        "dataset": Path(args.input).name,
        "experiments": warm["experiments"],
        "foci": warm["foci"],
        "iterations": args.iters,
        "nimare_iterations_run": nimare_iters,
        "nimare_extrapolated": scale != 1,
        "cores": args.cores,
        "seconds": {"neurochange_cold": round(cold["seconds"], 2), "neurochange_warm": round(warm["seconds"], 2),
                    "nimare": round(nimare_seconds, 1)},
        "ms_per_iteration": {"neurochange_warm": round(1000 * warm["fwe_seconds"] / args.iters, 3),
                             "nimare": round(1000 * theirs["fwe_seconds"] / nimare_iters, 2)},
        "whole_process_seconds": {"neurochange_ale_command": round(command, 2),
                                  "nimare": round(nimare_process, 1)},
        "speedup": {"warm": round(nimare_seconds / warm["seconds"], 1),
                    "cold": round(nimare_seconds / cold["seconds"], 1),
                    "whole_process": round(nimare_process / command, 1)},
        "peak_mb": {"neurochange_cold": round(cold["peak_mb"]), "neurochange_warm": round(warm["peak_mb"]),
                    "nimare": round(theirs["peak_mb"])},
        "max_abs_difference": diffs,
        "fwe_significant_dice": dice,
        **({} if baseline is None else {"baseline": {
            "src": args.baseline_src,
            "seconds": {"baseline_warm": round(baseline[0]["seconds"], 2),
                        "this_warm": round(baseline[1]["seconds"], 2)},
            "fwe_seconds": {"baseline_warm": round(baseline[0]["fwe_seconds"], 2),
                            "this_warm": round(baseline[1]["fwe_seconds"], 2)},
            "ratio_this_over_baseline": round(baseline[1]["seconds"] / baseline[0]["seconds"], 3),
            "maps_identical": all(same.values()),
        }}),
    }))


if __name__ == "__main__":
    main()
