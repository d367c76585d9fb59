"""The one Monte Carlo FWE corrector: voxel, cluster-size and cluster-mass family-wise error.

For every estimator (ALE, MKDA density, KDA). Each iteration keeps the experiments (their
number of foci and kernels) and redraws every focus uniformly, with replacement, from the
null-mask voxels (NiMARE 0.22.1's procedure). It records the largest statistic in the
mask, and after the cluster-forming threshold (the statistic at uncorrected p <
``cluster_forming_p`` under the approximate null, as NiMARE) the largest face-connected
(6-neighbour) cluster's size (voxels) and mass (sum over its voxels of the statistic minus
the threshold). Corrected p of an observed value: the share of null maxima >= it, clipped
to ``[1 / n, 1 - 1 / n]`` (NiMARE's ``null_to_p``); every voxel of a cluster gets its
cluster's p; voxels outside clusters get ``1 - 1 / n``.

The iterations are the estimator's null engine (``estimator.null_engine``: numba, sparse,
memory flat in the number of iterations), run chunk by chunk through an executor
(:mod:`neurochange.inference.executors`): chunk ``c`` draws its foci from
``SeedSequence(seed, spawn_key=(c,))`` as a (iterations, foci) int32 array of null-voxel
indices (:func:`chunk_draws`), so nothing depends on the number of cores, and the first
``k`` iterations of a longer run are those of a run of ``k``.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
from scipy import ndimage

from neurochange._docs import fill_doc
from neurochange.errors import InputError
from neurochange.inference import null_masks, stopping
from neurochange.inference import stats as inference
from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.inference.engines.array_ale import DEVICES, resolve_device
from neurochange.inference.executors import (
    CHUNK_SIZE,
    RANDOM_STREAMS,
    StopRule,
    ThreadExecutor,
    chunk_rng,
    default_executor,
    resolve_seed,
    run_chunks,
)
from neurochange.meta.result import (
    FWE_SUFFIX,
    NULL_MASS,
    NULL_SIZE,
    NULL_TFCE,
    NULL_VOXEL,
    MetaResult,
)


# ---------------------------------------------------------------------------- draws
def chunk_draws(seed: int, chunk: int, n_iters: int, n_foci: int, n_null: int, stream: tuple[int, ...] = ()) -> np.ndarray:
    """Null-voxel indices (n_iters, n_foci) int32 of chunk ``chunk`` (its first n_iters rows)."""
    return chunk_rng(seed, chunk, stream).integers(0, n_null, size=(n_iters, n_foci), dtype=np.int32)


# ---------------------------------------------------------------------------- observed clusters
def observed_cluster_p(stat_volume: np.ndarray, mask: np.ndarray, threshold: float, null_size, null_mass):
    """Cluster-size and cluster-mass FWE p (masked 1-D float64 each) of an observed statistic volume."""
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
def _null_chunk(chunk, engine, seed: int):
    """The null maxima of one chunk: its foci drawn from its own stream, run through ``engine``."""
    return engine.run(chunk_draws(seed, chunk.index, chunk.count, engine.n_foci, engine.n_null))


@fill_doc
class MonteCarloFWE:
    """Monte Carlo family-wise error correction of a result (voxel, cluster size, cluster mass).

    Parameters
    ----------
    %(n_iters)s
    %(cluster_forming_p)s
    %(null_mask)s
    %(early_stop)s
    confidence : float
        Confidence of each quantile interval at each early-stopping check (default 0.999;
        with three nulls and repeated checks, the tests find >= 95 %% of early-stopped runs
        within the precision of a 100,000-iteration run).
    check_every : int
        Iterations between early-stopping checks (a multiple of the chunk size, 100).
    %(seed)s
    %(n_cores)s
    %(vfwe_only)s
    """

    def __init__(self, n_iters: int = 10000, cluster_forming_p: float = 0.001, null_mask="brain",
                 early_stop: float | None = None, confidence: float = 0.999, check_every: int = 1000,
                 seed: int | None = None, n_cores: int | None = None, vfwe_only: bool = False, device: str = "cpu"):
        if int(n_iters) < 1:
            raise ValueError(f"n_iters must be positive, got {n_iters}")
        if not 0 < cluster_forming_p < 1:
            raise ValueError(f"cluster_forming_p must be in (0, 1), got {cluster_forming_p}")
        self.n_iters = int(n_iters)
        self.cluster_forming_p = float(cluster_forming_p)
        self.null_mask = null_mask
        self.early_stop = early_stop
        self.confidence = float(confidence)
        self.check_every = int(check_every)
        self._stop = None if early_stop is None else StopRule(float(early_stop), self.confidence, self.check_every)
        self.seed = seed
        self.n_cores = n_cores
        self.vfwe_only = bool(vfwe_only)
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        self.device = device

    def __repr__(self) -> str:
        return (f"MonteCarloFWE(n_iters={self.n_iters}, cluster_forming_p={self.cluster_forming_p}, "
                f"null_mask={self.null_mask if isinstance(self.null_mask, str) else 'custom'!r}, "
                f"early_stop={self.early_stop}, seed={self.seed}, n_cores={self.n_cores})")

    def get_params(self) -> dict:
        return {"n_iters": self.n_iters, "cluster_forming_p": self.cluster_forming_p, "null_mask": self.null_mask,
                "early_stop": self.early_stop, "confidence": self.confidence, "check_every": self.check_every,
                "seed": self.seed, "n_cores": self.n_cores, "vfwe_only": self.vfwe_only, "device": self.device}

    def replace(self, **changes) -> "MonteCarloFWE":
        """A corrector with the same settings but ``changes`` (e.g. ``n_iters``, ``seed``)."""
        return MonteCarloFWE(**{**self.get_params(), **changes})

    # ------------------------------------------------------------------ run
    def null_distributions(self, result: MetaResult, progress=None, executor=None) -> tuple[dict, dict]:
        """Run the iterations: (nulls by NiMARE key, run settings for ``params``).

        ``executor``: where chunks run (default: :class:`ThreadExecutor` with ``n_cores`` threads).
        """
        seed = resolve_seed(self.seed)
        cluster_map, threshold = result.estimator.cluster_forming(result, self.cluster_forming_p)
        null_voxels = null_masks.null_mask(result.grid, self.null_mask)
        if not null_voxels.any():
            raise InputError("the null mask has no voxels inside the analysis mask", field="null_mask")
        device = resolve_device(self.device, result.estimator, result.n_experiments)
        with contextlib.ExitStack() as stack:
            if executor is None:  # the GPU engine runs one chunk at a time, in this process
                executor = stack.enter_context(ThreadExecutor(1) if device == "gpu" else default_executor(self.n_cores))
            engine = result.estimator.null_engine(result, null_voxels, threshold, executor.local_workers, device)
            first = chunk_draws(seed, 0, min(CHUNK_SIZE, self.n_iters), engine.n_foci, engine.n_null)
            engine.warm_up(first[: 8 * executor.local_workers])

            def watch(parts):
                nulls = {NULL_VOXEL: np.concatenate([p[0] for p in parts])}
                if not self.vfwe_only:
                    nulls.update({NULL_SIZE: np.concatenate([p[1] for p in parts]),
                                  NULL_MASS: np.concatenate([p[2] for p in parts])})
                if len(parts[0]) > 3:  # the engine also gives the largest TFCE
                    nulls[NULL_TFCE] = np.concatenate([p[3] for p in parts])
                return nulls

            run = run_chunks(functools.partial(_null_chunk, seed=seed), self.n_iters, executor, watch=watch,
                             stop=self._stop, progress=progress, shared=(engine,))
        nulls = watch(run.results)
        if not self.vfwe_only:
            nulls[NULL_SIZE] = nulls[NULL_SIZE].astype(np.float64)
        record = {
            "method": "montecarlo",
            "n_iters_requested": self.n_iters,
            "n_iters": int(run.n_done),
            "seed": seed,
            "chunk_size": CHUNK_SIZE,
            "random_streams": RANDOM_STREAMS,
            "cluster_forming_p": self.cluster_forming_p,
            "cluster_forming_stat": threshold,
            "cluster_forming_map": cluster_map,
            "cutoff_rule": result.estimator.cutoff_rule,
            "connectivity": "face (6 neighbours)",
            "null_mask": self.null_mask if isinstance(self.null_mask, str) else "custom",
            "null_mask_voxels": int(engine.n_null),
            "n_cores": executor.n_workers,
            "vfwe_only": self.vfwe_only,
            **({"device": "gpu (CuPy)"} if device == "gpu" else {}),
            "early_stop": None if self._stop is None else {
                "precision": self.early_stop,
                "confidence": self.confidence,
                "check_every": self.check_every,
                "stopped_early": run.stopped,
                "quantile": stopping.FWE_QUANTILE,
                "intervals": run.intervals,
            },
        }
        # JALE's and GingerALE's cut-offs: the 95th percentile of each null (linear interpolation)
        record["cutoffs_95"] = {key: float(np.percentile(values, 95)) for key, values in nulls.items()}
        return nulls, record

    @fill_doc
    def correct(self, result: MetaResult, progress=None, executor=None) -> MetaResult:
        """A new result with the FWE maps, the null distributions and ``params['montecarlo']``.

        Maps (NiMARE names): ``{logp,z}_level-voxel``, ``{logp,z}_desc-size_level-cluster``
        and ``{logp,z}_desc-mass_level-cluster``, each ``_corr-FWE_method-montecarlo``
        (voxel level only with ``vfwe_only``).

        Parameters
        ----------
        result : MetaResult
            A fitted result (its estimator provides the null engine).
        %(progress)s
        """
        nulls, run = self.null_distributions(result, progress, executor)
        threshold = run["cluster_forming_stat"]
        levels = [("level-voxel", inference.null_to_p(result.maps["stat"], nulls[NULL_VOXEL]))]
        if not self.vfwe_only:
            p_size, p_mass = observed_cluster_p(
                result.get_volume(run["cluster_forming_map"]), result.grid.mask, threshold, nulls[NULL_SIZE],
                nulls[NULL_MASS]
            )
            levels += [("desc-size_level-cluster", p_size), ("desc-mass_level-cluster", p_mass)]
        if NULL_TFCE in nulls and "tfce" in result.maps:
            levels.append(("desc-tfce_level-voxel", inference.null_to_p(result.maps["tfce"], nulls[NULL_TFCE])))
        maps = {}
        for level, p in levels:
            maps[f"logp_{level}{FWE_SUFFIX}"] = inference.p_to_logp(p)
            maps[f"z_{level}{FWE_SUFFIX}"] = inference.p_to_z(p)
        return result.with_maps(maps=maps, nulls=nulls, params={"montecarlo": run})
