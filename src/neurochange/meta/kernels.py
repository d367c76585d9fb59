"""ALE kernels: Gaussian width from sample size, the kernel array, modeled activation (MA) maps.

Built as NiMARE 0.22.1 builds them, so that numbers agree:

- FWHM (mm) from sample size ``n`` (Eickhoff et al. 2009, doi:10.1002/hbm.20718): the
  spatial uncertainty between subjects (11.6 mm / sqrt(n)) and between templates (5.7 mm),
  each turned from a mean distance into a FWHM by ``sqrt(8 ln 2) / (2 sqrt(2 / pi))``,
  combined as the root of the sum of squares.
- Kernel: ``scipy.ndimage.gaussian_filter`` (truncated at 4 sigma) applied to a unit
  impulse in a 31^3 volume, cropped to the span of values above machine epsilon along the
  first axis (the same span on all three axes). Sigma in voxels is
  ``fwhm / sqrt(voxel volume) * sqrt(2) / (2 sqrt(2 ln 2))``, which is the usual
  ``fwhm / 2.3548 / voxel edge`` on isotropic 2 mm grids only (NiMARE's formula).
- Kernel values are stored as float32, as NiMARE stores them; everything computed from
  them (MA, ALE) is float64.
- MA of an experiment: voxelwise maximum over its foci of the kernel centred on each
  focus voxel. Voxels outside the grid are dropped; foci outside the grid still reach
  the voxels their kernel covers.

A kernel is a cube of side ``2 r + 1`` voxels centred on the focus, held as a
flattened float32 array (``KernelCube``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit
from scipy import ndimage

#: Mean distance (mm) between corresponding points of two subjects (Eickhoff 2009).
SUBJECT_UNCERTAINTY_MM = 11.6
#: Mean distance (mm) between corresponding points of two templates (Eickhoff 2009).
TEMPLATE_UNCERTAINTY_MM = 5.7
#: Side of the impulse volume the kernel is built in (voxels), as NiMARE.
KERNEL_BOX = 31


def fwhm_from_sample_size(n) -> float | np.ndarray:
    """ALE kernel FWHM in mm for a sample of ``n`` subjects (scalar or array).

    Each uncertainty (a mean distance) becomes a FWHM through
    ``sqrt(8 ln 2) / (2 sqrt(2 / pi))``; the arithmetic follows NiMARE's order so the
    float64 result is identical.
    """
    templates = TEMPLATE_UNCERTAINTY_MM / (2.0 * np.sqrt(2.0 / np.pi)) * np.sqrt(8.0 * np.log(2.0))
    subjects = (SUBJECT_UNCERTAINTY_MM / (2 * np.sqrt(2 / np.pi)) * np.sqrt(8 * np.log(2))) / np.sqrt(
        np.asarray(n, dtype=float)
    )
    out = np.sqrt(subjects**2 + templates**2)
    return float(out) if np.ndim(out) == 0 else out


def sigma_voxels(fwhm_mm: float, voxel_size, *, fixed: bool = False) -> float:
    """Gaussian sigma in voxels for a FWHM in mm on a grid with ``voxel_size`` (3,) mm.

    As NiMARE: the voxel volume's root is taken in float32 (NIfTI zooms are float32); a
    FWHM derived from a sample size is divided in float64, while a fixed FWHM given by the
    user (``fixed=True``) is divided in float32 (NumPy's rule for a Python float over a
    float32), so both kernels come out bit-identical to NiMARE's.
    """
    root_volume = np.sqrt(np.prod(np.asarray(voxel_size, dtype=np.float32)))
    fwhm_vox = np.float32(fwhm_mm) / root_volume if fixed else np.float64(fwhm_mm) / root_volume
    return float(fwhm_vox * np.sqrt(2.0) / (np.sqrt(2.0 * np.log(2.0)) * 2.0))


@dataclass(frozen=True)
class KernelCube:
    """One ALE kernel: a cube of side ``2 * radius + 1`` voxels, values float32 in C order.

    ``values[(a * side + b) * side + c]`` is the kernel at offset
    ``(a - radius, b - radius, c - radius)`` voxels from the focus.
    """

    fwhm: float
    radius: int
    values: np.ndarray

    @property
    def side(self) -> int:
        return 2 * self.radius + 1

    def array(self) -> np.ndarray:
        """The kernel as a 3-D float32 array (side, side, side)."""
        return self.values.reshape(self.side, self.side, self.side)


@lru_cache(maxsize=256)
def _kernel_cached(fwhm_mm: float, sigma: float) -> KernelCube:
    impulse = np.zeros((KERNEL_BOX,) * 3)
    mid = KERNEL_BOX // 2
    impulse[mid, mid, mid] = 1.0
    smooth = ndimage.gaussian_filter(impulse, sigma, mode="constant")
    above = np.nonzero(smooth > np.spacing(1))[0]
    lo, hi = int(above.min()), int(above.max())
    cube = smooth[lo : hi + 1, lo : hi + 1, lo : hi + 1].astype(np.float32)
    values = np.ascontiguousarray(cube.ravel())
    values.flags.writeable = False
    return KernelCube(float(fwhm_mm), (hi - lo) // 2, values)


def ale_kernel(fwhm_mm: float, voxel_size=(2.0, 2.0, 2.0), *, fixed: bool = False) -> KernelCube:
    """The ALE kernel for a FWHM (mm) on a grid with ``voxel_size`` (3,) mm (cached).

    ``fixed``: the FWHM was given by the user rather than derived from a sample size
    (see :func:`sigma_voxels`).
    """
    if not np.isfinite(fwhm_mm) or fwhm_mm <= 0:
        raise ValueError(f"FWHM must be a positive number of mm, got {fwhm_mm}")
    return _kernel_cached(float(fwhm_mm), sigma_voxels(fwhm_mm, voxel_size, fixed=fixed))


@lru_cache(maxsize=256)
def jale_kernel(fwhm_mm: float) -> KernelCube:
    """JALE's ALE kernel (``create_kernel_array``/``compute_3dkernel``), float64 values.

    A product of three 1-D Gaussians, each normalised to sum 1, with variance
    ``(FWHM / 2 / sqrt(8 ln 2) + eps)^2`` voxels^2 (2 mm voxels assumed, as JALE does) and
    ``ceil(3.5 sigma)`` voxels on each side. The sigma equals NiMARE's (:func:`sigma_voxels`);
    NiMARE smooths a delta with scipy (truncated at 4 sigma) instead, so its values differ slightly
    (peak 0.0084046 vs JALE's 0.0084071 for n = 20; radius 8 vs 7 voxels).
    """
    if not np.isfinite(fwhm_mm) or fwhm_mm <= 0:
        raise ValueError(f"FWHM must be a positive number of mm, got {fwhm_mm}")
    variance = (fwhm_mm / 2 / math.sqrt(8 * math.log(2)) + np.finfo(float).eps) ** 2
    half = math.ceil(3.5 * math.sqrt(variance))
    x = np.arange(-half, half + 1)
    one = np.exp(-0.5 * np.multiply(x, x) / variance) / math.sqrt(2 * math.pi * variance)
    one /= np.sum(one)
    cube = one[:, None, None] * one[None, :, None] * one[None, None, :]
    values = np.ascontiguousarray(cube.ravel())
    values.flags.writeable = False
    return KernelCube(float(fwhm_mm), half, values)


def sample_size_kernel(n, voxel_size=(2.0, 2.0, 2.0)) -> KernelCube:
    """The ALE kernel for an experiment of ``n`` subjects."""
    return ale_kernel(fwhm_from_sample_size(n), voxel_size)


# ---------------------------------------------------------------------------- MA maps
def experiment_ma_numpy(kernel: KernelCube, foci_ijk: np.ndarray, shape) -> np.ndarray:
    """Reference MA map of one experiment: a dense float64 array of ``shape``.

    ``foci_ijk``: (n, 3) int voxel indices (may lie outside the grid).
    """
    r, side = kernel.radius, kernel.side
    ma = np.zeros(shape, dtype=np.float64)
    cube = kernel.array().astype(np.float64)
    for focus in np.asarray(foci_ijk, dtype=np.int64).reshape(-1, 3):
        lo = focus - r
        src = []
        dst = []
        for axis in range(3):
            a, b = max(lo[axis], 0), min(lo[axis] + side, shape[axis])
            if a >= b:
                break
            dst.append(slice(a, b))
            src.append(slice(a - lo[axis], b - lo[axis]))
        else:
            np.maximum(ma[tuple(dst)], cube[tuple(src)], out=ma[tuple(dst)])
    return ma


@njit(cache=True)
def _experiment_ma(values, radius, foci_ijk, shape, flat_to_masked, scratch, touched):
    """MA of one experiment on mask voxels: (masked indices, float64 values), unsorted.

    ``scratch`` (n_mask float64, all zero) and ``touched`` (n_mask int64) are work space;
    ``scratch`` is left all zero again.
    """
    side = 2 * radius + 1
    n_touched = 0
    for f in range(foci_ijk.shape[0]):
        fi = foci_ijk[f, 0] - radius
        fj = foci_ijk[f, 1] - radius
        fk = foci_ijk[f, 2] - radius
        for a in range(side):
            i = fi + a
            if i < 0 or i >= shape[0]:
                continue
            for b in range(side):
                j = fj + b
                if j < 0 or j >= shape[1]:
                    continue
                row = (a * side + b) * side
                base = (i * shape[1] + j) * shape[2]
                for c in range(side):
                    k = fk + c
                    if k < 0 or k >= shape[2]:
                        continue
                    col = flat_to_masked[base + k]
                    if col < 0:
                        continue
                    v = np.float64(values[row + c])
                    if v <= 0.0:
                        continue
                    old = scratch[col]
                    if old == 0.0:
                        touched[n_touched] = col
                        n_touched += 1
                        scratch[col] = v
                    elif v > old:
                        scratch[col] = v
    cols = touched[:n_touched].copy()
    vals = np.empty(n_touched, dtype=np.float64)
    for t in range(n_touched):
        vals[t] = scratch[cols[t]]
        scratch[cols[t]] = 0.0
    return cols, vals


def flat_to_masked(mask: np.ndarray) -> np.ndarray:
    """Lookup from C-order flat voxel index to masked index (-1 outside the mask), int64."""
    lookup = np.full(mask.size, -1, dtype=np.int64)
    lookup[np.flatnonzero(mask.ravel())] = np.arange(int(mask.sum()), dtype=np.int64)
    return lookup


class MACalculator:
    """Sparse MA maps of experiments on one grid's mask, reusing work space between calls."""

    def __init__(self, mask: np.ndarray):
        self.shape = np.asarray(mask.shape, dtype=np.int64)
        self.lookup = flat_to_masked(mask)
        n = int(mask.sum())
        self._scratch = np.zeros(n, dtype=np.float64)
        self._touched = np.empty(n, dtype=np.int64)

    def __call__(self, kernel: KernelCube, foci_ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(masked voxel indices sorted, MA values float64) of one experiment's foci (n, 3)."""
        foci = np.ascontiguousarray(np.asarray(foci_ijk, dtype=np.int64).reshape(-1, 3))
        cols, vals = _experiment_ma(
            kernel.values, kernel.radius, foci, self.shape, self.lookup, self._scratch, self._touched
        )
        order = np.argsort(cols, kind="stable")
        return cols[order], vals[order]
