"""MKDA density and KDA null iterations written against an array namespace: CuPy on a GPU (``--device gpu``),
NumPy in CI (tested against :class:`~neurochange.inference.engines.sphere.SphereNullEngine` on seeded draws:
maximum statistic to relative 1e-12, largest cluster sizes exactly, masses to 1e-9).

One iteration, for draws ((n_foci,) indices into the null voxels, foci in the inputs' order): every
focus's sphere voxels are placed around its drawn voxel (those outside the volume dropped); the
statistic at a voxel is ``value`` times the number of experiments whose spheres cover it (MKDA: the
union of an experiment's spheres, found as the distinct (experiment, voxel) pairs) or the number of
spheres covering it (KDA), inside the mask; then its maximum and the face-connected clusters above the
cluster-forming threshold (:func:`~neurochange.inference.engines.array_ale.largest_cluster`).

Experiments are taken whole, about ``batch_foci`` foci at a time: memory is ``24 * batch_foci *
sphere voxels`` bytes (4,096 foci with the 10 mm sphere on the 2 mm grid: 50 MB) plus one count per
voxel; it does not grow with iterations.
"""

from __future__ import annotations

import numpy as np

from neurochange.inference.engines.array_ale import run_volumes
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.spheres import sphere_offsets

#: Foci per batch (whole experiments; an experiment with more foci is one batch).
BATCH_FOCI = 4096


def place(xp, centres, offsets, shape: tuple):
    """Voxels ``offsets`` (K, 3) around each centre (F, 3): (inside the volume ``shape``, flat index), each (F, K)."""
    pos = centres[:, None, :] + offsets[None, :, :]
    inside = xp.all((pos >= 0) & (pos < xp.asarray(shape)), axis=2)
    return inside, (pos[..., 0] * shape[1] + pos[..., 1]) * shape[2] + pos[..., 2]


class ArraySphereNullEngine:
    """Null iterations of a sphere-kernel statistic for :class:`~neurochange.inference.montecarlo.MonteCarloFWE`
    on namespace ``xp``; arguments as :class:`~neurochange.inference.engines.sphere.SphereNullEngine`'s.

    ``run(draws)`` returns NumPy arrays (max statistic, largest cluster size, largest cluster mass), each (n_it,).
    """

    def __init__(self, inputs: AnalysisInputs, radius: float, value: float, sum_overlap: bool,
                 null_voxels: np.ndarray, threshold: float, xp=np, batch_foci: int = BATCH_FOCI):
        grid = inputs.grid
        self.xp = xp
        self.shape = tuple(int(s) for s in grid.shape)
        self.value, self.sum_overlap, self.threshold = float(value), bool(sum_overlap), float(threshold)
        self.mask = xp.asarray(np.asarray(grid.mask).ravel())
        self.null_ijk = xp.asarray(np.argwhere(null_voxels).astype(np.int64))
        self.offsets = xp.asarray(sphere_offsets(radius, grid.voxel_size).astype(np.int64))
        self.focus_experiment = xp.asarray(np.asarray(inputs.focus_experiment, dtype=np.int64))
        indptr = np.concatenate([[0], np.cumsum(inputs.foci_per_experiment())]).astype(np.int64)
        self.bounds = [0]  # batches of foci, cut between experiments
        for start, end in zip(indptr[:-1], indptr[1:]):
            if end - self.bounds[-1] > batch_foci and start > self.bounds[-1]:
                self.bounds.append(int(start))
        self.bounds.append(int(indptr[-1]))
        self.n_foci = int(indptr[-1])
        self.n_null = int(np.count_nonzero(null_voxels))

    def warm_up(self, draws: np.ndarray) -> None:
        """One iteration (compiles CuPy's kernels)."""
        self.run(draws[:1])

    def stat(self, draw):
        """The statistic volume (flat, namespace array) of one draw."""
        xp = self.xp
        n_vox = int(np.prod(self.shape))
        ijk = self.null_ijk[xp.asarray(draw)]
        counts = xp.zeros(n_vox, dtype=xp.int64)
        for first, last in zip(self.bounds[:-1], self.bounds[1:]):
            inside, flat = place(xp, ijk[first:last], self.offsets, self.shape)
            if self.sum_overlap:
                voxels = flat[inside]
            else:  # an experiment counts once per voxel: its distinct (experiment, voxel) pairs
                keys = self.focus_experiment[first:last, None] * n_vox + flat
                voxels = xp.unique(keys[inside]) % n_vox
            counts += xp.bincount(voxels, minlength=n_vox)
        return xp.where(self.mask, counts * self.value, 0.0)

    def run(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return run_volumes(self.xp, self.stat, self.shape, self.threshold, draws)


__all__ = ["ArraySphereNullEngine", "BATCH_FOCI"]
