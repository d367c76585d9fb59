"""ALE + Monte Carlo FWE on 2,000 Neurosynth experiments: neurochange vs NiMARE 0.22.1, one JSON line.

    /work/venv/bin/python benchmarks/ale_fwe_2000.py [--experiments 2000] [--iters 1000]
        [--nimare-minutes 20] [--cores 1] [--sample-size 20] [--mirror ../shared/data]
        [--device cpu|gpu|auto] [--scheduler local|tcp://HOST:PORT]   # neurochange side only

Input: a Neurosynth corpus is built from the offline mirror (in a temporary
NEUROCHANGE_HOME, as ``neurochange corpus build`` does), then ``--experiments`` of its
experiments are drawn at random (``--seed``). Neurosynth records no sample sizes, so both
sides use one fixed sample size for every experiment (``--sample-size``, default 20:
neurochange ``n = 20`` for each experiment, NiMARE ``ALEKernel(sample_size=20)``): the same
kernel everywhere; the output says so.

Each side runs in its own child process, one after the other; the parent polls the
resident memory of each child's whole process tree (``/proc``, every 0.2 s) for its peak.
neurochange runs all ``--iters`` iterations; its resident memory is also sampled after
each chunk of iterations, to show it does not grow with iterations. NiMARE
(``FWECorrector(method="montecarlo")``) is stopped after ``--nimare-minutes`` of Monte Carlo:
its rate (iterations/s), projected time for ``--iters`` and peak memory are printed,
then the ratios. Not a test: the machine is shared; compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _rss_mb(pid: int) -> float:
    """Resident memory (MB) of ``pid`` and all its descendants (0 for processes gone)."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _self_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------- input
def build_sample(mirror: Path, n_experiments: int, sample_size: int, seed: int, home: Path):
    """A StudySet of ``n_experiments`` random Neurosynth experiments, every n set to ``sample_size``."""
    import numpy as np

    os.environ["NEUROCHANGE_DATA_MIRROR"] = str(mirror)
    os.environ["NEUROCHANGE_HOME"] = str(home)
    from neurochange.corpus.store import NEUROSYNTH, Corpus
    from neurochange.sources import download

    with Corpus(home / "corpus.duckdb") as corpus:
        corpus.ingest_database(NEUROSYNTH, download.fetch_dataset(NEUROSYNTH))
        ids = corpus.select_ids("")
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=n_experiments, replace=False))
        studyset = corpus.studyset(ids.iloc[pick])
    studyset.experiments["n"] = sample_size
    return studyset


# ---------------------------------------------------------------------------- children
def child_neurochange(studyset, iters: int, cores: int, seed: int, device: str = "cpu",
                      scheduler_address: str | None = None) -> dict:
    from neurochange.inference.executors import scheduler
    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.meta.ale import ALE

    start = time.perf_counter()
    result = ALE().fit(studyset)
    fitted = time.perf_counter()
    samples = []  # (iterations done, resident MB) after each chunk

    def progress(done, total):
        samples.append((int(done), round(_self_rss_mb(), 1)))

    with scheduler(scheduler_address, cores):
        result = MonteCarloFWE(n_iters=iters, seed=seed, n_cores=cores, device=device).correct(result,
                                                                                              progress=progress)
    end = time.perf_counter()
    counts = result.params["counts"]
    first_after = next((s for s in samples if s[0] >= min(iters, 100)), samples[0])
    return {
        "experiments": counts["experiments"], "foci": counts["foci"],
        "fit_seconds": round(fitted - start, 2), "fwe_seconds": round(end - fitted, 2),
        "iterations": iters, "iterations_per_second": round(iters / (end - fitted), 3),
        "rss_mb_after_first_100_iterations": first_after[1], "rss_mb_at_end": samples[-1][1],
        "rss_mb_samples": samples[:: max(1, len(samples) // 10)],
    }


def child_nimare(studyset, iters: int, cores: int, seed: int, sample_size: int, minutes: float) -> None:
    """Fit NiMARE's ALE, run its Monte Carlo FWE, print a JSON line and exit after ``minutes``."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import nimare.meta.cbma.base as base
    from nimare.correct import FWECorrector
    from nimare.meta.cbma.ale import ALE
    from nimare.meta.kernel import ALEKernel

    from neurochange.space import mask_img

    dset = studyset.to_nimare_dataset()
    start = time.perf_counter()
    result = ALE(kernel_transformer=ALEKernel(sample_size=sample_size), mask=mask_img(), random_state=seed).fit(dset)
    fitted = time.perf_counter()
    deadline = fitted + 60 * minutes
    report = {"experiments": len(dset.ids), "fit_seconds": round(fitted - start, 2), "iterations": 0}

    def finish(done, first_at, now):
        report["iterations"] = done
        report["mc_seconds"] = round(now - fitted, 2)
        # rate over the iterations after the first (setup: null draws, worker start-up)
        if done > 1:
            report["iterations_per_second"] = round((done - 1) / (now - first_at), 4)
        elif done == 1:
            report["iterations_per_second"] = round(1 / (now - fitted), 4)
        print(json.dumps(report), flush=True)
        os._exit(0)

    def counting_tqdm(iterable, total=None, **kwargs):  # replaces the progress bar of the FWE loop
        done, first_at = 0, None
        for item in iterable:
            done += 1
            now = time.perf_counter()
            first_at = first_at or now
            if now >= deadline:
                finish(done, first_at, now)
            yield item
        finish(done, first_at or time.perf_counter(), time.perf_counter())

    base.tqdm = counting_tqdm
    FWECorrector(method="montecarlo", n_iters=iters, n_cores=cores).transform(result)


def child(args) -> None:
    with open(args.input, "rb") as fh:
        studyset = pickle.load(fh)
    if args.child == "neurochange":
        print(json.dumps(child_neurochange(studyset, args.iters, args.cores, args.seed, args.device,
                                           args.scheduler)), flush=True)
    else:
        child_nimare(studyset, args.iters, args.cores, args.seed, args.sample_size, args.nimare_minutes)


def _spawn(kind: str, args, path: Path, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--input", str(path), "--iters", str(args.iters),
           "--cores", str(args.cores), "--seed", str(args.seed), "--sample-size", str(args.sample_size),
           "--nimare-minutes", str(args.nimare_minutes), "--device", args.device] + \
        (["--scheduler", args.scheduler] if args.scheduler else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def poll():
        while proc.poll() is None:
            peak[0] = max(peak[0], _rss_mb(proc.pid))
            time.sleep(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    start = time.perf_counter()
    out, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{err[-3000:]}")
    report = json.loads(out.strip().splitlines()[-1])
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    report["peak_tree_rss_mb"] = round(peak[0])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--nimare-minutes", type=float, default=20.0)
    parser.add_argument("--cores", type=int, default=1, help="cores for each side (default 1)")
    parser.add_argument("--sample-size", type=int, default=20, help="one sample size for every experiment")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mirror", default=os.environ.get(
        "NEUROCHANGE_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--device", choices=["cpu", "gpu", "auto"], default="cpu",
                        help="where neurochange's iterations run (gpu: CuPy)")
    parser.add_argument("--scheduler", default=None, help="neurochange's chunks on a Dask cluster: local or tcp://...")
    parser.add_argument("--child", choices=["neurochange", "nimare"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="ale-fwe-2000-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        studyset = build_sample(Path(args.mirror), args.experiments, args.sample_size, args.seed, tmp / "home")
        sample_seconds = time.perf_counter() - t
        path = tmp / "sample.pkl"
        with open(path, "wb") as fh:
            pickle.dump(studyset, fh)
        env = {**os.environ, "TQDM_DISABLE": "1"}
        ours = _spawn("neurochange", args, path, env)
        theirs = _spawn("nimare", args, path, env)

    projected = args.iters / theirs["iterations_per_second"] if theirs.get("iterations_per_second") else None
    print(json.dumps({
        "benchmark": "ale_fwe_2000",
        "input": f"{args.experiments} Neurosynth experiments drawn at random (seed {args.seed}) from a corpus "
                 f"built from {args.mirror}; {ours['foci']} foci analysed",
        "kernel": f"fixed sample size {args.sample_size} for every experiment on both sides "
                  f"(neurochange n={args.sample_size}; NiMARE ALEKernel(sample_size={args.sample_size})): "
                  "Neurosynth has no sample sizes",
        "iterations": args.iters, "cores": args.cores, "sample_seconds": round(sample_seconds, 1),
        "neurochange_device": args.device, "neurochange_scheduler": args.scheduler,
        "neurochange": ours,
        "nimare": {**theirs, "stopped_after_minutes": args.nimare_minutes,
                   "projected_fwe_seconds_for_iters": round(projected, 1) if projected else None},
        "ratio": {
            "fwe_time_nimare_projected_over_neurochange": round(projected / ours["fwe_seconds"], 1) if projected else None,
            "iterations_per_second_neurochange_over_nimare": round(
                ours["iterations_per_second"] / theirs["iterations_per_second"], 1) if projected else None,
            "peak_memory_nimare_over_neurochange": round(theirs["peak_tree_rss_mb"] / max(1, ours["peak_tree_rss_mb"]), 2),
        },
        "neurochange_memory_growth_mb": round(ours["rss_mb_at_end"] - ours["rss_mb_after_first_100_iterations"], 1),
    }))


if __name__ == "__main__":
    main()
