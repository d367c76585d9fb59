"""Null iterations of the JALE convention: JALE 0.2.10's Monte Carlo, on the voxels it touches only.

One iteration (JALE's ``compute_monte_carlo_null``): every experiment's foci redrawn from the
grey-matter prior; MA maps and ALE over the whole volume (not only the prior); z of every voxel
from a histogram null; then the largest ALE, the largest face-connected cluster with z above the
cluster-forming z (its size in voxels and its mass, the sum of z minus that threshold) and the
largest TFCE (:func:`neurochange.inference.tfce.max_tfce`).

The histogram null is the observed data's (pyALE's rule, ``null_histogram="observed"``; published
pyALE analyses used it) or each null map's own (``"per_null"``: JALE 0.2.10's rule, which counts
the null MA maps at the prior's voxels and convolves them again every iteration).

Work is sparse in what JALE does densely: kernels are stamped into one reusable volume per
worker and only the voxels they touch are visited. Draws come from the one corrector
(:class:`~neurochange.inference.montecarlo.MonteCarloFWE`), seeded and chunked as every null.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

import numba
import numpy as np

from neurochange.inference import jale as histogram
from neurochange.inference import tfce
from neurochange.inference.unionfind import _find  # union-find root with path halving, shared

NULL_HISTOGRAMS = ("observed", "per_null")


@numba.njit(cache=True, nogil=True)
def _null_ale(draw, sample, focus_exp, exp_kernel, kvalues, kradius, shape, ma, keep, row_flag, touched, prior,
              n_prior, edges, hist, count_hist):
    """Stamp every experiment's kernels at the drawn voxels; returns (voxels touched, max ALE).

    Per experiment, two walks over its foci's cube rows (clipped to the volume): the running maximum
    into ``ma`` (its MA map), then ``keep *= 1 - ma`` and ``ma = 0`` (where cubes overlap, the second
    fold multiplies by exactly 1); with ``count_hist``, the fold also counts the experiment's MA values
    at the prior's voxels into ``hist[e]``. ``keep`` (1 everywhere on entry) then holds 1 - ALE; the
    touched voxels (keep < 1) are listed in ``touched`` in flat order. ``row_flag`` (per (i, j) row,
    0 on entry) is left 0."""
    nx, ny, nz = shape
    n_foci = len(draw)
    f = 0
    for e in range(len(exp_kernel)):
        first = f
        while f < n_foci and focus_exp[f] == e:
            f += 1
        centres = sample[draw[first:f]]
        kern = exp_kernel[e]
        _max_kernels(centres, kvalues[kern], kradius[kern], shape, ma)
        in_prior = _fold(centres, kradius[kern], shape, ma, keep, row_flag, count_hist, prior, edges, hist[e])
        if count_hist:  # the prior's voxels this experiment left at 0
            hist[e, 0] += n_prior - in_prior
    n_touched = 0
    top = 0.0
    for row in range(nx * ny):
        if row_flag[row] == 0:
            continue
        row_flag[row] = 0
        for t in range(row * nz, row * nz + nz):
            if keep[t] < 1.0:
                touched[n_touched] = t
                n_touched += 1
                top = max(top, 1.0 - keep[t])
    return n_touched, top


# The two walks over the cube rows of an experiment's foci (flat voxel ``centres``), clipped to the
# volume: the maximum, and the fold (with the per-null histogram's count before it in each row).
@numba.njit(cache=True, nogil=True)
def _cube(v, r, shape):
    """Cube of radius ``r`` around flat voxel ``v``, clipped: (first flat voxel of cube row (0, 0) at
    its first k kept, that k's offset in the cube row, row length, a range, b range)."""
    nx, ny, nz = shape
    ci, cj, ck = v // (ny * nz), (v // nz) % ny, v % nz
    side = 2 * r + 1
    c_lo = max(0, r - ck)
    origin = ((ci - r) * ny + cj - r) * nz + ck - r + c_lo
    return (origin, c_lo, min(side, nz - ck + r) - c_lo, max(0, r - ci), min(side, nx - ci + r), max(0, r - cj),
            min(side, ny - cj + r))


@numba.njit(cache=True, nogil=True)
def _max_kernels(centres, kvalues, r, shape, ma):
    """ma = max(ma, kernel) over the cubes."""
    side, ny, nz = 2 * r + 1, shape[1], shape[2]
    for v in centres:
        origin, c_lo, n, a_lo, a_hi, b_lo, b_hi = _cube(v, r, shape)
        for a in range(a_lo, a_hi):
            for b in range(b_lo, b_hi):
                start = origin + (a * ny + b) * nz
                kfrom = (a * side + b) * side + c_lo
                mv = ma[start: start + n]
                kv = kvalues[kfrom: kfrom + n]
                for t in range(n):
                    x, m = kv[t], mv[t]
                    mv[t] = x if x > m else m


@numba.njit(cache=True, nogil=True)
def _fold(centres, r, shape, ma, keep, row_flag, count_hist, prior, edges, hist):
    """keep *= 1 - ma, ma = 0 over the cubes; their rows flagged. With ``count_hist``, each voxel's MA is
    counted once into ``hist`` (bins ``edges``, evenly spaced) where ``prior``; returns how many prior
    voxels were counted."""
    ny, nz = shape[1], shape[2]
    inv = 1.0 / (edges[1] - edges[0])
    in_prior = 0
    for v in centres:
        origin, c_lo, n, a_lo, a_hi, b_lo, b_hi = _cube(v, r, shape)
        for a in range(a_lo, a_hi):
            for b in range(b_lo, b_hi):
                start = origin + (a * ny + b) * nz
                row_flag[start // nz] = 1
                mv = ma[start: start + n]
                if count_hist:
                    pv = prior[start: start + n]
                    for t in range(n):
                        if mv[t] > 0.0 and pv[t]:  # > 0: the voxel's first visit in this experiment
                            hist[_bin(edges, inv, mv[t])] += 1.0
                            in_prior += 1
                kp = keep[start: start + n]
                for t in range(n):
                    kp[t] *= 1.0 - mv[t]
                    mv[t] = 0.0
    return in_prior


@numba.njit(cache=True, nogil=True)
def _bin(edges, inv, m):
    """``np.searchsorted(edges, m, side="right")`` for evenly spaced ``edges`` (1 / spacing ``inv``)."""
    k = min(max(int((m - edges[0]) * inv) + 1, 0), len(edges))
    while k < len(edges) and edges[k] <= m:
        k += 1
    while k > 0 and edges[k - 1] > m:
        k -= 1
    return k


@numba.njit(cache=True, nogil=True)
def _clusters(touched, n_touched, keep, zlut, inv_step, half_away, inside, z_thresh, shape, parent, size, mass,
              zvals, flat, n_pos_out):
    """z of the touched voxels inside ``inside`` into ``zvals``/``flat`` (those with z > 0): ``zlut`` at the
    ALE's bin, ``round(ALE * inv_step)`` (half to even, or half away from zero with ``half_away``); largest
    cluster (size, mass) above ``z_thresh``. Restores ``keep`` to 1; ``parent`` (-1 everywhere) is left so."""
    nx, ny, nz = shape
    n_bins = len(zlut)
    n_pos = 0
    best_size = 0.0
    best_mass = 0.0
    for q in range(n_touched):
        t = touched[q]
        ale = 1.0 - keep[t]
        keep[t] = 1.0
        if not inside[t]:
            continue
        x = ale * inv_step
        r = np.rint(x)
        if half_away and abs(x - r) == 0.5:
            r = np.ceil(x)
        z = zlut[min(int(r), n_bins - 1)]
        if z > 0:
            flat[n_pos] = t
            zvals[n_pos] = z
            n_pos += 1
    near = np.empty(6, dtype=np.int64)
    for q in range(n_pos):
        v = flat[q]
        if zvals[q] <= z_thresh:
            continue
        parent[v] = v
        size[v] = 1.0
        mass[v] = zvals[q] - z_thresh
        tfce.neighbours(v, nx, ny, nz, near)
        for u in near:
            if u < 0 or parent[u] < 0:
                continue
            a = _find(parent, v)
            b = _find(parent, u)
            if a != b:
                if size[a] < size[b]:
                    a, b = b, a
                parent[b] = a
                size[a] += size[b]
                mass[a] += mass[b]
    for q in range(n_pos):
        v = flat[q]
        if parent[v] == v:
            best_size = max(best_size, size[v])
            best_mass = max(best_mass, mass[v])
    for q in range(n_pos):
        parent[flat[q]] = -1
    n_pos_out[0] = n_pos
    return best_size, best_mass


@dataclass
class _Work:
    """One worker's reusable volumes and buffers."""

    ma: np.ndarray
    keep: np.ndarray
    row_flag: np.ndarray
    parent: np.ndarray
    size: np.ndarray
    score: np.ndarray
    touched: np.ndarray
    flat: np.ndarray
    zvals: np.ndarray
    mark: np.ndarray
    hist: np.ndarray


class JaleNullEngine:
    """Null iterations for :class:`~neurochange.inference.montecarlo.MonteCarloFWE` in the JALE convention.

    ``run(draws)`` returns (max ALE, largest cluster size, largest cluster mass, max TFCE), each
    (n_it,), for draws ((n_it, n_foci) int32 indices into the prior's voxels, foci in experiment
    order); it may be called from ``n_workers`` threads at once.

    It also gives the NiMARE convention's largest TFCE (:meth:`neurochange.meta.ale.ALE.null_engine`):
    with ``zlut`` (z of each bin of ``edges``, NiMARE's bins) the observed ``tail`` is not used, z is
    computed inside the mask only, and null foci fall in ``null_voxels``.
    """

    def __init__(self, grid, focus_experiment: np.ndarray, experiment_kernels: list, tail: np.ndarray | None,
                 edges: np.ndarray, centres: np.ndarray, z_thresh: float, null_histogram: str = "observed",
                 with_tfce: bool = True, n_workers: int = 1, *, zlut: np.ndarray | None = None,
                 null_voxels: np.ndarray | None = None):
        if null_histogram not in NULL_HISTOGRAMS:
            raise ValueError(f"null_histogram must be one of {NULL_HISTOGRAMS}, got {null_histogram!r}")
        self.shape = np.array(grid.shape, dtype=np.int64)
        # C order: JALE's GM_SAMPLE_SPACE (or the given null voxels, as the other engines order them)
        self.sample = np.flatnonzero(grid.mask if null_voxels is None else null_voxels).astype(np.int64)
        self.prior = np.ascontiguousarray(grid.mask.ravel())
        self.focus_exp = np.ascontiguousarray(focus_experiment, dtype=np.int64)
        distinct = {}
        self.exp_kernel = np.array([distinct.setdefault(k.fwhm, len(distinct)) for k in experiment_kernels], np.int64)
        cubes = {distinct[k.fwhm]: k for k in experiment_kernels}
        width = max(len(k.values) for k in cubes.values())
        self.kvalues = np.zeros((len(cubes), width))
        self.kradius = np.zeros(len(cubes), dtype=np.int64)
        for i, k in cubes.items():
            self.kvalues[i, : len(k.values)] = k.values
            self.kradius[i] = k.radius
        # JALE: z at every voxel of the volume, bins of 1e-4 (half to even); a given ``zlut`` (NiMARE's
        # convention): z inside the mask only, its bins of 1e-5 (half away from zero) over ``edges``
        self.nimare_bins = zlut is not None
        self.zlut = histogram.z_lookup(tail) if zlut is None else np.ascontiguousarray(zlut, dtype=np.float64)
        self.inv_step = 1 / (edges[1] - edges[0]) if self.nimare_bins else float(histogram.STEP)
        self.inside = self.prior if self.nimare_bins else np.ones_like(self.prior)
        self.edges, self.centres = edges, centres
        self.z_thresh = float(z_thresh)  # clusters: z above it
        self.null_histogram = null_histogram
        self.with_tfce = with_tfce
        self.n_experiments = len(experiment_kernels)
        self._workers(n_workers)

    def _workers(self, n_workers: int) -> None:
        """``n_workers`` work spaces, and the queue of the free ones."""
        n = int(self.prior.size)
        max_touched = min(n, int(len(self.focus_exp) * (2 * self.kradius.max() + 1) ** 3))
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._work = []
        for w in range(n_workers):
            self._work.append(_Work(
                np.zeros(n), np.ones(n), np.zeros(n // int(self.shape[2]), dtype=np.uint8), -np.ones(n, dtype=np.int64),
                np.zeros(n), np.zeros(n), np.zeros(max_touched, dtype=np.int64), np.zeros(max_touched, dtype=np.int64),
                np.zeros(max_touched), np.zeros(n, dtype=np.int64),
                np.zeros((self.n_experiments, len(self.edges)) if self.null_histogram == "per_null" else (1, 1))))
            self._free.put(w)

    def __getstate__(self) -> dict:
        """What another process (a Dask worker) receives: everything but the work spaces."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_free", "_work")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._workers(1)

    @property
    def n_foci(self) -> int:
        return len(self.focus_exp)

    @property
    def n_null(self) -> int:
        return len(self.sample)

    def warm_up(self, draws: np.ndarray) -> None:
        """Compile the kernels on one iteration."""
        self.run(draws[:1])

    def run(self, draws: np.ndarray):
        n_it = len(draws)
        out = (np.zeros(n_it), np.zeros(n_it), np.zeros(n_it), np.zeros(n_it))
        w = self._free.get()
        try:
            work = self._work[w]
            for it in range(n_it):
                out[0][it], out[1][it], out[2][it], out[3][it] = self._iteration(work, draws[it])
        finally:
            self._free.put(w)
        return out

    def _iteration(self, work: _Work, draw: np.ndarray) -> tuple[float, float, float, float]:
        per_null = self.null_histogram == "per_null"
        if per_null:
            work.hist[:] = 0.0
        n_touched, top = _null_ale(np.ascontiguousarray(draw, dtype=np.int64), self.sample, self.focus_exp,
                                   self.exp_kernel, self.kvalues, self.kradius, self.shape, work.ma, work.keep,
                                   work.row_flag, work.touched, self.prior, len(self.sample),
                                   self.edges, work.hist, per_null)
        zlut = histogram.z_lookup(histogram.convolve(work.hist, self.centres)) if per_null else self.zlut
        n_pos = np.zeros(1, dtype=np.int64)
        size, mass = _clusters(work.touched, n_touched, work.keep, zlut, self.inv_step, self.nimare_bins, self.inside,
                               self.z_thresh, self.shape, work.parent, work.size, work.score, work.zvals,
                               work.flat, n_pos)
        top_tfce = 0.0
        if self.with_tfce:
            n = int(n_pos[0])
            max_z = float(work.zvals[:n].max()) if n else 0.0
            hs, step = tfce.levels(max_z)
            top_tfce = tfce.max_tfce(work.flat[:n], work.zvals[:n], self.shape, hs, step, work.parent, work.size,
                                     work.score, work.mark)
        return top, size, mass, top_tfce


__all__ = ["JaleNullEngine", "NULL_HISTOGRAMS"]
