"""Coordinate spaces: the MNI152 2 mm grid, its brain mask, mm <-> voxel, Talairach -> MNI.

The grid and mask are the ones NiMARE uses by default for ALE on Sleuth input
(``MNI152_2x2x2_brainmask.nii.gz``: 91 x 109 x 91 voxels, 228,483 in the brain;
GingerALE's "more conservative" MNI152 mask), held in RAS orientation (x step +2 mm) as NiMARE's
``mni152_2mm`` template and the maps NiMARE writes are, so that maps compare voxel by voxel.
The file itself is stored LAS; the JALE convention keeps JALE's own LAS grid, since its foci rule
(rounding up) depends on the orientation. Talairach -> MNI uses the
transforms of Lancaster et al. 2007 (doi:10.1002/hbm.20345).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import nibabel as nib
import numpy as np

from neurochange.errors import InputError

#: Foci farther than this from the origin on any axis (mm) cannot be in a brain.
COORDINATE_LIMIT_MM = 128.0

# MNI -> Talairach matrices of Lancaster et al. 2007 (Table 2 / BrainMap's icbm2tal
# scripts); Talairach -> MNI is their inverse. ``icbm_other`` is NiMARE's default,
# ``icbm_spm`` the one Neurosynth, JALE and GingerALE's icbm2tal use for SPM data.
LANCASTER_2007 = {
    "icbm_other": np.array(
        [
            [0.9357, 0.0029, -0.0072, -1.0423],
            [-0.0065, 0.9396, -0.0726, -1.3940],
            [0.0103, 0.0752, 0.8967, 3.6475],
            [0.0, 0.0, 0.0, 1.0],
        ]
    ),
    "icbm_spm": np.array(
        [
            [0.9254, 0.0024, -0.0118, -1.0207],
            [-0.0048, 0.9316, -0.0871, -1.7667],
            [0.0152, 0.0883, 0.8924, 4.0926],
            [0.0, 0.0, 0.0, 1.0],
        ]
    ),
}

SPACE_ALIASES = {
    "mni": "MNI",
    "mni152": "MNI",
    "tal": "TAL",
    "talairach": "TAL",
}


def normalize_space(name: str, *, file=None, line=None) -> str:
    """Map a space name as written in files (``MNI``, ``Talairach``, ``TAL``...) to ``MNI``/``TAL``."""
    key = str(name).strip().lower().replace(" ", "")
    if key not in SPACE_ALIASES:
        raise InputError(
            f"unknown space {name!r}; use MNI or Talairach (TAL)", file=file, line=line, field="space"
        )
    return SPACE_ALIASES[key]


def tal_to_mni(xyz: np.ndarray, method: str = "icbm_other") -> np.ndarray:
    """Talairach -> MNI mm, (n, 3) float array, by the inverse Lancaster 2007 transform.

    ``method``: ``icbm_other`` (NiMARE), ``icbm_spm``, or ``jale`` (``icbm_spm``, then rounded to
    whole mm, half to even, as JALE's ``tal2icbm_spm``).
    """
    if method == "jale":
        return np.round(tal_to_mni(xyz, "icbm_spm"))
    if method not in LANCASTER_2007:
        raise InputError(f"unknown Talairach transform {method!r}; use one of {sorted(LANCASTER_2007)}")
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    inverse = np.linalg.inv(LANCASTER_2007[method])
    return xyz @ inverse[:3, :3].T + inverse[:3, 3]


def mni_to_tal(xyz: np.ndarray, method: str = "icbm_other") -> np.ndarray:
    """MNI -> Talairach mm, (n, 3) float array (Lancaster 2007)."""
    matrix = LANCASTER_2007[method]
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    return xyz @ matrix[:3, :3].T + matrix[:3, 3]


@lru_cache(maxsize=1)
def mask_img() -> nib.Nifti1Image:
    """The default 2 mm MNI152 brain mask (NiMARE's ALE default), as a NIfTI image in RAS orientation."""
    path = resources.files("neurochange").joinpath("resources/MNI152_2x2x2_brainmask.nii.gz")
    with resources.as_file(path) as p:
        img = nib.as_closest_canonical(nib.load(p))
        data = np.asarray(img.dataobj) > 0
    return nib.Nifti1Image(data.astype(np.uint8), img.affine)


#: How a focus in mm becomes a voxel: NiMARE rounds half to even; JALE (and pyALE) round up and
#: clip to the grid (they keep a focus beyond the grid's upper edge on its last voxel).
ROUNDINGS = ("half_even", "ceil")


class Grid:
    """A voxel grid: shape (3 ints), affine (4 x 4, voxel -> mm), a boolean brain mask and the rule
    that turns foci into voxels (``rounding``, one of :data:`ROUNDINGS`)."""

    def __init__(self, mask: np.ndarray, affine: np.ndarray, rounding: str = "half_even"):
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        self.mask = np.asarray(mask, dtype=bool)
        self.affine = np.asarray(affine, dtype=float)
        self.shape = self.mask.shape
        self.rounding = rounding
        self._inverse = np.linalg.inv(self.affine)

    @classmethod
    def from_img(cls, img: nib.Nifti1Image) -> "Grid":
        return cls(np.asarray(img.dataobj) > 0, img.affine)

    def holds(self, img: nib.Nifti1Image) -> bool:
        """Whether ``img`` is on this grid (same shape and affine)."""
        return img.shape[:3] == self.shape and np.allclose(img.affine, self.affine)

    def resample(self, img: nib.Nifti1Image, interpolation: str = "nearest") -> nib.Nifti1Image:
        """``img`` on this grid's voxels: ``img`` itself when already there, else resampled (nilearn's
        ``resample_to_img``; ``interpolation`` "nearest" or "continuous")."""
        if self.holds(img):
            return img
        from nilearn.image import resample_to_img

        return resample_to_img(img, self.to_img(np.ones(self.n_voxels), np.uint8), interpolation=interpolation,
                               force_resample=True, copy_header=True)

    @property
    def voxel_size(self) -> np.ndarray:
        """Voxel edge lengths in mm, shape (3,)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def n_voxels(self) -> int:
        return int(self.mask.sum())

    def mm_to_vox(self, xyz: np.ndarray) -> np.ndarray:
        """mm (n, 3) -> voxel indices (n, 3) int by the grid's rule (NiMARE: half to even; JALE: up, clipped)."""
        xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
        if self.rounding == "ceil":  # JALE: ceil(inverse affine @ [x, y, z, 1]), at most the last voxel
            ijk = np.ceil(np.c_[xyz, np.ones(len(xyz))] @ self._inverse.T)[:, :3].astype(np.int64)
            return np.clip(ijk, 0, np.array(self.shape) - 1)
        ijk = xyz @ self._inverse[:3, :3].T + self._inverse[:3, 3]
        return np.round(ijk).astype(np.int64)

    def vox_to_mm(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (n, 3) -> mm (n, 3) float."""
        ijk = np.asarray(ijk, dtype=float).reshape(-1, 3)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def in_grid(self, ijk: np.ndarray) -> np.ndarray:
        """Whether each voxel index (n, 3) lies inside the grid, shape (n,) bool."""
        ijk = np.asarray(ijk).reshape(-1, 3)
        return np.all((ijk >= 0) & (ijk < np.array(self.shape)), axis=1)

    def in_mask(self, xyz: np.ndarray) -> np.ndarray:
        """Whether each focus (n, 3 mm) falls in a brain-mask voxel, shape (n,) bool."""
        ijk = self.mm_to_vox(xyz)
        inside = self.in_grid(ijk)
        out = np.zeros(len(ijk), dtype=bool)
        out[inside] = self.mask[tuple(ijk[inside].T)]
        return out

    def to_img(self, values: np.ndarray, dtype=np.float32) -> nib.Nifti1Image:
        """Masked values (n_voxels,) -> a 3-D image on this grid (zero outside the mask)."""
        data = np.zeros(self.shape, dtype=dtype)
        data[self.mask] = values
        return nib.Nifti1Image(data, self.affine)


@lru_cache(maxsize=1)
def mni_2mm() -> Grid:
    """The default grid: MNI152 2 mm, 91 x 109 x 91, 228,483 brain voxels."""
    return Grid.from_img(mask_img())


def load_grid(path=None) -> Grid:
    """The default grid, or a grid from a user mask NIfTI (non-zero voxels are brain)."""
    if path is None:
        return mni_2mm()
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad files
        raise InputError(f"cannot read mask image: {exc}", file=path) from None
    if len(img.shape) != 3:
        raise InputError(f"mask must be a 3-D image, got shape {img.shape}", file=path)
    return Grid.from_img(img)


def out_of_bounds(xyz: np.ndarray) -> np.ndarray:
    """Whether each focus (n, 3 mm) lies beyond +-128 mm on any axis, shape (n,) bool."""
    return np.any(np.abs(np.asarray(xyz, dtype=float).reshape(-1, 3)) > COORDINATE_LIMIT_MM, axis=1)
