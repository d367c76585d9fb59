"""ALE null iterations written against an array namespace: CuPy on a GPU (``--device gpu``), NumPy in CI.

The same code runs with ``xp = numpy`` (tested against :class:`~neurochange.inference.engines.ale.AleNullEngine`
on seeded draws: maximum ALE to relative 1e-12, largest cluster sizes exactly, masses to 1e-9) and with
``xp = cupy``. One iteration, for draws ((n_foci,) indices into the null voxels, foci in the inputs' order):

1. each focus's kernel entries (non-zero values of its experiment's kernel cube) are placed around
   its drawn voxel, entries outside the volume dropped;
2. experiments are taken ``batch`` at a time: a dense (batch, n_voxels) float64 buffer receives the
   entries by scatter-max (each experiment's MA map: the voxelwise maximum over its foci), and the
   running product ``keep`` is multiplied by ``prod(1 - MA)`` over the batch (float64, as the CPU
   engines);
3. ALE = 1 - keep inside the mask; its maximum; face-connected clusters above the cluster-forming
   threshold (``ndimage.label`` of SciPy or of cupyx), their largest size and largest mass (sum of
   ALE minus the threshold).

Memory is the buffer, ``8 * batch * n_voxels`` bytes (64 experiments on the 2 mm grid: 460 MB),
plus the entries of one batch; it does not grow with iterations. This engine's speed on a GPU has
not been measured here (no GPU in this workplace's CI): ``benchmarks/gpu_null.py`` measures it.
"""

from __future__ import annotations

import numpy as np

from neurochange.errors import InputError
from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.meta.inputs import AnalysisInputs

#: Experiments per dense buffer.
BATCH = 64
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


def place(xp, centres, offsets, shape: tuple):
    """Voxels ``offsets`` (K, 3) around each centre (F, 3): (inside the volume ``shape``, flat index), each (F, K)."""
    pos = centres[:, None, :] + offsets[None, :, :]
    inside = xp.all((pos >= 0) & (pos < xp.asarray(shape)), axis=2)
    return inside, (pos[..., 0] * shape[1] + pos[..., 1]) * shape[2] + pos[..., 2]


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
        self.xp, self.batch = xp, int(batch)
        self.shape = tuple(int(s) for s in grid.shape)
        self.threshold = float(threshold)
        self.mask = xp.asarray(np.asarray(grid.mask).ravel())
        self.null_ijk = xp.asarray(np.argwhere(null_voxels).astype(np.int64))
        focus_experiment = np.asarray(inputs.focus_experiment, dtype=np.int64)
        self.n_experiments = len(experiment_kernels)
        # foci grouped by distinct kernel: offsets (K, 3) and values (K,) of the kernel's non-zero entries
        distinct: dict[float, int] = {}
        kernel_of = np.array([distinct.setdefault(k.fwhm, len(distinct)) for k in experiment_kernels], np.int64)
        cubes = {distinct[k.fwhm]: k for k in experiment_kernels}
        self.groups = []
        for g, cube in sorted(cubes.items()):
            values = cube.array().astype(np.float64)
            where = np.argwhere(values > 0)
            foci = np.flatnonzero(kernel_of[focus_experiment] == g)
            self.groups.append((xp.asarray(foci), xp.asarray(where - cube.radius),
                                xp.asarray(values[tuple(where.T)]), xp.asarray(focus_experiment[foci])))
        self.n_foci = len(focus_experiment)
        self.n_null = int(np.count_nonzero(null_voxels))

    def warm_up(self, draws: np.ndarray) -> None:
        """One iteration (compiles CuPy's kernels)."""
        self.run(draws[:1])

    def _entries(self, ijk):
        """(experiment, flat voxel, value) of every kernel entry of every focus inside the volume."""
        xp = self.xp
        exps, flats, vals = [], [], []
        for foci, offsets, values, experiment in self.groups:
            inside, flat = place(xp, ijk[foci], offsets, self.shape)
            exps.append(xp.broadcast_to(experiment[:, None], inside.shape)[inside])
            flats.append(flat[inside])
            vals.append(xp.broadcast_to(values[None, :], inside.shape)[inside])
        return xp.concatenate(exps), xp.concatenate(flats), xp.concatenate(vals)

    def ale(self, draw) -> object:
        """The ALE volume (flat, namespace array) of one draw."""
        xp = self.xp
        n_vox = int(np.prod(self.shape))
        exps, flats, vals = self._entries(self.null_ijk[xp.asarray(draw)])
        keep = xp.ones(n_vox)
        buffer = xp.zeros((min(self.batch, self.n_experiments), n_vox))
        for start in range(0, self.n_experiments, self.batch):
            rows = (exps >= start) & (exps < start + self.batch)
            buffer[...] = 0.0
            _scatter_max(xp, buffer, (exps[rows] - start, flats[rows]), vals[rows])
            keep *= xp.prod(1.0 - buffer, axis=0)
        return xp.where(self.mask, 1.0 - keep, 0.0)

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


__all__ = ["ArrayAleNullEngine", "gpu_namespace", "place", "resolve_device", "run_volumes", "BATCH", "DEVICES",
           "AUTO_MIN_EXPERIMENTS"]
