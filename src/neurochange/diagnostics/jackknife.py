"""How much a cluster rests on single experiments: contributions, focus counts, leave-one-out jackknife.

All functions take a corrected :class:`~neurochange.meta.result.MetaResult` of any estimator
(its experiments, foci and estimator kept) and the 3-D cluster labels of its corrected map
(``clusters_index.nii.gz``, numbered by size), and return arrays of shape (n_experiments,
n_clusters), experiments in the result's order (sorted ids), cluster ``c`` in column ``c - 1``.

- :func:`contributions`: NiMARE 0.22.1 ``Jackknife``'s number: the mean over the
  cluster's voxels of ``1 - stat_without_i / stat`` (the share of the cluster's statistic that
  leaving experiment ``i`` out takes away; ALE: ``1 - prod (1 - MA)``, MKDA density and KDA:
  the sum of the MA maps, so the share is ``MA_i / stat``).
- :func:`focus_counts`: NiMARE ``FocusCounter``'s number: foci of experiment ``i``
  whose voxel (half-to-even rounding) lies in the cluster.
- :func:`jackknife`: does the cluster survive, with the same correction, when experiment
  ``i`` is left out? Each leave-one-out set is analysed afresh: the estimator, approximate null
  and its cluster-forming threshold, and a new Monte Carlo null (the main analysis's corrector:
  same cluster-forming p, null mask and correction level; ``n_iters`` iterations). Reusing the
  main analysis's threshold and null instead would judge K - 1 experiments against the
  null of K (a higher threshold and larger null clusters), so a cluster would look more
  fragile than it is. The cluster survives if a cluster of the leave-one-out map that
  passes FWE at ``cluster_p`` shares at least one voxel with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurochange.inference.clusters import significant_clusters
from neurochange.inference.executors import scheduled_executor
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.result import MetaResult
from neurochange.studyset import StudySet


# ---------------------------------------------------------------------------- refitting
def child_seed(seed: int, *keys: int) -> int:
    """A seed (int < 2**63) for one sub-analysis, derived from ``seed`` and integer ``keys``."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(2, dtype=np.uint64)[0] % 2**63)


def result_studyset(result: MetaResult, keep=None, extra: StudySet | None = None) -> StudySet:
    """The experiments ``keep`` (indices; default all) of ``result`` as a StudySet, plus ``extra``.

    Foci are the analysed MNI coordinates, so the estimator maps them to the same voxels.
    """
    keep = np.arange(result.n_experiments) if keep is None else np.asarray(keep, dtype=np.int64)
    ids = [result.experiment_ids[i] for i in keep]
    n = pd.array([None if np.isnan(v) else int(round(v)) for v in result.sample_sizes[keep]], dtype="Int64")
    experiments = pd.DataFrame({"experiment_id": ids, "study_id": ids, "contrast_id": "", "n": n})
    in_keep = np.isin(result.focus_experiment, keep)
    foci = pd.DataFrame({
        "experiment_id": np.asarray(result.experiment_ids, dtype=object)[result.focus_experiment[in_keep]],
        "x": result.foci_xyz[in_keep, 0], "y": result.foci_xyz[in_keep, 1], "z": result.foci_xyz[in_keep, 2],
        "space": "MNI",
    })
    studyset = StudySet(pd.DataFrame({"study_id": ids}), experiments, foci)
    return studyset if extra is None else StudySet.concat([studyset, extra])


def refit(result: MetaResult, keep=None, extra: StudySet | None = None) -> MetaResult:
    """The result's estimator on experiments ``keep`` of ``result`` (plus ``extra``), on the same grid."""
    return result.estimator.fit(result_studyset(result, keep, extra), result.grid)


def surviving(corrected: MetaResult, labels: np.ndarray, cluster_p: float) -> tuple[np.ndarray, np.ndarray]:
    """For each cluster of ``labels`` (3-D, 1..C): whether a cluster of ``corrected`` that passes
    FWE at ``cluster_p`` overlaps it, and the smallest corrected p among those (NaN if none)."""
    n_clusters = int(labels.max()) if labels.size else 0
    new_labels, _, p_fwe, _ = significant_clusters(corrected, cluster_p)
    survived = np.zeros(n_clusters, dtype=bool)
    best_p = np.full(n_clusters, np.nan)
    both = (labels > 0) & (new_labels > 0)
    for c, n in zip(labels[both], new_labels[both]):
        survived[c - 1] = True
        p = p_fwe[n - 1]
        best_p[c - 1] = p if np.isnan(best_p[c - 1]) else min(best_p[c - 1], p)
    return survived, best_p


# ---------------------------------------------------------------------------- contributions
def cluster_members(result: MetaResult, labels: np.ndarray) -> list[np.ndarray]:
    """Masked voxel indices (into ``result.maps`` arrays) of each cluster 1..C."""
    masked = labels[result.grid.mask]
    n_clusters = int(labels.max()) if labels.size else 0
    return [np.flatnonzero(masked == c) for c in range(1, n_clusters + 1)]


def contributions(result: MetaResult, labels: np.ndarray) -> np.ndarray:
    """NiMARE Jackknife's contribution of each experiment to each cluster, (n_experiments, C) float64.

    ``mean over cluster voxels of 1 - stat_{-i} / stat``. ALE: ``ALE_{-i} = 1 - prod_{j != i} (1 - MA_j)``
    computed exactly (prefix and suffix products over the experiments, in analysis order); sum
    statistics (MKDA density, KDA): ``stat_{-i} = stat - MA_i``.
    """
    members = cluster_members(result, labels)
    n_exp = result.n_experiments
    if not members:
        return np.zeros((n_exp, 0))
    voxels = np.concatenate(members)
    position = np.full(result.grid.n_voxels, -1, dtype=np.int64)
    position[voxels] = np.arange(len(voxels))
    ma = np.zeros((n_exp, len(voxels)))  # MA of each experiment at the cluster voxels
    for i, cols, vals in result.ma_maps():
        at = position[cols]
        hit = at >= 0
        ma[i, at[hit]] = vals[hit]
    bounds = np.cumsum([0] + [len(m) for m in members])
    if result.estimator.summary_statistic == "sum":
        stat = ma.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.nan_to_num(ma / stat)
        return np.stack([share[:, bounds[c]:bounds[c + 1]].mean(axis=1) for c in range(len(members))], axis=1)
    keep = 1.0 - ma
    prefix = np.ones((n_exp + 1, len(voxels)))
    suffix = np.ones((n_exp + 1, len(voxels)))
    for i in range(n_exp):
        prefix[i + 1] = prefix[i] * keep[i]
        suffix[n_exp - 1 - i] = suffix[n_exp - i] * keep[n_exp - 1 - i]
    ale = 1.0 - prefix[n_exp]
    ale_without = 1.0 - prefix[:n_exp] * suffix[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.nan_to_num(ale_without / ale)
    share = 1.0 - share
    return np.stack([share[:, bounds[c]:bounds[c + 1]].mean(axis=1) for c in range(len(members))], axis=1)


def focus_counts(result: MetaResult, labels: np.ndarray) -> np.ndarray:
    """Foci of each experiment inside each cluster (NiMARE's FocusCounter), (n_experiments, C) int64."""
    n_clusters = int(labels.max()) if labels.size else 0
    ijk = np.asarray(result.foci_ijk).reshape(-1, 3)
    inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape)), axis=1)
    hit = np.zeros(len(ijk), dtype=np.int64)
    hit[inside] = labels[tuple(ijk[inside].T)]
    counts = np.zeros((result.n_experiments, n_clusters + 1), dtype=np.int64)
    np.add.at(counts, (result.focus_experiment, hit), 1)
    return counts[:, 1:]


# ---------------------------------------------------------------------------- jackknife
def jackknife(result: MetaResult, labels: np.ndarray, corrector: MonteCarloFWE, cluster_p: float = 0.05, *,
              n_iters: int = 2000, seed: int = 0, n_cores=None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-experiment-out: (survived (n_experiments, C) bool, best corrected p (n_experiments, C)).

    ``corrector``: the main analysis's (its cluster-forming p, null mask and correction level
    are kept; ``n_iters`` iterations, no early stopping). A cluster survives when a cluster
    passing FWE at ``cluster_p`` overlaps it. Experiment ``i``'s Monte Carlo uses seed
    ``child_seed(seed, 1, i)``. ``progress(done, total)`` is called after each experiment. Inside a
    :func:`~neurochange.inference.executors.scheduler` block the refits run as tasks on the cluster
    (same results).
    """
    n_exp = result.n_experiments
    n_clusters = int(labels.max()) if labels.size else 0
    survived = np.zeros((n_exp, n_clusters), dtype=bool)
    best_p = np.full((n_exp, n_clusters), np.nan)
    if n_clusters == 0:
        return survived, best_p
    if n_exp == 1:
        return survived, best_p
    cluster = scheduled_executor()
    if cluster is None:  # one refit after another, each Monte Carlo on this process's threads
        outcomes = (_leave_one_out(i, result, labels, corrector, cluster_p, n_iters, seed, n_cores)
                    for i in range(n_exp))
    else:  # a Dask cluster: the refits are the tasks, each Monte Carlo on its worker's one thread
        outcomes = cluster.map(_leave_one_out, range(n_exp), result, labels, corrector, cluster_p, n_iters, seed, 1)
    for i, (survived[i], best_p[i]) in enumerate(outcomes):
        if progress is not None:
            progress(i + 1, n_exp)
    if cluster is not None:
        cluster.release()
    return survived, best_p


def _leave_one_out(i: int, result: MetaResult, labels: np.ndarray, corrector: MonteCarloFWE, cluster_p: float,
                   n_iters: int, seed: int, n_cores) -> tuple[np.ndarray, np.ndarray]:
    """Experiment ``i`` left out: refit, correct (seed ``child_seed(seed, 1, i)``), which clusters survive."""
    keep = np.arange(result.n_experiments)
    sub = refit(result, keep[keep != i])
    again = corrector.replace(n_iters=n_iters, seed=child_seed(seed, 1, i), n_cores=n_cores, early_stop=None)
    return surviving(again.correct(sub), labels, cluster_p)


def cluster_summary(experiment_ids: list[str], share: np.ndarray, counts: np.ndarray,
                    survived: np.ndarray | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cluster columns for ``clusters.tsv`` and the long per-cluster-per-experiment table.

    Columns added per cluster: ``jackknife_survived`` ("k/K": leave-one-out sets in which it
    survives), ``jackknife_k``, ``rests_on`` (";"-joined experiments without which it does not
    survive), ``max_contribution``, ``max_contributor``, ``n_foci_in_cluster``.
    Long table (``cluster_experiments.tsv``): cluster_id, experiment_id, n_foci (FocusCounter),
    contribution (Jackknife), survives_without (bool; empty when the jackknife was not run).
    """
    ids = np.asarray(experiment_ids, dtype=object)
    n_exp, n_clusters = share.shape
    rows, long = [], []
    for c in range(n_clusters):
        top = int(np.argmax(share[:, c])) if n_exp else 0
        row = {"cluster_id": c + 1,
               "max_contribution": float(share[top, c]) if n_exp else np.nan,
               "max_contributor": str(ids[top]) if n_exp else "",
               "n_foci_in_cluster": int(counts[:, c].sum())}
        if survived is not None:
            k = int(survived[:, c].sum())
            row.update({"jackknife_survived": f"{k}/{n_exp}", "jackknife_k": k,
                        "rests_on": ";".join(ids[~survived[:, c]])})
        rows.append(row)
        for i in range(n_exp):
            long.append({"cluster_id": c + 1, "experiment_id": str(ids[i]), "n_foci": int(counts[i, c]),
                         "contribution": float(share[i, c]),
                         "survives_without": None if survived is None else bool(survived[i, c])})
    columns = ["cluster_id", "experiment_id", "n_foci", "contribution", "survives_without"]
    return pd.DataFrame(rows), pd.DataFrame(long, columns=columns)
