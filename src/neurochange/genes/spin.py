"""Spin test of cortical regions (Alexander-Bloch et al. 2018), with reassignment of rotated parcels
(Váša et al. 2018).

Each cortical region's centroid is the mean of its vertices on nilearn's fsaverage5 sphere (the DK
annotation of the same archive), put back on the sphere. A null is a uniformly random rotation of
the sphere: each rotated centroid is assigned to one original region, each region used once, so
that the summed distance is least (Hungarian algorithm), and the map's values move with the regions.
Rotations come from ``scipy.spatial.transform.Rotation.random`` with the seed: the same seed gives
the same rotations and the same permutations.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from neurochange.errors import DataUnavailableError
from neurochange.genes.expression import member


@lru_cache(maxsize=2)
def _annotation(hemisphere: str) -> tuple[np.ndarray, list[str]]:
    """The DK annotation of one fsaverage5 hemisphere ("lh", "rh"): vertex labels and label names."""
    fd, path = tempfile.mkstemp(suffix=".annot")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(member(f"annot_{hemisphere}"))
        labels, _, names = nib.freesurfer.read_annot(path)
    finally:
        os.unlink(path)
    return labels, [n.decode() for n in names]


def centroids(names: list[str], hemisphere: str = "lh") -> np.ndarray:
    """Unit vectors (len(names), 3): each region's centroid on the fsaverage5 sphere."""
    from nilearn.datasets import load_fsaverage

    labels, annot_names = _annotation(hemisphere)
    sphere = load_fsaverage("fsaverage5")["sphere"].parts["left" if hemisphere == "lh" else "right"].coordinates
    out = np.empty((len(names), 3))
    for i, name in enumerate(names):
        if name not in annot_names:
            raise DataUnavailableError(f"region {name!r} is not in the DK annotation of fsaverage5")
        xyz = sphere[labels == annot_names.index(name)].mean(axis=0)
        out[i] = xyz / np.linalg.norm(xyz)
    return out


def spin_permutations(points: np.ndarray, n_rotations: int, seed: int) -> np.ndarray:
    """(n_rotations, n_regions) int: for each rotation, the original region whose value each region receives."""
    rotations = Rotation.random(n_rotations, random_state=np.random.default_rng(seed)).as_matrix()
    out = np.empty((n_rotations, len(points)), dtype=np.int64)
    for r, matrix in enumerate(rotations):
        rows, cols = linear_sum_assignment(cdist(points @ matrix.T, points))
        out[r, cols] = rows  # region cols[i] takes the value of region rows[i], rotated onto it
    return out


__all__ = ["centroids", "spin_permutations"]
