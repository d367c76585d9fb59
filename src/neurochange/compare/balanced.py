"""Balanced ALE subtraction: groups of different sizes compared at one matched size.

As NiMARE 0.22.1's ``BalancedALESubtraction`` (Frahm et al.) computes it:

- **matched size** ``target_n``: by default the smaller group's size;
- **observed difference** (``stat_desc-balancedGroup1MinusGroup2``): the mean, over
  ``difference_iterations`` draws, of ALE(``target_n`` random experiments of group 1) minus
  ALE(``target_n`` random experiments of group 2), computed on the voxels of the prior
  (``mask_coverage``: ``"gm"``, grey-matter probability > 0.1, default; or ``"brain"``);
  0 outside it;
- **null extrema**, ``n_iters`` times, of the same mean difference after either
  ``"random-foci"`` (default: every experiment's foci redrawn uniformly from the prior,
  each experiment keeping its focus count and kernel) or ``"label-permutation"`` (experiments
  shuffled between the groups, group sizes kept): its minimum and maximum over the prior
  voxels (voxels nobody reaches count as 0);
- **p and z**: where the observed difference exceeds the ``1 - alpha / 2`` percentile of the
  null maxima, ``p`` = share of null maxima >= it (floored at ``1 / n_iters``),
  ``z = Phi^-1(1 - p)``; where it falls below the ``alpha / 2`` percentile of the null minima,
  the same with the minima, z negative; elsewhere ``p = 1``, ``z = 0``;
- **probability maps** (``prob_desc-group1``, ``prob_desc-group2``): the share of subsets of
  ``target_n`` experiments of each group (all subsets when there are at most ``n_subsamples``,
  else ``n_subsamples`` distinct random ones) whose ALE (approximate-null z > the
  ``cluster_forming_p`` quantile) reaches the voxel inside a cluster larger than the
  ``1 - alpha`` percentile of the largest null cluster (``n_iters`` random-foci draws of
  ``target_n`` experiments); ``stat_desc-conjunction`` = their minimum.

Differences from NiMARE, on purpose: random draws come from seeded chunks of
:mod:`neurochange.inference.executors` (stream (0,): observed subsets; (k, 0) and (k, 1): group
k's cluster-size null and subset schedule; (3,): the null iterations), so results do not depend
on cores; null MA maps use each
experiment's own kernel (NiMARE rebuilds them from sample sizes even with a fixed FWHM).
``arithmetic="nimare"`` does the subset products and the mean difference in float32, in
NiMARE's order (equal to the bit given the same subsets); the default is float64.
"""

from __future__ import annotations

import functools
import math
from itertools import combinations

import numpy as np
from numba import njit
from scipy import ndimage, special

from neurochange import space as _space
from neurochange._docs import fill_doc
from neurochange.compare.subtraction import two_group_result
from neurochange.errors import InputError
from neurochange.inference import null_masks
from neurochange.inference import stats as inference
from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.inference.executors import RANDOM_STREAMS, chunk_rng, default_executor, resolve_seed, run_chunks
from neurochange.inference.unionfind import max_clusters, neighbour_table
from neurochange.meta import kernels
from neurochange.meta.ale import ALE
from neurochange.meta.result import MetaResult

DESC = "balancedGroup1MinusGroup2"
NULL_MIN = "values_desc-balancedMinNull_corr-none"
NULL_MAX = "values_desc-balancedMaxNull_corr-none"


# ---------------------------------------------------------------------------- numeric core
@njit(cache=True, nogil=True)
def _mean_balanced_difference(indptr, cols, keep, subsets1, subsets2, one, acc, p1, p2):
    """Sum over draws ``d`` of ALE(subsets1[d]) - ALE(subsets2[d]) into ``acc`` (in place).

    CSR rows ``indptr``/``cols`` (compact voxel indices) hold ``keep`` = 1 - MA (float32 or
    float64: the arithmetic follows it); each subset's product of ``keep`` is taken in the
    order of its members, as NumPy's ``prod(axis=0)`` over the rows in that order.
    ``one`` is 1 in ``keep``'s dtype; ``p1``, ``p2`` are work arrays of ``acc``'s length.
    """
    n_vox = acc.shape[0]
    for d in range(subsets1.shape[0]):
        for v in range(n_vox):
            p1[v] = one
            p2[v] = one
        for e in subsets1[d]:
            for t in range(indptr[e], indptr[e + 1]):
                p1[cols[t]] *= keep[t]
        for e in subsets2[d]:
            for t in range(indptr[e], indptr[e + 1]):
                p2[cols[t]] *= keep[t]
        for v in range(n_vox):
            acc[v] += (one - p1[v]) - (one - p2[v])


def mean_balanced_difference(indptr, cols, keep, subsets1, subsets2, n_vox: int) -> np.ndarray:
    """Mean over draws of ALE(group-1 subset) - ALE(group-2 subset) on ``n_vox`` compact voxels.

    ``subsets1``, ``subsets2``: int64 (draws, target_n) row indices into the CSR. Returns an
    array of ``keep``'s dtype.
    """
    dtype = keep.dtype
    acc = np.zeros(n_vox, dtype=dtype)
    _mean_balanced_difference(indptr, cols, keep, np.ascontiguousarray(subsets1, dtype=np.int64),
                              np.ascontiguousarray(subsets2, dtype=np.int64), dtype.type(1), acc,
                              np.empty(n_vox, dtype=dtype), np.empty(n_vox, dtype=dtype))
    return acc / float(len(subsets1))


def mean_balanced_difference_numpy(ma_dense: np.ndarray, subsets1, subsets2) -> np.ndarray:
    """NumPy reference: ``ma_dense`` (rows, voxels) of both groups' rows; NiMARE's loop."""
    diff = np.zeros(ma_dense.shape[1], dtype=ma_dense.dtype)
    for s1, s2 in zip(subsets1, subsets2):
        diff += (1.0 - np.prod(1.0 - ma_dense[s1], axis=0)) - (1.0 - np.prod(1.0 - ma_dense[s2], axis=0))
    return diff / float(len(subsets1))


def draw_subsets(rng: np.random.Generator, n: int, target_n: int, draws: int) -> np.ndarray:
    """int64 (draws, target_n): each row ``target_n`` distinct indices of ``range(n)``, random order."""
    return rng.permuted(np.tile(np.arange(n, dtype=np.int64), (draws, 1)), axis=1)[:, :target_n]


def subset_schedule(total_n: int, target_n: int, n_samples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Subsets of ``target_n`` of ``range(total_n)`` (members sorted), for the probability maps.

    All of them when there are at most ``n_samples`` (or when ``target_n = total_n - 1``, as
    NiMARE), else ``n_samples`` distinct random ones; in lexicographic order.
    """
    n_comb = math.comb(total_n, target_n)
    if n_comb <= n_samples or target_n == total_n - 1:
        return [np.array(c, dtype=np.int64) for c in combinations(range(total_n), target_n)]
    chosen: set[tuple] = set()
    while len(chosen) < n_samples:
        chosen.add(tuple(np.sort(rng.choice(total_n, size=target_n, replace=False)).tolist()))
    return [np.array(c, dtype=np.int64) for c in sorted(chosen)]


def resolve_target_n(n1: int, n2: int, target_n: int | None) -> int:
    """The matched size: ``target_n`` or the smaller group's size (InputError if out of range)."""
    resolved = int(target_n or min(n1, n2))
    if not 0 < resolved <= min(n1, n2):
        raise InputError(f"the matched size must be between 1 and the smaller group's {min(n1, n2)} experiments "
                         f"(with foci), got {resolved}; choose another --target-n", field="target_n")
    return resolved


def approximate_z(rows: list[tuple[np.ndarray, np.ndarray]], n_mask: int) -> np.ndarray:
    """ALE z (masked float64) of the experiments whose sparse MA maps are ``rows`` (cols, values), in order.

    The approximate null of those experiments, combined in the given order (as
    :class:`neurochange.meta.ale.ALE`).
    """
    keep = np.ones(n_mask)
    for cols, vals in rows:
        keep[cols] *= 1.0 - vals
    bins = inference.histogram_bins(np.array([v.max() if len(v) else 0.0 for _, v in rows]))
    weights = inference.approximate_null([v for _, v in rows], n_mask, bins)
    return inference.p_to_z(inference.hist_to_p(1.0 - keep, weights, bins))


def cluster_sizes(z: np.ndarray, mask: np.ndarray, z_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Face-connected clusters of ``z > z_threshold``: (masked labels int, sizes with sizes[0] = 0)."""
    volume = np.zeros(mask.shape, dtype=bool)
    volume[mask] = z > z_threshold
    labels, n = ndimage.label(volume, structure=FACE_CONNECTIVITY)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels[mask], sizes


def probability_map(rows, subsets, mask: np.ndarray, z_threshold: float, cluster_threshold: float) -> np.ndarray:
    """Share of ``subsets`` (lists of row indices) whose ALE has the voxel in a cluster > ``cluster_threshold`` voxels."""
    n_mask = int(mask.sum())
    count = np.zeros(n_mask)
    for subset in subsets:
        labels, sizes = cluster_sizes(approximate_z([rows[i] for i in subset], n_mask), mask, z_threshold)
        count += (sizes > cluster_threshold)[labels]
    return count / len(subsets)


def balanced_p_z(observed: np.ndarray, min_null: np.ndarray, max_null: np.ndarray, alpha: float):
    """p and z (float64) of the observed balanced difference against the null extrema (NiMARE's rule)."""
    n = len(max_null)
    low = np.percentile(min_null, 100.0 * alpha / 2.0)
    high = np.percentile(max_null, 100.0 * (1.0 - alpha / 2.0))
    p = np.ones(observed.shape)
    z = np.zeros(observed.shape)
    pos, neg = observed > high, observed < low
    sorted_max, sorted_min = np.sort(max_null), np.sort(min_null)
    p_pos = np.maximum(1.0 / n, 1.0 - np.searchsorted(sorted_max, observed[pos], side="left") / n)
    p_neg = np.maximum(1.0 / n, np.searchsorted(sorted_min, observed[neg], side="right") / n)
    p[pos] = p_pos
    z[pos] = _one_tailed_z(p_pos)
    p[neg] = np.minimum(p[neg], p_neg)
    z[neg] = -_one_tailed_z(p_neg)
    return p, z, {"low": float(low), "high": float(high)}


def _one_tailed_z(p):
    return -special.ndtri_exp(np.log(np.asarray(p, dtype=np.float64)))


# ---------------------------------------------------------------------------- the estimator
def _seeded_chunk(chunk, fn, seed: int, stream: tuple[int, ...]):
    """``fn(chunk, rng)`` with the chunk's own stream of ``seed``."""
    return fn(chunk, chunk_rng(seed, chunk.index, stream))


@fill_doc
class BalancedSubtraction:
    """Balanced ALE subtraction of group 1 minus group 2 (NiMARE 0.22.1 ``BalancedALESubtraction``).

    Parameters
    ----------
    estimator : ALE, optional
        Its kernels (fixed FWHM or from sample size); default ``ALE()``.
    target_n : int, optional
        Matched group size (default: the smaller group's).
    n_subsamples : int
        Most subsets per group for the probability maps (NiMARE: 2,500).
    difference_iterations : int
        Subset draws averaged into each balanced difference (NiMARE: 1,000).
    n_iters : int
        Null iterations, for the extrema and for each group's cluster-size null (NiMARE: 1,000).
    cluster_forming_p : float
        Uncorrected p defining clusters in the probability maps (NiMARE's ``voxel_thresh``).
    null_method : {"random-foci", "label-permutation"}
    mask_coverage : {"gm", "brain"}
        The prior: where differences are computed and null foci fall.
    alpha : float
        FWE rate of the extrema percentiles and the cluster-size threshold.
    %(seed)s
    %(n_cores)s
    arithmetic : {"float64", "nimare"}
        ``"nimare"``: float32 subset products and means, as NiMARE (see the module docstring).
    """

    def __init__(self, estimator=None, target_n: int | None = None, n_subsamples: int = 2500,
                 difference_iterations: int = 1000, n_iters: int = 1000, cluster_forming_p: float = 0.001,
                 null_method: str = "random-foci", mask_coverage: str = "gm", alpha: float = 0.05,
                 seed: int | None = None, n_cores: int | None = None, arithmetic: str = "float64"):
        if null_method not in ("random-foci", "label-permutation"):
            raise ValueError(f"null_method must be 'random-foci' or 'label-permutation', got {null_method!r}")
        if mask_coverage not in ("gm", "brain"):
            raise ValueError(f"mask_coverage must be 'gm' or 'brain', got {mask_coverage!r}")
        if arithmetic not in ("float64", "nimare"):
            raise ValueError(f"arithmetic must be 'float64' or 'nimare', got {arithmetic!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
        self.estimator = estimator if estimator is not None else ALE()
        self.target_n = target_n
        self.n_subsamples = int(n_subsamples)
        self.difference_iterations = int(difference_iterations)
        self.n_iters = int(n_iters)
        self.cluster_forming_p = float(cluster_forming_p)
        self.null_method = null_method
        self.mask_coverage = mask_coverage
        self.alpha = float(alpha)
        self.seed = seed
        self.n_cores = n_cores
        self.arithmetic = arithmetic

    def get_params(self) -> dict:
        return {"estimator": self.estimator, "target_n": self.target_n, "n_subsamples": self.n_subsamples,
                "difference_iterations": self.difference_iterations, "n_iters": self.n_iters,
                "cluster_forming_p": self.cluster_forming_p, "null_method": self.null_method,
                "mask_coverage": self.mask_coverage, "alpha": self.alpha, "seed": self.seed, "n_cores": self.n_cores,
                "arithmetic": self.arithmetic}

    # ------------------------------------------------------------------ helpers
    def _keep(self, vals: np.ndarray) -> np.ndarray:
        if self.arithmetic == "nimare":
            return np.float32(1.0) - vals.astype(np.float32)
        return 1.0 - vals

    def _csr(self, rows, prior_masked: np.ndarray):
        """CSR (indptr, compact cols, keep) over prior voxels, and the support (masked indices)."""
        inside = [prior_masked[c] for c, _ in rows]
        all_cols = np.concatenate([c[k] for (c, _), k in zip(rows, inside)] or [np.zeros(0, dtype=np.int64)])
        present = np.zeros(len(prior_masked), dtype=bool)
        present[all_cols] = True
        support = np.flatnonzero(present)
        compact = np.cumsum(present) - 1  # mask index -> position in support
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([int(k.sum()) for k in inside])
        keep = self._keep(np.concatenate([v[k] for (_, v), k in zip(rows, inside)] or [np.zeros(0)]))
        return indptr, compact[all_cols].astype(np.int64), keep, support

    def _extrema(self, indptr, cols, keep, support, n_prior, n1, n2, target_n, rng, perm=None):
        """(min, max) over the prior of one mean balanced difference with fresh subset draws."""
        s1 = draw_subsets(rng, n1, target_n, self.difference_iterations)
        s2 = draw_subsets(rng, n2, target_n, self.difference_iterations) + n1
        if perm is not None:
            s1, s2 = perm[s1], perm[s2]
        diff = mean_balanced_difference(indptr, cols, keep, s1, s2, len(support))
        lo, hi = (float(diff.min()), float(diff.max())) if len(diff) else (0.0, 0.0)
        if len(support) < n_prior:  # prior voxels no experiment reaches: difference 0
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, hi

    def _random_rows(self, result: MetaResult, members, sample_space, rng, calc):
        """Sparse MA maps of ``members`` of ``result`` with their foci redrawn from ``sample_space`` (ijk)."""
        rows = []
        counts = np.bincount(result.focus_experiment, minlength=result.n_experiments)
        experiment_kernels = result.estimator.experiment_kernels(result.inputs)
        for i in members:
            ijk = sample_space[rng.integers(0, len(sample_space), size=counts[i])]
            rows.append(calc(experiment_kernels[i], ijk))
        return rows

    def _run_chunks(self, fn, n_items: int, seed: int, stream: tuple[int, ...], progress=None) -> list:
        """``fn(chunk, rng)`` over the seeded chunks of ``n_items`` iterations (stream ``stream``), in chunk order."""
        with default_executor(self.n_cores) as executor:
            return run_chunks(functools.partial(_seeded_chunk, seed=seed, stream=stream), n_items, executor,
                              progress=progress, shared=(fn,)).results

    def _cluster_threshold(self, result, target_n, sample_space, z_threshold, seed: int,
                           stream: tuple[int, ...]) -> tuple[float, np.ndarray]:
        """The ``1 - alpha`` percentile of the largest null cluster (random foci, ``target_n`` experiments)."""
        mask = result.grid.mask
        n_mask = result.grid.n_voxels
        neighbours = neighbour_table(np.arange(n_mask), mask)

        def fn(chunk, rng):
            calc = kernels.MACalculator(mask)
            work = (np.empty(n_mask, dtype=np.int64), np.empty(n_mask, dtype=np.int64), np.empty(n_mask))
            largest = np.zeros(chunk.count)
            for i in range(chunk.count):
                members = (rng.permutation(result.n_experiments)[:target_n] if target_n < result.n_experiments
                           else np.arange(result.n_experiments))
                rows = self._random_rows(result, members, sample_space, rng, calc)
                # z >= 0, so union-find's |z| > threshold clusters are scipy's z > threshold ones
                largest[i], _ = max_clusters(approximate_z(rows, n_mask), z_threshold, neighbours, *work)
            return largest

        largest = np.concatenate(self._run_chunks(fn, self.n_iters, seed, stream))
        return float(np.percentile(largest, 100.0 * (1.0 - self.alpha))), largest

    # ------------------------------------------------------------------ fit
    def fit(self, studyset1, studyset2, grid: _space.Grid | None = None, progress=None) -> MetaResult:
        """Maps ``{stat,p,z,logp}_desc-balancedGroup1MinusGroup2``, ``prob_desc-group{1,2}``, ``stat_desc-conjunction``.

        ``progress(done, total)`` is called after each chunk of null iterations.
        """
        grid = grid or _space.mni_2mm()
        res1 = self.estimator.fit(studyset1, grid)
        res2 = self.estimator.fit(studyset2, grid)
        if res1.params["estimator"]["name"] != "ALE":
            raise NotImplementedError("balanced subtraction is defined for ALE only")
        n1, n2 = res1.n_experiments, res2.n_experiments
        target_n = resolve_target_n(n1, n2, self.target_n)
        prior = null_masks.null_mask(grid, self.mask_coverage)
        prior_masked = prior[grid.mask]
        sample_space = np.argwhere(prior)
        n_prior = int(prior_masked.sum())
        seed = resolve_seed(self.seed)

        rows = [(c, v) for res in (res1, res2) for _, c, v in res.ma_maps()]
        indptr, cols, keep, support = self._csr(rows, prior_masked)

        # observed mean balanced difference
        rng = chunk_rng(seed, 0, (0,))
        s1 = draw_subsets(rng, n1, target_n, self.difference_iterations)
        s2 = draw_subsets(rng, n2, target_n, self.difference_iterations) + n1
        observed = np.zeros(grid.n_voxels)
        observed[support] = mean_balanced_difference(indptr, cols, keep, s1, s2, len(support))

        # null extrema
        def fn(chunk, rng):
            calc = kernels.MACalculator(grid.mask)
            extrema = np.zeros((2, chunk.count))
            for i in range(chunk.count):
                if self.null_method == "label-permutation":
                    perm = rng.permutation(n1 + n2).astype(np.int64)
                    extrema[:, i] = self._extrema(indptr, cols, keep, support, n_prior, n1, n2, target_n, rng, perm)
                else:
                    null_rows = (self._random_rows(res1, range(n1), sample_space, rng, calc)
                                 + self._random_rows(res2, range(n2), sample_space, rng, calc))
                    csr = self._csr(null_rows, prior_masked)
                    extrema[:, i] = self._extrema(*csr, n_prior, n1, n2, target_n, rng)
            return extrema

        min_null, max_null = np.concatenate(self._run_chunks(fn, self.n_iters, seed, (3,), progress), axis=1)
        p, z, thresholds = balanced_p_z(observed, min_null, max_null, self.alpha)

        # probability maps
        z_threshold = float(-special.ndtri(self.cluster_forming_p))
        probs, cluster_thresholds = {}, {}
        for k, res in enumerate((res1, res2), start=1):
            cluster_thresholds[k], _ = self._cluster_threshold(res, target_n, sample_space, z_threshold, seed, (k, 0))
            group_rows = [(c, v) for _, c, v in res.ma_maps()]
            subsets = subset_schedule(res.n_experiments, target_n, self.n_subsamples, chunk_rng(seed, 0, (k, 1)))
            probs[k] = probability_map(group_rows, subsets, grid.mask, z_threshold, cluster_thresholds[k])

        maps = {
            f"stat_desc-{DESC}": observed,
            f"p_desc-{DESC}": p,
            f"z_desc-{DESC}": z,
            f"logp_desc-{DESC}": inference.p_to_logp(p),
            "stat_desc-conjunction": np.minimum(probs[1], probs[2]),
            "prob_desc-group1": probs[1],
            "prob_desc-group2": probs[2],
        }
        params = {
            "estimator": res1.params["estimator"],
            "subtraction": {
                "method": "balanced ALE subtraction (NiMARE 0.22.1 BalancedALESubtraction; Frahm et al.)",
                "target_n": target_n,
                "n_subsamples": self.n_subsamples,
                "difference_iterations": self.difference_iterations,
                "n_iters": self.n_iters,
                "cluster_forming_p": self.cluster_forming_p,
                "null_method": self.null_method,
                "mask_coverage": self.mask_coverage,
                "prior_voxels": n_prior,
                "alpha": self.alpha,
                "seed": seed,
                "random_streams": RANDOM_STREAMS,
                "arithmetic": self.arithmetic,
                "extrema_thresholds": thresholds,
                "cluster_size_thresholds_voxels": {f"group{k}": v for k, v in cluster_thresholds.items()},
            },
            "counts": {"group1": res1.params["counts"], "group2": res2.params["counts"]},
        }
        return two_group_result(grid, maps, {NULL_MIN: min_null, NULL_MAX: max_null}, params, res1, res2)
