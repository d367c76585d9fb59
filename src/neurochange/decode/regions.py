"""A region to decode or to seed a coactivation network, and the studies that report a focus in it.

- a **sphere**: centre in MNI mm and radius in mm; a study is in when one of its foci lies within
  the radius (NiMARE's ``Dataset.get_studies_by_coordinate``);
- a **mask image** (any voxel > 0), an **atlas label** (its voxels in the MNI152 2 mm brain mask), or
  **cluster** ``N`` of a results folder's ``clusters_index.nii.gz``: a study is in when one of its foci,
  rounded to the image's nearest voxel
  (half to even, as NiMARE's ``mm2vox``), falls on the mask. Foci outside the image are out
  (NiMARE clips them onto its edge voxels, which masks leave empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from neurochange.errors import InputError
from neurochange.space import COORDINATE_LIMIT_MM, Grid, out_of_bounds

CLUSTER_INDEX = "clusters_index.nii.gz"


@dataclass(frozen=True)
class Region:
    """A sphere (``centre`` mm, ``radius`` mm) or a mask on a voxel grid (``grid.mask``); ``label`` says which."""

    label: str
    centre: tuple[float, float, float] | None = None
    radius: float | None = None
    grid: Grid | None = None

    def contains(self, xyz: np.ndarray) -> np.ndarray:
        """Which foci (n, 3) mm lie in the region: bool (n,)."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        if self.grid is None:
            return np.sqrt(((xyz - np.asarray(self.centre)) ** 2).sum(axis=1)) <= self.radius
        return self.grid.in_mask(xyz)

    def studies(self, foci: pd.DataFrame) -> np.ndarray:
        """Sorted ids of the studies with a focus in the region, from ``foci`` (``study_id``, ``x``, ``y``, ``z``)."""
        return np.array(sorted(set(foci["study_id"][self.contains(foci[["x", "y", "z"]].to_numpy())])),
                        dtype=object)

    def image(self, grid: Grid) -> nib.Nifti1Image:
        """The region as a uint8 image on ``grid`` (a sphere: the voxels whose centres lie within it)."""
        if self.grid is not None:
            return nib.Nifti1Image(self.grid.mask.astype(np.uint8), self.grid.affine)
        ijk = np.argwhere(np.ones(grid.shape, dtype=bool))
        inside = self.contains(grid.vox_to_mm(ijk)).reshape(grid.shape)
        return nib.Nifti1Image(inside.astype(np.uint8), grid.affine)


def sphere(centre, radius: float = 10.0) -> Region:
    """A sphere of ``radius`` mm at ``centre`` (x, y, z MNI mm)."""
    centre = tuple(float(c) for c in np.asarray(centre, dtype=np.float64).ravel())
    if len(centre) != 3 or not np.all(np.isfinite(centre)):
        raise InputError(f"a sphere's centre is 3 numbers (x y z in MNI mm), got {centre}", field="centre")
    if out_of_bounds(np.array(centre)).any():
        raise InputError(f"centre {centre} lies outside +-{COORDINATE_LIMIT_MM:g} mm: not a brain coordinate in MNI "
                         "space", field="centre")
    if not (np.isfinite(radius) and radius > 0):
        raise InputError(f"the radius is a positive number of mm, got {radius}", field="radius")
    region = Region(f"sphere of {radius:g} mm at ({centre[0]:g}, {centre[1]:g}, {centre[2]:g})", centre=centre,
                    radius=float(radius))
    if not region.contains(_brain_xyz()).any():
        raise InputError(f"the {region.label} holds no voxel of the MNI152 brain mask: it lies outside the brain",
                         field="centre")
    return region


@lru_cache(maxsize=1)
def _brain_xyz() -> np.ndarray:
    """The centres (mm) of the MNI152 2 mm brain mask's voxels, (228,483, 3)."""
    from neurochange.space import mni_2mm

    grid = mni_2mm()
    return grid.vox_to_mm(np.argwhere(grid.mask))


def read_image(path: str | Path, field: str | None = None) -> nib.Nifti1Image:
    """The image at ``path``, its data read; one InputError naming the file (and ``field``) when it cannot be."""
    try:
        img = nib.load(str(path))
        return nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    except FileNotFoundError:
        raise InputError("no such file", file=path, field=field) from None
    except Exception as exc:  # nibabel's many errors on a file that is not an image
        raise InputError(f"not a readable NIfTI image ({str(exc).splitlines()[0] if str(exc) else exc!r})",
                         file=path, field=field) from None


def _read_region(path: Path) -> nib.Nifti1Image:
    img = read_image(path)
    if img.ndim != 3:
        raise InputError(f"a region is one 3-D image, this one has shape {img.shape}", file=path)
    return img


def mask_region(path: str | Path) -> Region:
    """The voxels > 0 of the image at ``path``."""
    path = Path(path)
    img = _read_region(path)
    mask = np.asarray(img.dataobj) > 0
    if not mask.any():
        raise InputError("the mask is empty (no voxel > 0)", file=path)
    return Region(f"mask {path.name} ({int(mask.sum()):,} voxels)", grid=Grid(mask, img.affine))


def cluster_region(folder: str | Path, cluster: int) -> Region:
    """Cluster ``cluster`` (1, 2, ...) of the results folder ``folder``, from its ``clusters_index.nii.gz``."""
    folder = Path(folder)
    path = folder / CLUSTER_INDEX
    if not path.is_file():
        raise InputError(f"not a results folder with clusters: no {CLUSTER_INDEX}", file=folder)
    img = _read_region(path)
    index = np.asarray(img.dataobj)
    n = int(index.max())
    if not 1 <= cluster <= n:
        raise InputError(f"cluster {cluster} is not among its {n} clusters" if n else "it has no cluster",
                         file=path, field="cluster")
    mask = index == cluster
    return Region(f"cluster {cluster} of {folder.name} ({int(mask.sum()):,} voxels)", grid=Grid(mask, img.affine))


def atlas_region(atlas: str, labels) -> Region:
    """The voxels of the MNI152 2 mm brain mask in an atlas label (or any of several), e.g.
    ``atlas_region("harvard_oxford", "Left_Amygdala")`` (:func:`neurochange.results.atlas.region_mask`)."""
    from neurochange.results.atlas import region_mask
    from neurochange.space import mni_2mm

    labels = [labels] if isinstance(labels, str) else list(labels)
    grid = mni_2mm()
    mask = region_mask(atlas, labels, grid)
    if not mask.any():
        raise InputError(f"{atlas} {' + '.join(labels)} holds no voxel of the brain mask", field="region")
    return Region(f"{atlas} {' + '.join(labels)} ({int(mask.sum()):,} voxels)", grid=Grid(mask, grid.affine))


__all__ = ["CLUSTER_INDEX", "Region", "atlas_region", "cluster_region", "mask_region", "read_image", "sphere"]
