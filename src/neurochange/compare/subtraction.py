"""Comparisons between two groups of experiments: subtraction (contrast), conjunction, overlap.

**Subtraction** by label permutation, as NiMARE 0.22.1's ``ALESubtraction`` does it
(Laird et al. 2005; Eickhoff et al. 2012): the statistic of group 1 minus that of group 2
at every mask voxel; a null made by shuffling experiments between the groups (group sizes
kept) and recomputing the difference; per voxel, the share of permutations whose difference
is >= (upper) and <= (lower) the observed one; two-sided ``p = 2 min(upper, lower) / n``
clipped to ``[1/n, 1 - 1/n]``; ``z = Phi^-1(1 - p / 2)`` signed by ``lower - upper``
(positive where group 1 > group 2). Voxels no experiment reaches have difference 0 in every
permutation: p = 1 - 1/n, z = 0.

FWE. The maximum ``|difference|`` of each permutation is the voxel-level null (NiMARE's key);
``{p,z,logp}_desc-group1MinusGroup2_level-voxel_corr-FWE_method-montecarlo`` give each voxel the
share of those maxima >= its ``|difference|``, z signed as the uncorrected z (NiMARE's
``correct_fwe_montecarlo``). With ``vfwe_only=False`` also cluster-level FWE, size and mass, as
NiMARE (:mod:`neurochange.inference.unionfind`):
``{p,z,logp}_desc-group1MinusGroup2{Size,Mass}_level-cluster_corr-FWE_method-montecarlo``.

Ties. Wherever a permutation puts the same experiments (of those reaching a voxel) in group 1
as the observed split, its difference equals the observed one exactly; with few experiments per
voxel this happens in a large share of permutations. neurochange counts such ties in both tails
(``ties="exact"``, the usual permutation p). NiMARE 0.22.1 compares permutation differences
built from float32 ``log(1 - MA)`` against a float32-rounded observed difference, so each tie
falls into one tail or the other by rounding (a voxel reached by one experiment can get
p = 1/n). ``ties="nimare"`` reproduces that arithmetic, for equivalence checks only.

The estimator is pluggable: anything with ``fit(studyset, grid) -> MetaResult`` whose result
yields sparse per-experiment maps (``ma_maps()``) and whose ``params["estimator"]["name"]``
is a key of ``SUMMARY_STATISTICS`` (how per-experiment maps combine; ALE: ``1 - prod(1 - MA)``).

Permutations run in chunks of ``CHUNK`` iterations; chunk ``c`` draws from the ``c``-th child of
one ``numpy.random.SeedSequence(seed)``, so the result does not depend on the core count.

**Conjunction** (Nichols et al. 2005, minimum statistic): where both maps are positive, the
smaller value; where both are negative, the one nearer zero; elsewhere 0. On thresholded
(non-negative) maps this is NiMARE's ``conjunction_analysis``. **Overlap** indices count the
voxels > 0 in each map.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit
from scipy import special

from neurochange import space as _space
from neurochange.inference import stats as inference
from neurochange.inference.unionfind import max_clusters, neighbour_table, observed_cluster_p, top_quantile
from neurochange.meta.ale import ALE
from neurochange.meta.result import FWE_SUFFIX, NULL_MASS, NULL_SIZE, NULL_VOXEL, MetaResult

#: Permutations per seeded chunk (fixed, so results do not depend on cores).
CHUNK = 64
#: How an estimator's per-experiment maps combine into its statistic (numba kernels below).
SUMMARY_STATISTICS = {"ALE": "ale"}
DIFF = "group1MinusGroup2"


# ---------------------------------------------------------------------------- numeric core
@njit(cache=True, nogil=True)
def _group_values(indptr, cols, values, members, log_space, out):
    """Per voxel, combine the sparse rows of ``members`` (sorted first, so equal sets give equal bits).

    ``log_space=False``: ``out[v] = prod (1 - MA)`` (``values`` = 1 - MA); ``True``: ``out[v] = sum
    log(1 - MA)`` (``values`` = log(1 - MA)).
    """
    out[:] = 0.0 if log_space else 1.0
    for e in np.sort(members):
        for t in range(indptr[e], indptr[e + 1]):
            if log_space:
                out[cols[t]] += values[t]
            else:
                out[cols[t]] *= values[t]


@njit(cache=True, nogil=True)
def _keep_difference(indptr, cols, values, perm, n_group1, total, work, out):
    """ALE difference (group 1 minus group 2) of one split, in product form, into ``out``.

    Only the smaller group's rows are visited: its product ``g`` of (1 - MA) is built (members
    sorted), the other group's is ``total / g`` (``total``: the product over all experiments).
    Equal member sets give bit-equal differences, so ties with the observed split are exact.
    """
    n_total = perm.shape[0]
    small_is_1 = n_group1 <= n_total - n_group1
    members = perm[:n_group1] if small_is_1 else perm[n_group1:]
    _group_values(indptr, cols, values, members, False, work)
    if small_is_1:  # (1 - keep1) - (1 - keep2) = keep2 - keep1
        for v in range(out.shape[0]):
            out[v] = total[v] / work[v] - work[v]
    else:
        for v in range(out.shape[0]):
            out[v] = work[v] - total[v] / work[v]


@njit(cache=True, nogil=True)
def _permutation_tails(indptr, cols, values, perms, n_group1, total, observed, upper, lower, abs_max, keep_diffs):
    """For each permutation (row of ``perms``): ALE difference, tail counts and max |difference|.

    ``upper[v] += diff >= observed[v]``, ``lower[v] += diff <= observed[v]`` (int64, in place);
    ``abs_max[i]`` = max |diff| of permutation ``i``. ``values`` = 1 - MA; ``total`` as
    :func:`_keep_difference`. ``keep_diffs`` (float32 (n_perms, n_vox), or zero rows) receives the
    differences when it has rows.
    """
    n_vox = observed.shape[0]
    work = np.empty(n_vox)
    d = np.empty(n_vox)
    for i in range(perms.shape[0]):
        _keep_difference(indptr, cols, values, perms[i], n_group1, total, work, d)
        if keep_diffs.shape[0] > 0:
            for v in range(n_vox):
                keep_diffs[i, v] = d[v]
        m = 0.0
        for v in range(n_vox):
            if d[v] >= observed[v]:
                upper[v] += 1
            if d[v] <= observed[v]:
                lower[v] += 1
            if abs(d[v]) > m:
                m = abs(d[v])
        abs_max[i] = m


def _keep_difference_numpy(indptr, cols, values, perm, n_group1, total):
    """NumPy reference of :func:`_keep_difference`."""
    small_is_1 = n_group1 <= len(perm) - n_group1
    members = perm[:n_group1] if small_is_1 else perm[n_group1:]
    g = np.ones(len(total))
    for e in np.sort(members):
        sl = slice(indptr[e], indptr[e + 1])
        g[cols[sl]] *= values[sl]
    other = total / g
    return other - g if small_is_1 else g - other


def _permutation_tails_numpy(indptr, cols, values, perms, n_group1, total, observed):
    """NumPy reference of :func:`_permutation_tails`: (upper, lower, abs_max)."""
    upper = np.zeros(len(observed), dtype=np.int64)
    lower = np.zeros(len(observed), dtype=np.int64)
    abs_max = np.zeros(len(perms))
    for i, perm in enumerate(perms):
        d = _keep_difference_numpy(indptr, cols, values, perm, n_group1, total)
        upper += d >= observed
        lower += d <= observed
        abs_max[i] = np.abs(d).max()
    return upper, lower, abs_max


@njit(cache=True, nogil=True)
def _cluster_nulls(indptr, cols, values, perms, n_group1, total, threshold, neighbours, max_size, max_mass):
    """Largest cluster size and mass of each permutation's difference map (in place)."""
    n_vox = total.shape[0]
    work = np.empty(n_vox)
    d = np.empty(n_vox)
    parent = np.empty(n_vox, dtype=np.int64)
    size = np.empty(n_vox, dtype=np.int64)
    mass = np.empty(n_vox)
    for i in range(perms.shape[0]):
        _keep_difference(indptr, cols, values, perms[i], n_group1, total, work, d)
        max_size[i], max_mass[i] = max_clusters(d, threshold, neighbours, parent, size, mass)


def _sparse_ma(results: list[MetaResult]):
    """Per-experiment MA maps of all groups as CSR over the voxels any experiment reaches.

    Returns ``support`` (mask-voxel indices, sorted), ``indptr``, ``cols`` (into support) and
    ``ma`` (MA values, float64), experiments of ``results[0]`` first.
    """
    rows = [(cols, vals) for res in results for _, cols, vals in res.ma_maps()]
    support = np.unique(np.concatenate([c for c, _ in rows])) if rows else np.zeros(0, dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c, _ in rows])
    cols = np.searchsorted(support, np.concatenate([c for c, _ in rows])).astype(np.int64)
    ma = np.concatenate([v for _, v in rows]).astype(np.float64)
    return support, indptr, cols, ma


def two_group_result(grid, maps: dict, nulls: dict, params: dict, res1: MetaResult, res2: MetaResult) -> MetaResult:
    """A comparison's result: its maps and nulls, with the experiments and foci of group 1 then group 2."""
    n1 = res1.n_experiments
    return MetaResult(
        grid=grid,
        maps=maps,
        nulls=nulls,
        params=params,
        experiment_ids=res1.experiment_ids + res2.experiment_ids,
        foci_ijk=np.concatenate([res1.foci_ijk, res2.foci_ijk]),
        foci_xyz=np.concatenate([res1.foci_xyz, res2.foci_xyz]),
        focus_experiment=np.concatenate([res1.focus_experiment, res2.focus_experiment + n1]),
        experiment_fwhm=np.concatenate([res1.experiment_fwhm, res2.experiment_fwhm]),
        sample_sizes=np.concatenate([res1.sample_sizes, res2.sample_sizes]),
        fixed_fwhm=res1.fixed_fwhm,
    )


def two_sided_p(upper: np.ndarray, lower: np.ndarray, n_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided permutation p and sign (+1 where the observed value sits in the upper tail)."""
    p = 2.0 * np.minimum(upper, lower) / n_iters
    p = np.clip(p, 1.0 / n_iters, 1.0 - 1.0 / n_iters)
    return p, np.sign(lower.astype(np.int64) - upper.astype(np.int64)).astype(np.float64)


def two_sided_z(p: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Signed z of two-sided p: ``sign * Phi^-1(1 - p / 2)``."""
    return sign * -special.ndtri_exp(np.log(np.asarray(p, dtype=np.float64) / 2.0))


# ---------------------------------------------------------------------------- subtraction
class Subtraction:
    """Group 1 minus group 2 by label permutation (NiMARE's ``ALESubtraction``, two-sided).

    Parameters
    ----------
    estimator : object with ``fit(studyset, grid) -> MetaResult``; default ``ALE()``.
    n_iters : int
        Permutations (NiMARE's default is 5,000; GingerALE suggests 10,000).
    seed : int
        Seed of the ``SeedSequence`` whose children drive the permutation chunks.
    n_cores : int, optional
        Worker threads (default: all cores). Results do not depend on it.
    ties : {"exact", "nimare"}
        How permutations equal to the observed difference count (see the module docstring).
    vfwe_only : bool
        Voxel-level FWE only (NiMARE's default); else also cluster-level FWE
        (:mod:`neurochange.inference.unionfind`), which replays the permutations once more.
    cluster_forming_p : float
        Share of permutation ``|difference|`` values above the cluster-forming threshold.
    """

    def __init__(self, estimator=None, n_iters: int = 10000, seed: int = 0, n_cores: int | None = None,
                 ties: str = "exact", vfwe_only: bool = True, cluster_forming_p: float = 0.001):
        self.vfwe_only = bool(vfwe_only)
        self.cluster_forming_p = float(cluster_forming_p)
        if ties not in ("exact", "nimare"):
            raise ValueError(f"ties must be 'exact' or 'nimare', got {ties!r}")
        self.ties = ties
        self.estimator = estimator if estimator is not None else ALE()
        self.n_iters = int(n_iters)
        self.seed = int(seed)
        self.n_cores = n_cores

    def fit(self, studyset1, studyset2, grid: _space.Grid | None = None, progress=None) -> MetaResult:
        """Maps ``{stat,p,z,logp}_desc-group1MinusGroup2`` and each group's ``{stat,p,z,logp}_desc-group<k>``.

        ``progress(done, total)`` is called after each chunk of permutations.
        """
        grid = grid or _space.mni_2mm()
        res1 = self.estimator.fit(studyset1, grid)
        res2 = self.estimator.fit(studyset2, grid)
        name = res1.params["estimator"]["name"]
        if SUMMARY_STATISTICS.get(name) != "ale":
            raise NotImplementedError(f"subtraction is not implemented for estimator {name!r} yet")

        support, indptr, cols, ma = _sparse_ma([res1, res2])
        n1, n_total = res1.n_experiments, res1.n_experiments + res2.n_experiments
        identity = np.arange(n_total, dtype=np.int64)
        log_space = self.ties == "nimare"
        # NiMARE: log(1 - MA) in float32, summed in float64; the observed difference in float32
        values = np.log1p(-ma.astype(np.float32)).astype(np.float64) if log_space else 1.0 - ma
        total = np.empty(len(support))
        _group_values(indptr, cols, values, identity, log_space, total)
        if log_space:
            g1, g2 = np.empty(len(support)), np.empty(len(support))
            _group_values(indptr, cols, values, identity[:n1], True, g1)
            _group_values(indptr, cols, values, identity[n1:], True, g2)
            observed = ((1.0 - np.exp(g1)).astype(np.float32) - (1.0 - np.exp(g2)).astype(np.float32))
            observed = observed.astype(np.float64)
        else:
            observed = np.empty(len(support))
            _keep_difference(indptr, cols, values, identity, n1, total, np.empty(len(support)), observed)

        n_top = 0 if self.vfwe_only else int(np.ceil(self.cluster_forming_p * (self.n_iters * grid.n_voxels - 1))) + 2
        upper, lower, abs_max, tops = self._permute(indptr, cols, values, log_space, total, n_total, n1, observed,
                                                    progress, n_top)
        p_support, sign = two_sided_p(upper, lower, self.n_iters)
        p = np.full(grid.n_voxels, 1.0 - 1.0 / self.n_iters)
        z = np.zeros(grid.n_voxels)
        p[support] = p_support
        z[support] = two_sided_z(p_support, sign)
        maps = {
            f"stat_desc-{DIFF}": res1.maps["stat"] - res2.maps["stat"],
            f"p_desc-{DIFF}": p,
            f"z_desc-{DIFF}": z,
            f"logp_desc-{DIFF}": np.maximum(-np.log10(p), 0.0),
        }
        # voxel-level FWE: |difference| against the permutation maxima of |difference| (NiMARE)
        stat = maps[f"stat_desc-{DIFF}"]
        p_fwe = inference.null_to_p(np.abs(stat), abs_max)
        maps[f"p_desc-{DIFF}_level-voxel{FWE_SUFFIX}"] = p_fwe
        maps[f"z_desc-{DIFF}_level-voxel{FWE_SUFFIX}"] = two_sided_z(p_fwe, np.sign(z))
        maps[f"logp_desc-{DIFF}_level-voxel{FWE_SUFFIX}"] = np.maximum(-np.log10(p_fwe), 0.0)
        nulls = {NULL_VOXEL: abs_max}
        if not self.vfwe_only:
            threshold = top_quantile(tops, self.n_iters * grid.n_voxels, 1.0 - self.cluster_forming_p)
            if log_space:  # cluster nulls in product form: equal to the last bits
                values, total = 1.0 - ma, np.empty(len(support))
                _group_values(indptr, cols, values, identity, False, total)
                _keep_difference(indptr, cols, values, identity, n1, total, np.empty(len(support)), observed)
            neighbours = neighbour_table(support, grid.mask)
            null_size, null_mass = self._cluster_nulls(indptr, cols, values, total, n_total, n1, threshold,
                                                       neighbours)
            p_size, p_mass, _ = observed_cluster_p(observed, threshold, neighbours, null_size, null_mass)
            for desc, p_support in (("Size", p_size), ("Mass", p_mass)):
                p_c = np.full(grid.n_voxels, 1.0 - 1.0 / self.n_iters)
                p_c[support] = p_support
                name = f"desc-{DIFF}{desc}_level-cluster{FWE_SUFFIX}"
                maps[f"p_{name}"] = p_c
                maps[f"z_{name}"] = two_sided_z(p_c, np.sign(z))
                maps[f"logp_{name}"] = np.maximum(-np.log10(p_c), 0.0)
            nulls.update({NULL_SIZE: null_size, NULL_MASS: null_mass,
                          "summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo": np.array(threshold)})
        for k, res in ((1, res1), (2, res2)):
            maps.update({f"{m}_desc-group{k}": res.maps[m] for m in ("stat", "p", "z", "logp")})
        params = {
            "estimator": res1.params["estimator"],
            "subtraction": {
                "method": "label permutation (NiMARE 0.22.1 ALESubtraction, two-sided)",
                "n_iters": self.n_iters,
                "seed": self.seed,
                "ties": self.ties,
                "vfwe_only": self.vfwe_only,
                "cluster_forming_p": None if self.vfwe_only else self.cluster_forming_p,
                "chunk": CHUNK,
                "voxels_reached": int(len(support)),
                # how many different splits exist: fewer than n_iters means repeats, and p cannot
                # fall below about 1 / distinct_splits
                "distinct_splits": math.comb(n_total, n1),
            },
            "counts": {"group1": res1.params["counts"], "group2": res2.params["counts"]},
        }
        return two_group_result(grid, maps, nulls, params, res1, res2)

    def _chunk_perms(self, children, c, n_total):
        """The permutations (int64 (size, n_total)) of chunk ``c``."""
        size = min(CHUNK, self.n_iters - c * CHUNK)
        rng = np.random.default_rng(children[c])
        return np.stack([rng.permutation(n_total) for _ in range(size)]).astype(np.int64)

    def _cluster_nulls(self, indptr, cols, values, total, n_total, n1, threshold, neighbours):
        """Largest cluster size and mass of every permutation (the same permutations, replayed)."""
        n_chunks = -(-self.n_iters // CHUNK)
        children = np.random.SeedSequence(self.seed).spawn(n_chunks)
        null_size = np.zeros(self.n_iters, dtype=np.int64)
        null_mass = np.zeros(self.n_iters)

        def run(c):
            perms = self._chunk_perms(children, c, n_total)
            sl = slice(c * CHUNK, c * CHUNK + len(perms))
            _cluster_nulls(indptr, cols, values, perms, n1, total, threshold, neighbours, null_size[sl], null_mass[sl])

        with ThreadPoolExecutor(max_workers=self.n_cores or os.cpu_count() or 1) as pool:
            list(pool.map(run, range(n_chunks)))
        return null_size.astype(np.float64), null_mass

    def _permute(self, indptr, cols, values, log_space, total, n_total, n1, observed, progress, n_top=0):
        """Tail counts, max |difference| and (``n_top`` > 0) each chunk's largest |difference| values."""
        n_chunks = -(-self.n_iters // CHUNK)
        children = np.random.SeedSequence(self.seed).spawn(n_chunks)
        n_vox = len(observed)
        abs_max = np.zeros(self.n_iters)

        def top(diffs):
            flat = np.abs(diffs).ravel()
            return _largest(flat, n_top)

        def run(c):
            perms = self._chunk_perms(children, c, n_total)
            size = len(perms)
            diffs = np.zeros((size if n_top else 0, n_vox), dtype=np.float32)
            upper = np.zeros(n_vox, dtype=np.int64)
            lower = np.zeros(n_vox, dtype=np.int64)
            if log_space:  # NiMARE's arithmetic: numpy's exp, whose last bits numba's need not match
                g1, g2 = np.empty(n_vox), np.empty(n_vox)
                for i, perm in enumerate(perms):
                    _group_values(indptr, cols, values, perm[:n1], True, g1)
                    _group_values(indptr, cols, values, perm[n1:], True, g2)
                    d = (1.0 - np.exp(g1)) - (1.0 - np.exp(g2))
                    if n_top:
                        diffs[i] = d
                    upper += d >= observed
                    lower += d <= observed
                    abs_max[c * CHUNK + i] = np.abs(d).max()
                return upper, lower, top(diffs) if n_top else None
            _permutation_tails(indptr, cols, values, perms, n1, total, observed, upper, lower,
                               abs_max[c * CHUNK: c * CHUNK + size], diffs)
            return upper, lower, top(diffs) if n_top else None

        upper = np.zeros(n_vox, dtype=np.int64)
        lower = np.zeros(n_vox, dtype=np.int64)
        kept = np.zeros(0, dtype=np.float32)  # the n_top largest |differences| so far: memory flat in n_iters
        workers = self.n_cores or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done, (u, lo, t) in enumerate(pool.map(run, range(n_chunks)), start=1):
                upper += u
                lower += lo
                if t is not None:
                    kept = _largest(np.concatenate([kept, t]), n_top)
                if progress is not None:
                    progress(min(done * CHUNK, self.n_iters), self.n_iters)
        return upper, lower, abs_max, [kept] if n_top else []


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` largest of ``values`` (all when fewer), as a new array (never a view of ``values``)."""
    if len(values) <= n:
        return values.copy()
    return np.partition(values, len(values) - n)[-n:].copy()


# ---------------------------------------------------------------------------- conjunction, overlap
def conjunction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimum-statistic conjunction of two maps of one shape (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    pos = (a > 0) & (b > 0)
    neg = (a < 0) & (b < 0)
    out[pos] = np.minimum(a, b)[pos]
    out[neg] = np.maximum(a, b)[neg]
    return out


def overlap(a: np.ndarray, b: np.ndarray, voxel_mm3: float = 8.0) -> dict:
    """Overlap of the significant (> 0) voxels of two maps.

    Returns voxel counts (``voxels_a``, ``voxels_b``, ``voxels_both``), volumes in mm3, the Dice
    coefficient ``2 |A and B| / (|A| + |B|)`` (None when both are empty), and the share of each
    map's significant volume inside the other (``share_a_in_b``, ``share_b_in_a``; None when empty).
    """
    sig_a = np.asarray(a) > 0
    sig_b = np.asarray(b) > 0
    na, nb, both = int(sig_a.sum()), int(sig_b.sum()), int((sig_a & sig_b).sum())
    return {
        "voxels_a": na,
        "voxels_b": nb,
        "voxels_both": both,
        "volume_a_mm3": na * voxel_mm3,
        "volume_b_mm3": nb * voxel_mm3,
        "volume_both_mm3": both * voxel_mm3,
        "dice": 2 * both / (na + nb) if na + nb else None,
        "share_a_in_b": both / na if na else None,
        "share_b_in_a": both / nb if nb else None,
    }
