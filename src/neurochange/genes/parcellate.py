"""Regional means of a map over the atlas's regions, on the analysis grid.

A region's value is the mean of the map over the region's voxels inside the analysis mask (the
brain mask of the results folder): maps are zero outside it. The DK images are 2 mm MNI152 images
with the x axis flipped relative to the analysis grid; their voxel centres coincide, so putting the
atlas on the grid (nearest neighbour) is exact. A map on another grid is resampled onto the
analysis grid (nearest) and the caller is told.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from neurochange.errors import InputError
from neurochange.space import Grid


def _same_grid(img, grid: Grid) -> bool:
    return img.shape[:3] == grid.shape and np.allclose(img.affine, grid.affine)


def on_grid(img: nib.Nifti1Image, grid: Grid, interpolation: str = "nearest") -> nib.Nifti1Image:
    """``img`` on ``grid``'s voxels (``img`` itself when already there)."""
    if _same_grid(img, grid):
        return img
    from nilearn.image import resample_to_img

    return resample_to_img(img, grid.to_img(np.ones(grid.n_voxels), np.uint8), interpolation=interpolation,
                           force_resample=True, copy_header=True)


def region_index(atlas: nib.Nifti1Image, labels: np.ndarray, grid: Grid) -> np.ndarray:
    """For each voxel of ``grid``'s mask, the index (into ``labels``) of its atlas region, -1 in none: (n_mask,)."""
    values = np.asarray(on_grid(atlas, grid).dataobj).astype(np.int64)[grid.mask]
    lookup = np.full(max(int(values.max()), int(np.max(labels))) + 1, -1, dtype=np.int64)
    lookup[np.asarray(labels, dtype=np.int64)] = np.arange(len(labels))
    return lookup[values]


def parcel_means(values: np.ndarray, index: np.ndarray, n_regions: int) -> np.ndarray:
    """Mean of ``values`` ((n_mask,) or (n_maps, n_mask)) over each region of ``index`` (:func:`region_index`):
    (n_regions,) or (n_maps, n_regions). Raises InputError for a region with no voxel in the mask."""
    counts = np.bincount(index[index >= 0], minlength=n_regions)
    if (counts == 0).any():
        raise InputError(f"{int((counts == 0).sum())} atlas regions have no voxel in the analysis mask", field="mask")
    values = np.asarray(values, dtype=np.float64)
    inside = index >= 0
    if values.ndim == 1:
        return np.bincount(index[inside], weights=values[inside], minlength=n_regions) / counts
    onehot = np.zeros((int(inside.sum()), n_regions))
    onehot[np.arange(int(inside.sum())), index[inside]] = 1.0
    return (values[:, inside] @ onehot) / counts


def map_values(img: nib.Nifti1Image, grid: Grid, label: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The map ``img`` at ``grid``'s mask voxels (n_mask,), resampled (nearest) from another grid with a warning."""
    if len(img.shape) != 3:
        raise InputError(f"{label}: a map is one 3-D image, not of shape {img.shape}", field="map")
    warnings = () if _same_grid(img, grid) else (
        f"{label} was on another grid ({img.shape}); resampled onto the analysis grid (nearest neighbour)",)
    values = np.asarray(on_grid(img, grid).dataobj, dtype=np.float64)[grid.mask]
    return np.nan_to_num(values, nan=0.0), warnings


__all__ = ["map_values", "on_grid", "parcel_means", "region_index"]
