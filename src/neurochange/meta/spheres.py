"""Sphere kernels (Wager 2004, 2007), as NiMARE 0.22.1 builds them.

Each focus becomes a sphere of radius ``r`` mm (default 10) of voxels whose centre lies
within ``r`` of the focus voxel's centre. MKDA: an experiment's MA map is the union of its
foci spheres (value 1 per voxel); KDA: it counts the foci spheres covering each voxel.

The hot loops (:func:`sphere_counts`, :func:`mkda_ma_csr`) are numba-compiled;
:func:`sphere_ma_numpy` is the plain NumPy reference the tests hold them to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def sphere_rows(offsets: np.ndarray) -> np.ndarray:
    """The offsets of a sphere as rows along the last axis: (n_rows, 4) int64 of (di, dj, first dk, last dk)."""
    rows = []
    for (di, dj), part in pd.DataFrame(offsets, columns=["i", "j", "k"]).groupby(["i", "j"], sort=True):
        ks = np.sort(part["k"].to_numpy())
        if not np.array_equal(ks, np.arange(ks[0], ks[-1] + 1)):  # a sphere's rows are unbroken
            raise ValueError("offsets are not a sphere: a row along k has a gap")
        rows.append((di, dj, ks[0], ks[-1]))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


@njit(cache=True, nogil=True)
def _stamp_counts(rows, ijk, indptr, shape, in_mask, sum_overlap, dense, flag, hist, spans):
    """Add every experiment's sphere map to ``dense`` (flat volume): the union of its spheres (1 inside), or with
    ``sum_overlap`` the count of its spheres; ``hist[e, v]``: experiment e's mask voxels of value v.

    Each focus stamps its sphere's rows into ``flag`` (contiguous runs: vectorized), then the experiment's
    rows are added and cleared; a row stamped twice adds its values once, since the first pass clears
    them. ``flag`` is zero on entry and on exit; ``spans``: scratch (at least foci x rows, 2).
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    for e in range(len(indptr) - 1):
        n_spans = 0
        for f in range(indptr[e], indptr[e + 1]):
            for r in range(rows.shape[0]):
                i = ijk[f, 0] + rows[r, 0]
                j = ijk[f, 1] + rows[r, 1]
                if i < 0 or j < 0 or i >= nx or j >= ny:
                    continue
                k0 = max(ijk[f, 2] + rows[r, 2], 0)
                k1 = min(ijk[f, 2] + rows[r, 3], nz - 1)
                if k0 > k1:
                    continue
                base = (i * ny + j) * nz
                if sum_overlap:
                    flag[base + k0:base + k1 + 1] += 1
                else:
                    flag[base + k0:base + k1 + 1] = 1
                spans[n_spans, 0] = base + k0
                spans[n_spans, 1] = base + k1 + 1
                n_spans += 1
        covered = 0
        for t in range(n_spans):
            a, b = spans[t, 0], spans[t, 1]
            if sum_overlap:
                for v in range(a, b):
                    if flag[v] > 0 and in_mask[v]:
                        hist[e, flag[v]] += 1
            for v in range(a, b):
                c = flag[v]
                covered += c * in_mask[v]
                dense[v] += c
                flag[v] = 0
        if not sum_overlap:
            hist[e, 1] = covered


class SphereStamp:
    """The sphere kernel on a grid, ready to stamp experiments (:meth:`counts`); one per thread (its buffers)."""

    def __init__(self, grid: _space.Grid, radius: float = DEFAULT_RADIUS_MM, sum_overlap: bool = False):
        self.rows = sphere_rows(sphere_offsets(radius, grid.voxel_size))
        self.shape = np.array(grid.shape, dtype=np.int64)
        self.in_mask = np.ascontiguousarray(grid.mask.ravel(), dtype=np.uint8)
        self.mask_flat = np.flatnonzero(grid.mask.ravel())
        self.sum_overlap = bool(sum_overlap)
        self.dense = np.zeros(grid.mask.size, dtype=np.int32)
        self.flag = np.zeros(grid.mask.size, dtype=np.int16)  # counts of one experiment: <= its foci

    def counts(self, ijk: np.ndarray, indptr: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``stat`` (n_mask,) int64 and ``hist`` (n_experiments, width) of the foci ``ijk`` (n, 3) int64, experiment
        e's foci at ``indptr[e]:indptr[e + 1]``."""
        most = int(np.diff(indptr).max()) if len(indptr) > 1 else 0
        spans = np.empty((max(most, 1) * len(self.rows), 2), dtype=np.int64)
        hist = np.zeros((len(indptr) - 1, width), dtype=np.int64)
        _stamp_counts(self.rows, ijk, indptr, self.shape, self.in_mask, self.sum_overlap, self.dense, self.flag, hist,
                      spans)
        stat = self.dense[self.mask_flat].astype(np.int64)
        self.dense[:] = 0
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
    return SphereStamp(grid, radius, sum_overlap).counts(np.ascontiguousarray(foci_ijk, dtype=np.int64), indptr, width)


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
