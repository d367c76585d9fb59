"""Moderators: does an experiment-level variable (sessions, pulses, intensity, imaging, ...) go with
how strongly each experiment supports a cluster, or a voxel?

The response of experiment ``e`` is its modelled activation (MA, the ALE kernel map of its
foci): per cluster, the mean of its MA over the cluster's voxels; whole-brain, its MA at
each voxel. The statistic:

- numeric moderator: Pearson correlation of the moderator's ranks with the response
  (Spearman's rho per cluster, where the response is also ranked; rank of the moderator
  only, voxelwise). Two-sided.
- categorical moderator: the one-way ANOVA F of the response across categories.

p values come from permuting the moderator across the experiments that have a value
(``n_perm`` permutations, seeded): per cluster ``p = (1 + #{|perm| >= |observed|}) / (1 + n_perm)``;
whole-brain the same against the permutation distribution of the maximum over voxels
(family-wise error over voxels, Westfall-Young max statistic). Experiments without a value
are left out (their number is reported).

What this is not: a meta-regression of foci intensity (NiMARE's CBMR models foci counts with
a spatial Poisson / negative-binomial regression and moderator coefficients). This is a
permutation test of association between a moderator and modelled activation: it needs no
model of foci counts, works with any ALE result and exchangeable experiments, and with few
experiments (10-40) its smallest attainable p is limited by the distinct permutations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from neurochange.meta.result import MetaResult

#: Moderators read as numbers (the rest are categories).
NUMERIC = ("sessions", "weeks", "frequency_hz", "intensity_pct_mt", "pulses", "n", "year")


# ---------------------------------------------------------------------------- values
def moderator_values(table: pd.DataFrame, name: str, experiment_ids: list[str]) -> tuple[np.ndarray, str]:
    """One moderator's values for ``experiment_ids`` (float with NaN, or object with None) and its kind.

    ``table``: indexed by experiment id. Numeric if every present value parses as a number.
    """
    column = table[name].reindex(experiment_ids) if name in table.columns else pd.Series(index=experiment_ids)
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if name in NUMERIC or (len(present) and numbers.notna().all()):
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float), "numeric"
    return np.array([None if pd.isna(v) else str(v) for v in column], dtype=object), "categorical"


def present(values: np.ndarray, kind: str) -> np.ndarray:
    """Which experiments have a value."""
    if kind == "numeric":
        return ~np.isnan(values)
    return np.array([v is not None for v in values], dtype=bool)


# ---------------------------------------------------------------------------- responses
def ma_matrix(result: MetaResult, voxels: np.ndarray | None = None) -> np.ndarray:
    """MA of every experiment (rows) at masked ``voxels`` (default all), (n_experiments, V) float64."""
    n_vox = result.grid.n_voxels
    position = np.arange(n_vox) if voxels is None else np.full(n_vox, -1, dtype=np.int64)
    if voxels is not None:
        position[voxels] = np.arange(len(voxels))
    out = np.zeros((result.n_experiments, n_vox if voxels is None else len(voxels)))
    for i, cols, vals in result.ma_maps():
        at = position[cols]
        hit = at >= 0
        out[i, at[hit]] = vals[hit]
    return out


def cluster_response(result: MetaResult, labels: np.ndarray) -> np.ndarray:
    """Mean MA of each experiment over each cluster's voxels, (n_experiments, C) float64."""
    masked = labels[result.grid.mask]
    n_clusters = int(labels.max()) if labels.size else 0
    voxels = np.flatnonzero(masked > 0)
    ma = ma_matrix(result, voxels)
    which = masked[voxels]
    return np.stack([ma[:, which == c].mean(axis=1) for c in range(1, n_clusters + 1)], axis=1) \
        if n_clusters else np.zeros((result.n_experiments, 0))


# ---------------------------------------------------------------------------- statistics
def _standardize(v: np.ndarray) -> np.ndarray:
    """Centred, unit-norm columns (axis 0); zero where constant."""
    v = v - v.mean(axis=0)
    norm = np.sqrt((v ** 2).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norm > 0, v / np.where(norm > 0, norm, 1), 0.0)


def correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``x`` (P, K) with each column of ``y`` (K, V): (P, V)."""
    return _standardize(np.atleast_2d(x).T).T @ _standardize(y)


def f_statistics(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-way ANOVA F of each column of ``y`` (K, V) for each row of integer ``groups`` (P, K): (P, V)."""
    groups = np.atleast_2d(groups)
    k = y.shape[0]
    n_groups = int(groups.max()) + 1
    total = y.sum(axis=0)
    sst = (y ** 2).sum(axis=0) - total ** 2 / k
    out = np.zeros((groups.shape[0], y.shape[1]))
    for p, g in enumerate(groups):
        counts = np.bincount(g, minlength=n_groups).astype(float)
        sums = np.zeros((n_groups, y.shape[1]))
        np.add.at(sums, g, y)
        ssb = (sums ** 2 / counts[:, None]).sum(axis=0) - total ** 2 / k
        ssw = np.maximum(sst - ssb, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = (ssb / (n_groups - 1)) / (ssw / (k - n_groups))
        out[p] = np.where(ssw > 0, f, np.where(ssb > 0, np.inf, 0.0))
    return out


def statistic(values: np.ndarray, kind: str, y: np.ndarray, *, rank_response: bool) -> np.ndarray:
    """Observed statistic(s) for moderator ``values`` (K,) (experiments with a value) against ``y`` (K, V)."""
    if kind == "numeric":
        yy = np.apply_along_axis(stats.rankdata, 0, y) if rank_response else y
        return correlations(stats.rankdata(values), yy)[0]
    _, codes = np.unique(values.astype(str), return_inverse=True)
    return f_statistics(codes, y)[0]


def permutations(values: np.ndarray, kind: str, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """Permuted moderator rows (n_perm, K): ranks (numeric) or category codes (categorical)."""
    base = stats.rankdata(values) if kind == "numeric" else np.unique(values.astype(str), return_inverse=True)[1]
    return np.stack([rng.permutation(base) for _ in range(n_perm)]) if n_perm else np.zeros((0, len(base)))


def _perm_stat(perms: np.ndarray, kind: str, y: np.ndarray) -> np.ndarray:
    return correlations(perms, y) if kind == "numeric" else f_statistics(perms, y)


# ---------------------------------------------------------------------------- per cluster
def cluster_moderators(result: MetaResult, labels: np.ndarray, table: pd.DataFrame, names: list[str], *,
                       n_perm: int = 5000, seed: int = 0, response: np.ndarray | None = None) -> pd.DataFrame:
    """One row per (cluster, moderator): cluster_id, moderator, kind, n_experiments (with a value),
    statistic (Spearman rho or F), p_perm. ``table``: experiment fields indexed by experiment id."""
    y_all = cluster_response(result, labels) if response is None else response
    rows = []
    for m, name in enumerate(names):
        values, kind = moderator_values(table, name, result.experiment_ids)
        keep = present(values, kind)
        v = values[keep]
        y = y_all[keep]
        usable = keep.sum() >= 3 and len(np.unique(v.astype(str) if kind == "categorical" else v)) >= 2
        if kind == "categorical" and usable:
            usable = keep.sum() > len(np.unique(v.astype(str)))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 6, m]))
        if usable:
            observed = statistic(v, kind, y, rank_response=True)
            ranked = np.apply_along_axis(stats.rankdata, 0, y) if kind == "numeric" else y
            null = _perm_stat(permutations(v, kind, n_perm, rng), kind, ranked)
            exceed = (np.abs(null) >= np.abs(observed) - 1e-12).sum(axis=0)
            p = (1 + exceed) / (1 + n_perm)
        else:
            observed = p = np.full(y.shape[1], np.nan)
        for c in range(y.shape[1]):
            rows.append({"cluster_id": c + 1, "moderator": name, "kind": kind, "n_experiments": int(keep.sum()),
                         "statistic": float(observed[c]), "p_perm": float(p[c])})
    return pd.DataFrame(rows, columns=["cluster_id", "moderator", "kind", "n_experiments", "statistic", "p_perm"])


# ---------------------------------------------------------------------------- whole brain
def whole_brain(result: MetaResult, table: pd.DataFrame, name: str, *, n_perm: int = 1000, seed: int = 0,
                min_experiments: int | None = None, chunk: int = 50) -> dict:
    """Voxelwise moderator test with max-statistic FWE over voxels.

    Voxels tested: those within half a kernel FWHM of foci of at least ``min_experiments``
    experiments with a value (MA at least half the experiment's peak MA); default
    max(3, 20 % of those experiments). Voxels that few experiments reach would otherwise
    dominate the maximum with chance correlations and take all power away.
    Returns masked maps (one value per mask voxel, 0 outside the tested voxels): ``stat``
    (r of moderator ranks with MA, or F), ``p`` (FWE), and ``kind``, ``n_experiments``,
    ``n_voxels`` tested, ``null_max`` (n_perm,).
    """
    values, kind = moderator_values(table, name, result.experiment_ids)
    keep = present(values, kind)
    v = values[keep]
    n_vox = result.grid.n_voxels
    stat_map = np.zeros(n_vox)
    p_map = np.ones(n_vox)
    ma = ma_matrix(result)[keep]
    if min_experiments is None:
        min_experiments = max(3, int(np.ceil(0.2 * keep.sum())))
    near = ma >= 0.5 * ma.max(axis=1, keepdims=True)  # within half the kernel's FWHM of a focus
    tested = np.flatnonzero(near.sum(axis=0) >= min_experiments)
    summary = {"kind": kind, "n_experiments": int(keep.sum()), "n_voxels": int(len(tested)), "n_perm": n_perm,
               "min_experiments": int(min_experiments)}
    n_levels = len(np.unique(v.astype(str) if kind == "categorical" else v))
    if keep.sum() < 3 or n_levels < 2 or len(tested) == 0 or (kind == "categorical" and keep.sum() <= n_levels):
        return {**summary, "stat": stat_map, "p": p_map, "null_max": np.zeros(0)}
    y = ma[:, tested]
    observed = statistic(v, kind, y, rank_response=False)
    perms = permutations(v, kind, n_perm, np.random.default_rng(np.random.SeedSequence([seed, 7])))
    null_max = np.concatenate([np.abs(_perm_stat(perms[s:s + chunk], kind, y)).max(axis=1)
                               for s in range(0, n_perm, chunk)]) if n_perm else np.zeros(0)
    exceed = np.searchsorted(np.sort(null_max), np.abs(observed) - 1e-12, side="left")
    p = (1 + (n_perm - exceed)) / (1 + n_perm)
    stat_map[tested] = observed
    p_map[tested] = p
    return {**summary, "stat": stat_map, "p": p_map, "null_max": null_max}


# ---------------------------------------------------------------------------- plots
def plot_moderator(path, name: str, values: np.ndarray, kind: str, response: np.ndarray, rows: pd.DataFrame,
                   experiment_ids: list[str]) -> None:
    """PNG: one panel per cluster, each experiment's mean MA in the cluster against the moderator
    (scatter for numbers, box and points for categories), titled with the statistic and p."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_clusters = response.shape[1]
    cols = min(4, max(1, n_clusters))
    nrows = int(np.ceil(max(1, n_clusters) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), squeeze=False)
    keep = present(values, kind)
    for c in range(nrows * cols):
        ax = axes.flat[c]
        if c >= n_clusters:
            ax.axis("off")
            continue
        y = response[keep, c]
        if kind == "numeric":
            ax.scatter(values[keep], y, s=14, color="#1f77b4")
        else:
            cats = sorted(set(values[keep].astype(str)))
            groups = [y[values[keep].astype(str) == k] for k in cats]
            ax.boxplot(groups, showfliers=False)
            ax.set_xticks(range(1, len(cats) + 1), cats, rotation=30, fontsize=7)
            for g, grp in enumerate(groups):
                ax.scatter(np.full(len(grp), g + 1.0), grp, s=10, color="#1f77b4", zorder=3)
        row = rows[(rows.cluster_id == c + 1) & (rows.moderator == name)]
        label = "rho" if kind == "numeric" else "F"
        if len(row) and np.isfinite(row.statistic.iloc[0]):
            ax.set_title(f"cluster {c + 1}: {label} = {row.statistic.iloc[0]:.2f}, p = {row.p_perm.iloc[0]:.3g}",
                         fontsize=8)
        else:
            ax.set_title(f"cluster {c + 1}: not testable", fontsize=8)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("mean MA in cluster", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{name}: {int(keep.sum())} of {len(experiment_ids)} experiments with a value", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
