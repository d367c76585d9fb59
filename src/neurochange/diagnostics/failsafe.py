"""Fail-safe N of clusters (Acar et al. 2018, doi:10.1371/journal.pone.0208177), for any estimator.

How many null experiments must join the meta-analysis before a cluster is no longer
significant? A null ("noise") experiment reports foci drawn as the Monte Carlo null draws
them (uniformly from the null-mask voxels, at voxel centres), with a sample size and a
number of foci each drawn, with replacement, from the included experiments.

What "significant" means with ``m`` null experiments added: the same correction as the main
analysis (cluster-forming p and cluster-size FWE at ``cluster_p``; voxel-level FWE when the
main analysis had only that), with the threshold and null of K + m experiments. Both depend
only on the experiments' kernels and foci counts, not on where the foci lie, so they are
computed once per ``m`` on a grid (``null_curve``: 0, K/2, K, 2K, 4K, 7K, 10K added, each a
fresh fit for the cluster-forming threshold and ``n_iters`` Monte Carlo iterations for
the critical cluster size or statistic value; m = 0 reuses the main analysis's own nulls) and
interpolated linearly in between. The grid's null experiments are drawn like those of the
repetitions but from their own stream: this is the one approximation against re-running
Monte Carlo for every repetition and every ``m`` (about a hundred times the cost).

One repetition draws ``max_added`` null experiments and adds the first ``m``. The
cluster survives ``m`` if a cluster of the enlarged statistic map (above the cluster-forming
threshold at ``m``, face-connected) larger than the critical size at ``m`` shares a voxel with
it (voxel level: one of its voxels exceeds the critical value at ``m``). The search, shared by
all clusters, doubles ``m`` from K until the cluster is lost (or ``max_added`` is reached),
then bisects to one experiment. The fail-safe N of a cluster in one repetition is the
smallest ``m`` at which it was lost; one that survives ``max_added`` (default 10 K) is
censored and reported as ``max_added``. Over repetitions: the median and the 2.5 and 97.5
percentiles (linear interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from neurochange.diagnostics.jackknife import child_seed, refit
from neurochange.inference import null_masks
from neurochange.inference import stats as inference
from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.inputs import analysis_inputs
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, NULL_SIZE, NULL_VOXEL, MetaResult
from neurochange.studyset import StudySet

#: Multiples of K at which the null is computed (then interpolated).
GRID_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0, 7.0, 10.0)


# ---------------------------------------------------------------------------- null experiments
def noise_experiments(result: MetaResult, count: int, rng: np.random.Generator, null_voxels: np.ndarray,
                      prefix: str = "null") -> StudySet:
    """``count`` null experiments ``<prefix>NNNNN-1``: sample sizes and foci counts resampled from
    ``result``'s experiments, foci uniform over ``null_voxels`` (3-D bool) in MNI mm."""
    null_ijk = np.argwhere(null_voxels)
    n_foci = np.bincount(result.focus_experiment, minlength=result.n_experiments)
    sizes = result.sample_sizes[rng.integers(0, result.n_experiments, size=count)]
    per = n_foci[rng.integers(0, result.n_experiments, size=count)]
    ids = [f"{prefix}{k:05d}-1" for k in range(count)]
    xyz = result.grid.vox_to_mm(null_ijk[rng.integers(0, len(null_ijk), size=int(per.sum()))])
    studies = pd.DataFrame({"study_id": [i[:-2] for i in ids]})
    experiments = pd.DataFrame({
        "experiment_id": ids, "study_id": studies["study_id"], "contrast_id": "1",
        "n": pd.array([None if np.isnan(s) else int(round(s)) for s in sizes], dtype="Int64"),
    })
    foci = pd.DataFrame({"experiment_id": np.repeat(ids, per), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                         "space": "MNI"})
    return StudySet(studies, experiments, foci)


def _first(noise: StudySet, m: int) -> StudySet:
    return noise.filter_experiments(noise.experiments["experiment_id"].iloc[:m].tolist())


# ---------------------------------------------------------------------------- the null at m added
def critical_value(null: np.ndarray, cluster_p: float) -> float:
    """The value an observed statistic must exceed for FWE p < ``cluster_p`` against null maxima
    (p = share of null values >= observed, clipped below at 1/n as ``inference.null_to_p``)."""
    null = np.sort(np.asarray(null, dtype=float))[::-1]
    allowed = int(np.ceil(cluster_p * len(null))) - 1  # null values >= observed that still give p < cluster_p
    if allowed < 0 or 1.0 / len(null) >= cluster_p:
        return np.inf
    return float(null[allowed])


@dataclass
class NullCurve:
    """Cluster-forming ALE threshold and critical value (cluster size in voxels, or ALE at voxel
    level) at ``added`` null experiments; interpolated linearly in between."""

    added: np.ndarray
    threshold: np.ndarray
    critical: np.ndarray
    level: str  # "cluster" (size) or "voxel"

    def at(self, m: int) -> tuple[float, float]:
        return float(np.interp(m, self.added, self.threshold)), float(np.interp(m, self.added, self.critical))


def null_curve(result: MetaResult, corrector: MonteCarloFWE, cluster_p: float, max_added: int, *, n_iters: int,
               seed: int, n_cores=None, null_voxels=None, progress=None) -> NullCurve:
    """Threshold and critical value at ``GRID_FACTORS`` x K added null experiments (capped at ``max_added``).

    At m = 0 the main analysis's own nulls (in ``result.nulls``) are used when present.
    """
    k = result.n_experiments
    level = "voxel" if corrector.vfwe_only else "cluster"
    grid = sorted({min(max_added, int(round(f * k))) for f in GRID_FACTORS} | {max_added})
    rng = np.random.default_rng(child_seed(seed, 4))
    noise = noise_experiments(result, max_added, rng, null_voxels, prefix="calib")
    thresholds, critical = [], []
    for g, m in enumerate(grid):
        if m == 0 and NULL_VOXEL in result.nulls:  # the main analysis's own threshold and null
            nulls = result.nulls
            u = inference.hist_threshold(nulls[NULL_APPROXIMATE], nulls[NULL_BINS], corrector.cluster_forming_p)
        else:
            fit = refit(result, extra=_first(noise, m) if m else None)
            nulls, run = corrector.replace(n_iters=n_iters, seed=child_seed(seed, 5, m), n_cores=n_cores,
                                           early_stop=None).null_distributions(fit)
            u = run["cluster_forming_stat"]
        thresholds.append(u)
        critical.append(critical_value(nulls[NULL_VOXEL if level == "voxel" else NULL_SIZE], cluster_p))
        if progress is not None:
            progress(g + 1, len(grid))
    return NullCurve(np.asarray(grid, dtype=float), np.asarray(thresholds), np.asarray(critical), level)


# ---------------------------------------------------------------------------- one evaluation
class AddedNull:
    """The statistic map of ``result`` with the first ``m`` of ``noise``'s experiments added
    (their MA maps from the result's estimator, computed once)."""

    def __init__(self, result: MetaResult, noise: StudySet):
        self.result = result
        self._source = result.estimator.ma_maps(analysis_inputs(noise, result.grid))
        self._ma: list = []

    def stat(self, m: int) -> np.ndarray:
        """Masked statistic (float64) with ``m`` null experiments added."""
        while len(self._ma) < m:
            _, cols, vals = next(self._source)
            self._ma.append((cols, vals))
        if self.result.estimator.summary_statistic == "sum":
            stat = self.result.maps["stat"].copy()
            for cols, vals in self._ma[:m]:
                stat[cols] += vals
            return stat
        keep = 1.0 - self.result.maps["stat"]
        for cols, vals in self._ma[:m]:
            keep[cols] *= 1.0 - vals
        return 1.0 - keep


def survives(stat: np.ndarray, grid, labels: np.ndarray, threshold: float, critical: float, level: str) -> np.ndarray:
    """Which clusters of ``labels`` (3-D, 1..C) survive on masked ALE ``stat``, (C,) bool."""
    n_clusters = int(labels.max()) if labels.size else 0
    volume = np.zeros(grid.shape)
    volume[grid.mask] = stat
    if level == "voxel":
        hit = labels[(volume > critical) & (labels > 0)]
    else:
        new, n = ndimage.label((volume > threshold) & grid.mask, structure=FACE_CONNECTIVITY)
        sizes = np.bincount(new.ravel(), minlength=n + 1)
        big = sizes > critical
        big[0] = False
        hit = labels[big[new] & (labels > 0)]
    out = np.zeros(n_clusters + 1, dtype=bool)
    out[hit] = True
    return out[1:]


# ---------------------------------------------------------------------------- search
def search(survive, n_clusters: int, start: int, max_added: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Smallest number of added experiments at which each cluster is lost, one search for all.

    ``survive(m)`` -> bool (n_clusters,) (called at most once per ``m``). Returns (fail-safe N
    per cluster, censored per cluster: survived ``max_added``, reported as ``max_added``; the
    number of ``m`` evaluated).
    """
    lo = np.zeros(n_clusters, dtype=np.int64)  # largest m known to keep it
    hi = np.full(n_clusters, -1, dtype=np.int64)  # smallest m known to lose it (-1: none yet)
    censored = np.zeros(n_clusters, dtype=bool)
    seen: dict[int, np.ndarray] = {}
    while True:
        open_ = [c for c in range(n_clusters) if not censored[c] and (hi[c] < 0 or hi[c] - lo[c] > 1)]
        if not open_:
            break
        unbounded = [c for c in open_ if hi[c] < 0]
        if unbounded:
            c = min(unbounded, key=lambda c: lo[c])
            m = min(max(2 * int(lo[c]), start, 1), max_added)
        else:
            c = max(open_, key=lambda c: hi[c] - lo[c])
            m = int(lo[c] + hi[c]) // 2
        if m not in seen:
            seen[m] = np.asarray(survive(m), dtype=bool)
        alive = seen[m]
        for k in range(n_clusters):
            if m > lo[k] and (hi[k] < 0 or m < hi[k]):
                if alive[k]:
                    lo[k] = m
                else:
                    hi[k] = m
            if hi[k] < 0 and lo[k] >= max_added:
                censored[k] = True
    return np.where(censored, max_added, hi), censored, len(seen)


def fail_safe_n(result: MetaResult, labels: np.ndarray, corrector: MonteCarloFWE, cluster_p: float = 0.05, *,
                n_repetitions: int = 10, n_iters: int = 2000, max_added: int | None = None, seed: int = 0,
                n_cores=None, progress=None) -> dict:
    """Fail-safe N of every cluster of ``labels`` (3-D, 1..C) over ``n_repetitions`` repetitions.

    ``corrector``: the main analysis's (cluster-forming p, null mask, correction level);
    ``result.nulls`` its Monte Carlo nulls (used at m = 0 when present). Streams: the null
    grid's experiments ``child_seed(seed, 4)``, its Monte Carlo at m ``child_seed(seed, 5, m)``,
    repetition r's null experiments ``child_seed(seed, 2, r)``. ``progress(done, total)`` counts
    grid points, then repetitions.

    Returns ``values`` and ``censored`` (n_repetitions, C), ``median``, ``ci_low``, ``ci_high``
    (C,), ``curve`` (the NullCurve), ``evaluations`` per repetition, and the settings used.
    """
    n_clusters = int(labels.max()) if labels.size else 0
    k = result.n_experiments
    max_added = int(max_added) if max_added is not None else 10 * k
    null_voxels = null_masks.null_mask(result.grid, corrector.null_mask)
    values = np.zeros((n_repetitions, n_clusters), dtype=np.int64)
    censored = np.zeros((n_repetitions, n_clusters), dtype=bool)
    evaluations: list[int] = []
    curve = None
    if n_clusters and n_repetitions:
        n_grid = len({min(max_added, int(round(f * k))) for f in GRID_FACTORS} | {max_added})
        total = n_grid + n_repetitions

        def grid_progress(done, _total):
            if progress is not None:
                progress(done, total)

        curve = null_curve(result, corrector, cluster_p, max_added, n_iters=n_iters, seed=seed, n_cores=n_cores,
                           null_voxels=null_voxels, progress=grid_progress)
        for r in range(n_repetitions):
            noise = noise_experiments(result, max_added, np.random.default_rng(child_seed(seed, 2, r)), null_voxels)
            added = AddedNull(result, noise)

            def survive(m, added=added):
                if m == 0:
                    return np.ones(n_clusters, dtype=bool)
                threshold, critical = curve.at(m)
                return survives(added.stat(m), result.grid, labels, threshold, critical, curve.level)

            values[r], censored[r], n_eval = search(survive, n_clusters, start=k, max_added=max_added)
            evaluations.append(n_eval)
            if progress is not None:
                progress(n_grid + r + 1, total)
        median = np.median(values, axis=0)
        low, high = np.percentile(values, [2.5, 97.5], axis=0)
    else:
        median = low = high = np.full(n_clusters, np.nan)
    return {
        "values": values,
        "censored": censored,
        "median": median,
        "ci_low": low,
        "ci_high": high,
        "curve": curve,
        "evaluations": evaluations,
        "settings": {"n_repetitions": n_repetitions, "n_iters": n_iters, "max_added": max_added, "seed": seed,
                     "start": k, "grid_factors": list(GRID_FACTORS),
                     "reference": "Acar et al. 2018, doi:10.1371/journal.pone.0208177"},
    }
