"""Regional means of a map over the atlas's regions, on the analysis grid.

A region's value is the mean of the map over the region's voxels inside the analysis mask (the
brain mask of the results folder): maps are zero outside it. The DK images are 2 mm MNI152 images
with the x axis flipped relative to the MNI152 2 mm analysis grid; their voxel centres coincide, so
putting the atlas on the grid (nearest neighbour) is exact (:func:`exactly_aligned`). On any other
analysis grid the atlas is resampled (nearest), and the run says so.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from neurochange.errors import InputError
from neurochange.space import Grid


def exactly_aligned(img: nib.Nifti1Image, grid: Grid) -> bool:
    """Whether ``img``'s voxel centres are ``grid``'s (the same grid, or axes flipped): nearest is then exact."""
    if img.shape[:3] != grid.shape:
        return False
    corners = np.array([[i, j, k] for i in (0, grid.shape[0] - 1) for j in (0, grid.shape[1] - 1)
                        for k in (0, grid.shape[2] - 1)], dtype=float)
    mine = nib.affines.apply_affine(img.affine, corners)
    theirs = nib.affines.apply_affine(grid.affine, corners)
    return (np.allclose(np.abs(img.affine[:3, :3]), np.abs(grid.affine[:3, :3]))
            and np.allclose(np.sort(mine, axis=0), np.sort(theirs, axis=0)))


def region_index(atlas: nib.Nifti1Image, labels: np.ndarray, grid: Grid) -> np.ndarray:
    """For each voxel of ``grid``'s mask, the index (into ``labels``) of its atlas region, -1 in none: (n_mask,)."""
    values = np.asarray(grid.resample(atlas).dataobj).astype(np.int64)[grid.mask]
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


__all__ = ["exactly_aligned", "parcel_means", "region_index"]
