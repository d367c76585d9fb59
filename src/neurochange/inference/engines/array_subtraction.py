"""A subtraction's label permutations written against an array namespace: CuPy on a GPU (``--device gpu``),
NumPy in CI (tested equal to the numba code of :mod:`neurochange.compare.subtraction` on seeded permutations:
tail counts, maxima and the kept largest ``|difference|`` values bit for bit; cluster sizes exactly, masses to
relative 1e-9).

The experiments' MA maps are the subtraction's sparse rows (CSR over the ``n_vox`` voxels some experiment
reaches). For a batch of permutations, ``g`` (batch, n_vox) is the smaller group's combination: the product of
``1 - MA`` (ALE) or the sum of ``MA`` (MKDA density, KDA). Experiments are visited in index order and every row
of the batch is multiplied by ``1 - MA`` where the experiment is a member and by exactly 1 where not (added 0
for sums), so each row sees the same non-trivial operations in the same order as the CPU's sorted-member loop:
equal member sets give bit-equal differences here too, and ties with the observed split stay exact. The
difference, group 1 minus group 2, takes the other group's product as the total over the smaller one's
(``total / g``) or its sum as the rest (``total - g``), with the CPU's arithmetic.

Memory: three (batch, n_vox) float64 arrays (at most :data:`BATCH` permutations, fewer when ``n_vox`` is large;
about 550 MB for 100 permutations of the whole 2 mm mask); it does not grow with permutations.
"""

from __future__ import annotations

import numpy as np

from neurochange.inference.engines.array_ale import largest_cluster

#: Permutations per batch (at most; fewer where ``n_vox`` would make the batch exceed :data:`BATCH_VALUES`).
BATCH = 100
#: Values per (batch, n_vox) array.
BATCH_VALUES = 1 << 25


class ArraySubtraction:
    """Permutation differences of a two-group split on namespace ``xp``.

    Parameters
    ----------
    indptr, cols, values : numpy.ndarray
        The experiments' sparse rows: experiment ``e`` reaches voxels ``cols[indptr[e]:indptr[e + 1]]``
        with ``values`` (``1 - MA`` for ALE, ``MA`` for sums), group 1's experiments first.
    total : numpy.ndarray
        float64 (n_vox,): the combination over every experiment.
    n_group1 : int
        Experiments in group 1.
    additive : bool
        Sum statistic (MKDA density, KDA) rather than ALE's product.
    """

    def __init__(self, indptr, cols, values, total, n_group1: int, additive: bool, xp=np, batch: int = BATCH):
        self.xp = xp
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.cols = xp.asarray(cols)
        self.values = xp.asarray(values, dtype=xp.float64)
        self.total = xp.asarray(total, dtype=xp.float64)
        self.n_group1, self.additive = int(n_group1), bool(additive)
        self.n_total = len(self.indptr) - 1
        self.small_is_1 = self.n_group1 <= self.n_total - self.n_group1
        self.batch = max(1, min(int(batch), BATCH_VALUES // max(1, len(total))))

    def differences(self, perms: np.ndarray):
        """Group 1 minus group 2 for each permutation (row of ``perms``, (b, n_total) int): (b, n_vox) ``xp``."""
        xp = self.xp
        perms = np.asarray(perms)
        members = np.zeros((len(perms), self.n_total), dtype=bool)
        small = perms[:, : self.n_group1] if self.small_is_1 else perms[:, self.n_group1:]
        np.put_along_axis(members, small, True, axis=1)
        members = xp.asarray(members)
        neutral = 0.0 if self.additive else 1.0
        g = xp.full((len(perms), len(self.total)), neutral)
        for e in range(self.n_total):
            lo, hi = self.indptr[e], self.indptr[e + 1]
            if lo == hi:
                continue
            cols = self.cols[lo:hi]
            factor = xp.where(members[:, e: e + 1], self.values[None, lo:hi], neutral)
            if self.additive:
                g[:, cols] += factor
            else:
                g[:, cols] *= factor
        if self.additive:  # sums: group 1 minus group 2
            other = self.total - g
            return g - other if self.small_is_1 else other - g
        other = self.total / g  # products of 1 - MA: (1 - keep1) - (1 - keep2) = keep2 - keep1
        return other - g if self.small_is_1 else g - other

    def _batches(self, perms: np.ndarray):
        for start in range(0, len(perms), self.batch):
            yield start, self.differences(perms[start: start + self.batch])

    def tails(self, perms: np.ndarray, observed, n_top: int):
        """(upper, lower, abs_max, top) as the CPU chunk gives them (NumPy): per voxel the permutations with a
        difference >= / <= ``observed`` (int64), each permutation's largest ``|difference|``, and the ``n_top``
        largest float32 ``|difference|`` values of all (None when ``n_top`` is 0)."""
        xp = self.xp
        observed = xp.asarray(observed)
        upper = xp.zeros(len(self.total), dtype=xp.int64)
        lower = xp.zeros(len(self.total), dtype=xp.int64)
        abs_max = np.zeros(len(perms))
        top = None
        for start, d in self._batches(perms):
            upper += (d >= observed).sum(axis=0)
            lower += (d <= observed).sum(axis=0)
            magnitude = xp.abs(d)
            abs_max[start: start + len(d)] = _numpy(xp, magnitude.max(axis=1))
            if n_top:
                values = magnitude.astype(xp.float32).ravel()
                top = values if top is None else xp.concatenate([top, values])
                if len(top) > n_top:
                    top = xp.partition(top, len(top) - n_top)[-n_top:]
        return _numpy(xp, upper), _numpy(xp, lower), abs_max, None if top is None else _numpy(xp, top).copy()

    def clusters(self, perms: np.ndarray, threshold: float, support_ijk: np.ndarray, shape: tuple):
        """(largest cluster size, largest cluster mass) of each permutation (NumPy, (b,) each): face-connected
        voxels with ``|difference| > threshold``, positive and negative apart, mass = sum of ``|difference| -
        threshold`` (:func:`neurochange.inference.unionfind.max_clusters`). ``support_ijk``: (n_vox, 3) grid
        indices of the voxels, in a volume of ``shape``."""
        xp = self.xp
        flat = xp.asarray(np.ravel_multi_index(tuple(np.asarray(support_ijk).T), shape))
        size, mass = np.zeros(len(perms), dtype=np.int64), np.zeros(len(perms))
        volume = xp.zeros(int(np.prod(shape)))
        for start, d in self._batches(perms):
            for row in range(len(d)):
                volume[flat] = d[row]
                best = [largest_cluster(xp, sign * volume.reshape(shape), threshold) for sign in (1.0, -1.0)]
                size[start + row] = max(s for s, _ in best)
                mass[start + row] = max(m for _, m in best)
        return size, mass


def _numpy(xp, array) -> np.ndarray:
    return array if xp is np else xp.asnumpy(array)


__all__ = ["ArraySubtraction", "BATCH"]
