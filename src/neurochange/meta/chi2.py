"""MKDA chi-square (Wager 2007; Neurosynth): consistency and specificity of a selection against the rest.

As NiMARE 0.22.1's ``MKDAChi2`` (prior 0.5, MKDA spheres of 10 mm): with F = "the
experiment is in the selection" and A = "the experiment's MKDA map covers the voxel",

- uniformity (consistency): one-way chi-square of the selection's coverage counts
  against their mean over the mask (``*_desc-uniformity``, also ``*_desc-group1``);
  the rest gets the same test (``*_desc-group2``);
- association (specificity): two-way chi-square of selected/unselected x active/inactive
  (``*_desc-association``), signed by p(A|F) - p(A|not F);
- probabilities ``prob_desc-A``, ``-AgF``, ``-AgU``, ``-FgA``, ``-AgF_prior``, ``-FgA_prior``.

p values are two-sided chi-square (1 dof) tails computed in log space; z = signed
two-tailed normal quantile. Corrections: FDR (Benjamini-Hochberg, NiMARE's
``FDRCorrector(method="indep")``) and FWE by label permutation (experiments reshuffled
between the two groups by :class:`~neurochange.inference.permutation.LabelPermutation`; voxel max
chi-square, cluster size and mass above the chi-square of p = ``cluster_forming_p``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage, sparse, special
from scipy.stats import chi2 as chi2_dist

from neurochange import space as _space
from neurochange.inference.clusters import FACE_CONNECTIVITY, max_cluster
from neurochange.inference.fdr import FDR_SUFFIX, fdr_bh_nlogp
from neurochange.inference.permutation import LabelPermutation
from neurochange.inference.stats import nlogp_to_logp, nlogp_to_z
from neurochange.meta import spheres
from neurochange.meta.inputs import AnalysisInputs, analysis_inputs, concat_inputs
from neurochange.meta.mkda import MKDADensity
from neurochange.meta.result import FWE_SUFFIX, MetaResult
from neurochange.studyset import StudySet

LABELS = ("uniformity", "group2", "association")


# ---------------------------------------------------------------------------- statistics
def one_way(counts: np.ndarray, n: int) -> np.ndarray:
    """One-way chi-square of per-voxel counts (out of ``n``) against their mean; 0 where undefined."""
    counts = np.asarray(counts, dtype=np.float64)
    mean = counts.mean()
    denom = mean * (n - mean)
    if denom == 0:
        return np.zeros_like(counts)
    return (counts - mean) ** 2 * n / denom


def two_way(selected: np.ndarray, unselected: np.ndarray, n_selected: int, n_unselected: int) -> np.ndarray:
    """2 x 2 chi-square (no continuity correction) per voxel; 2.0 where a margin is empty (NiMARE)."""
    a = np.asarray(selected, dtype=np.float64)
    b = np.asarray(unselected, dtype=np.float64)
    total = n_selected + n_unselected
    active = a + b
    denom = active * (total - active) * n_selected * n_unselected
    with np.errstate(divide="ignore", invalid="ignore"):
        out = total * (a * n_unselected - b * n_selected) ** 2 / denom
    out[denom == 0] = 2.0
    return out


def chi2_nlogp(chi2: np.ndarray) -> np.ndarray:
    """Natural log of the upper-tail p of chi-square (1 dof): log erfc(sqrt(x / 2)), never > 0."""
    y = np.sqrt(np.asarray(chi2, dtype=np.float64) / 2.0)
    tail = special.erfc(y)
    with np.errstate(divide="ignore"):
        out = np.log(tail)
    low = tail < np.finfo(float).tiny
    out[low] = np.log(2.0) + special.log_ndtr(-y[low] * np.sqrt(2.0))
    return np.minimum(out, 0.0)


def chi2_maps(sel_counts, n_sel, rest_counts, n_rest, prior: float | None = 0.5) -> dict[str, np.ndarray]:
    """All uncorrected MKDAChi2 maps (NiMARE names) from per-voxel coverage counts of the two groups."""
    sel_counts = np.asarray(sel_counts, dtype=np.float64)
    rest_counts = np.asarray(rest_counts, dtype=np.float64)
    p_f = n_sel / (n_sel + n_rest)
    p_a = (sel_counts + rest_counts) / (n_sel + n_rest)
    p_agf = sel_counts / n_sel
    p_agu = rest_counts / n_rest
    with np.errstate(divide="ignore", invalid="ignore"):
        p_fga = p_agf * p_f / p_a
    maps = {}
    signs = {
        "uniformity": np.sign(sel_counts - sel_counts.mean()),
        "group2": np.sign(rest_counts - rest_counts.mean()),
        "association": np.sign(p_agf - p_agu),
    }
    chi = {
        "uniformity": one_way(sel_counts, n_sel),
        "group2": one_way(rest_counts, n_rest),
        "association": two_way(sel_counts, rest_counts, n_sel, n_rest),
    }
    for label in LABELS:
        nlogp = chi2_nlogp(chi[label])
        maps[f"chi2_desc-{label}"] = chi[label]
        maps[f"p_desc-{label}"] = np.exp(nlogp)
        maps[f"z_desc-{label}"] = np.sqrt(chi[label]) * signs[label]
        maps[f"logp_desc-{label}"] = nlogp_to_logp(nlogp)
    for kind in ("chi2", "p", "z", "logp"):
        maps[f"{kind}_desc-group1"] = maps[f"{kind}_desc-uniformity"]
    maps.update({"prob_desc-A": p_a, "prob_desc-AgF": p_agf, "prob_desc-AgU": p_agu, "prob_desc-FgA": p_fga,
                 "prob_desc-group1": p_agf, "prob_desc-group2": p_agu})
    if prior:
        p_agf_prior = prior * p_agf + (1 - prior) * p_agu
        with np.errstate(divide="ignore", invalid="ignore"):
            maps["prob_desc-FgA_prior"] = p_agf * prior / p_agf_prior
        maps["prob_desc-AgF_prior"] = p_agf_prior
    return maps


# ---------------------------------------------------------------------------- estimator
def _group(studyset: StudySet, grid: _space.Grid, radius: float) -> tuple[AnalysisInputs, np.ndarray]:
    """The group's inputs and its coverage counts (experiments whose MKDA map covers each voxel)."""
    inputs = analysis_inputs(studyset, grid)
    counts, _ = spheres.sphere_counts(inputs.foci_ijk, inputs.focus_experiment, inputs.n_experiments, grid, radius)
    return inputs, counts


class MKDAChi2:
    """MKDA chi-square of a selection against the rest of a corpus (NiMARE 0.22.1 ``MKDAChi2``).

    Parameters
    ----------
    radius : float
        MKDA sphere radius in mm (default 10).
    prior : float or None
        Uniform prior of p(F) for the ``*_prior`` probability maps (default 0.5; None: no such maps).
    """

    name = "MKDAChi2"

    def __init__(self, radius: float = spheres.DEFAULT_RADIUS_MM, prior: float | None = 0.5):
        self.radius = float(radius)
        self.prior = prior

    def __repr__(self) -> str:
        return f"MKDAChi2(radius={self.radius!r}, prior={self.prior!r})"

    def get_params(self) -> dict:
        return {"radius": self.radius, "prior": self.prior}

    def fit(self, selection: StudySet, rest: StudySet, grid: _space.Grid | None = None) -> MetaResult:
        """Uncorrected chi-square, p, z, logp and probability maps; ``params['groups']`` holds both groups' ids."""
        grid = grid or _space.mni_2mm()
        (in1, active1), (in2, active2) = _group(selection, grid, self.radius), _group(rest, grid, self.radius)
        maps = chi2_maps(active1, in1.n_experiments, active2, in2.n_experiments, self.prior)
        params = {
            "estimator": {"name": self.name, "kernel": "MKDA sphere", "radius_mm": self.radius,
                          "prior": self.prior, "reference": "NiMARE 0.22.1 MKDAChi2"},
            "counts": {"selection": in1.counts, "rest": in2.counts},
            "groups": {"selection": list(in1.experiment_ids), "rest": list(in2.experiment_ids)},
        }
        return MetaResult(grid=grid, maps=maps, params=params, inputs=concat_inputs([in1, in2]), estimator=self)

    def ma_maps(self, inputs: AnalysisInputs):
        """Yield ``(i, masked voxel indices, MA values)``: the binary MKDA map of every experiment."""
        return MKDADensity(self.radius).ma_maps(inputs)

    def experiment_columns(self, inputs: AnalysisInputs) -> dict:
        """Per-experiment kernel columns of ``experiments.tsv`` (none: one sphere for all)."""
        return {}


# ---------------------------------------------------------------------------- FDR
def correct_fdr(result: MetaResult) -> MetaResult:
    """Benjamini-Hochberg FDR of the uniformity, group2 and association p maps (NiMARE's names)."""
    maps = {}
    for label in LABELS:
        nlogp = np.log(np.clip(result.maps[f"p_desc-{label}"], np.finfo(np.float64).tiny, 1.0))
        adj = fdr_bh_nlogp(nlogp)
        sign = np.sign(result.maps[f"z_desc-{label}"])
        names = [label, "group1"] if label == "uniformity" else [label]
        for name in names:
            maps[f"p_desc-{name}_level-voxel{FDR_SUFFIX}"] = np.exp(adj)
            maps[f"z_desc-{name}_level-voxel{FDR_SUFFIX}"] = nlogp_to_z(adj) * sign
            maps[f"logp_desc-{name}_level-voxel{FDR_SUFFIX}"] = nlogp_to_logp(adj)
    return result.with_maps(maps, params={"fdr": {"method": "indep (Benjamini-Hochberg)"}})


# ---------------------------------------------------------------------------- FWE by label permutation
def experiment_ma_csr(result: MetaResult, radius: float) -> sparse.csr_matrix:
    """Binary MKDA maps of the result's experiments, (n_experiments, n_mask) CSR of float32 ones."""
    indptr, indices = spheres.mkda_ma_csr(result.foci_ijk, result.focus_experiment, result.n_experiments,
                                       result.grid, radius)
    return sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                             shape=(result.n_experiments, result.grid.n_voxels))


@njit(cache=True, nogil=True)
def _group_counts(indptr, indices, members, n_mask):
    counts = np.zeros(n_mask, dtype=np.float64)
    for e in members:
        for t in range(indptr[e], indptr[e + 1]):
            counts[indices[t]] += 1.0
    return counts


def permutation_stats(pooled: sparse.csr_matrix, total, group1: np.ndarray, grid_mask, thresh) -> np.ndarray:
    """(3 tests [uniformity, group2, association], 3 [max chi2, max cluster size, max mass]) of one relabelling.

    ``pooled`` (n_experiments, n_mask) CSR of binary MKDA maps, ``total`` its column sums
    (float64), ``group1`` the experiment indices labelled as the selection. Coverage counts
    are summed over the smaller group, the other is ``total`` minus it.
    """
    n_total = pooled.shape[0]
    n_sel = len(group1)
    if n_sel <= n_total - n_sel:
        sel = _group_counts(pooled.indptr, pooled.indices, np.asarray(group1, dtype=np.int64), pooled.shape[1])
        rest = total - sel
    else:
        others = np.setdiff1d(np.arange(n_total), group1)
        rest = _group_counts(pooled.indptr, pooled.indices, others.astype(np.int64), pooled.shape[1])
        sel = total - rest
    volume = np.zeros(grid_mask.shape)
    out = np.zeros((3, 3))
    for row, chi in enumerate((one_way(sel, n_sel), one_way(rest, n_total - n_sel),
                               two_way(sel, rest, n_sel, n_total - n_sel))):
        out[row, 0] = chi.max()
        out[row, 1:] = max_cluster(volume, grid_mask, chi, thresh)
    return out


def fwe_null(result: MetaResult, permutation: LabelPermutation, cluster_forming_p: float = 0.001,
             radius: float | None = None, progress=None) -> tuple[np.ndarray, object]:
    """Label-permutation null, (n_iters run, 3 tests [uniformity, group2, association], 3 [max chi2, size, mass]),
    and the permutation run (:class:`~neurochange.inference.executors.ChunkRun`).

    Early stopping (``permutation``'s) watches the three tests' voxel and cluster-size maxima.
    """
    radius = result.params["estimator"]["radius_mm"] if radius is None else radius
    n_sel = len(result.params["groups"]["selection"])
    pooled = experiment_ma_csr(result, radius)
    total = np.asarray(pooled.sum(axis=0)).ravel().astype(np.float64)
    thresh = float(chi2_dist.isf(cluster_forming_p, 1))

    def statistic(chunk, perms):
        return np.stack([permutation_stats(pooled, total, perm[:n_sel], result.grid.mask, thresh) for perm in perms])

    def watch(parts):
        null = np.concatenate(parts)
        return {f"{label}_{kind}": null[:, row, col] for row, label in enumerate(LABELS)
                for col, kind in ((0, "voxel"), (1, "size"))}

    run = permutation.run(statistic, pooled.shape[0], watch=watch, progress=progress)
    return np.concatenate(run.results), run


def _null_p(values, null):
    """NiMARE's ``null_to_p`` (upper tail): share of null >= value, within [1/n, 1 - 1/n]."""
    null = np.sort(np.asarray(null, dtype=np.float64))
    p = 1.0 - np.searchsorted(null, values, side="left") / len(null)
    return np.clip(p, 1.0 / len(null), 1.0 - 1.0 / len(null))


def correct_fwe(result: MetaResult, permutation: LabelPermutation, cluster_forming_p: float = 0.001,
                radius: float | None = None, progress=None) -> MetaResult:
    """Voxel, cluster-size and cluster-mass FWE maps (NiMARE names + ``_corr-FWE_method-montecarlo``)."""
    null, run = fwe_null(result, permutation, cluster_forming_p, radius, progress)
    maps, nulls = fwe_maps(result, null, cluster_forming_p)
    record = {**permutation.record(run), "cluster_forming_p": cluster_forming_p,
              "cluster_forming_chi2": float(chi2_dist.isf(cluster_forming_p, 1))}
    return result.with_maps(maps, nulls, {"montecarlo": record})


def fwe_maps(result: MetaResult, null: np.ndarray, cluster_forming_p: float = 0.001) -> tuple[dict, dict]:
    """FWE maps and NiMARE-keyed nulls from a label-permutation ``null`` (n_iters, 3, 3) (see :func:`fwe_null`)."""
    thresh = float(chi2_dist.isf(cluster_forming_p, 1))
    grid = result.grid
    maps, nulls = {}, {}
    descs = {"uniformity": "pAgF", "group2": "group2", "association": "pFgA"}
    for row, label in enumerate(LABELS):
        chi = result.maps[f"chi2_desc-{label}"]
        sign = np.sign(result.maps[f"z_desc-{label}"])
        vol = np.zeros(grid.shape)
        vol[grid.mask] = chi
        vol[np.abs(vol) <= thresh] = 0
        labels, n = ndimage.label(vol > 0, structure=FACE_CONNECTIVITY)
        lab = labels[grid.mask]
        sizes = np.bincount(lab, minlength=n + 1).astype(float)
        masses = np.bincount(lab, weights=np.where(lab > 0, chi - thresh, 0.0), minlength=n + 1)
        sizes[0] = 0
        masses[0] = 0
        p = {
            "level-voxel": _null_p(np.abs(chi), null[:, row, 0]),
            "Size_level-cluster": _null_p(sizes, null[:, row, 1])[lab],
            "Mass_level-cluster": _null_p(masses, null[:, row, 2])[lab],
        }
        names = [label, "group1"] if label == "uniformity" else [label]
        for name in names:
            for level, pv in p.items():
                key = f"desc-{name}_{level}" if level == "level-voxel" else f"desc-{name}{level}"
                nlogp = np.log(pv)
                maps[f"p_{key}{FWE_SUFFIX}"] = pv
                maps[f"z_{key}{FWE_SUFFIX}"] = nlogp_to_z(nlogp) * sign
                maps[f"logp_{key}{FWE_SUFFIX}"] = nlogp_to_logp(nlogp)
        d = descs[label]
        nulls[f"values_desc-{d}_level-voxel_corr-fwe_method-montecarlo"] = null[:, row, 0]
        nulls[f"values_desc-{d}size_level-cluster_corr-fwe_method-montecarlo"] = null[:, row, 1]
        nulls[f"values_desc-{d}mass_level-cluster_corr-fwe_method-montecarlo"] = null[:, row, 2]
    return maps, nulls
