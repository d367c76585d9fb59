"""ALE, MKDA density or KDA null iterations, or an ALE subtraction's label permutations, on the GPU (CuPy) vs
the CPU engine, side by side in one run: ms per iteration, ratio, equal maxima, GPU memory. Needs CuPy and a CUDA
GPU (pip install 'neurochange[gpu]').

    .venv/bin/python benchmarks/gpu_null.py [--estimator ale|mkda|kda|subtraction] [--experiments 2000]
        [--iters 200] [--cores 1] [--batch 256] [--batch-foci 4096] [--mirror ../shared/data] [--seed 1]

Two sets: NiMARE's pain set (21 experiments, their own sample sizes) and ``--experiments`` Neurosynth
studies reported in MNI (drawn with ``--seed``, n = 20 each). For each, the same seeded draws go through
the CPU engine (``--cores`` threads) and the CuPy engine (ALE: ``--batch`` experiments per buffer;
MKDA/KDA: ``--batch-foci`` foci per batch), after
one warm-up chunk each; the first 20 iterations' maxima are compared (maximum ALE to relative 1e-12, sizes
exactly, masses to 1e-9). Prints one JSON line per set. The target of issue 14: <= 10 ms per iteration at
2,000 experiments on one H200, with memory that does not grow with iterations (``gpu_pool_bytes`` after the
first and after the last chunk).

``--estimator subtraction``: each set split in two (experiments in id order: the first half against the rest),
ALE; the same seeded permutations go through the CPU's compiled loop (one core) and the CuPy engine
(:mod:`neurochange.inference.engines.array_subtraction`), whose tail counts and maxima must be equal bit for bit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _time(engine, draws, chunk: int = 100) -> float:
    started = time.perf_counter()
    for start in range(0, len(draws), chunk):
        engine.run(draws[start:start + chunk])
    return (time.perf_counter() - started) / len(draws)


def _one(name: str, studyset, args, cupy) -> dict:
    from neurochange.inference import null_masks
    from neurochange.inference.engines.array_ale import ArrayAleNullEngine
    from neurochange.inference.engines.array_sphere import ArraySphereNullEngine
    from neurochange.inference.montecarlo import chunk_draws
    from neurochange.meta.ale import ALE
    from neurochange.meta.mkda import KDA, MKDADensity

    estimator = {"ale": ALE, "mkda": MKDADensity, "kda": KDA}[args.estimator]()
    result = estimator.fit(studyset)
    threshold = estimator.cluster_forming(result, 0.001)[1]
    null_voxels = null_masks.null_mask(result.grid, "brain")
    cpu = estimator.null_engine(result, null_voxels, threshold, args.cores)
    if args.estimator == "ale":
        gpu = ArrayAleNullEngine(result.inputs, estimator.experiment_kernels(result.inputs), null_voxels, threshold,
                                 cupy, batch=args.batch)
    else:  # the sphere engine is one thread: compare it with one CPU core whatever --cores says
        gpu = ArraySphereNullEngine(result.inputs, estimator.radius, estimator.value, estimator.sum_overlap,
                                    null_voxels, threshold, cupy, batch_foci=args.batch_foci)
    draws = chunk_draws(args.seed, 0, args.iters, cpu.n_foci, cpu.n_null)
    cpu.warm_up(draws[:8])
    gpu.warm_up(draws[:2])
    a, b = cpu.run(draws[:20]), gpu.run(draws[:20])
    equal = bool(np.allclose(a[0], b[0], rtol=1e-12, atol=0) and np.array_equal(a[1], b[1])
                 and np.allclose(a[2], b[2], rtol=1e-9, atol=0))
    pool = cupy.get_default_memory_pool()
    gpu.run(draws[:100])
    after_first = int(pool.total_bytes())
    gpu_ms = 1000 * _time(gpu, draws)
    cupy.cuda.Device().synchronize()
    cpu_ms = 1000 * _time(cpu, draws)
    return {"set": name, "estimator": args.estimator, "experiments": result.n_experiments, "foci": cpu.n_foci,
            "iters": args.iters,
            "cpu_cores": args.cores if args.estimator == "ale" else 1, "cpu_ms_per_iter": round(cpu_ms, 2),
            "gpu_ms_per_iter": round(gpu_ms, 2),
            "gpu_speedup": round(cpu_ms / gpu_ms, 2), "maxima_equal": equal,
            "batch": args.batch if args.estimator == "ale" else args.batch_foci,
            "gpu_pool_bytes_first_chunk": after_first, "gpu_pool_bytes_end": int(pool.total_bytes()),
            "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()}


def _subtraction(name: str, studyset, args, cupy) -> dict:
    from neurochange.compare.subtraction import (
        _group_values,
        _keep_difference,
        _permutation_tails,
        _sparse_ma,
    )
    from neurochange.inference.engines.array_subtraction import ArraySubtraction
    from neurochange.inference.executors import chunks
    from neurochange.inference.permutation import LabelPermutation
    from neurochange.meta.ale import ALE

    ids = sorted(studyset.experiments["experiment_id"])
    half = len(ids) // 2
    r1, r2 = ALE().fit(studyset.filter_experiments(ids[:half])), ALE().fit(studyset.filter_experiments(ids[half:]))
    support, indptr, cols, ma = _sparse_ma([r1, r2])
    values, n1, n = 1.0 - ma, r1.n_experiments, r1.n_experiments + r2.n_experiments
    total, observed = np.empty(len(support)), np.empty(len(support))
    _group_values(indptr, cols, values, np.arange(n), False, total)
    _keep_difference(indptr, cols, values, np.arange(n), n1, total, np.empty(len(support)), observed)
    permutation = LabelPermutation(args.iters, args.seed)
    perms = np.concatenate([permutation.permutations(c, n) for c in chunks(args.iters)])
    gpu = ArraySubtraction(indptr, cols, values, total, n1, False, cupy)

    def cpu(batch):
        upper, lower = np.zeros(len(support), dtype=np.int64), np.zeros(len(support), dtype=np.int64)
        abs_max = np.zeros(len(batch))
        _permutation_tails(indptr, cols, values, batch, n1, total, observed, upper, lower, abs_max,
                           np.zeros((0, len(support)), dtype=np.float32))
        return upper, lower, abs_max

    a, b = cpu(perms[:20]), gpu.tails(perms[:20], observed, 0)
    equal = all(np.array_equal(x, y) for x, y in zip(a, b[:3]))
    pool = cupy.get_default_memory_pool()
    gpu.tails(perms[:100], observed, 0)
    after_first = int(pool.total_bytes())
    started = time.perf_counter()
    for start in range(0, len(perms), 100):
        gpu.tails(perms[start:start + 100], observed, 0)
    cupy.cuda.Device().synchronize()
    gpu_ms = 1000 * (time.perf_counter() - started) / len(perms)
    started = time.perf_counter()
    cpu(perms)
    cpu_ms = 1000 * (time.perf_counter() - started) / len(perms)
    return {"set": name, "estimator": "subtraction", "experiments": [r1.n_experiments, r2.n_experiments],
            "voxels_reached": int(len(support)), "permutations": args.iters, "cpu_cores": 1,
            "cpu_ms_per_permutation": round(cpu_ms, 2), "gpu_ms_per_permutation": round(gpu_ms, 2),
            "gpu_speedup": round(cpu_ms / gpu_ms, 2), "maxima_equal": equal, "batch": gpu.batch,
            "gpu_pool_bytes_first_chunk": after_first, "gpu_pool_bytes_end": int(pool.total_bytes()),
            "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()}


def main() -> None:
    from test_ale import neurosynth_subset

    from neurochange.inference.engines.array_ale import gpu_namespace
    from neurochange.sources.io import read_studyset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimator", choices=["ale", "mkda", "kda", "subtraction"], default="ale")
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256, help="ALE: experiments per buffer")
    parser.add_argument("--batch-foci", type=int, default=4096, help="MKDA/KDA: foci per batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mirror", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    cupy = gpu_namespace()
    import nimare

    pain = read_studyset(Path(nimare.__file__).parent / "tests" / "data" / "test_pain_dataset.json")
    one = _subtraction if args.estimator == "subtraction" else _one
    print(json.dumps(one("pain", pain, args, cupy)), flush=True)
    print(json.dumps(one("neurosynth", neurosynth_subset(args.mirror, args.experiments, seed=args.seed), args, cupy)))


if __name__ == "__main__":
    main()
