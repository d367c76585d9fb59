"""ALE null iterations written against an array namespace: CuPy on a GPU (``--device gpu``), NumPy in CI.

The same code runs with ``xp = numpy`` (tested against :class:`~neurochange.inference.engines.ale.AleNullEngine`
on seeded draws: maximum ALE to relative 1e-12, largest cluster sizes exactly, masses to 1e-9) and with
``xp = cupy``. One iteration, for draws ((n_foci,) indices into the null voxels):

1. experiments are taken ``batch`` at a time; each focus of the batch reads its kernel's entries
   through a lookup table over the grid padded by the largest kernel radius, which gives each
   voxel's index among the mask voxels (voxels outside the mask go to one spare column, so no
   entry is dropped or compacted and no index wraps around the volume);
2. a (batch, mask voxels + 1) float32 buffer receives the entries by scatter-max (each experiment's
   MA map: the voxelwise maximum over its foci; the kernel values are float32, so the maximum is
   the same value), and the running product ``keep`` (float64, over the mask voxels) is multiplied
   by ``prod(1 - MA)`` over the batch;
3. ALE = 1 - keep, put back on the grid; its maximum; face-connected clusters above the
   cluster-forming threshold (``ndimage.label`` of SciPy or of cupyx), their largest size and
   largest mass (sum of ALE minus the threshold).

The products run over a batch before they reach ``keep``, so the last bits can differ from the CPU
engine's experiment-by-experiment product (hence the tolerances above).

Memory: the buffer, ``4 * batch * (mask voxels + 1)`` bytes (256 experiments on the 2 mm grid:
about 230 MB), plus one batch's entries (two int64 arrays while they are placed: about 3 MB per
experiment of 37 foci with the n = 20 kernel's 4,913 entries) and the lookup table (11 MB); it does
not grow with iterations. This engine's speed on a GPU has not been measured here (no GPU in this
workplace's CI): ``benchmarks/gpu_null.py`` measures it.
"""

from __future__ import annotations

import numpy as np

from neurochange.errors import InputError
from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.meta.inputs import AnalysisInputs

#: Experiments per buffer.
BATCH = 256
#: Where null iterations may run; ``auto``: the GPU when CuPy sees one, the estimator has a GPU engine
#: and the analysis has at least :data:`AUTO_MIN_EXPERIMENTS` experiments (small sets are faster on the CPU).
DEVICES = ("cpu", "gpu", "auto")
AUTO_MIN_EXPERIMENTS = 200


def resolve_device(device: str, estimator, n_experiments: int) -> str:
    """``"cpu"`` or ``"gpu"`` for ``device`` (one of :data:`DEVICES`); ``"gpu"`` is checked to be usable."""
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, not {device!r}", field="device")
    usable = estimator.gpu and not getattr(estimator, "tfce", False)
    if device == "gpu":
        if not usable:
            raise InputError(f"no GPU null engine for {type(estimator).__name__}"
                             + (" with TFCE" if estimator.gpu else "") + ": use --device cpu", field="device")
        gpu_namespace()
        return "gpu"
    if device == "cpu" or not usable or n_experiments < AUTO_MIN_EXPERIMENTS:
        return "cpu"
    try:
        gpu_namespace()
    except InputError:
        return "cpu"
    return "gpu"


def gpu_namespace():
    """CuPy, checked to see a CUDA device; else one clear InputError."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:  # ImportError, CUDA errors: one line either way
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--device gpu needs CuPy and a CUDA GPU ({reason}); install 'neurochange[gpu]' on a "
                         "machine with one, or use --device cpu", field="device") from None
    return cupy


def _ndimage(xp):
    if xp is np:
        from scipy import ndimage
    else:
        from cupyx.scipy import ndimage
    return ndimage


def largest_cluster(xp, volume, threshold: float) -> tuple[int, float]:
    """(largest size in voxels, largest mass = sum of value - threshold) of the face-connected clusters of
    ``volume > threshold`` (a 3-D namespace array); (0, 0.0) without one."""
    labels, n = _ndimage(xp).label(volume > threshold, structure=xp.asarray(FACE_CONNECTIVITY))
    n = int(n)
    if n == 0:
        return 0, 0.0
    flat = labels.ravel()
    sizes = xp.bincount(flat, minlength=n + 1)[1:]
    masses = xp.bincount(flat, weights=(volume - threshold).ravel(), minlength=n + 1)[1:]
    return int(sizes.max()), float(masses.max())


def _scatter_max(xp, buffer, index, values) -> None:
    if xp is np:
        np.maximum.at(buffer, index, values)
    else:
        import cupyx

        cupyx.scatter_max(buffer, index, values)


class ArrayAleNullEngine:
    """Null ALE iterations for :class:`~neurochange.inference.montecarlo.MonteCarloFWE` on namespace ``xp``.

    ``run(draws)`` returns NumPy arrays (max ALE, largest cluster size, largest cluster mass), each (n_it,),
    for draws ((n_it, n_foci) indices into ``null_voxels``' voxels in C order, foci in the inputs' order).
    """

    def __init__(self, inputs: AnalysisInputs, experiment_kernels: list, null_voxels: np.ndarray, threshold: float,
                 xp=np, batch: int = BATCH):
        grid = inputs.grid
        self.xp = xp
        self.shape = tuple(int(s) for s in grid.shape)
        self.threshold = float(threshold)
        mask = np.asarray(grid.mask, dtype=bool)
        self.n_mask = int(mask.sum())
        pad = max(k.radius for k in experiment_kernels)
        padded = tuple(s + 2 * pad for s in self.shape)
        inner = (slice(pad, -pad),) * 3
        lookup = np.full(padded, self.n_mask, dtype=np.int64)  # outside the mask: the spare column
        lookup[inner][mask] = np.arange(self.n_mask)
        self.lookup = xp.asarray(lookup.ravel())
        self.mask_flat = xp.asarray(np.flatnonzero(mask))
        padded_flat = np.arange(np.prod(padded)).reshape(padded)[inner]
        self.null_flat = xp.asarray(padded_flat[null_voxels])  # each null voxel's padded flat index
        strides = np.array([padded[1] * padded[2], padded[2], 1])
        # distinct kernels: flat offsets (K,) in the padded grid and values (K,) of their non-zero entries
        distinct: dict[float, int] = {}
        kernel_of = np.array([distinct.setdefault(k.fwhm, len(distinct)) for k in experiment_kernels], np.int64)
        self.kernels = []
        for g, cube in sorted({distinct[k.fwhm]: k for k in experiment_kernels}.items()):
            values = cube.array()
            where = np.argwhere(values > 0)
            self.kernels.append((xp.asarray((where - cube.radius) @ strides), xp.asarray(values[tuple(where.T)])))
        # batches of experiments; per batch and kernel: its foci and their experiment's row in the buffer
        focus_experiment = np.asarray(inputs.focus_experiment, dtype=np.int64)
        self.n_experiments = len(experiment_kernels)
        self.batch = max(1, min(int(batch), self.n_experiments))
        self.batches = []
        for first in range(0, self.n_experiments, self.batch):
            last = min(first + self.batch, self.n_experiments)
            here = (focus_experiment >= first) & (focus_experiment < last)
            parts = []
            for g in np.unique(kernel_of[focus_experiment[here]]):
                foci = np.flatnonzero(here & (kernel_of[focus_experiment] == g))
                parts.append((int(g), xp.asarray(foci), xp.asarray(focus_experiment[foci] - first)[:, None]))
            self.batches.append((last - first, parts))
        self.n_foci = len(focus_experiment)
        self.n_null = int(np.count_nonzero(null_voxels))

    def warm_up(self, draws: np.ndarray) -> None:
        """One iteration (compiles CuPy's kernels)."""
        self.run(draws[:1])

    def ale(self, draw) -> object:
        """The ALE volume (flat, namespace array) of one draw."""
        xp = self.xp
        centres = self.null_flat[xp.asarray(draw)]
        keep = xp.ones(self.n_mask)
        buffer = xp.empty((self.batch, self.n_mask + 1), dtype=xp.float32)
        for n_rows, parts in self.batches:
            rows = buffer[:n_rows]
            rows[...] = 0.0
            for g, foci, row in parts:
                offsets, values = self.kernels[g]
                columns = self.lookup[centres[foci][:, None] + offsets[None, :]]
                _scatter_max(xp, rows, (xp.broadcast_to(row, columns.shape), columns),
                             xp.broadcast_to(values[None, :], columns.shape))
            keep *= xp.prod(1.0 - rows[:, : self.n_mask].astype(xp.float64), axis=0)
        volume = xp.zeros(int(np.prod(self.shape)))
        volume[self.mask_flat] = 1.0 - keep
        return volume

    def run(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return run_volumes(self.xp, self.ale, self.shape, self.threshold, draws)


def run_volumes(xp, volume_of, shape: tuple, threshold: float, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                           np.ndarray]:
    """(max statistic, largest cluster size, largest cluster mass), each (n_it,) NumPy, of the flat
    ``xp`` volumes ``volume_of(draw)`` for the rows of ``draws``."""
    n_it = len(draws)
    out = (np.zeros(n_it), np.zeros(n_it, dtype=np.int64), np.zeros(n_it))
    for it in range(n_it):
        volume = volume_of(draws[it]).reshape(shape)
        out[0][it] = float(volume.max())
        out[1][it], out[2][it] = largest_cluster(xp, volume, threshold)
    return out


__all__ = ["ArrayAleNullEngine", "gpu_namespace", "resolve_device", "run_volumes", "BATCH", "DEVICES",
           "AUTO_MIN_EXPERIMENTS"]
