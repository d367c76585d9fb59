"""Sphere kernels (Wager 2004, 2007), as NiMARE 0.22.1 builds them.

Each focus becomes a sphere of radius ``r`` mm (default 10) of voxels whose centre lies
within ``r`` of the focus voxel's centre. MKDA: an experiment's MA map is the union of its
foci spheres (value 1 per voxel); KDA: it counts the foci spheres covering each voxel.

The hot loops (:func:`sphere_counts`, :func:`mkda_ma_csr`) are numba-compiled;
:func:`sphere_ma_numpy` is the plain NumPy reference the tests hold them to.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from neurochange import space as _space

DEFAULT_RADIUS_MM = 10.0


def sphere_offsets(radius: float, voxel_size) -> np.ndarray:
    """Voxel offsets (n, 3) int64 of a sphere of ``radius`` mm on voxels of ``voxel_size`` mm.

    NiMARE's rule: offsets from -floor(r / d) to +floor(r / d) along each axis, kept when the
    offset's length in mm is <= r (515 offsets at r = 10 mm, 2 mm voxels).
    """
    radius = float(radius)
    vox = np.asarray(voxel_size, dtype=np.float64)
    axes = [np.arange(-(radius // d), radius // d + 0.01, 1) for d in vox]
    cube = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.int64)
    inside = np.sqrt(((cube * vox) ** 2).sum(axis=1)) <= radius
    return np.ascontiguousarray(cube[inside])


def masked_index(mask: np.ndarray) -> np.ndarray:
    """Flat (C-order) voxel index -> masked index, -1 outside the mask; int64 (prod(shape),)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    out = np.full(flat.size, -1, dtype=np.int64)
    out[flat] = np.arange(int(flat.sum()))
    return out


@njit(cache=True, nogil=True)
def _sphere_counts(offsets, ijk, indptr, shape, to_masked, n_mask, sum_overlap, width):
    n_exp = len(indptr) - 1
    stat = np.zeros(n_mask, dtype=np.int64)
    hist = np.zeros((n_exp, width), dtype=np.int64)
    counts = np.zeros(n_mask, dtype=np.int64)
    touched = np.empty(n_mask, dtype=np.int64)
    for e in range(n_exp):
        n_touched = 0
        for f in range(indptr[e], indptr[e + 1]):
            for o in range(offsets.shape[0]):
                i = ijk[f, 0] + offsets[o, 0]
                j = ijk[f, 1] + offsets[o, 1]
                k = ijk[f, 2] + offsets[o, 2]
                if i < 0 or j < 0 or k < 0 or i >= shape[0] or j >= shape[1] or k >= shape[2]:
                    continue
                m = to_masked[(i * shape[1] + j) * shape[2] + k]
                if m < 0:
                    continue
                if counts[m] == 0:
                    touched[n_touched] = m
                    n_touched += 1
                    counts[m] = 1
                elif sum_overlap:
                    counts[m] += 1
        for t in range(n_touched):
            m = touched[t]
            stat[m] += counts[m]
            hist[e, counts[m]] += 1
            counts[m] = 0
    return stat, hist


def sphere_counts(
    foci_ijk: np.ndarray, focus_experiment: np.ndarray, n_experiments: int, grid: _space.Grid,
    radius: float = DEFAULT_RADIUS_MM, sum_overlap: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed sphere MA maps of all experiments, and each experiment's MA-value histogram.

    ``foci_ijk`` (n_foci, 3) voxel indices, ``focus_experiment`` (n_foci,) experiment index,
    foci of one experiment contiguous. ``sum_overlap=False``: MKDA (union of spheres),
    ``True``: KDA (count of spheres). Returns ``stat`` (n_mask,) int64, the sum over
    experiments of the MA value (value 1 per sphere) at each mask voxel, and ``hist``
    (n_experiments, width) int64, the number of mask voxels where experiment e's MA value
    is v (v >= 1; column 0 is left zero).
    """
    focus_experiment = np.asarray(focus_experiment, dtype=np.int64)
    if len(focus_experiment) and np.any(np.diff(focus_experiment) < 0):
        raise ValueError("foci must be grouped by experiment (focus_experiment non-decreasing)")
    per_exp = np.bincount(focus_experiment, minlength=n_experiments)
    indptr = np.concatenate([[0], np.cumsum(per_exp)]).astype(np.int64)
    width = int(per_exp.max()) + 1 if sum_overlap and n_experiments else 2
    return _sphere_counts(
        sphere_offsets(radius, grid.voxel_size), np.ascontiguousarray(foci_ijk, dtype=np.int64), indptr,
        np.array(grid.shape, dtype=np.int64), masked_index(grid.mask), grid.n_voxels, bool(sum_overlap), width,
    )


@njit(cache=True, nogil=True)
def _sphere_union_csr(offsets, ijk, indptr, shape, to_masked, n_mask, out_indptr):
    n_exp = len(indptr) - 1
    indices = np.empty(out_indptr[-1], dtype=np.int32)
    seen = np.full(n_mask, -1, dtype=np.int64)
    for e in range(n_exp):
        pos = out_indptr[e]
        for f in range(indptr[e], indptr[e + 1]):
            for o in range(offsets.shape[0]):
                i = ijk[f, 0] + offsets[o, 0]
                j = ijk[f, 1] + offsets[o, 1]
                k = ijk[f, 2] + offsets[o, 2]
                if i < 0 or j < 0 or k < 0 or i >= shape[0] or j >= shape[1] or k >= shape[2]:
                    continue
                m = to_masked[(i * shape[1] + j) * shape[2] + k]
                if m < 0 or seen[m] == e:
                    continue
                seen[m] = e
                indices[pos] = m
                pos += 1
        indices[out_indptr[e]:pos].sort()
    return indices


def mkda_ma_csr(foci_ijk: np.ndarray, focus_experiment: np.ndarray, n_experiments: int, grid: _space.Grid,
                radius: float = DEFAULT_RADIUS_MM) -> tuple[np.ndarray, np.ndarray]:
    """Binary MKDA maps of all experiments as CSR parts: ``indptr`` (n_experiments + 1,) int64 and
    ``indices`` (masked voxel indices, ascending within each experiment) int32."""
    _, hist = sphere_counts(foci_ijk, focus_experiment, n_experiments, grid, radius)
    out_indptr = np.concatenate([[0], np.cumsum(hist[:, 1])]).astype(np.int64)
    per_exp = np.bincount(np.asarray(focus_experiment, dtype=np.int64), minlength=n_experiments)
    indptr = np.concatenate([[0], np.cumsum(per_exp)]).astype(np.int64)
    indices = _sphere_union_csr(
        sphere_offsets(radius, grid.voxel_size), np.ascontiguousarray(foci_ijk, dtype=np.int64), indptr,
        np.array(grid.shape, dtype=np.int64), masked_index(grid.mask), grid.n_voxels, out_indptr,
    )
    return out_indptr, indices


def sphere_ma_numpy(foci_ijk: np.ndarray, grid: _space.Grid, radius: float = DEFAULT_RADIUS_MM,
                    sum_overlap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Reference: one experiment's MA map as (masked voxel indices ascending, values) int64."""
    offsets = sphere_offsets(radius, grid.voxel_size)
    vox = (np.asarray(foci_ijk, dtype=np.int64)[:, None, :] + offsets[None]).reshape(-1, 3)
    vox = vox[grid.in_grid(vox)]
    cols = masked_index(grid.mask)[np.ravel_multi_index(tuple(vox.T), grid.shape)]
    cols, vals = np.unique(cols[cols >= 0], return_counts=True)
    return cols, (vals if sum_overlap else np.ones_like(vals))


def sphere_ma_csr(foci_ijk: np.ndarray, focus_experiment: np.ndarray, n_experiments: int, grid: _space.Grid,
                  radius: float = DEFAULT_RADIUS_MM, sum_overlap: bool = False):
    """MA maps of all experiments as CSR parts: ``indptr`` (n_experiments + 1,) int64, ``indices``
    (masked voxel indices, ascending within each experiment) and ``values`` float64 (1 for MKDA;
    the number of the experiment's spheres covering the voxel for KDA)."""
    indptr, indices = mkda_ma_csr(foci_ijk, focus_experiment, n_experiments, grid, radius)
    values = np.ones(len(indices))
    if sum_overlap:
        foci_ijk = np.asarray(foci_ijk, dtype=np.int64).reshape(-1, 3)
        for e in range(n_experiments):
            _, counts = sphere_ma_numpy(foci_ijk[focus_experiment == e], grid, radius, sum_overlap=True)
            values[indptr[e]:indptr[e + 1]] = counts
    return indptr, indices, values
