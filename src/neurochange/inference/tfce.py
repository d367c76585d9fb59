"""Threshold-free cluster enhancement (Smith & Nichols 2009) of a z map, as JALE 0.2.10 computes it.

TFCE(v) = sum over levels h < z(v) of h^H * dh * size(cluster of v at h)^E, with E = 0.5, H = 2,
levels ``arange(0, max z, dh)`` and dh = max z / 100 (the levels follow each map's own maximum),
clusters face-connected (6 neighbours) among voxels with z > h.

:func:`tfce_map` computes the whole map level by level, as JALE does (one labelling per level).
:func:`max_tfce` computes only the map's maximum, for Monte Carlo nulls: the largest TFCE lies
at a voxel that is the highest of its cluster at some level, so it suffices to follow clusters as
the level falls, merging them (union-find) and adding each level's increment to each cluster's best
voxel (each cluster's levels credited lazily, when it merges); one pass over the voxels with z > 0
instead of 100 labellings of the volume.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import ndimage

from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.inference.unionfind import _find  # union-find root with path halving, shared

#: TFCE exponents (extent E, height H) and number of levels, JALE's defaults.
E, H, N_LEVELS = 0.5, 2.0, 100


def levels(max_z: float) -> tuple[np.ndarray, float]:
    """The levels (ascending, from 0) and their step for a map whose largest z is ``max_z``."""
    if not max_z > 0:
        return np.zeros(0), 0.0
    step = max_z / N_LEVELS
    return np.arange(0, max_z, step), step


def tfce_map(z: np.ndarray) -> np.ndarray:
    """TFCE of a 3-D z volume (same shape, float64), level by level as JALE's ``compute_tfce``."""
    z = np.asarray(z, dtype=float)
    out = np.zeros_like(z)
    hs, step = levels(float(z.max()))
    for h in hs:
        labels, _ = ndimage.label(z > h, structure=FACE_CONNECTIVITY)
        sizes = np.bincount(labels.ravel()).astype(np.float64)
        sizes[0] = 0.0
        inside = labels > 0
        out[inside] += np.power(h, H) * step * np.power(sizes[labels[inside]], E)
    return out


@numba.njit(cache=True, nogil=True)
def neighbours(v, nx, ny, nz, out):
    """Flat indices of the 6 face neighbours (-i, +i, -j, +j, -k, +k) of voxel ``v`` into ``out`` (6,),
    -1 off the grid."""
    i = v // (ny * nz)
    rest = v - i * ny * nz
    j = rest // nz
    k = rest - j * nz
    out[0] = v - ny * nz if i > 0 else -1
    out[1] = v + ny * nz if i < nx - 1 else -1
    out[2] = v - nz if j > 0 else -1
    out[3] = v + nz if j < ny - 1 else -1
    out[4] = v - 1 if k > 0 else -1
    out[5] = v + 1 if k < nz - 1 else -1


@numba.njit(cache=True, nogil=True)
def max_tfce(flat, zval, shape, hs, step, parent, size, best, mark):
    """Largest TFCE of a map given by its voxels with z > 0: flat indices ``flat`` (n,) into a volume
    of ``shape`` and their z ``zval``; ``hs``/``step`` from :func:`levels`. ``parent`` (volume size,)
    int64 must be -1 everywhere and is left so; ``size``, ``best`` (volume size,) and ``mark``
    (volume size,) are scratch.

    Levels are credited lazily: a cluster's best voxel gains ``sqrt(size) * h^H * dh`` at every level
    its size holds, so the sum over a run of levels is settled in one step (suffix sums of the level
    increments) when the cluster merges or the last level is reached; ``mark[root]`` is the lowest
    level already credited. One pass over the voxels, whatever the number of levels.
    """
    n = len(flat)
    n_levels = len(hs)
    if n == 0 or n_levels == 0:
        return 0.0
    nx, ny, nz = shape
    credit = np.zeros(n_levels + 1)  # credit[k]: sum of the increments of levels >= k
    for k in range(n_levels - 1, -1, -1):
        credit[k] = credit[k + 1] + math.pow(hs[k], H) * step
    top = np.searchsorted(hs, zval, side="left") - 1  # highest level below each voxel's z
    start = np.zeros(n_levels + 1, dtype=np.int64)  # voxels bucketed by that level (counting sort)
    for t in range(n):
        start[top[t] + 1] += 1
    for k in range(n_levels):
        start[k + 1] += start[k]
    order = np.empty(n, dtype=np.int64)
    fill = start.copy()
    for t in range(n):
        order[fill[top[t]]] = t
        fill[top[t]] += 1
    near = np.empty(6, dtype=np.int64)
    for k in range(n_levels - 1, -1, -1):
        for pos in range(start[k], start[k + 1]):
            v = flat[order[pos]]
            parent[v] = v
            size[v] = 1.0
            best[v] = 0.0
            mark[v] = k + 1
            neighbours(v, nx, ny, nz, near)
            for u in near:
                if u < 0 or parent[u] < 0:
                    continue
                a = _find(parent, v)
                b = _find(parent, u)
                if a == b:
                    continue
                for r in (a, b):  # settle the levels above k at the sizes they had
                    best[r] += math.sqrt(size[r]) * (credit[k + 1] - credit[int(mark[r])])
                    mark[r] = k + 1
                if size[a] < size[b]:
                    a, b = b, a
                parent[b] = a
                size[a] += size[b]
                best[a] = max(best[a], best[b])
    result = 0.0
    for t in range(n):
        v = flat[t]
        if parent[v] == v:
            result = max(result, best[v] + math.sqrt(size[v]) * (credit[0] - credit[int(mark[v])]))
    for t in range(n):
        parent[flat[t]] = -1
    return result


__all__ = ["E", "H", "N_LEVELS", "levels", "max_tfce", "tfce_map"]
