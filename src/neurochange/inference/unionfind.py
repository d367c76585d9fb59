"""Cluster-level FWE for a two-sided difference map (subtraction), as NiMARE 0.22.1 does it.

NiMARE's ``ALESubtraction(vfwe_only=False)``: the cluster-forming threshold is the
``1 - cluster_forming_p`` quantile (linear interpolation, ``numpy.quantile``) of
``|difference|`` over every permutation and every mask voxel; in each permutation, voxels with
``|difference|`` above it form clusters, positive and negative ones apart, face-connected; the
largest cluster's size (voxels) and mass (sum of ``|difference| - threshold``) over both signs
are that permutation's null values. Observed clusters get ``p`` = share of null maxima >= their
size (mass), clipped to ``[1/n, 1 - 1/n]``.

Without storing every permutation map: the threshold comes from the largest ``|difference|``
values of each chunk (the quantile needs only the top of the distribution), and the
permutations are then replayed from the same seeds to measure clusters. Clusters are found on
the sparse support (voxels some experiment reaches) by union-find over a precomputed
face-neighbour table.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def neighbour_table(support: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each support voxel (mask index), the support indices of its +i, +j, +k face neighbours (-1: none).

    ``support``: sorted mask-voxel indices (C order of ``mask``); returns int64 (len(support), 3).
    """
    ijk = np.argwhere(mask)[support]
    lookup = np.full(np.asarray(mask.shape) + 1, -1, dtype=np.int64)  # padded: +1 never leaves the array
    lookup[tuple(ijk.T)] = np.arange(len(support))
    table = np.empty((len(support), 3), dtype=np.int64)
    for axis in range(3):
        step = np.zeros(3, dtype=np.int64)
        step[axis] = 1
        table[:, axis] = lookup[tuple((ijk + step).T)]
    return table


@njit(cache=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True)
def max_clusters(values, threshold, neighbours, parent, size, mass):
    """Largest cluster size and mass among ``|values| > threshold`` (same sign, face-connected).

    ``parent``, ``size`` (int64) and ``mass`` (float64), each ``len(values)``, are work arrays.
    """
    n = values.shape[0]
    for v in range(n):
        parent[v] = v
        size[v] = 0
        mass[v] = 0.0
    for v in range(n):
        if abs(values[v]) <= threshold:
            continue
        for a in range(3):
            u = neighbours[v, a]
            if u >= 0 and abs(values[u]) > threshold and (values[u] > 0) == (values[v] > 0):
                ru, rv = _find(parent, u), _find(parent, v)
                if ru != rv:
                    parent[ru] = rv
    best_size = 0
    best_mass = 0.0
    for v in range(n):
        if abs(values[v]) > threshold:
            r = _find(parent, v)
            size[r] += 1
            mass[r] += abs(values[v]) - threshold
            if size[r] > best_size:
                best_size = size[r]
            if mass[r] > best_mass:
                best_mass = mass[r]
    return best_size, best_mass


def cluster_labels(values: np.ndarray, threshold: float, neighbours: np.ndarray) -> np.ndarray:
    """Cluster id per voxel (0 = none; positive and negative clusters apart), int64."""
    n = len(values)
    parent = np.arange(n)
    supra = np.abs(values) > threshold
    for a in range(3):
        u = neighbours[:, a]
        for v in np.flatnonzero(supra & (u >= 0)):
            w = u[v]
            if supra[w] and (values[w] > 0) == (values[v] > 0):
                rv, rw = _root(parent, v), _root(parent, w)
                if rv != rw:
                    parent[rv] = rw
    roots = np.array([_root(parent, v) for v in range(n)])
    labels = np.zeros(n, dtype=np.int64)
    _, labels[supra] = np.unique(roots[supra], return_inverse=True)
    labels[supra] += 1
    return labels


def _root(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def top_quantile(tops: list[np.ndarray], n_values: int, q: float) -> float:
    """``numpy.quantile(all, q)`` (linear) of ``n_values`` non-negative values, from their largest ones.

    ``tops``: the largest values of disjoint parts (together they must hold the top
    ``ceil((1 - q) (n_values - 1)) + 2`` values of the whole).
    """
    pos = (n_values - 1) * q
    lo = int(np.floor(pos))
    rank_lo = n_values - 1 - lo  # 0 = largest
    merged = np.sort(np.concatenate(tops))[::-1]
    need = rank_lo + 1
    merged = np.concatenate([merged, np.zeros(max(0, need - len(merged)))])  # the rest are zeros
    v_lo = merged[rank_lo]
    v_hi = merged[rank_lo - 1] if rank_lo >= 1 and pos > lo else v_lo
    return float(v_lo + (v_hi - v_lo) * (pos - lo))


def observed_cluster_p(values: np.ndarray, threshold: float, neighbours: np.ndarray, null_size: np.ndarray,
                       null_mass: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per support voxel: cluster-size FWE p, cluster-mass FWE p, cluster label (0 outside clusters)."""
    from neurochange.inference.stats import null_to_p

    labels = cluster_labels(values, threshold, neighbours)
    n = labels.max()
    sizes = np.bincount(labels, minlength=n + 1).astype(np.float64)
    masses = np.bincount(labels, weights=np.abs(values) - threshold, minlength=n + 1)
    sizes[0] = 0.0
    masses[0] = 0.0
    return null_to_p(sizes, null_size)[labels], null_to_p(masses, null_mass)[labels], labels
