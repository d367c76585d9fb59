"""Where Monte Carlo null foci may fall: the whole brain mask, or its grey matter.

- ``"brain"`` (default, NiMARE's default): every voxel of the analysis mask.
- ``"gm"``: voxels of the analysis mask whose grey-matter probability exceeds 0.1, as
  GingerALE and JALE draw null foci. The probability map is nilearn's MNI152 grey-matter
  template (``load_mni152_gm_template(resolution=2)``, shipped with nilearn, no
  download) resampled to the analysis grid with continuous interpolation; NiMARE
  0.22.1's ``mask_coverage="gm"`` builds the same set. Computed at run time, cached
  per grid.

Null foci drawn from grey matter only concentrate the null on fewer voxels, so null ALE
values, and with them the FWE thresholds, are higher than with ``"brain"``: published
results can depend on this choice; report it.
"""

from __future__ import annotations

import warnings

import numpy as np

from neurochange.errors import InputError
from neurochange.space import Grid

#: Grey-matter probability above which a voxel may receive null foci (GingerALE, JALE).
GM_THRESHOLD = 0.1
NULL_MASKS = ("brain", "gm")

_GM_CACHE: dict = {}


def grey_matter_mask(grid: Grid, threshold: float = GM_THRESHOLD) -> np.ndarray:
    """Boolean 3-D array: mask voxels of ``grid`` with grey-matter probability > ``threshold``."""
    key = (grid.shape, tuple(np.round(grid.affine, 6).ravel()), float(threshold))
    if key not in _GM_CACHE:
        from nilearn import datasets, image

        target = grid.to_img(np.ones(grid.n_voxels), dtype=np.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = image.resample_to_img(
                datasets.load_mni152_gm_template(resolution=2), target, interpolation="continuous"
            )
        _GM_CACHE[key] = np.asarray(gm.dataobj) > threshold
    return _GM_CACHE[key] & grid.mask


def null_mask(grid: Grid, which="brain") -> np.ndarray:
    """Boolean 3-D array of the voxels null foci are drawn from.

    ``which``: ``"brain"``, ``"gm"``, or a boolean array of the grid's shape (intersected
    with the grid's mask).
    """
    if isinstance(which, str):
        if which == "brain":
            return grid.mask.copy()
        if which == "gm":
            return grey_matter_mask(grid)
        raise InputError(f"unknown null mask {which!r}; use one of {', '.join(NULL_MASKS)}", field="null_mask")
    arr = np.asarray(which, dtype=bool)
    if arr.shape != grid.shape:
        raise InputError(f"null mask has shape {arr.shape}, the grid {grid.shape}", field="null_mask")
    return arr & grid.mask
