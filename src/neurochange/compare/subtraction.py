"""Subtraction (contrast) of two groups of experiments by label permutation.

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

The estimator is pluggable: ALE (``summary_statistic = "ale"``: ``1 - prod(1 - MA)``) or a sum
statistic (MKDA density, KDA: the sum of the experiments' MA maps); its result yields the sparse
per-experiment maps (``ma_maps()``).

Permutations come from :class:`~neurochange.inference.permutation.LabelPermutation` (seeded
chunks; the result does not depend on the core count); with ``early_stop`` the run stops once
the 95th percentile of the maximum |difference| (the voxel-level FWE null) is known to that
precision, and uncorrected p then rest on the permutations run. With ``device="gpu"`` the
permutations run on CuPy (:mod:`neurochange.inference.engines.array_subtraction`), with the same
differences bit for bit, so the same p and voxel-level nulls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import special

from neurochange import space as _space
from neurochange._docs import fill_doc
from neurochange.inference import stats as inference
from neurochange.inference.engines.array_ale import DEVICES, gpu_namespace, resolve_device
from neurochange.inference.engines.array_subtraction import ArraySubtraction
from neurochange.inference.executors import ThreadExecutor
from neurochange.inference.permutation import LabelPermutation
from neurochange.inference.unionfind import max_clusters, neighbour_table, observed_cluster_p, top_quantile
from neurochange.meta.ale import ALE
from neurochange.meta.inputs import concat_inputs
from neurochange.meta.result import FWE_SUFFIX, NULL_MASS, NULL_SIZE, NULL_VOXEL, MetaResult

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
def _keep_difference(indptr, cols, values, perm, n_group1, total, work, out, additive=False):
    """Difference (group 1 minus group 2) of one split into ``out``.

    ALE (``additive=False``), in product form: only the smaller group's rows are visited, its
    product ``g`` of (1 - MA) is built (members sorted), the other group's is ``total / g``
    (``total``: the product over all experiments). Sum statistics (``additive=True``, ``values``
    = MA): the smaller group's sum ``g``, the other's ``total - g``. Equal member sets give
    bit-equal differences, so ties with the observed split are exact.
    """
    n_total = perm.shape[0]
    small_is_1 = n_group1 <= n_total - n_group1
    members = perm[:n_group1] if small_is_1 else perm[n_group1:]
    _group_values(indptr, cols, values, members, additive, work)
    if additive:
        for v in range(out.shape[0]):
            out[v] = work[v] - (total[v] - work[v]) if small_is_1 else (total[v] - work[v]) - work[v]
    elif small_is_1:  # (1 - keep1) - (1 - keep2) = keep2 - keep1
        for v in range(out.shape[0]):
            out[v] = total[v] / work[v] - work[v]
    else:
        for v in range(out.shape[0]):
            out[v] = work[v] - total[v] / work[v]


@njit(cache=True, nogil=True)
def _permutation_tails(indptr, cols, values, perms, n_group1, total, observed, upper, lower, abs_max, keep_diffs,
                       additive=False):
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
        _keep_difference(indptr, cols, values, perms[i], n_group1, total, work, d, additive)
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
def _cluster_nulls(indptr, cols, values, perms, n_group1, total, threshold, neighbours, max_size, max_mass,
                   additive=False):
    """Largest cluster size and mass of each permutation's difference map (in place)."""
    n_vox = total.shape[0]
    work = np.empty(n_vox)
    d = np.empty(n_vox)
    parent = np.empty(n_vox, dtype=np.int64)
    size = np.empty(n_vox, dtype=np.int64)
    mass = np.empty(n_vox)
    for i in range(perms.shape[0]):
        _keep_difference(indptr, cols, values, perms[i], n_group1, total, work, d, additive)
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
    return MetaResult(grid=grid, maps=maps, nulls=nulls, params=params,
                      inputs=concat_inputs([res1.inputs, res2.inputs]), estimator=res1.estimator)


def two_sided_p(upper: np.ndarray, lower: np.ndarray, n_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided permutation p and sign (+1 where the observed value sits in the upper tail)."""
    p = 2.0 * np.minimum(upper, lower) / n_iters
    p = np.clip(p, 1.0 / n_iters, 1.0 - 1.0 / n_iters)
    return p, np.sign(lower.astype(np.int64) - upper.astype(np.int64)).astype(np.float64)


def two_sided_z(p: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Signed z of two-sided p: ``sign * Phi^-1(1 - p / 2)``."""
    return sign * -special.ndtri_exp(np.log(np.asarray(p, dtype=np.float64) / 2.0))


# ---------------------------------------------------------------------------- subtraction
@fill_doc
class Subtraction:
    """Group 1 minus group 2 by label permutation (NiMARE's ``ALESubtraction``, two-sided).

    Parameters
    ----------
    estimator : ALE, MKDADensity or KDA
        Fits each group (default ``ALE()``).
    %(n_iters)s
    %(seed)s
    %(n_cores)s
    ties : {"exact", "nimare"}
        How permutations equal to the observed difference count (see the module docstring).
    vfwe_only : bool
        Voxel-level FWE only (NiMARE's default); else also cluster-level FWE
        (:mod:`neurochange.inference.unionfind`), which replays the permutations once more.
    cluster_forming_p : float
        Share of permutation ``|difference|`` values above the cluster-forming threshold.
    %(early_stop)s
    device : {"cpu", "gpu", "auto"}
        Where the permutations run (``gpu``: CuPy; ``auto``: the GPU when there is one and at least
        200 experiments in all). ``ties="nimare"`` runs on the CPU only.
    """

    def __init__(self, estimator=None, n_iters: int = 10000, seed: int | None = None, n_cores: int | None = None,
                 ties: str = "exact", vfwe_only: bool = True, cluster_forming_p: float = 0.001,
                 early_stop: float | None = None, device: str = "cpu"):
        if ties not in ("exact", "nimare"):
            raise ValueError(f"ties must be 'exact' or 'nimare', got {ties!r}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        self.estimator = estimator if estimator is not None else ALE()
        self.n_iters = int(n_iters)
        self.seed = seed
        self.n_cores = n_cores
        self.ties = ties
        self.vfwe_only = bool(vfwe_only)
        self.cluster_forming_p = float(cluster_forming_p)
        self.early_stop = early_stop
        self.device = device

    def __repr__(self) -> str:
        return (f"Subtraction({self.estimator!r}, n_iters={self.n_iters}, seed={self.seed}, ties={self.ties!r}, "
                f"vfwe_only={self.vfwe_only})")

    def get_params(self) -> dict:
        return {"estimator": self.estimator, "n_iters": self.n_iters, "seed": self.seed, "n_cores": self.n_cores,
                "ties": self.ties, "vfwe_only": self.vfwe_only, "cluster_forming_p": self.cluster_forming_p,
                "early_stop": self.early_stop, "device": self.device}

    def fit(self, studyset1, studyset2, grid: _space.Grid | None = None, progress=None) -> MetaResult:
        """Maps ``{stat,p,z,logp}_desc-group1MinusGroup2`` and each group's ``{stat,p,z,logp}_desc-group<k>``.

        ``progress(done, total)`` is called after each chunk of permutations.
        """
        grid = grid or _space.mni_2mm()
        res1 = self.estimator.fit(studyset1, grid)
        res2 = self.estimator.fit(studyset2, grid)
        additive = self.estimator.summary_statistic == "sum"
        if additive and self.ties == "nimare":
            raise ValueError("ties='nimare' reproduces NiMARE's ALE arithmetic; it does not apply to sum statistics")
        permutation = LabelPermutation(self.n_iters, self.seed, self.n_cores, early_stop=self.early_stop)

        support, indptr, cols, ma = _sparse_ma([res1, res2])
        n1, n_total = res1.n_experiments, res1.n_experiments + res2.n_experiments
        identity = np.arange(n_total, dtype=np.int64)
        log_space = self.ties == "nimare"
        total = np.empty(len(support))
        observed = np.empty(len(support))
        if additive:
            values = ma
            _group_values(indptr, cols, values, identity, True, total)
            _keep_difference(indptr, cols, values, identity, n1, total, np.empty(len(support)), observed, True)
        elif log_space:
            # NiMARE: log(1 - MA) in float32, summed in float64; the observed difference in float32
            values = np.log1p(-ma.astype(np.float32)).astype(np.float64)
            _group_values(indptr, cols, values, identity, True, total)
            g1, g2 = np.empty(len(support)), np.empty(len(support))
            _group_values(indptr, cols, values, identity[:n1], True, g1)
            _group_values(indptr, cols, values, identity[n1:], True, g2)
            observed = ((1.0 - np.exp(g1)).astype(np.float32) - (1.0 - np.exp(g2)).astype(np.float32))
            observed = observed.astype(np.float64)
        else:
            values = 1.0 - ma
            _group_values(indptr, cols, values, identity, False, total)
            _keep_difference(indptr, cols, values, identity, n1, total, np.empty(len(support)), observed)

        n_top = 0 if self.vfwe_only else int(np.ceil(self.cluster_forming_p * (self.n_iters * grid.n_voxels - 1))) + 2
        device = "cpu" if log_space and self.device == "auto" else self.device
        if log_space and device == "gpu":
            raise ValueError("ties='nimare' reproduces NiMARE's arithmetic with NumPy: it runs on the CPU only")
        engine = None
        if resolve_device(device, self.estimator, n_total) == "gpu":
            engine = ArraySubtraction(indptr, cols, values, total, n1, additive, gpu_namespace())
        # the GPU engine takes one chunk at a time, in this process
        executor = ThreadExecutor(1) if engine is not None else None
        tails = _Tails(indptr, cols, values, total, n1, observed, log_space, additive, n_top, engine)
        run = permutation.run(tails.chunk, n_total, watch=lambda parts: {NULL_VOXEL: np.concatenate(parts)},
                              consume=tails.consume, progress=progress, executor=executor)
        n_done = run.n_done
        abs_max = np.concatenate(run.results)
        p_support, sign = two_sided_p(tails.upper, tails.lower, n_done)
        p = np.full(grid.n_voxels, 1.0 - 1.0 / n_done)
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
            threshold = top_quantile([tails.kept], n_done * grid.n_voxels, 1.0 - self.cluster_forming_p)
            if log_space:  # cluster nulls in product form: equal to the last bits
                values, total = 1.0 - ma, np.empty(len(support))
                _group_values(indptr, cols, values, identity, False, total)
                _keep_difference(indptr, cols, values, identity, n1, total, np.empty(len(support)), observed)
            neighbours = neighbour_table(support, grid.mask)
            support_ijk = np.argwhere(grid.mask)[support]

            def cluster_chunk(chunk, perms):
                if engine is not None:
                    return engine.clusters(perms, threshold, support_ijk, grid.shape)
                size, mass = np.zeros(len(perms), dtype=np.int64), np.zeros(len(perms))
                _cluster_nulls(indptr, cols, values, perms, n1, total, threshold, neighbours, size, mass, additive)
                return size, mass

            replay = permutation.run(cluster_chunk, n_total, n_iters=n_done, early_stop=False, executor=executor)
            null_size = np.concatenate([size for size, _ in replay.results]).astype(np.float64)
            null_mass = np.concatenate([mass for _, mass in replay.results])
            p_size, p_mass, _ = observed_cluster_p(observed, threshold, neighbours, null_size, null_mass)
            for desc, p_support in (("Size", p_size), ("Mass", p_mass)):
                p_c = np.full(grid.n_voxels, 1.0 - 1.0 / n_done)
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
                "method": "label permutation (NiMARE 0.22.1 ALESubtraction, two-sided)" if not additive else
                          f"label permutation (NiMARE 0.22.1 ALESubtraction's procedure on the "
                          f"{res1.params['estimator']['name']} statistic, two-sided)",
                **{k: v for k, v in permutation.record(run).items() if k != "method"},
                "ties": self.ties,
                "vfwe_only": self.vfwe_only,
                "cluster_forming_p": None if self.vfwe_only else self.cluster_forming_p,
                "voxels_reached": int(len(support)),
                **({"device": "gpu (CuPy)"} if engine is not None else {}),
                # how many different splits exist: fewer than n_iters means repeats, and the two-sided
                # p cannot fall below about 2 / distinct_splits (the observed split's repeats tie both tails)
                "distinct_splits": math.comb(n_total, n1),
            },
            "counts": {"group1": res1.params["counts"], "group2": res2.params["counts"]},
        }
        return two_group_result(grid, maps, nulls, params, res1, res2)


class _Tails:
    """One permutation chunk's tail counts, max |difference| and largest |differences| (``chunk``), folded
    into running totals in chunk order (``consume``) so memory stays flat in the number of permutations."""

    def __init__(self, indptr, cols, values, total, n1, observed, log_space, additive, n_top, engine=None):
        self.args = (indptr, cols, values, total, n1, observed)
        self.log_space, self.additive, self.n_top, self.engine = log_space, additive, n_top, engine
        n_vox = len(observed)
        self.upper = np.zeros(n_vox, dtype=np.int64)
        self.lower = np.zeros(n_vox, dtype=np.int64)
        self.kept = np.zeros(0, dtype=np.float32)  # the n_top largest |differences| so far

    def chunk(self, chunk, perms):
        indptr, cols, values, total, n1, observed = self.args
        if self.engine is not None:
            return self.engine.tails(perms, observed, self.n_top)
        n_vox = len(observed)
        diffs = np.zeros((len(perms) if self.n_top else 0, n_vox), dtype=np.float32)
        upper = np.zeros(n_vox, dtype=np.int64)
        lower = np.zeros(n_vox, dtype=np.int64)
        abs_max = np.zeros(len(perms))
        if self.log_space:  # NiMARE's arithmetic: numpy's exp, whose last bits numba's need not match
            g1, g2 = np.empty(n_vox), np.empty(n_vox)
            for i, perm in enumerate(perms):
                _group_values(indptr, cols, values, perm[:n1], True, g1)
                _group_values(indptr, cols, values, perm[n1:], True, g2)
                d = (1.0 - np.exp(g1)) - (1.0 - np.exp(g2))
                if self.n_top:
                    diffs[i] = d
                upper += d >= observed
                lower += d <= observed
                abs_max[i] = np.abs(d).max()
        else:
            _permutation_tails(indptr, cols, values, perms, n1, total, observed, upper, lower, abs_max, diffs,
                               self.additive)
        top = _largest(np.abs(diffs).ravel(), self.n_top) if self.n_top else None
        return upper, lower, abs_max, top

    def consume(self, part):
        upper, lower, abs_max, top = part
        self.upper += upper
        self.lower += lower
        if top is not None:
            self.kept = _largest(np.concatenate([self.kept, top]), self.n_top)
        return abs_max


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` largest of ``values`` (all when fewer), as a new array (never a view of ``values``)."""
    if len(values) <= n:
        return values.copy()
    return np.partition(values, len(values) - n)[-n:].copy()
