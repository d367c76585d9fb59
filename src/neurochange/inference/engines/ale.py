"""Null ALE iterations in numba: largest ALE, largest cluster size and mass for random foci.

One iteration takes the experiments of a result (their foci counts and kernels) with
every focus moved to a given voxel, and returns (max ALE in the mask, size in voxels of
the largest face-connected cluster of ALE > threshold, largest cluster mass = sum over
a cluster of ALE - threshold): exactly what :func:`null_iteration_numpy` computes
densely with NumPy and SciPy, only faster.

- Geometry: the grid padded by the largest kernel radius (cubes never leave it); of
  every (i, j) row along k only the span of its mask voxels is stored ("compact"
  index), and kernel cubes are clipped to these spans.
- Exact ALE of the whole map (large data sets, and the fallback below): a running
  product of ``1 - MA`` (float64) in an "extended" layout where every row's span reaches
  as far as any kernel cube touching it can (so cube rows are never clipped and every
  row loop has the kernel's length, which vectorizes). The grid is processed in slabs of
  ``SLAB_PLANES`` i-planes (their product and scratch stay in the L2 cache): the foci
  reaching a slab are bucketed in focus order, then each experiment's MA (running
  maximum over its foci, float32 scratch) is folded into the product and cleared by a
  second walk over the same cube rows (where cubes overlap the second fold multiplies by
  exactly 1). Per voxel the product still runs over experiments in order.
- Two stages, for plans whose kernel cores are much smaller than the cubes (small and
  medium data sets; :meth:`AleNullEngine.warm_up` times both engines and keeps the
  faster). Stage 1 bounds the ALE from above on 2 x 2 x 2 voxel blocks: each focus
  multiplies every block its kernel core (values >= tau) reaches by ``1 - (largest core
  value in the block)``, every focus as if it were its own experiment
  (``prod_f (1 - x_f) <= 1 - max_f x_f``); the values left out of the cores add at most
  ``1 - prod_e (1 - tail_e)``. Stage 2 computes the exact ALE only on the k-span of the
  rows whose blocks may pass the threshold, row by row in a small buffer, from the foci
  listed for each row (in focus order). If no voxel passes, the maximum may lie
  anywhere and the whole map is computed exactly. Either way the result is exact, with
  the same arithmetic (products over experiments in the same order, cluster masses
  summed in voxel order), so both engines give bit-identical nulls.
- Clusters: union-find over the supra-threshold voxel list (each voxel joined to its
  earlier face neighbours), with a compact label array cleared voxel by voxel.
- Parallel: one thread per worker, each running a compiled loop that releases the GIL on
  its own work space (``nogil`` threads compile in a fraction of the time ``prange``
  takes); iteration ``it`` goes to worker ``it % n_workers`` and its result depends only
  on its foci.
"""

from __future__ import annotations

import queue
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit
from scipy import ndimage

from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.inference.unionfind import _find  # union-find root with path halving, shared
from neurochange.meta import kernels
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.result import MetaResult

#: Tails left out of the kernel cores may add at most this share of the cluster-forming threshold.
CORE_SLACK = 0.03
#: Two stages are used when the cores hold at most this share of the kernel rows.
CORE_ROW_SHARE = 0.6
#: Relative safety margin on the bound (covers float64 rounding of the products).
BOUND_MARGIN = 1e-9
#: i-planes per slab of the whole-map pass (a slab's product and scratch fit the L2 cache).
SLAB_PLANES = 8

#: Padded-grid rows: their compact mask spans, the rows holding mask voxels, and per row the
#: offset of k = 0 in the extended layout (see module docstring; rows no cube reaches: 0).
Geometry = namedtuple("Geometry", "ny row_lo row_hi row_off outside mask_rows ext_base")
#: Kernel cubes: values (float32), concatenated; per kernel its first value and radius.
KernelTable = namedtuple("KernelTable", "values start radius")
#: Stage-1 bound: per kernel and alignment (i, j, k parity) of the focus, the 2 x 2 x 2 blocks
#: its core reaches, as flat offsets from the focus's block and factors ``1 - block max``;
#: entries of (kernel, alignment) ``a`` are ``start[a]:start[a + 1]``; ``shape``: block grid.
BoundTable = namedtuple("BoundTable", "offset keep start shape")
#: Per-worker work space (2-D arrays, one row per worker).
Work = namedtuple(
    "Work",
    "prod scratch slab_focus slab_start labels supra_idx supra_row supra_val parent size_acc mass_acc "
    "block_keep block_flag cand_blocks cand_rows cand_klo cand_khi plane_jlo plane_jhi plane_klo plane_khi list_head "
    "list_tail entry_focus entry_next row_prod row_max foci_i foci_j",
)


# ---------------------------------------------------------------------------- plan
@dataclass
class NullPlan:
    """Everything fixed for a run: geometry, kernels, experiments, thresholds."""

    pad: int
    padded_shape: tuple
    geometry: Geometry
    kernels: KernelTable
    bound: BoundTable  # empty when one stage is used
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

    @property
    def max_side(self) -> int:
        return int(2 * self.kernels.radius.max() + 1)

    @property
    def n_extended(self) -> int:
        """Voxels of the extended layout of the whole-map pass."""
        return int(self.geometry.ext_base[-1])

    @property
    def n_slabs(self) -> int:
        return -(-self.padded_shape[0] // SLAB_PLANES)

    @cached_property
    def focus_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per focus (experiment order): its experiment, its kernel and that kernel's radius (int64 each)."""
        focus_exp = np.repeat(np.arange(len(self.exp_kernel)), np.diff(self.exp_offsets)).astype(np.int64)
        foci_kernel = self.exp_kernel[focus_exp]
        return focus_exp, foci_kernel, self.kernels.radius[foci_kernel]

    def null_ijk(self, draws: np.ndarray) -> np.ndarray:
        """Grid voxel indices (..., 3) of null-voxel draws."""
        i, j = np.divmod(self.null_row[draws], self.padded_shape[1])
        return np.stack([i, j, self.null_k[draws]], axis=-1) - self.pad


def _kernel_table(kernel_list: list[kernels.KernelCube]) -> KernelTable:
    """The kernels' cubes concatenated."""
    return KernelTable(
        values=np.concatenate([k.values for k in kernel_list]).astype(np.float32),
        start=np.concatenate([[0], np.cumsum([len(k.values) for k in kernel_list])]).astype(np.int64),
        radius=np.array([k.radius for k in kernel_list], dtype=np.int64),
    )


def _extended_layout(row_lo: np.ndarray, row_hi: np.ndarray, padded_shape: tuple, pad: int) -> np.ndarray:
    """Per padded row, the offset of k = 0 in the extended layout; its last entry is the layout's size.

    A row's extended span covers the mask spans of every row within ``pad`` (in i and j)
    widened by ``pad``: any kernel cube (radius <= pad) of a focus in the mask fits there.
    """
    nz = padded_shape[2]
    has = row_hi > row_lo
    lo = np.where(has, row_lo, nz).reshape(padded_shape[:2])
    hi = np.where(has, row_hi, 0).reshape(padded_shape[:2])
    side = 2 * pad + 1
    ext_lo = ndimage.minimum_filter(lo, size=side, mode="constant", cval=nz).ravel() - pad
    ext_hi = ndimage.maximum_filter(hi, size=side, mode="constant", cval=0).ravel() + pad
    reached = ext_hi > ext_lo
    length = np.where(reached, ext_hi - ext_lo, 0)
    offset = np.concatenate([[0], np.cumsum(length)])
    base = np.where(reached, offset[:-1] - ext_lo, 0)
    return np.concatenate([base, offset[-1:]]).astype(np.int64)


def _bound_table(
    kernel_list: list[kernels.KernelCube], tau: float, padded_shape: tuple
) -> tuple[BoundTable, np.ndarray]:
    """Stage-1 block factors of the kernel cores (values >= tau); also each kernel's
    largest value left out of its core."""
    shape = tuple(-(-s // 2) for s in padded_shape)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    offsets, keeps, start, dropped = [], [], [0], []
    for kernel in kernel_list:
        cube = kernel.array().astype(np.float64)
        core = np.where(cube >= tau, cube, 0.0)
        dropped.append(cube[cube < tau].max() if (cube < tau).any() else 0.0)
        r = kernel.radius
        for align in np.ndindex(2, 2, 2):
            # block of voxel d (offset from the focus) relative to the focus's block: (align + d) // 2
            lo = [(a - r) // 2 for a in align]
            hi = [(a + r) // 2 for a in align]
            blocks = np.zeros([h - l + 1 for l, h in zip(lo, hi)])
            d = np.arange(-r, r + 1)
            bi, bj, bk = (((a + d) // 2) - l for a, l in zip(align, lo))
            np.maximum.at(blocks, np.ix_(bi, bj, bk), core)
            where = np.argwhere(blocks > 0)
            offsets.append(((where + lo) * strides).sum(axis=1))
            keeps.append(1.0 - blocks[tuple(where.T)])
            start.append(start[-1] + len(where))
    table = BoundTable(
        offset=np.concatenate(offsets).astype(np.int64),
        keep=np.concatenate(keeps),
        start=np.array(start, dtype=np.int64),
        shape=np.array(shape, dtype=np.int64),
    )
    return table, np.array(dropped)


def build_plan(
    inputs: AnalysisInputs, experiment_kernels: list, null_voxels: np.ndarray, threshold: float,
    two_stage: bool | None = None
) -> NullPlan:
    """The plan for the experiments of ``inputs`` (kernel ``experiment_kernels[i]`` each) drawing
    foci from ``null_voxels`` (3-D bool).

    ``two_stage``: None chooses (two stages when kernel cores hold at most
    ``CORE_ROW_SHARE`` of the kernel rows); True/False force it (for tests).
    """
    grid = inputs.grid
    kernel_list: list[kernels.KernelCube] = []
    exp_kernel = np.zeros(inputs.n_experiments, dtype=np.int64)
    for i in range(inputs.n_experiments):
        kernel = experiment_kernels[i]
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

    counts = inputs.foci_per_experiment()
    tau = CORE_SLACK * threshold / max(1, inputs.n_experiments)
    if two_stage is None:
        core_rows = sum(c * ((k.array() >= tau).any(axis=2)).sum() for c, k in
                        zip(np.bincount(exp_kernel, weights=counts), kernel_list))
        full_rows = sum(c * k.side**2 for c, k in zip(np.bincount(exp_kernel, weights=counts), kernel_list))
        two_stage = core_rows <= CORE_ROW_SHARE * full_rows
    if two_stage:
        bound, dropped = _bound_table(kernel_list, tau, padded_shape)
        tail_keep = float(np.prod(1.0 - dropped[exp_kernel]))
    else:
        empty = np.zeros(0, dtype=np.int64)
        bound = BoundTable(empty, np.zeros(0), np.zeros(1, dtype=np.int64), np.ones(3, dtype=np.int64))
        tail_keep = 1.0

    ijk = np.argwhere(null_voxels) + pad
    return NullPlan(
        pad=pad,
        padded_shape=padded_shape,
        geometry=Geometry(padded_shape[1], row_lo, row_hi, row_off, outside, np.flatnonzero(has).astype(np.int64),
                          _extended_layout(row_lo, row_hi, padded_shape, pad)),
        kernels=_kernel_table(kernel_list),
        bound=bound,
        exp_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        exp_kernel=exp_kernel,
        null_row=(ijk[:, 0] * padded_shape[1] + ijk[:, 1]).astype(np.int64),
        null_k=ijk[:, 2].astype(np.int64),
        threshold=float(threshold),
        tail_keep=tail_keep,
        two_stage=bool(two_stage),
    )


def make_work(plan: NullPlan, n_workers: int, n_entries: int | None = None) -> Work:
    """Work space for ``n_workers`` workers (about 100 bytes per mask voxel and 12 per extended voxel each).

    ``n_entries``: room for stage-2 focus-row pairs (default: 64 per focus, at least 4096).
    """
    n = plan.n_compact
    n_blocks = int(np.prod(plan.bound.shape)) if plan.two_stage else 1
    # focus-row pairs of the stage-2 lists; more than this and the whole map is computed
    if n_entries is None:
        n_entries = min(plan.n_foci * plan.max_side**2, max(4096, 64 * plan.n_foci)) if plan.two_stage else 1
    nz = plan.padded_shape[2]
    slabs_per_focus = plan.max_side // SLAB_PLANES + 2
    return Work(
        prod=np.ones((n_workers, plan.n_extended), dtype=np.float64),
        scratch=np.zeros((n_workers, plan.n_extended), dtype=np.float32),
        slab_focus=np.zeros((n_workers, plan.n_foci * slabs_per_focus), dtype=np.int64),
        slab_start=np.zeros((n_workers, plan.n_slabs + 1), dtype=np.int64),
        labels=np.zeros((n_workers, n), dtype=np.int32),
        supra_idx=np.zeros((n_workers, n), dtype=np.int64),
        supra_row=np.zeros((n_workers, n), dtype=np.int64),
        supra_val=np.zeros((n_workers, n), dtype=np.float64),
        parent=np.zeros((n_workers, n), dtype=np.int64),
        size_acc=np.zeros((n_workers, n), dtype=np.int64),
        mass_acc=np.zeros((n_workers, n), dtype=np.float64),
        block_keep=np.ones((n_workers, n_blocks), dtype=np.float64),
        block_flag=np.zeros((n_workers, n_blocks), dtype=np.uint8),
        cand_blocks=np.zeros((n_workers, n_blocks), dtype=np.int64),
        cand_rows=np.zeros((n_workers, plan.n_rows), dtype=np.int64),
        cand_klo=np.full((n_workers, plan.n_rows), nz, dtype=np.int64),
        cand_khi=np.full((n_workers, plan.n_rows), -1, dtype=np.int64),
        plane_jlo=np.full((n_workers, plan.padded_shape[0]), plan.padded_shape[1], dtype=np.int64),
        plane_jhi=np.full((n_workers, plan.padded_shape[0]), -1, dtype=np.int64),
        plane_klo=np.full((n_workers, plan.padded_shape[0]), nz, dtype=np.int64),
        plane_khi=np.full((n_workers, plan.padded_shape[0]), -1, dtype=np.int64),
        list_head=np.full((n_workers, plan.n_rows), -1, dtype=np.int64),
        list_tail=np.full((n_workers, plan.n_rows), -1, dtype=np.int64),
        entry_focus=np.zeros((n_workers, n_entries), dtype=np.int64),
        entry_next=np.zeros((n_workers, n_entries), dtype=np.int64),
        row_prod=np.ones((n_workers, nz), dtype=np.float64),
        row_max=np.zeros((n_workers, nz), dtype=np.float32),
        foci_i=np.zeros((n_workers, plan.n_foci), dtype=np.int64),
        foci_j=np.zeros((n_workers, plan.n_foci), dtype=np.int64),
    )


# ---------------------------------------------------------------------------- exact ALE, whole map
# Hot loops take plain arrays (namedtuples are unpacked once per iteration). Row loops run
# over slices of a runtime length: that form vectorizes (indexing the whole array does not).
@njit(cache=True)
def _slab_buckets(foci_i, foci_r, n_slabs, slab_focus, slab_start):
    """Bucket the foci by the slabs of ``SLAB_PLANES`` i-planes their cubes reach, each bucket in
    focus order: slab s holds ``slab_focus[slab_start[s]:slab_start[s + 1]]``."""
    slab_start[:] = 0
    for f in range(foci_i.shape[0]):
        for s in range((foci_i[f] - foci_r[f]) // SLAB_PLANES, (foci_i[f] + foci_r[f]) // SLAB_PLANES + 1):
            slab_start[s + 1] += 1
    for s in range(n_slabs):
        slab_start[s + 1] += slab_start[s]
    for f in range(foci_i.shape[0]):
        for s in range((foci_i[f] - foci_r[f]) // SLAB_PLANES, (foci_i[f] + foci_r[f]) // SLAB_PLANES + 1):
            slab_focus[slab_start[s]] = f
            slab_start[s] += 1
    for s in range(n_slabs, 0, -1):  # the fill moved each start to the next one's
        slab_start[s] = slab_start[s - 1]
    slab_start[0] = 0


@njit(cache=True)
def _accumulate(foci_i, foci_row, foci_k, foci_r, foci_kernel, focus_exp, values, kstart, ny, ext_base, prod,
                scratch, slab_focus, slab_start):
    """prod *= 1 - MA_e for every experiment e, over the whole extended layout, slab by slab: its MA is
    built in ``scratch`` from its foci reaching the slab, then folded in and cleared by a second walk
    over the same cube rows.
    """
    n_slabs = slab_start.shape[0] - 1
    _slab_buckets(foci_i, foci_r, n_slabs, slab_focus, slab_start)
    for s in range(n_slabs):
        q = slab_start[s]
        while q < slab_start[s + 1]:
            e = focus_exp[slab_focus[q]]
            q_end = q
            while q_end < slab_start[s + 1] and focus_exp[slab_focus[q_end]] == e:
                q_end += 1
            group = slab_focus[q:q_end]
            _max_kernels(group, s * SLAB_PLANES, foci_i, foci_row, foci_k, foci_r, foci_kernel, values, kstart, ny,
                         ext_base, scratch)
            _fold_scratch(group, s * SLAB_PLANES, foci_i, foci_row, foci_k, foci_r, ny, ext_base, prod, scratch)
            q = q_end


# The two walks over the cube rows of a group of foci inside the slab starting at plane ilo
# differ only in their innermost loop (kept apart: a branch there stops vectorization).
@njit(cache=True)
def _max_kernels(group, ilo, foci_i, foci_row, foci_k, foci_r, foci_kernel, values, kstart, ny, ext_base, scratch):
    """scratch = max(scratch, kernel) over the group's cube rows."""
    for f in group:
        r = foci_r[f]
        side = 2 * r + 1
        first_row, kfirst, k0 = foci_row[f] - r * ny - r, foci_k[f] - r, kstart[foci_kernel[f]]
        for a in range(max(0, ilo - foci_i[f] + r), min(side, ilo + SLAB_PLANES - foci_i[f] + r)):
            for b in range(side):
                start = ext_base[first_row + a * ny + b] + kfirst
                kfrom = k0 + (a * side + b) * side
                sc = scratch[start: start + side]
                kv = values[kfrom: kfrom + side]
                for t in range(side):
                    v, m = kv[t], sc[t]
                    sc[t] = v if v > m else m


@njit(cache=True)
def _fold_scratch(group, ilo, foci_i, foci_row, foci_k, foci_r, ny, ext_base, prod, scratch):
    """prod *= 1 - scratch, scratch = 0 over the group's cube rows."""
    for f in group:
        r = foci_r[f]
        side = 2 * r + 1
        first_row, kfirst = foci_row[f] - r * ny - r, foci_k[f] - r
        for a in range(max(0, ilo - foci_i[f] + r), min(side, ilo + SLAB_PLANES - foci_i[f] + r)):
            for b in range(side):
                start = ext_base[first_row + a * ny + b] + kfirst
                p = prod[start: start + side]
                sc = scratch[start: start + side]
                for t in range(side):
                    p[t] *= 1.0 - sc[t]
                    sc[t] = 0.0


@njit(cache=True)
def _collect(mask_rows, row_lo, row_hi, row_off, ext_base, outside, threshold, prod, supra_idx, supra_row, supra_val):
    """Max ALE over the mask and its supra-threshold voxels (compact index, row, value), in
    compact order; returns (max ALE, their count). Restores the product to 1."""
    keep_min = 1.0
    keep_threshold = 1.0 - threshold
    n_supra = 0
    for row in mask_rows:
        start = row_off[row]
        n = row_hi[row] - row_lo[row]
        ext = ext_base[row] + row_lo[row]
        p = prod[ext: ext + n]
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
    prod[:] = 1.0
    return 1.0 - keep_min, n_supra


# ---------------------------------------------------------------------------- stage 1: block bound
@njit(cache=True)
def _candidate_rows(foci_row, foci_k, foci_kernel, offset, keep, start, bshape, ny, row_lo, row_hi, keep_bound,
                    block_keep, block_flag, cand_blocks, cand_rows, cand_klo, cand_khi, plane_jlo, plane_jhi,
                    plane_klo, plane_khi):
    """Rows (and their k-spans) that may hold a voxel with ALE > threshold; returns their count.

    A 2 x 2 x 2 block is a candidate once its bound product drops below ``keep_bound``;
    its 4 rows become candidates (if they hold mask voxels) over its 2 k, and each
    i-plane's spans of candidate j and k are kept in ``plane_jlo``/``plane_jhi`` and
    ``plane_klo``/``plane_khi`` (inclusive, exclusive). ``block_keep`` and
    ``block_flag`` are restored.
    """
    sbi = bshape[1] * bshape[2]
    sbj = bshape[2]
    n_blocks = 0
    for f in range(foci_row.shape[0]):
        i = foci_row[f] // ny
        j = foci_row[f] - i * ny
        k = foci_k[f]
        a = foci_kernel[f] * 8 + (i % 2) * 4 + (j % 2) * 2 + k % 2
        base = (i // 2) * sbi + (j // 2) * sbj + k // 2
        for e in range(start[a], start[a + 1]):
            idx = base + offset[e]
            value = block_keep[idx] * keep[e]
            block_keep[idx] = value
            if value < keep_bound and block_flag[idx] == 0:
                block_flag[idx] = 1
                cand_blocks[n_blocks] = idx
                n_blocks += 1
    for f in range(foci_row.shape[0]):  # restore the block products
        i = foci_row[f] // ny
        j = foci_row[f] - i * ny
        k = foci_k[f]
        a = foci_kernel[f] * 8 + (i % 2) * 4 + (j % 2) * 2 + k % 2
        base = (i // 2) * sbi + (j // 2) * sbj + k // 2
        for e in range(start[a], start[a + 1]):
            block_keep[base + offset[e]] = 1.0
    n_rows = 0
    for q in range(n_blocks):
        idx = cand_blocks[q]
        block_flag[idx] = 0
        bi = idx // sbi
        bj = (idx - bi * sbi) // sbj
        bk = idx - bi * sbi - bj * sbj
        for u in range(2):
            for v in range(2):
                row = (2 * bi + u) * ny + 2 * bj + v
                if row_lo[row] >= row_hi[row]:
                    continue
                if cand_khi[row] < 0:
                    cand_rows[n_rows] = row
                    n_rows += 1
                    plane_jlo[2 * bi + u] = min(plane_jlo[2 * bi + u], 2 * bj + v)
                    plane_jhi[2 * bi + u] = max(plane_jhi[2 * bi + u], 2 * bj + v)
                cand_klo[row] = min(cand_klo[row], 2 * bk)
                cand_khi[row] = max(cand_khi[row], 2 * bk + 2)
                plane_klo[2 * bi + u] = min(plane_klo[2 * bi + u], 2 * bk)
                plane_khi[2 * bi + u] = max(plane_khi[2 * bi + u], 2 * bk + 2)
    return n_rows


# ---------------------------------------------------------------------------- stage 2: exact rows
@njit(cache=True)
def _list_foci(foci_i, foci_j, foci_k, foci_r, ny, row_lo, row_hi, cand_klo, cand_khi, plane_jlo, plane_jhi, plane_klo,
               plane_khi, list_head, list_tail, entry_focus, entry_next):
    """Per candidate row, the foci whose kernel rows reach its k-span, as linked lists in
    focus order (``list_head``/``list_tail`` per row, ``entry_focus``/``entry_next``).

    Each focus visits only the rows of its cube inside the candidate j-span of each plane
    whose candidate k-span its cube meets.
    Returns False if the lists would overflow ``entry_focus`` (nothing is then listed).
    """
    n_entries = 0
    for f in range(foci_i.shape[0]):
        r = foci_r[f]
        fj0 = foci_j[f] - r
        kfirst = foci_k[f] - r
        for i in range(foci_i[f] - r, foci_i[f] + r + 1):
            if kfirst >= plane_khi[i] or kfirst + 2 * r < plane_klo[i]:
                continue
            jlo = max(plane_jlo[i], fj0)
            jhi = min(plane_jhi[i], fj0 + 2 * r)
            for j in range(jlo, jhi + 1):
                row = i * ny + j
                if cand_khi[row] < 0:
                    continue
                if kfirst >= min(cand_khi[row], row_hi[row]) or kfirst + 2 * r < max(cand_klo[row], row_lo[row]):
                    continue
                if n_entries == entry_focus.shape[0]:
                    for g in range(foci_i.shape[0]):  # undo: clear every list
                        for i2 in range(foci_i[g] - foci_r[g], foci_i[g] + foci_r[g] + 1):
                            for j2 in range(foci_j[g] - foci_r[g], foci_j[g] + foci_r[g] + 1):
                                list_head[i2 * ny + j2] = -1
                                list_tail[i2 * ny + j2] = -1
                    return False
                entry_focus[n_entries] = f
                entry_next[n_entries] = -1
                if list_head[row] < 0:
                    list_head[row] = n_entries
                else:
                    entry_next[list_tail[row]] = n_entries
                list_tail[row] = n_entries
                n_entries += 1
    return True


@njit(cache=True)
def _exact_rows(cand_rows, n_cand, cand_klo, cand_khi, list_head, list_tail, entry_focus, entry_next, foci_i, foci_j,
                foci_k, foci_r, foci_kernel, focus_exp, values, kstart, ny, row_lo, row_hi, row_off, outside,
                threshold, row_prod, row_max, supra_idx, supra_row, supra_val):
    """Exact ALE on the candidate rows' k-spans: (max ALE there, supra-threshold voxels listed).

    A row's foci (listed by :func:`_list_foci`, in focus order, so experiment by
    experiment) build its product of ``1 - MA_e`` in ``row_prod`` (the MA of a
    multi-focus experiment via ``row_max``), as the whole-map pass does. Restores
    ``cand_klo``/``cand_khi`` and the lists.
    """
    max_ale = 0.0
    n_supra = 0
    for q in range(n_cand):
        row = cand_rows[q]
        lo = max(cand_klo[row], row_lo[row])
        hi = min(cand_khi[row], row_hi[row])
        cand_klo[row] = row_prod.shape[0]  # restores "no candidate"
        cand_khi[row] = -1
        entry = list_head[row]
        list_head[row] = -1
        list_tail[row] = -1
        if lo >= hi:
            continue
        i = row // ny
        j = row - i * ny
        for t in range(lo, hi):
            row_prod[t] = 1.0
        while entry >= 0:
            e = focus_exp[entry_focus[entry]]
            several = entry_next[entry] >= 0 and focus_exp[entry_focus[entry_next[entry]]] == e
            if several:
                for t in range(lo, hi):
                    row_max[t] = 0.0
            while entry >= 0 and focus_exp[entry_focus[entry]] == e:
                f = entry_focus[entry]
                r = foci_r[f]
                side = 2 * r + 1
                kfirst = foci_k[f] - r
                slo = max(lo, kfirst)
                shi = min(hi, kfirst + side)
                kfrom = kstart[foci_kernel[f]] + ((i - foci_i[f] + r) * side + j - foci_j[f] + r) * side - kfirst
                if several:
                    for t in range(slo, shi):
                        v = values[kfrom + t]
                        if v > row_max[t]:
                            row_max[t] = v
                else:
                    for t in range(slo, shi):
                        row_prod[t] *= 1.0 - values[kfrom + t]
                entry = entry_next[entry]
            if several:
                for t in range(lo, hi):
                    row_prod[t] *= 1.0 - row_max[t]
        base = row_off[row] - row_lo[row]
        for t in range(lo, hi):
            if outside[base + t] == 0.0:
                ale = 1.0 - row_prod[t]
                if ale > max_ale:
                    max_ale = ale
                if ale > threshold:
                    supra_idx[n_supra] = base + t
                    supra_row[n_supra] = row
                    supra_val[n_supra] = ale
                    n_supra += 1
    return max_ale, n_supra


# ---------------------------------------------------------------------------- clusters
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
    # voxel order (compact index) fixes the order of the mass sums, whichever engine listed them
    # (the whole-map pass lists them in that order already)
    if np.any(supra_idx[1:n_supra] < supra_idx[: n_supra - 1]):
        order = np.argsort(supra_idx[:n_supra])
        supra_idx[:n_supra] = supra_idx[:n_supra][order]
        supra_row[:n_supra] = supra_row[:n_supra][order]
        supra_val[:n_supra] = supra_val[:n_supra][order]
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
def _iteration(foci_row, foci_k, foci_kernel, foci_r, focus_exp, table, bound, geo, threshold, tail_keep,
               two_stage, work, w):
    ny, row_lo, row_hi, row_off, outside, mask_rows, ext_base = geo
    values, kstart, kradius = table
    supra_idx = work.supra_idx[w]
    supra_row = work.supra_row[w]
    supra_val = work.supra_val[w]
    foci_i = work.foci_i[w]
    foci_j = work.foci_j[w]
    for f in range(foci_row.shape[0]):
        foci_i[f] = foci_row[f] // ny
        foci_j[f] = foci_row[f] - foci_i[f] * ny
    done = False
    if two_stage:
        offset, keep, start, bshape = bound
        # exact ALE <= 1 - (bound product) * tail_keep: blocks whose bound stays at or
        # below the threshold cannot hold a supra-threshold voxel
        keep_bound = (1.0 - threshold) / tail_keep * (1.0 + BOUND_MARGIN)
        n_cand = _candidate_rows(foci_row, foci_k, foci_kernel, offset, keep, start, bshape, ny, row_lo, row_hi,
                                 keep_bound, work.block_keep[w], work.block_flag[w], work.cand_blocks[w],
                                 work.cand_rows[w], work.cand_klo[w], work.cand_khi[w], work.plane_jlo[w],
                                 work.plane_jhi[w], work.plane_klo[w], work.plane_khi[w])
        listed = _list_foci(foci_i, foci_j, foci_k, foci_r, ny, row_lo, row_hi, work.cand_klo[w], work.cand_khi[w],
                            work.plane_jlo[w], work.plane_jhi[w], work.plane_klo[w], work.plane_khi[w],
                            work.list_head[w], work.list_tail[w], work.entry_focus[w], work.entry_next[w])
        for q in range(n_cand):
            plane = work.cand_rows[w][q] // ny
            work.plane_jlo[w][plane] = ny
            work.plane_jhi[w][plane] = -1
            work.plane_klo[w][plane] = work.row_prod.shape[1]
            work.plane_khi[w][plane] = -1
        if listed:
            max_ale, n_supra = _exact_rows(
                work.cand_rows[w], n_cand, work.cand_klo[w], work.cand_khi[w], work.list_head[w], work.list_tail[w],
                work.entry_focus[w], work.entry_next[w], foci_i, foci_j, foci_k, foci_r, foci_kernel, focus_exp,
                values, kstart, ny, row_lo, row_hi, row_off, outside, threshold, work.row_prod[w], work.row_max[w],
                supra_idx, supra_row, supra_val,
            )
        else:  # too many focus-row pairs: clear the candidates, compute the whole map
            for q in range(n_cand):
                work.cand_klo[w][work.cand_rows[w][q]] = work.row_prod.shape[1]
                work.cand_khi[w][work.cand_rows[w][q]] = -1
            max_ale, n_supra = 0.0, 0
        # with a supra-threshold voxel, the maximum (> threshold) is among the candidates;
        # without, it may lie anywhere: compute the whole map
        done = n_supra > 0
    if not done:
        prod = work.prod[w]
        _accumulate(foci_i, foci_row, foci_k, foci_r, foci_kernel, focus_exp, values, kstart, ny, ext_base, prod,
                    work.scratch[w], work.slab_focus[w], work.slab_start[w])
        max_ale, n_supra = _collect(mask_rows, row_lo, row_hi, row_off, ext_base, outside, threshold, prod, supra_idx,
                                    supra_row, supra_val)
    max_size, max_mass = largest_cluster(supra_idx, supra_row, supra_val, n_supra, threshold, ny, row_lo, row_hi,
                                         row_off, work.labels[w], work.parent[w], work.size_acc[w], work.mass_acc[w])
    return max_ale, max_size, max_mass


@njit(cache=True, nogil=True)
def _run_worker(w, first, step, draws, null_row, null_k, foci_kernel, foci_r, focus_exp, table, bound,
                geo, threshold, tail_keep, two_stage, work, out_voxel, out_size, out_mass):
    """Iterations first, first + step, ... of ``draws`` on work space ``w`` (releases the GIL)."""
    n_it, n_foci = draws.shape
    foci_row = np.empty(n_foci, dtype=np.int64)
    foci_k = np.empty(n_foci, dtype=np.int64)
    for it in range(first, n_it, step):
        for f in range(n_foci):
            foci_row[f] = null_row[draws[it, f]]
            foci_k[f] = null_k[draws[it, f]]
        v, s, m = _iteration(foci_row, foci_k, foci_kernel, foci_r, focus_exp, table, bound, geo,
                             threshold, tail_keep, two_stage, work, w)
        out_voxel[it] = v
        out_size[it] = s
        out_mass[it] = m


def run_iterations(plan: NullPlan, draws: np.ndarray, work: Work, pool: ThreadPoolExecutor | None = None,
                   two_stage: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max ALE, largest cluster size, largest cluster mass), each (n_it,), for the foci ``draws``.

    ``draws``: (n_it, n_foci) indices into the plan's null voxels (foci in experiment order).
    Iteration ``it`` runs on worker ``it % n_workers`` (one per row of ``work``), the
    workers on threads of ``pool`` (one is made if needed). ``two_stage=False`` computes
    whole maps even with a two-stage plan (same results; for choosing the faster).
    """
    two_stage = plan.two_stage if two_stage is None else (two_stage and plan.two_stage)
    n_workers = work.prod.shape[0]
    draws = np.ascontiguousarray(draws, dtype=np.int32)
    out = (np.zeros(len(draws)), np.zeros(len(draws), dtype=np.int64), np.zeros(len(draws)))

    def worker(w):
        _iterate(plan, w, w, n_workers, draws, two_stage, work, out)

    if n_workers == 1:
        worker(0)
    elif pool is not None:
        list(pool.map(worker, range(n_workers)))
    else:
        with ThreadPoolExecutor(n_workers) as own:
            list(own.map(worker, range(n_workers)))
    return out


def _iterate(plan: NullPlan, w: int, first: int, step: int, draws: np.ndarray, two_stage: bool, work: Work,
             out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Iterations ``first, first + step, ...`` of ``draws`` (int32, C order) on work space ``w``, into
    ``out`` = (max ALE, largest cluster size, largest cluster mass)."""
    focus_exp, foci_kernel, foci_r = plan.focus_tables
    _run_worker(w, first, step, draws, plan.null_row, plan.null_k, foci_kernel, foci_r, focus_exp,
                plan.kernels, plan.bound, plan.geometry, plan.threshold, plan.tail_keep, two_stage, work, *out)


class AleNullEngine:
    """Null ALE iterations for :class:`~neurochange.inference.montecarlo.MonteCarloFWE`.

    ``run(draws)`` may be called from ``n_workers`` threads at once: each call takes a free
    work space, runs every iteration of its draws there (nogil) and gives it back. The two
    exact engines give identical numbers; :meth:`warm_up` times both and keeps the faster.
    """

    def __init__(self, inputs: AnalysisInputs, experiment_kernels: list, null_voxels: np.ndarray, threshold: float,
                 n_workers: int = 1):
        self.plan = build_plan(inputs, experiment_kernels, null_voxels, threshold)
        self.two_stage = self.plan.two_stage
        self._workers(n_workers)

    def _workers(self, n_workers: int) -> None:
        self.work = make_work(self.plan, n_workers)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for w in range(n_workers):
            self._free.put(w)

    def __getstate__(self) -> dict:
        """What another process (a Dask worker) receives: the plan and the engine chosen, not the work spaces."""
        return {"plan": self.plan, "two_stage": self.two_stage}

    def __setstate__(self, state: dict) -> None:
        self.plan, self.two_stage = state["plan"], state["two_stage"]
        self._workers(1)

    @property
    def n_foci(self) -> int:
        return self.plan.n_foci

    @property
    def n_null(self) -> int:
        return self.plan.n_null

    def warm_up(self, draws: np.ndarray) -> None:
        """Compile, then time both exact engines on ``draws`` and keep the faster (numbers are equal)."""
        self._run(draws[:1], self.two_stage)
        if self.plan.two_stage:
            seconds = []
            for two_stage in (True, False):
                started = time.perf_counter()
                self._run(draws, two_stage)
                seconds.append(time.perf_counter() - started)
            self.two_stage = seconds[0] <= seconds[1]

    def run(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(max ALE, largest cluster size, largest cluster mass), each (n_it,), for the foci ``draws``
        ((n_it, n_foci) int32 indices into the null voxels, foci in experiment order)."""
        return self._run(draws, self.two_stage)

    def _run(self, draws: np.ndarray, two_stage: bool):
        out = (np.zeros(len(draws)), np.zeros(len(draws), dtype=np.int64), np.zeros(len(draws)))
        w = self._free.get()
        try:
            _iterate(self.plan, w, 0, 1, np.ascontiguousarray(draws, dtype=np.int32), two_stage and self.plan.two_stage,
                     self.work, out)
        finally:
            self._free.put(w)
        return out


# ---------------------------------------------------------------------------- NumPy reference
def null_iteration_numpy(result: MetaResult, foci_ijk: np.ndarray, threshold: float) -> tuple[float, int, float]:
    """Reference iteration: dense ALE of ``result``'s experiments with foci moved to
    ``foci_ijk`` (n_foci, 3); returns (max ALE, largest cluster size, largest cluster mass)."""
    grid = result.grid
    keep = np.ones(grid.shape)
    experiment_kernels = result.estimator.experiment_kernels(result.inputs)
    for i in range(result.n_experiments):
        ma = kernels.experiment_ma_numpy(experiment_kernels[i], foci_ijk[result.focus_experiment == i], grid.shape)
        keep *= 1.0 - ma
    ale = np.where(grid.mask, 1.0 - keep, 0.0)
    labels, n = ndimage.label(ale > threshold, structure=FACE_CONNECTIVITY)
    if n == 0:
        return float(ale.max()), 0, 0.0
    sizes = np.bincount(labels.ravel())[1:]
    masses = ndimage.sum(ale - threshold, labels=labels, index=np.arange(1, n + 1))
    return float(ale.max()), int(sizes.max()), float(np.max(masses))
