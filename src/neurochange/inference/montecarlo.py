"""Monte Carlo FWE correction of ALE: null maxima of voxel ALE, cluster size and cluster mass.

Each iteration keeps the experiments (their number of foci and kernels) and redraws every
focus uniformly, with replacement, from the null-mask voxels (NiMARE 0.22.1's procedure).
It records the largest ALE in the mask, and after the cluster-forming threshold (the ALE
at uncorrected p < 0.001 under the approximate null, as NiMARE) the largest
face-connected (6-neighbour) cluster's size (voxels) and mass (sum over its voxels of
ALE minus the threshold). Corrected p of an observed value: the share of null maxima >=
it, clipped to ``[1 / n, 1 - 1 / n]`` (NiMARE's ``null_to_p``); every voxel of a cluster
gets its cluster's p; voxels outside clusters get ``1 - 1 / n``.

Reproducibility: iterations come in chunks of ``chunk_size`` (100); chunk ``c`` draws its
foci from ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(c,)))`` (the ``c``-th
child of ``SeedSequence(seed)``), as an (iterations, foci) int32 array of null-voxel
indices. Nothing depends on the number of cores, and the first ``k`` iterations of a
longer run are those of a run of ``k``.

Speed: the iterations themselves are :mod:`neurochange.inference.engines.ale` (numba, sparse, all
cores, memory flat in the number of iterations). Its two exact engines (two-stage and
whole-map) give identical numbers; a few iterations of each are timed at the start and
the faster one runs the rest.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from neurochange.errors import InputError
from neurochange.inference import null_masks, stopping
from neurochange.inference import stats as inference
from neurochange.inference.engines import ale as null_ale
from neurochange.meta.result import (
    FWE_SUFFIX,
    NULL_APPROXIMATE,
    NULL_BINS,
    NULL_MASS,
    NULL_SIZE,
    NULL_VOXEL,
    MetaResult,
)

#: Iterations per random stream.
CHUNK_SIZE = 100
FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


# ---------------------------------------------------------------------------- draws
def chunk_draws(seed: int, chunk: int, n_iters: int, n_foci: int, n_null: int) -> np.ndarray:
    """Null-voxel indices (n_iters, n_foci) int32 of chunk ``chunk`` (its first n_iters rows)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk,)))
    return rng.integers(0, n_null, size=(n_iters, n_foci), dtype=np.int32)


# ---------------------------------------------------------------------------- observed clusters
def observed_cluster_p(stat_volume: np.ndarray, mask: np.ndarray, threshold: float, null_size, null_mass):
    """Cluster-size and cluster-mass FWE p (masked 1-D float64 each) of an observed ALE volume."""
    supra = (stat_volume > threshold) & mask
    labels, n = ndimage.label(supra, structure=FACE_CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    masses = np.asarray(ndimage.sum(stat_volume - threshold, labels=labels, index=np.arange(n + 1)))
    sizes[0] = 0.0
    masses[0] = -np.inf  # background: p = 1 - 1/n, as NiMARE
    p_size = inference.null_to_p(sizes, null_size)[labels]
    p_mass = inference.null_to_p(masses, null_mass)[labels]
    return p_size[mask], p_mass[mask]


# ---------------------------------------------------------------------------- the corrector
class MonteCarloFWE:
    """Monte Carlo family-wise error correction of an ALE result (voxel, cluster size, cluster mass).

    Parameters
    ----------
    n_iters : int
        Iterations (the most, with early stopping). Default 10,000.
    cluster_forming_p : float
        Uncorrected p defining clusters; the ALE threshold comes from the approximate null.
    null_mask : {"brain", "gm"} or 3-D bool array
        Where null foci fall (see :mod:`neurochange.inference.null_masks`).
    early_stop : float or None
        Relative precision at which to stop: after every ``check_every`` iterations, stop
        once the distribution-free ``confidence`` interval of the 0.95 quantile of each
        null (voxel ALE, cluster size, cluster mass) lies within ``early_stop`` times its
        estimate (:mod:`neurochange.inference.stopping`). Corrected p then rest on the iterations run
        (smallest p = 1 / iterations run).
    confidence : float
        Confidence of each quantile interval at each check (default 0.999; with three
        nulls and repeated checks, the tests find >= 95 % of early-stopped runs within
        the precision of a 100,000-iteration run).
    check_every : int
        Iterations between early-stopping checks (a multiple of the chunk size, 100).
    seed : int or None
        Seed of the random streams; None draws one (recorded in ``params``).
    n_cores : int or None
        Threads to use (None: all). Results do not depend on it.
    vfwe_only : bool
        Only voxel-level FWE (NiMARE's ``vfwe_only``): no cluster maps or cluster nulls,
        and early stopping watches the voxel null only.
    """

    def __init__(self, n_iters: int = 10000, cluster_forming_p: float = 0.001, null_mask="brain",
                 early_stop: float | None = None, confidence: float = 0.999, check_every: int = 1000,
                 seed: int | None = None, n_cores: int | None = None, vfwe_only: bool = False):
        if int(n_iters) < 1:
            raise ValueError(f"n_iters must be positive, got {n_iters}")
        if not 0 < cluster_forming_p < 1:
            raise ValueError(f"cluster_forming_p must be in (0, 1), got {cluster_forming_p}")
        if early_stop is not None and not early_stop > 0:
            raise ValueError(f"early_stop must be a positive relative precision, got {early_stop}")
        if check_every < CHUNK_SIZE or check_every % CHUNK_SIZE:
            raise ValueError(f"check_every must be a positive multiple of {CHUNK_SIZE}, got {check_every}")
        self.n_iters = int(n_iters)
        self.cluster_forming_p = float(cluster_forming_p)
        self.null_mask = null_mask
        self.early_stop = early_stop
        self.confidence = float(confidence)
        self.check_every = int(check_every)
        self.seed = seed
        self.n_cores = n_cores
        self.vfwe_only = bool(vfwe_only)

    def __repr__(self) -> str:
        return (f"MonteCarloFWE(n_iters={self.n_iters}, cluster_forming_p={self.cluster_forming_p}, "
                f"null_mask={self.null_mask if isinstance(self.null_mask, str) else 'custom'!r}, "
                f"early_stop={self.early_stop}, seed={self.seed}, n_cores={self.n_cores})")

    # ------------------------------------------------------------------ run
    def null_distributions(self, result: MetaResult, progress=None) -> tuple[dict, dict]:
        """Run the iterations: (nulls by NiMARE key, run settings for ``params``)."""
        seed = int(np.random.SeedSequence().entropy % 2**63) if self.seed is None else int(self.seed)
        threshold = inference.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS],
                                             self.cluster_forming_p)
        null_voxels = null_masks.null_mask(result.grid, self.null_mask)
        if not null_voxels.any():
            raise InputError("the null mask has no voxels inside the analysis mask", field="null_mask")
        plan = null_ale.build_plan(result, null_voxels, threshold)
        n_workers = _n_workers(self.n_cores)
        work = null_ale.make_work(plan, n_workers)
        voxel = np.zeros(self.n_iters)
        size = np.zeros(self.n_iters, dtype=np.int64)
        mass = np.zeros(self.n_iters)

        per_dispatch = CHUNK_SIZE * max(1, math.ceil(8 * n_workers / CHUNK_SIZE))
        done, stopped, intervals = 0, False, {}
        two_stage = None if plan.two_stage else False
        pool = ThreadPoolExecutor(n_workers) if n_workers > 1 else None
        warm_up = chunk_draws(seed, 0, 1, plan.n_foci, plan.n_null)  # load the compiled code before timing
        null_ale.run_iterations(plan, warm_up, work, pool)
        try:
            while done < self.n_iters and not stopped:
                stop_at = self.n_iters
                if self.early_stop is not None:
                    stop_at = min(stop_at, (done // self.check_every + 1) * self.check_every)
                upto = min(stop_at, done + per_dispatch)
                draws = np.concatenate([
                    chunk_draws(seed, c, min(CHUNK_SIZE, upto - c * CHUNK_SIZE), plan.n_foci, plan.n_null)
                    for c in range(done // CHUNK_SIZE, math.ceil(upto / CHUNK_SIZE))
                ])
                if two_stage is None:  # both engines give the same (exact) numbers: keep the faster
                    two_stage = _faster_engine(plan, draws[: 8 * n_workers], work, pool)
                v, s, m = null_ale.run_iterations(plan, draws, work, pool, two_stage=two_stage)
                voxel[done:upto], size[done:upto], mass[done:upto] = v, s, m
                done = upto
                if progress is not None:
                    progress(done, self.n_iters)
                if self.early_stop is not None and (done % self.check_every == 0 or done == self.n_iters):
                    watched = {NULL_VOXEL: voxel[:done]}
                    if not self.vfwe_only:
                        watched.update({NULL_SIZE: size[:done], NULL_MASS: mass[:done]})
                    stopped, intervals = stopping.thresholds_known(watched, self.early_stop, self.confidence)
        finally:
            if pool is not None:
                pool.shutdown()

        nulls = {NULL_VOXEL: voxel[:done]}
        if not self.vfwe_only:
            nulls.update({NULL_SIZE: size[:done].astype(np.float64), NULL_MASS: mass[:done]})
        run = {
            "method": "montecarlo",
            "n_iters_requested": self.n_iters,
            "n_iters": int(done),
            "seed": seed,
            "chunk_size": CHUNK_SIZE,
            "random_streams": "numpy SeedSequence(seed).spawn: chunk c uses child c (PCG64)",
            "cluster_forming_p": self.cluster_forming_p,
            "cluster_forming_stat": threshold,
            "connectivity": "face (6 neighbours)",
            "null_mask": self.null_mask if isinstance(self.null_mask, str) else "custom",
            "null_mask_voxels": int(plan.n_null),
            "n_cores": n_workers,
            "vfwe_only": self.vfwe_only,
            "early_stop": None if self.early_stop is None else {
                "precision": self.early_stop,
                "confidence": self.confidence,
                "check_every": self.check_every,
                "stopped_early": bool(stopped and done < self.n_iters),
                "quantile": stopping.FWE_QUANTILE,
                "intervals": intervals,
            },
        }
        return nulls, run

    def correct(self, result: MetaResult, progress=None) -> MetaResult:
        """A new result with the FWE maps, the null distributions and ``params['montecarlo']``.

        Maps (NiMARE names): ``{logp,z}_level-voxel``, ``{logp,z}_desc-size_level-cluster``
        and ``{logp,z}_desc-mass_level-cluster``, each ``_corr-FWE_method-montecarlo``
        (voxel level only with ``vfwe_only``).

        ``progress(done, total)`` is called after each batch of iterations.
        """
        nulls, run = self.null_distributions(result, progress)
        threshold = run["cluster_forming_stat"]
        levels = [("level-voxel", inference.null_to_p(result.maps["stat"], nulls[NULL_VOXEL]))]
        if not self.vfwe_only:
            p_size, p_mass = observed_cluster_p(
                result.get_volume("stat"), result.grid.mask, threshold, nulls[NULL_SIZE], nulls[NULL_MASS]
            )
            levels += [("desc-size_level-cluster", p_size), ("desc-mass_level-cluster", p_mass)]
        maps = {}
        for level, p in levels:
            maps[f"logp_{level}{FWE_SUFFIX}"] = inference.p_to_logp(p)
            maps[f"z_{level}{FWE_SUFFIX}"] = inference.p_to_z(p)
        return result.with_maps(maps=maps, nulls=nulls, params={"montecarlo": run})


def _faster_engine(plan, draws, work, pool) -> bool:
    """Whether two-stage iterations run faster than whole-map ones on these draws (timed)."""
    seconds = []
    for two_stage in (True, False):
        started = time.perf_counter()
        null_ale.run_iterations(plan, draws, work, pool, two_stage=two_stage)
        seconds.append(time.perf_counter() - started)
    return seconds[0] <= seconds[1]


def _n_workers(n_cores: int | None) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_cores is None or n_cores <= 0:
        return available
    return max(1, min(int(n_cores), available))
