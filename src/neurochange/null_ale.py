"""Null ALE iterations in numba: largest ALE, largest cluster size and mass for random foci.

One iteration takes the experiments of a result (their foci counts and kernels) with
every focus moved to a given voxel, and returns (max ALE in the mask, size in voxels of
the largest face-connected cluster of ALE > threshold, largest cluster mass = sum over
a cluster of ALE - threshold): exactly what :func:`null_iteration_numpy` computes
densely with NumPy and SciPy, only faster:

- Geometry: the grid padded by the largest kernel radius (cubes never leave it); of
  every (i, j) row along k only the span of its mask voxels is stored ("compact"
  index), and kernel cubes are clipped to these spans.
- ALE: a running product of ``1 - MA`` (float64) over the voxels the kernels touch;
  an experiment's MA is the running maximum over its foci (float32 scratch, folded into
  the product and cleared in a second pass). Touched rows are listed, so reading the
  result and restoring the product to 1 costs what the kernels touched.
- Two stages when it pays (small and medium data sets, where kernel cores are much
  smaller than the cubes): stage 1 folds in only each focus's kernel core (values >=
  tau), every focus as if it were its own experiment, in one pass. That gives an upper
  bound on the exact ALE, ``1 - prod_f(1 - core_f) * prod_e(1 - tail_e)`` (``tail_e``:
  the largest kernel value left out), and only rows where the bound can pass the
  threshold are computed exactly (stage 2). If no voxel passes, the maximum may lie
  anywhere and the whole map is computed exactly. Either way the result is exact.
- Clusters: union-find over the supra-threshold voxel list (each voxel joined to its
  earlier face neighbours), with a compact label array cleared voxel by voxel.
- Parallel: one thread per worker, each running a compiled loop that releases the GIL on
  its own work space (``nogil`` threads compile in a fraction of the time ``prange``
  takes); iteration ``it`` goes to worker ``it % n_workers`` and its result depends only
  on its foci.
"""

from __future__ import annotations

from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import ndimage

from . import kernels
from .result import MetaResult

FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)
#: Tails of the kernel cores may add at most this share of the cluster-forming threshold.
CORE_SLACK = 0.1
#: Two stages are used when the cores hold at most this share of the kernel rows.
CORE_ROW_SHARE = 0.6
#: Relative safety margin on the bound (covers float64 rounding of the products).
BOUND_MARGIN = 1e-9

#: Padded-grid rows and their compact mask spans (see module docstring).
Geometry = namedtuple("Geometry", "ny row_lo row_hi row_off outside")
#: Kernel cubes (float32 values concatenated) and, per cube row (a, b), the k-range used.
KernelTable = namedtuple("KernelTable", "values start radius row_start row_klo row_khi plane_start plane_blo plane_bhi")
#: Per-worker work space (2-D arrays, one row per worker).
Work = namedtuple(
    "Work",
    "prod scratch row_flag plane_jlo plane_jhi rows cand labels supra_idx supra_row supra_val parent size_acc mass_acc",
)


# ---------------------------------------------------------------------------- plan
@dataclass
class NullPlan:
    """Everything fixed for a run: geometry, kernels, experiments, thresholds."""

    pad: int
    padded_shape: tuple
    geometry: Geometry
    full: KernelTable
    core: KernelTable  # equals ``full`` when one stage is used
    exp_offsets: np.ndarray  # int64 (n_exp + 1,): foci of experiment e are exp_offsets[e]:exp_offsets[e+1]
    exp_kernel: np.ndarray  # int64 (n_exp,): index into the kernel table
    null_row: np.ndarray  # int64 (n_null,): row of each null voxel
    null_k: np.ndarray  # int64 (n_null,): padded k of each null voxel
    threshold: float  # cluster-forming ALE (supra-threshold: ALE > threshold)
    tail_keep: float  # prod_e (1 - largest value of kernel e outside its core); 1 with one stage
    two_stage: bool

    @property
    def n_foci(self) -> int:
        return int(self.exp_offsets[-1])

    @property
    def n_null(self) -> int:
        return len(self.null_row)

    @property
    def n_rows(self) -> int:
        return len(self.geometry.row_lo)

    @property
    def n_compact(self) -> int:
        return len(self.geometry.outside)

    def null_ijk(self, draws: np.ndarray) -> np.ndarray:
        """Grid voxel indices (..., 3) of null-voxel draws."""
        i, j = np.divmod(self.null_row[draws], self.padded_shape[1])
        return np.stack([i, j, self.null_k[draws]], axis=-1) - self.pad


def _kernel_table(kernel_list: list[kernels.KernelCube], tau: float) -> tuple[KernelTable, np.ndarray]:
    """Table of kernels keeping values >= tau; also each kernel's largest dropped value.

    Per cube row (a, b) the kept k-range ``[row_klo, row_khi)``, per plane a the kept
    b-range ``[plane_blo, plane_bhi)`` (empty: lo == hi).
    """
    klo, khi, blo, bhi, dropped = [], [], [], [], []
    for kernel in kernel_list:
        cube = kernel.array().astype(np.float64)
        keep = cube >= tau
        rows = keep.reshape(-1, kernel.side)
        has = rows.any(axis=1)
        klo.append(np.where(has, rows.argmax(axis=1), 0))
        khi.append(np.where(has, kernel.side - rows[:, ::-1].argmax(axis=1), 0))
        planes = has.reshape(kernel.side, kernel.side)
        some = planes.any(axis=1)
        blo.append(np.where(some, planes.argmax(axis=1), 0))
        bhi.append(np.where(some, kernel.side - planes[:, ::-1].argmax(axis=1), 0))
        dropped.append(cube[~keep].max() if (~keep).any() else 0.0)
    sides = [k.side for k in kernel_list]
    table = KernelTable(
        values=np.concatenate([k.values for k in kernel_list]).astype(np.float32),
        start=np.concatenate([[0], np.cumsum([len(k.values) for k in kernel_list])]).astype(np.int64),
        radius=np.array([k.radius for k in kernel_list], dtype=np.int64),
        row_start=np.concatenate([[0], np.cumsum([s**2 for s in sides])]).astype(np.int64),
        row_klo=np.concatenate(klo).astype(np.int64),
        row_khi=np.concatenate(khi).astype(np.int64),
        plane_start=np.concatenate([[0], np.cumsum(sides)]).astype(np.int64),
        plane_blo=np.concatenate(blo).astype(np.int64),
        plane_bhi=np.concatenate(bhi).astype(np.int64),
    )
    return table, np.array(dropped)


def build_plan(result: MetaResult, null_voxels: np.ndarray, threshold: float, two_stage: bool | None = None) -> NullPlan:
    """The plan for ``result``'s experiments drawing foci from ``null_voxels`` (3-D bool).

    ``two_stage``: None chooses (two stages when kernel cores hold at most
    ``CORE_ROW_SHARE`` of the kernel rows); True/False force it (for tests).
    """
    grid = result.grid
    kernel_list: list[kernels.KernelCube] = []
    exp_kernel = np.zeros(result.n_experiments, dtype=np.int64)
    for i in range(result.n_experiments):
        kernel = result.kernel(i)
        matches = [j for j, known in enumerate(kernel_list) if known is kernel]
        if matches:
            exp_kernel[i] = matches[0]
        else:
            exp_kernel[i] = len(kernel_list)
            kernel_list.append(kernel)

    pad = max(1, max(k.radius for k in kernel_list))
    padded_shape = tuple(int(s) + 2 * pad for s in grid.shape)
    mask_pad = np.zeros(padded_shape, dtype=bool)
    mask_pad[pad:-pad, pad:-pad, pad:-pad] = grid.mask
    rows = mask_pad.reshape(-1, padded_shape[2])
    has = rows.any(axis=1)
    row_lo = np.where(has, rows.argmax(axis=1), 0).astype(np.int64)
    row_hi = np.where(has, padded_shape[2] - rows[:, ::-1].argmax(axis=1), 0).astype(np.int64)
    row_off = np.concatenate([[0], np.cumsum(row_hi - row_lo)[:-1]]).astype(np.int64)
    outside = np.concatenate([~rows[q, row_lo[q]:row_hi[q]] for q in np.flatnonzero(has)]).astype(np.float64)
    geometry = Geometry(padded_shape[1], row_lo, row_hi, row_off, outside)

    full, _ = _kernel_table(kernel_list, tau=np.finfo(np.float64).tiny)
    counts = np.bincount(result.focus_experiment, minlength=result.n_experiments)
    tau = CORE_SLACK * threshold / max(1, result.n_experiments)
    core, dropped = _kernel_table(kernel_list, tau)
    weights = np.bincount(exp_kernel, weights=counts, minlength=len(kernel_list))
    core_rows = sum(w * np.count_nonzero(core.row_khi[core.row_start[q]:core.row_start[q + 1]] >
                                         core.row_klo[core.row_start[q]:core.row_start[q + 1]])
                    for q, w in enumerate(weights))
    full_rows = sum(w * k.side**2 for w, k in zip(weights, kernel_list))
    if two_stage is None:
        two_stage = core_rows <= CORE_ROW_SHARE * full_rows
    tail_keep = float(np.prod(1.0 - dropped[exp_kernel])) if two_stage else 1.0

    ijk = np.argwhere(null_voxels) + pad
    return NullPlan(
        pad=pad,
        padded_shape=padded_shape,
        geometry=geometry,
        full=full,
        core=core if two_stage else full,
        exp_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        exp_kernel=exp_kernel,
        null_row=(ijk[:, 0] * padded_shape[1] + ijk[:, 1]).astype(np.int64),
        null_k=ijk[:, 2].astype(np.int64),
        threshold=float(threshold),
        tail_keep=tail_keep,
        two_stage=bool(two_stage),
    )


def make_work(plan: NullPlan, n_workers: int) -> Work:
    """Work space for ``n_workers`` workers (about 60 bytes per mask voxel each)."""
    n = plan.n_compact
    return Work(
        prod=np.ones((n_workers, n), dtype=np.float64),
        scratch=np.zeros((n_workers, n), dtype=np.float32),
        row_flag=np.zeros((n_workers, plan.n_rows), dtype=np.uint8),
        plane_jlo=np.full((n_workers, plan.padded_shape[0]), plan.padded_shape[1], dtype=np.int64),
        plane_jhi=np.full((n_workers, plan.padded_shape[0]), -1, dtype=np.int64),
        rows=np.zeros((n_workers, plan.n_rows), dtype=np.int64),
        cand=np.zeros((n_workers, plan.n_rows), dtype=np.int64),
        labels=np.zeros((n_workers, n), dtype=np.int32),
        supra_idx=np.zeros((n_workers, n), dtype=np.int64),
        supra_row=np.zeros((n_workers, n), dtype=np.int64),
        supra_val=np.zeros((n_workers, n), dtype=np.float64),
        parent=np.zeros((n_workers, n), dtype=np.int64),
        size_acc=np.zeros((n_workers, n), dtype=np.int64),
        mass_acc=np.zeros((n_workers, n), dtype=np.float64),
    )


# ---------------------------------------------------------------------------- exact ALE on rows
# Hot loops take plain arrays (namedtuples are unpacked once per iteration).
@njit(cache=True)
def _accumulate(foci_row, foci_k, exp_offsets, exp_kernel, values, kstart, kradius, krow_start, row_klo, row_khi,
                plane_start, plane_blo, plane_bhi, ny, row_lo, row_hi, row_off, prod, scratch, row_flag, rows,
                only_flagged, plane_jlo, plane_jhi):
    """prod *= 1 - MA_e for every experiment e, over its kernel rows clipped to the mask spans.

    An experiment with one focus is folded in directly; otherwise its MA (max over its
    foci) is built in ``scratch`` (pass 1), then folded into ``prod`` and cleared (pass 2).
    ``only_flagged``: work only on rows flagged 2, looking only at the j-span
    ``[plane_jlo, plane_jhi]`` of flagged rows in each i-plane (flags untouched);
    otherwise flag every row written 1 and list it in ``rows``. Returns the listed count.
    """
    n_rows = 0
    for e in range(exp_offsets.shape[0] - 1):
        kk = exp_kernel[e]
        r = kradius[kk]
        side = 2 * r + 1
        k0 = kstart[kk]
        q0 = krow_start[kk]
        a0 = plane_start[kk]
        f0 = exp_offsets[e]
        f1 = exp_offsets[e + 1]
        single = f1 - f0 == 1
        for f in range(f0, f1):
            plane0 = foci_row[f] // ny - r
            col0 = foci_row[f] - (plane0 + r) * ny - r
            first_row = foci_row[f] - r * ny - r
            kfirst = foci_k[f] - r
            for a in range(side):
                blo = plane_blo[a0 + a]
                bhi = plane_bhi[a0 + a]
                if only_flagged:
                    blo = max(blo, plane_jlo[plane0 + a] - col0)
                    bhi = min(bhi, plane_jhi[plane0 + a] - col0 + 1)
                for b in range(blo, bhi):
                    row = first_row + a * ny + b
                    if only_flagged and row_flag[row] != 2:
                        continue
                    q = q0 + a * side + b
                    lo = max(kfirst + row_klo[q], row_lo[row])
                    hi = min(kfirst + row_khi[q], row_hi[row])
                    if lo >= hi:
                        continue
                    if not only_flagged and row_flag[row] == 0:
                        row_flag[row] = 1
                        rows[n_rows] = row
                        n_rows += 1
                    n = hi - lo
                    start = row_off[row] + lo - row_lo[row]
                    kfrom = k0 + (q - q0) * side + lo - kfirst
                    kv = values[kfrom: kfrom + n]
                    if single:
                        p = prod[start: start + n]
                        for t in range(n):
                            p[t] *= 1.0 - kv[t]
                    else:
                        sc = scratch[start: start + n]
                        for t in range(n):
                            sc[t] = max(sc[t], kv[t])
        if single:
            continue
        for f in range(f0, f1):
            plane0 = foci_row[f] // ny - r
            col0 = foci_row[f] - (plane0 + r) * ny - r
            first_row = foci_row[f] - r * ny - r
            kfirst = foci_k[f] - r
            for a in range(side):
                blo = plane_blo[a0 + a]
                bhi = plane_bhi[a0 + a]
                if only_flagged:
                    blo = max(blo, plane_jlo[plane0 + a] - col0)
                    bhi = min(bhi, plane_jhi[plane0 + a] - col0 + 1)
                for b in range(blo, bhi):
                    row = first_row + a * ny + b
                    if only_flagged and row_flag[row] != 2:
                        continue
                    q = q0 + a * side + b
                    lo = max(kfirst + row_klo[q], row_lo[row])
                    hi = min(kfirst + row_khi[q], row_hi[row])
                    if lo >= hi:
                        continue
                    n = hi - lo
                    start = row_off[row] + lo - row_lo[row]
                    p = prod[start: start + n]
                    sc = scratch[start: start + n]
                    for t in range(n):
                        p[t] *= 1.0 - sc[t]
                        sc[t] = 0.0
    return n_rows


@njit(cache=True)
def _collect(rows, n_rows, row_lo, row_hi, row_off, outside, threshold, prod, row_flag, supra_idx, supra_row,
             supra_val):
    """Max ALE over the mask voxels of the listed rows and their supra-threshold voxels.

    Restores the rows' product to 1 and their flags to 0. Returns (max ALE, count of
    supra-threshold voxels written to supra_idx (compact) / supra_row / supra_val).
    """
    keep_min = 1.0
    keep_threshold = 1.0 - threshold
    n_supra = 0
    for q in range(n_rows):
        row = rows[q]
        row_flag[row] = 0
        start = row_off[row]
        n = row_hi[row] - row_lo[row]
        p = prod[start: start + n]
        o = outside[start: start + n]
        low = 1.0
        for t in range(n):
            low = min(low, max(p[t], o[t]))
        if low < keep_threshold:
            for t in range(n):
                if o[t] == 0.0:
                    ale = 1.0 - p[t]
                    if ale > threshold:
                        supra_idx[n_supra] = start + t
                        supra_row[n_supra] = row
                        supra_val[n_supra] = ale
                        n_supra += 1
        keep_min = min(keep_min, low)
        for t in range(n):
            p[t] = 1.0
    return 1.0 - keep_min, n_supra


# ---------------------------------------------------------------------------- upper bound (stage 1)
@njit(cache=True)
def _flag_candidates(foci_row, foci_k, foci_kernel, values, kstart, kradius, krow_start, row_klo, row_khi,
                     plane_start, plane_blo, plane_bhi, ny, row_lo, row_hi, row_off, keep_bound, prod, row_flag,
                     rows, cand, plane_jlo, plane_jhi):
    """Flag (2) the rows where the ALE upper bound may exceed the threshold; returns their count.

    Folds every focus's kernel core in as if each focus were its own experiment
    (``prod_f (1 - x_f) <= 1 - max_f x_f``), so one pass suffices; a row is a candidate
    once a voxel's product drops below ``keep_bound``. Candidate rows are listed in
    ``cand`` and each i-plane's span of candidate j kept in ``plane_jlo``/``plane_jhi``;
    the product is restored to 1.
    """
    n_rows = 0
    n_cand = 0
    for f in range(foci_row.shape[0]):
        kk = foci_kernel[f]
        r = kradius[kk]
        side = 2 * r + 1
        k0 = kstart[kk]
        q0 = krow_start[kk]
        a0 = plane_start[kk]
        first_row = foci_row[f] - r * ny - r
        kfirst = foci_k[f] - r
        for a in range(side):
            for b in range(plane_blo[a0 + a], plane_bhi[a0 + a]):
                row = first_row + a * ny + b
                q = q0 + a * side + b
                lo = max(kfirst + row_klo[q], row_lo[row])
                hi = min(kfirst + row_khi[q], row_hi[row])
                if lo >= hi:
                    continue
                if row_flag[row] == 0:
                    row_flag[row] = 1
                    rows[n_rows] = row
                    n_rows += 1
                n = hi - lo
                start = row_off[row] + lo - row_lo[row]
                kfrom = k0 + (q - q0) * side + lo - kfirst
                p = prod[start: start + n]
                kv = values[kfrom: kfrom + n]
                below = 0
                for t in range(n):
                    p[t] *= 1.0 - kv[t]
                    below += p[t] < keep_bound
                if below > 0 and row_flag[row] == 1:
                    row_flag[row] = 2
                    cand[n_cand] = row
                    n_cand += 1
                    i = row // ny
                    plane_jlo[i] = min(plane_jlo[i], row - i * ny)
                    plane_jhi[i] = max(plane_jhi[i], row - i * ny)
    for q in range(n_rows):
        row = rows[q]
        if row_flag[row] == 1:
            row_flag[row] = 0
        start = row_off[row]
        p = prod[start: start + row_hi[row] - row_lo[row]]
        for t in range(p.shape[0]):
            p[t] = 1.0
    return n_cand


# ---------------------------------------------------------------------------- clusters
@njit(cache=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True)
def _compact_index(row, k, row_lo, row_hi, row_off):
    """Compact index of voxel (row, k), or -1 outside the row's span."""
    if row_lo[row] <= k < row_hi[row]:
        return row_off[row] + k - row_lo[row]
    return -1


@njit(cache=True)
def largest_cluster(supra_idx, supra_row, supra_val, n_supra, threshold, ny, row_lo, row_hi, row_off, labels, parent,
                    size_acc, mass_acc):
    """(largest cluster size in voxels, largest cluster mass) of the listed supra-threshold voxels.

    Face connectivity; mass = sum over a cluster of value - threshold. Each voxel is
    joined to its earlier face neighbours (k - 1, j - 1, i - 1), so every face pair is
    seen once. ``labels`` (compact int32) must be all zero and is left so; ``parent``,
    ``size_acc`` and ``mass_acc`` are work space of at least ``n_supra``.
    """
    if n_supra == 0:
        return 0, 0.0
    for s in range(n_supra):
        labels[supra_idx[s]] = s + 1
        parent[s] = s
    for s in range(n_supra):
        row = supra_row[s]
        k = supra_idx[s] - row_off[row] + row_lo[row]
        for face in range(3):
            if face == 0:
                nb = _compact_index(row, k - 1, row_lo, row_hi, row_off)
            elif face == 1:
                nb = _compact_index(row - 1, k, row_lo, row_hi, row_off)
            else:
                nb = _compact_index(row - ny, k, row_lo, row_hi, row_off)
            if nb < 0 or labels[nb] == 0:
                continue
            ra = _find(parent, s)
            rb = _find(parent, labels[nb] - 1)
            if ra < rb:
                parent[rb] = ra
            elif rb < ra:
                parent[ra] = rb
    for s in range(n_supra):
        size_acc[s] = 0
        mass_acc[s] = 0.0
    for s in range(n_supra):
        root = _find(parent, s)
        size_acc[root] += 1
        mass_acc[root] += supra_val[s] - threshold
        labels[supra_idx[s]] = 0
    max_size = 0
    max_mass = 0.0
    for s in range(n_supra):
        max_size = max(max_size, size_acc[s])
        max_mass = max(max_mass, mass_acc[s])
    return max_size, max_mass


# ---------------------------------------------------------------------------- iterations
@njit(cache=True)
def _iteration(foci_row, foci_k, foci_kernel, exp_offsets, exp_kernel, full, core, geo, threshold, tail_keep,
               two_stage, work, w):
    ny, row_lo, row_hi, row_off, outside = geo
    prod = work.prod[w]
    scratch = work.scratch[w]
    row_flag = work.row_flag[w]
    plane_jlo = work.plane_jlo[w]
    plane_jhi = work.plane_jhi[w]
    rows = work.rows[w]
    supra_idx = work.supra_idx[w]
    supra_row = work.supra_row[w]
    supra_val = work.supra_val[w]
    fv, fs, fr, fq, fklo, fkhi, fps, fblo, fbhi = full
    done = False
    if two_stage:
        cv, cs, cr, cq, cklo, ckhi, cps, cblo, cbhi = core
        # exact ALE <= 1 - (bound product) * tail_keep: only rows where that may pass the
        # threshold are computed exactly
        keep_bound = (1.0 - threshold) / tail_keep * (1.0 + BOUND_MARGIN)
        n_cand = _flag_candidates(foci_row, foci_k, foci_kernel, cv, cs, cr, cq, cklo, ckhi, cps, cblo, cbhi, ny,
                                  row_lo, row_hi, row_off, keep_bound, prod, row_flag, rows, work.cand[w],
                                  plane_jlo, plane_jhi)
        cand = work.cand[w]
        _accumulate(foci_row, foci_k, exp_offsets, exp_kernel, fv, fs, fr, fq, fklo, fkhi, fps, fblo, fbhi, ny,
                    row_lo, row_hi, row_off, prod, scratch, row_flag, rows, True, plane_jlo, plane_jhi)
        for q in range(n_cand):
            plane_jlo[cand[q] // ny] = ny
            plane_jhi[cand[q] // ny] = -1
        max_ale, n_supra = _collect(cand, n_cand, row_lo, row_hi, row_off, outside, threshold, prod, row_flag,
                                    supra_idx, supra_row, supra_val)
        # with a supra-threshold voxel, the maximum (> threshold) is among the candidates;
        # without, it may lie anywhere: compute the whole map
        done = n_supra > 0
    if not done:
        n_rows = _accumulate(foci_row, foci_k, exp_offsets, exp_kernel, fv, fs, fr, fq, fklo, fkhi, fps, fblo, fbhi,
                             ny, row_lo, row_hi, row_off, prod, scratch, row_flag, rows, False, plane_jlo,
                             plane_jhi)
        max_ale, n_supra = _collect(rows, n_rows, row_lo, row_hi, row_off, outside, threshold, prod, row_flag,
                                    supra_idx, supra_row, supra_val)
    max_size, max_mass = largest_cluster(supra_idx, supra_row, supra_val, n_supra, threshold, ny, row_lo, row_hi,
                                         row_off, work.labels[w], work.parent[w], work.size_acc[w], work.mass_acc[w])
    return max_ale, max_size, max_mass


@njit(cache=True, nogil=True)
def _run_worker(w, n_workers, draws, null_row, null_k, foci_kernel, exp_offsets, exp_kernel, full, core, geo,
                threshold, tail_keep, two_stage, work, out_voxel, out_size, out_mass):
    """Iterations w, w + n_workers, ... of ``draws`` on work space ``w`` (releases the GIL)."""
    n_it, n_foci = draws.shape
    foci_row = np.empty(n_foci, dtype=np.int64)
    foci_k = np.empty(n_foci, dtype=np.int64)
    for it in range(w, n_it, n_workers):
        for f in range(n_foci):
            foci_row[f] = null_row[draws[it, f]]
            foci_k[f] = null_k[draws[it, f]]
        v, s, m = _iteration(foci_row, foci_k, foci_kernel, exp_offsets, exp_kernel, full, core, geo,
                             threshold, tail_keep, two_stage, work, w)
        out_voxel[it] = v
        out_size[it] = s
        out_mass[it] = m


def run_iterations(plan: NullPlan, draws: np.ndarray, work: Work, pool: ThreadPoolExecutor | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max ALE, largest cluster size, largest cluster mass), each (n_it,), for the foci ``draws``.

    ``draws``: (n_it, n_foci) indices into the plan's null voxels (foci in experiment order).
    Iteration ``it`` runs on worker ``it % n_workers`` (one per row of ``work``), the
    workers on threads of ``pool`` (one is made if needed).
    """
    n_it = draws.shape[0]
    n_workers = work.prod.shape[0]
    out_voxel = np.zeros(n_it)
    out_size = np.zeros(n_it, dtype=np.int64)
    out_mass = np.zeros(n_it)
    foci_kernel = np.repeat(plan.exp_kernel, np.diff(plan.exp_offsets)).astype(np.int64)
    draws = np.ascontiguousarray(draws, dtype=np.int32)

    def worker(w):
        _run_worker(w, n_workers, draws, plan.null_row, plan.null_k, foci_kernel, plan.exp_offsets, plan.exp_kernel,
                    plan.full, plan.core, plan.geometry, plan.threshold, plan.tail_keep, plan.two_stage, work,
                    out_voxel, out_size, out_mass)

    if n_workers == 1:
        worker(0)
    elif pool is not None:
        list(pool.map(worker, range(n_workers)))
    else:
        with ThreadPoolExecutor(n_workers) as own:
            list(own.map(worker, range(n_workers)))
    return out_voxel, out_size, out_mass


# ---------------------------------------------------------------------------- NumPy reference
def null_iteration_numpy(result: MetaResult, foci_ijk: np.ndarray, threshold: float) -> tuple[float, int, float]:
    """Reference iteration: dense ALE of ``result``'s experiments with foci moved to
    ``foci_ijk`` (n_foci, 3); returns (max ALE, largest cluster size, largest cluster mass)."""
    grid = result.grid
    keep = np.ones(grid.shape)
    for i in range(result.n_experiments):
        ma = kernels.experiment_ma_numpy(result.kernel(i), foci_ijk[result.focus_experiment == i], grid.shape)
        keep *= 1.0 - ma
    ale = np.where(grid.mask, 1.0 - keep, 0.0)
    labels, n = ndimage.label(ale > threshold, structure=FACE_CONNECTIVITY)
    if n == 0:
        return float(ale.max()), 0, 0.0
    sizes = np.bincount(labels.ravel())[1:]
    masses = ndimage.sum(ale - threshold, labels=labels, index=np.arange(1, n + 1))
    return float(ale.max()), int(sizes.max()), float(np.max(masses))
