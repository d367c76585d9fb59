"""Sphere kernels and the MKDA density and KDA estimators, as NiMARE 0.22.1 computes them.

Kernels (Wager 2004, 2007): each focus becomes a sphere of radius ``r`` mm (default 10)
of voxels whose centre lies within ``r`` of the focus voxel's centre.

- MKDA: an experiment's MA map is the union of its foci spheres (value 1 per voxel);
- KDA: an experiment's MA map counts the foci spheres covering each voxel.

``MKDADensity`` sums the MA maps (NiMARE's default unit experiment weights, so the
statistic counts covering experiments); its approximate null is the exact Poisson-binomial
distribution of that count when each experiment covers a voxel with probability
(its in-mask sphere volume) / (mask volume). ``KDA`` sums the KDA maps; its approximate
null convolves each experiment's histogram of MA values. Both match NiMARE's
``null_method="approximate"`` (the default of both estimators).

The hot loop (:func:`sphere_counts`) is numba-compiled; :func:`sphere_ma_numpy` is the plain
NumPy reference the tests hold it to.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from neurochange import space as _space
from neurochange.inference import stats as inference
from neurochange.meta.ale import _analysis_inputs
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, MetaResult
from neurochange.studyset import StudySet

DEFAULT_RADIUS_MM = 10.0


# ---------------------------------------------------------------------------- kernels
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


# ---------------------------------------------------------------------------- nulls
def mkda_null(prop_active: np.ndarray) -> np.ndarray:
    """Distribution (n+1,) of the number of experiments covering a voxel, P(count = 0..n).

    ``prop_active`` (n,): each experiment's in-mask sphere volume / mask volume, convolved
    one experiment at a time in analysis order, as NiMARE does (pass float32 values to
    reproduce its float32 rounding of ``1 - p``).
    """
    hist = np.ones(1)
    for p in prop_active:
        hist = np.convolve(hist, [1 - p, p])
    return hist


def kda_null(hist: np.ndarray, n_mask: int, n_bins: int) -> np.ndarray:
    """Distribution (n_bins,) of the summed KDA value: convolution of the experiments' MA-value histograms.

    ``hist`` (n_experiments, width): mask voxels per MA value (column 0 ignored; the
    uncovered voxels are put there). Truncated to ``n_bins`` (NiMARE's bins hold every
    reachable sum).
    """
    out = None
    for row in np.asarray(hist, dtype=np.float64):
        row = row.copy()
        row[0] = n_mask - row[1:].sum()
        row /= row.sum()
        out = row if out is None else np.convolve(out, row)
    full = np.zeros(n_bins)
    if out is None:
        full[0] = 1.0
        return full
    m = min(n_bins, len(out))
    full[:m] = out[:m]
    return full


# ---------------------------------------------------------------------------- estimators
def _sphere_inputs(studyset: StudySet, grid: _space.Grid) -> dict:
    """Experiments (sorted ids), foci voxels and counts; sample sizes are not needed."""
    return _analysis_inputs(studyset, grid, fixed_fwhm=1.0)


def _result(name, grid, inputs, stat, bins, weights, params) -> MetaResult:
    p = inference.hist_to_p(stat, weights, bins)
    maps = {"stat": stat, "p": p, "z": inference.p_to_z(p), "logp": inference.p_to_logp(p)}
    n_exp = len(inputs["experiment_ids"])
    return MetaResult(
        grid=grid,
        maps=maps,
        nulls={NULL_BINS: bins, NULL_APPROXIMATE: weights},
        params={"estimator": {"name": name, **params, "null_method": "approximate",
                              "reference": f"NiMARE 0.22.1 {name}"},
                "counts": inputs["counts"]},
        experiment_ids=inputs["experiment_ids"],
        foci_ijk=inputs["foci_ijk"],
        foci_xyz=inputs["foci_xyz"],
        focus_experiment=inputs["focus_experiment"],
        experiment_fwhm=np.full(n_exp, np.nan),
        sample_sizes=inputs["sample_sizes"],
        fixed_fwhm=False,
    )


class _SphereEstimator:
    """Parameters shared by the sphere-kernel estimators: ``radius`` (mm, default 10) and ``value``."""

    def __init__(self, radius: float = DEFAULT_RADIUS_MM, value: float = 1.0):
        if not np.isfinite(radius) or radius <= 0:
            raise ValueError(f"sphere radius must be a positive number of mm, got {radius}")
        self.radius = float(radius)
        self.value = float(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(radius={self.radius!r}, value={self.value!r})"

    def get_params(self) -> dict:
        return {"radius": self.radius, "value": self.value}


class MKDADensity(_SphereEstimator):
    """Multilevel kernel density analysis, density statistic (Wager 2007).

    Parameters
    ----------
    radius : float
        Sphere radius in mm (default 10).
    value : float
        Value of a sphere voxel (default 1).
    """

    def fit(self, studyset: StudySet, grid: _space.Grid | None = None) -> MetaResult:
        """Density (``stat``: weighted count of experiments whose spheres cover a voxel), p, z, logp."""
        grid = grid or _space.mni_2mm()
        inputs = _sphere_inputs(studyset, grid)
        n_exp = len(inputs["experiment_ids"])
        counts, hist = sphere_counts(inputs["foci_ijk"], inputs["focus_experiment"], n_exp, grid, self.radius)
        stat = counts * self.value
        # float32 as NiMARE computes it (float32 MA maps), so the null is bit-identical
        prop_active = (hist[:, 1] * self.value).astype(np.float32) / np.float32(grid.n_voxels)
        bins = np.arange(n_exp + 1)
        weights = mkda_null(prop_active)
        return _result("MKDADensity", grid, inputs, stat, bins, weights,
                       {"kernel": "MKDA sphere", "radius_mm": self.radius, "value": self.value,
                        "weighting": "none (unit weights)"})


class KDA(_SphereEstimator):
    """Kernel density analysis (Wager 2003, 2004): sum of per-experiment sphere counts.

    Parameters
    ----------
    radius : float
        Sphere radius in mm (default 10).
    value : float
        Value each focus sphere adds (default 1).
    """

    def fit(self, studyset: StudySet, grid: _space.Grid | None = None) -> MetaResult:
        """KDA statistic (``stat``: sum over experiments of foci spheres covering a voxel), p, z, logp."""
        grid = grid or _space.mni_2mm()
        inputs = _sphere_inputs(studyset, grid)
        n_exp = len(inputs["experiment_ids"])
        counts, hist = sphere_counts(inputs["foci_ijk"], inputs["focus_experiment"], n_exp, grid,
                                     self.radius, sum_overlap=True)
        stat = counts * self.value
        n_foci = np.bincount(inputs["focus_experiment"], minlength=n_exp)
        # NiMARE: bin centres 0, v, 2v, ... up to the largest reachable sum plus one bin
        max_poss = float(np.sum(self.value * n_foci))
        bins = np.arange(0, max_poss + self.value * 1.5, self.value)
        weights = kda_null(hist, grid.n_voxels, len(bins))
        return _result("KDA", grid, inputs, stat, bins, weights,
                       {"kernel": "KDA sphere", "radius_mm": self.radius, "value": self.value})
