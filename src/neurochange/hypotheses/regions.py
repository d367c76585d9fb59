"""The region-wise convergence test of a predicted model: mean ALE in each region against a Monte Carlo null.

The test, for one set of experiments and one region R (a fixed set of voxels):

- statistic: the mean ALE over R's voxels (the kernels of :class:`~neurochange.meta.ale.ALE`: a fixed
  FWHM or one from each experiment's sample size);
- null: the same experiments (their focus counts and kernels) with every focus redrawn
  uniformly from the null-mask voxels, as the Monte Carlo FWE null draws them
  (:func:`~neurochange.inference.montecarlo.chunk_draws`; chunk c of the set's stream uses its own SeedSequence
  child), R kept fixed; only R's voxels are computed, so an iteration costs little;
- ``p = (1 + #{null >= observed}) / (1 + n_iters)`` (Phipson & Smyth 2010), valid
  (never below its nominal level) under the null at any number of iterations.

Multiple regions: Holm's step-down correction over every test the model makes (its
regions; with signed data, its regions x the two directions), so the chance that any
region of a model is called convergent when none is stays at or below alpha.

"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.inference import null_masks
from neurochange.inference.executors import default_executor, run_chunks
from neurochange.inference.montecarlo import chunk_draws
from neurochange.meta import kernels
from neurochange.meta.ale import ALE
from neurochange.meta.inputs import analysis_inputs
from neurochange.studyset import StudySet


# ---------------------------------------------------------------------------- region ALE (numba)
@njit(cache=True, nogil=True)
def _region_means(foci_ijk, exp_start, exp_kernel, kvalues, kstart, kradius, vox_k, row_ptr, shape,
                  region_ptr, region_idx, out_row, ma, keep, touched):
    """Mean ALE of each region for one set of foci; writes ``out_row`` (n_regions,).

    ``foci_ijk`` (n, 3) int64, grouped by experiment (experiment e owns rows
    ``exp_start[e]:exp_start[e+1]``). The union of region voxels is held by grid row:
    the voxels of row (i, j) are ``row_ptr[i*ny+j]:row_ptr[i*ny+j+1]`` with k in ``vox_k``
    (sorted). ``ma`` (m,) zeros, ``keep`` (m,) and ``touched`` (m,) are work space;
    ``ma`` is left all zero. Each experiment's MA is the maximum of its foci's kernels,
    folded into ``keep`` (the product of 1 - MA, in experiment order) over the voxels it touched.
    """
    m = vox_k.shape[0]
    nx, ny = shape[0], shape[1]
    for v in range(m):
        keep[v] = 1.0
    for e in range(exp_start.shape[0] - 1):
        k = exp_kernel[e]
        r = kradius[k]
        side = 2 * r + 1
        base = kstart[k]
        n_touched = 0
        for f in range(exp_start[e], exp_start[e + 1]):
            fi = foci_ijk[f, 0]
            fj = foci_ijk[f, 1]
            fk = foci_ijk[f, 2]
            for a in range(side):
                i = fi + a - r
                if i < 0 or i >= nx:
                    continue
                for b in range(side):
                    j = fj + b - r
                    if j < 0 or j >= ny:
                        continue
                    row = i * ny + j
                    offset = base + (a * side + b) * side
                    for t in range(row_ptr[row], row_ptr[row + 1]):
                        c = vox_k[t] - fk + r
                        if c < 0:
                            continue
                        if c >= side:
                            break
                        value = np.float64(kvalues[offset + c])
                        if value <= 0.0:
                            continue
                        if ma[t] == 0.0:
                            touched[n_touched] = t
                            n_touched += 1
                            ma[t] = value
                        elif value > ma[t]:
                            ma[t] = value
        for q in range(n_touched):
            t = touched[q]
            keep[t] *= 1.0 - ma[t]
            ma[t] = 0.0
    for q in range(region_ptr.shape[0] - 1):
        total = 0.0
        for t in range(region_ptr[q], region_ptr[q + 1]):
            total += 1.0 - keep[region_idx[t]]
        out_row[q] = total / (region_ptr[q + 1] - region_ptr[q])


@njit(cache=True, nogil=True)
def _null_block(draws, null_ijk, exp_start, exp_kernel, kvalues, kstart, kradius, vox_k, row_ptr, shape,
                region_ptr, region_idx, out):
    """Region means for each row of ``draws`` (iterations, n_foci) of null-voxel indices."""
    m = vox_k.shape[0]
    ma = np.zeros(m)
    keep = np.ones(m)
    touched = np.zeros(m, dtype=np.int64)
    foci = np.empty((draws.shape[1], 3), dtype=np.int64)
    for it in range(draws.shape[0]):
        for f in range(draws.shape[1]):
            foci[f, 0] = null_ijk[draws[it, f], 0]
            foci[f, 1] = null_ijk[draws[it, f], 1]
            foci[f, 2] = null_ijk[draws[it, f], 2]
        _region_means(foci, exp_start, exp_kernel, kvalues, kstart, kradius, vox_k, row_ptr, shape,
                      region_ptr, region_idx, out[it], ma, keep, touched)


@dataclass
class RegionSetup:
    """The voxels of a model's regions on a grid, as the numba loops take them."""

    names: list[str]
    n_voxels: np.ndarray  # (n_regions,)
    vox_k: np.ndarray  # (m,) k index of each union voxel, C order
    row_ptr: np.ndarray  # (nx * ny + 1,) union voxels of grid row (i, j)
    shape: np.ndarray  # (3,) grid shape
    region_ptr: np.ndarray
    region_idx: np.ndarray

    @classmethod
    def from_masks(cls, masks: dict[str, np.ndarray]) -> "RegionSetup":
        empty = [name for name, mask in masks.items() if not mask.any()]
        if empty:
            raise InputError(f"region {empty[0]!r} has no voxel in the analysis mask", field="regions")
        shape = next(iter(masks.values())).shape
        union = np.zeros(shape, dtype=bool)
        for mask in masks.values():
            union |= mask
        vox = np.argwhere(union).astype(np.int64)  # C order: sorted by row (i, j), then k
        rows = vox[:, 0] * shape[1] + vox[:, 1]
        row_ptr = np.searchsorted(rows, np.arange(shape[0] * shape[1] + 1)).astype(np.int64)
        lookup = np.full(shape, -1, dtype=np.int64)
        lookup[tuple(vox.T)] = np.arange(len(vox))
        idx = [lookup[mask] for mask in masks.values()]
        ptr = np.concatenate([[0], np.cumsum([len(i) for i in idx])]).astype(np.int64)
        return cls(list(masks), np.array([len(i) for i in idx]), np.ascontiguousarray(vox[:, 2]), row_ptr,
                   np.array(shape, dtype=np.int64), ptr, np.concatenate(idx).astype(np.int64))


def _null_chunk(chunk, null_ijk, args, seed: int, n_foci: int, n_regions: int, stream: tuple[int, ...]):
    """The region means of one chunk's null iterations, (chunk.count, n_regions)."""
    out = np.zeros((chunk.count, n_regions))
    _null_block(chunk_draws(seed, chunk.index, chunk.count, n_foci, len(null_ijk), stream), null_ijk, *args, out)
    return out


def _kernel_table(fwhms: np.ndarray, voxel_size, fixed: bool):
    """Unique kernels of the experiments: (exp_kernel, values, start, radius)."""
    unique, exp_kernel = np.unique(np.asarray(fwhms, dtype=float), return_inverse=True)
    cubes = [kernels.ale_kernel(float(f), voxel_size, fixed=fixed) for f in unique]
    start = np.concatenate([[0], np.cumsum([c.values.size for c in cubes])[:-1]]).astype(np.int64)
    return (exp_kernel.astype(np.int64), np.concatenate([c.values for c in cubes]).astype(np.float32),
            start, np.array([c.radius for c in cubes], dtype=np.int64))


def region_convergence(studyset: StudySet, masks: dict[str, np.ndarray], grid: _space.Grid | None = None, *,
                       fwhm: float | None = None, n_iters: int = 1000, seed: int = 0, stream: int = 0,
                       null_mask="brain", n_cores: int | None = None, progress=None) -> dict:
    """Observed mean ALE in each region, its Monte Carlo null and p (see the module docstring).

    Returns ``{"n_experiments", "n_foci", "observed" (n_regions,), "null" (n_iters, n_regions),
    "p" (n_regions,)}``. ``stream`` 0 draws exactly the null foci of ``MonteCarloFWE`` with the
    same seed; other streams are independent (``SeedSequence(seed, spawn_key=(stream, chunk))``).
    """
    grid = grid or _space.mni_2mm()
    setup = RegionSetup.from_masks(masks)
    inputs = analysis_inputs(studyset, grid)
    exp_kernel, kvalues, kstart, kradius = _kernel_table(ALE(fwhm).experiment_fwhm(inputs), grid.voxel_size,
                                                         fixed=fwhm is not None)
    counts = inputs.foci_per_experiment()
    exp_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    args = (exp_start, exp_kernel, kvalues, kstart, kradius, setup.vox_k, setup.row_ptr, setup.shape,
            setup.region_ptr, setup.region_idx)
    n_regions = len(setup.names)

    observed = np.zeros(n_regions)
    _region_means(np.ascontiguousarray(inputs.foci_ijk, dtype=np.int64), *args, observed,
                  np.zeros(len(setup.vox_k)), np.ones(len(setup.vox_k)), np.zeros(len(setup.vox_k), dtype=np.int64))

    null_ijk = np.argwhere(null_masks.null_mask(grid, null_mask)).astype(np.int64)
    n_foci = int(exp_start[-1])
    task = functools.partial(_null_chunk, seed=seed, n_foci=n_foci, n_regions=n_regions,
                             stream=(stream,) if stream else ())
    with default_executor(n_cores) as executor:
        run = run_chunks(task, n_iters, executor, progress=progress, shared=(null_ijk, args))
    null = np.concatenate(run.results)
    exceed = (null >= observed[None, :] - 1e-12 * np.abs(observed[None, :])).sum(axis=0)
    return {
        "n_experiments": inputs.n_experiments,
        "n_foci": n_foci,
        "observed": observed,
        "null": null,
        "p": (1.0 + exceed) / (1.0 + n_iters),
        "regions": setup.names,
        "n_voxels": setup.n_voxels,
    }


# ---------------------------------------------------------------------------- correction and verdict
def holm(p) -> np.ndarray:
    """Holm step-down adjusted p values (same shape; NaN stays NaN and is not counted)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    valid = np.flatnonzero(~np.isnan(flat))
    if len(valid) == 0:
        return out
    order = valid[np.argsort(flat[valid], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
    result = out.ravel()
    result[order] = adjusted
    return result.reshape(p.shape)
