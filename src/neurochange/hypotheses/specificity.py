"""Is convergence specific to a model's regions, and which of two models' regions hold more of it?

Both tests read the group's ALE map as *standardized convergence*: at each voxel,
``z = (ALE - m) / s``, where ``m`` and ``s`` are the voxel's mean and standard deviation of ALE
under the null of the Monte Carlo FWE test (the same experiments, their foci redrawn uniformly
from the null mask; ``n_draws`` draws of stream 3 of the seed). Under that null, z has mean 0
and standard deviation 1 at every voxel, deep or near the edge of the brain, so regions in
different places can be compared. A model's statistic is the mean over its regions of the
region's mean z (each region counts once, as in the region test).

- :func:`specificity_test`: the model's statistic against the same statistic with every region
  moved, shape kept, to a random place in the mask (a random centre voxel, at least
  ``min_inside`` of the moved voxels inside the mask; those outside are dropped):
  ``p = (1 + #{moved >= observed}) / (1 + n_placements)``. The null moves the regions, not only
  the foci: a map that converges everywhere, or somewhere else, does not pass.
- :func:`compare_models`: the difference of two models' statistics on one group, with a
  percentile bootstrap over experiments (experiments resampled with replacement, the ALE
  recomputed at the regions' voxels), its 95 % interval and a two-sided bootstrap p.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from neurochange import space as _space
from neurochange.inference import null_masks
from neurochange.inference.montecarlo import chunk_draws
from neurochange.meta.ale import ALE
from neurochange.meta.inputs import analysis_inputs
from neurochange.studyset import StudySet

#: Stream of the seed the null-moment draws use (0-2 are the region test's sets).
MOMENT_STREAM = 3
#: Smallest null standard deviation divided by (voxels no null focus ever reaches have sd 0).
SD_FLOOR = 1e-6


@dataclass(frozen=True)
class Convergence:
    """A group's standardized convergence: z (masked 1-D, grid order) and what it came from."""

    grid: _space.Grid
    z: np.ndarray
    log_keep: np.ndarray  # (n_experiments, n_mask) float32: log(1 - MA) per experiment
    mean: np.ndarray  # null mean of ALE per voxel
    sd: np.ndarray  # null standard deviation of ALE per voxel
    n_draws: int

    def volume(self) -> np.ndarray:
        """z as a 3-D array on the grid, NaN outside the mask."""
        out = np.full(self.grid.shape, np.nan)
        out[self.grid.mask] = self.z
        return out


def _log_keep(estimator: ALE, inputs) -> np.ndarray:
    out = np.zeros((inputs.n_experiments, inputs.grid.n_voxels), dtype=np.float32)
    for i, cols, vals in estimator.ma_maps(inputs):
        out[i, cols] = np.log1p(-np.minimum(vals, 1 - 1e-7))
    return out


def null_moments(studyset: StudySet, grid: _space.Grid | None = None, *, fwhm: float | None = None,
                 n_draws: int = 100, seed: int = 0, null_mask="brain") -> tuple[np.ndarray, np.ndarray, int]:
    """Voxelwise mean and standard deviation of ALE (masked 1-D) when ``studyset``'s foci are redrawn
    uniformly from the null mask ``n_draws`` times; they depend on the focus counts and kernels only."""
    grid = grid or _space.mni_2mm()
    inputs = analysis_inputs(studyset, grid)
    estimator = ALE(fwhm)
    null_ijk = np.argwhere(null_masks.null_mask(grid, null_mask))
    total, total_sq = np.zeros(grid.n_voxels), np.zeros(grid.n_voxels)
    for start in range(0, n_draws, 100):
        count = min(100, n_draws - start)
        draws = chunk_draws(seed, start // 100, count, len(inputs.foci_ijk), len(null_ijk), (MOMENT_STREAM,))
        for row in draws:
            value = -np.expm1(_log_keep(estimator, replace(inputs, foci_ijk=null_ijk[row])).sum(axis=0,
                                                                                                dtype=np.float64))
            total += value
            total_sq += value * value
    mean = total / n_draws
    return mean, np.sqrt(np.maximum(total_sq / n_draws - mean * mean, 0.0)), n_draws


def convergence(studyset: StudySet, grid: _space.Grid | None = None, *, fwhm: float | None = None,
                n_draws: int = 100, seed: int = 0, null_mask="brain", moments=None) -> Convergence:
    """The standardized convergence of ``studyset`` (see the module docstring); ``moments``: a
    :func:`null_moments` result to reuse (same focus counts and kernels), else drawn here."""
    grid = grid or _space.mni_2mm()
    inputs = analysis_inputs(studyset, grid)
    log_keep = _log_keep(ALE(fwhm), inputs)
    ale = -np.expm1(log_keep.sum(axis=0, dtype=np.float64))
    mean, sd, n_draws = moments or null_moments(studyset, grid, fwhm=fwhm, n_draws=n_draws, seed=seed,
                                                null_mask=null_mask)
    z = (ale - mean) / np.maximum(sd, SD_FLOOR)
    return Convergence(grid, z, log_keep, mean, sd, n_draws)


def model_statistic(z_volume: np.ndarray, masks: list[np.ndarray]) -> float:
    """Mean over regions of the region's mean z (``masks``: 3-D bool, or index arrays into the volume)."""
    return float(np.mean([np.nanmean(z_volume[m]) for m in masks]))


def _placements(mask: np.ndarray, region: np.ndarray, n: int, rng: np.random.Generator, min_inside: float,
                batch: int = 256) -> list[tuple[np.ndarray, ...]]:
    """``n`` random placements of ``region`` (3-D bool) in ``mask``: index tuples of the moved voxels."""
    ijk = np.argwhere(region)
    offsets = ijk - np.round(ijk.mean(axis=0)).astype(int)
    centres = np.argwhere(mask)
    shape = np.array(mask.shape)
    out: list[tuple[np.ndarray, ...]] = []
    for _ in range(1000):
        picked = centres[rng.integers(0, len(centres), size=batch)]
        moved = picked[:, None, :] + offsets[None, :, :]
        inside = np.all((moved >= 0) & (moved < shape), axis=2)
        clipped = np.where(inside[..., None], moved, 0)
        inside &= mask[clipped[..., 0], clipped[..., 1], clipped[..., 2]]
        for b in np.flatnonzero(inside.mean(axis=1) >= min_inside):
            out.append(tuple(moved[b][inside[b]].T))
            if len(out) == n:
                return out
    raise RuntimeError(f"could not place a region of {len(ijk)} voxels in the mask")


def specificity_test(conv: Convergence, masks: dict[str, np.ndarray], *, n_placements: int = 1000, seed: int = 0,
                     min_inside: float = 0.9, null_mask="brain") -> dict:
    """Does the model's convergence exceed that of its regions moved elsewhere? (module docstring)

    Returns ``{"statistic", "null_mean", "p", "n_placements", "min_inside", "n_draws"}``.
    """
    volume = conv.volume()
    mask = null_masks.null_mask(conv.grid, null_mask) & conv.grid.mask
    observed = model_statistic(volume, list(masks.values()))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(MOMENT_STREAM + 1,)))
    moved = [_placements(mask, m, n_placements, rng, min_inside) for m in masks.values()]
    null = np.array([model_statistic(volume, [region[i] for region in moved]) for i in range(n_placements)])
    return {
        "statistic": observed,
        "null_mean": float(null.mean()),
        "p": float((1 + np.sum(null >= observed - 1e-12 * abs(observed))) / (1 + n_placements)),
        "n_placements": n_placements,
        "min_inside": min_inside,
        "n_draws": conv.n_draws,
    }


def compare_models(conv: Convergence, masks_a: dict[str, np.ndarray], masks_b: dict[str, np.ndarray], *,
                   n_boot: int = 1000, seed: int = 0) -> dict:
    """Model A's statistic minus model B's on one group, bootstrapped over experiments (module docstring).

    Returns ``{"difference", "statistic_a", "statistic_b", "ci_low", "ci_high", "p", "n_boot"}``.
    """
    flat = np.full(conv.grid.shape, -1, dtype=np.int64)
    flat[conv.grid.mask] = np.arange(conv.grid.n_voxels)
    regions_a = [flat[m] for m in masks_a.values()]
    regions_b = [flat[m] for m in masks_b.values()]
    union = np.unique(np.concatenate(regions_a + regions_b))
    position = {int(v): i for i, v in enumerate(union)}
    local = [np.array([position[int(v)] for v in r]) for r in regions_a + regions_b]
    log_keep = conv.log_keep[:, union].astype(np.float64)
    mean, sd = conv.mean[union], np.maximum(conv.sd[union], SD_FLOOR)
    n_a = len(regions_a)

    def difference(counts: np.ndarray) -> np.ndarray:
        z = (-np.expm1(counts @ log_keep) - mean) / sd  # (n, |union|)
        means = np.stack([z[:, r].mean(axis=1) for r in local], axis=1)
        return means[:, :n_a].mean(axis=1) - means[:, n_a:].mean(axis=1)

    k = log_keep.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(MOMENT_STREAM + 2,)))
    counts = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(np.float64)
    boot = np.concatenate([difference(counts[i:i + 200]) for i in range(0, n_boot, 200)])
    observed = float(difference(np.ones((1, k)))[0])
    z = conv.volume()
    p = min(1.0, 2 * min((1 + np.sum(boot <= 0)) / (1 + n_boot), (1 + np.sum(boot >= 0)) / (1 + n_boot)))
    return {
        "difference": observed,
        "statistic_a": model_statistic(z, list(masks_a.values())),
        "statistic_b": model_statistic(z, list(masks_b.values())),
        "ci_low": float(np.quantile(boot, 0.025)),
        "ci_high": float(np.quantile(boot, 0.975)),
        "p": float(p),
        "n_boot": n_boot,
    }
