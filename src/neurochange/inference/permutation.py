"""The one label-permutation driver: experiments reshuffled between two groups, in seeded chunks.

Used by every test that permutes group labels (MKDA chi-square FWE, ALE subtraction, balanced
subtraction). Permutation ``t`` is row ``t - chunk.start`` of :meth:`LabelPermutation.permutations`
for its chunk: ``n_total`` experiment indices in random order (the first ``n_group1`` form
group 1), drawn from the chunk's own stream (:func:`~neurochange.inference.executors.chunk_rng`),
so the permutations, and every null built from them, depend on the seed alone.

The statistic is the caller's: ``statistic(chunk, perms)`` returns what one chunk adds (per-
permutation maxima, tail counts); :func:`~neurochange.inference.executors.run_chunks` hands
chunks to the executor, reports progress and stops early when the watched maxima are known.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from neurochange._docs import fill_doc
from neurochange.inference.executors import (
    RANDOM_STREAMS,
    Chunk,
    ChunkRun,
    StopRule,
    chunk_rng,
    default_executor,
    resolve_seed,
    run_chunks,
)
from neurochange.inference.stopping import FWE_QUANTILE


def _permutation_chunk(chunk: Chunk, statistic: Callable, permutation: "LabelPermutation", n_total: int):
    """``statistic`` of one chunk's permutations."""
    return statistic(chunk, permutation.permutations(chunk, n_total))


@fill_doc
class LabelPermutation:
    """Label permutations of ``n_total`` experiments.

    Parameters
    ----------
    %(n_iters)s
    %(seed)s
    %(n_cores)s
    %(early_stop)s
    stream : tuple of int
        Sub-stream of the seed (for several independent permutation runs from one seed).
    """

    def __init__(self, n_iters: int = 10000, seed: int | None = None, n_cores: int | None = None,
                 early_stop: float | None = None, confidence: float = 0.999, check_every: int = 1000,
                 stream: tuple[int, ...] = ()):
        if int(n_iters) < 1:
            raise ValueError(f"n_iters must be positive, got {n_iters}")
        self.n_iters = int(n_iters)
        self.seed = resolve_seed(seed)
        self.n_cores = n_cores
        self.stop = None if early_stop is None else StopRule(float(early_stop), float(confidence), int(check_every))
        self.stream = tuple(stream)

    def permutations(self, chunk: Chunk, n_total: int) -> np.ndarray:
        """The permutations of ``chunk``: int64 (chunk.count, n_total)."""
        rng = chunk_rng(self.seed, chunk.index, self.stream)
        return np.stack([rng.permutation(n_total) for _ in range(chunk.count)]).astype(np.int64)

    def run(self, statistic: Callable[[Chunk, np.ndarray], object], n_total: int, *,
            watch: Callable[[list], dict] | None = None, consume: Callable | None = None, progress=None,
            n_iters: int | None = None, early_stop: bool = True, executor=None) -> ChunkRun:
        """``statistic(chunk, perms)`` over every chunk, in chunk order (see :func:`run_chunks` for
        ``watch`` and ``consume``). ``n_iters`` (default: all) replays the first permutations only;
        ``early_stop=False`` ignores the stopping rule (for a second pass over the same permutations)."""
        kwargs = {"watch": watch, "stop": self.stop if early_stop else None, "progress": progress, "consume": consume,
                  "shared": (statistic, self)}
        task = functools.partial(_permutation_chunk, n_total=n_total)
        n_iters = self.n_iters if n_iters is None else int(n_iters)
        if executor is not None:
            return run_chunks(task, n_iters, executor, **kwargs)
        with default_executor(self.n_cores) as own:
            return run_chunks(task, n_iters, own, **kwargs)

    def record(self, run: ChunkRun) -> dict:
        """Settings and outcome for ``params`` (JSON-ready)."""
        return {
            "method": "label permutation",
            "n_iters_requested": self.n_iters,
            "n_iters": int(run.n_done),
            "seed": self.seed,
            "random_streams": RANDOM_STREAMS,
            "early_stop": None if self.stop is None else {
                "precision": self.stop.precision, "confidence": self.stop.confidence,
                "check_every": self.stop.check_every, "stopped_early": run.stopped, "quantile": FWE_QUANTILE,
                "intervals": run.intervals,
            },
        }
