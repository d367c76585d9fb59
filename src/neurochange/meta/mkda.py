"""The MKDA density and KDA estimators, as NiMARE 0.22.1 computes them.

Kernels: :mod:`neurochange.meta.spheres` (MKDA: union of an experiment's foci spheres,
value 1; KDA: count of its foci spheres at each voxel).

``MKDADensity`` sums the MA maps (NiMARE's default unit experiment weights, so the
statistic counts covering experiments); its approximate null is the exact Poisson-binomial
distribution of that count when each experiment covers a voxel with probability
(its in-mask sphere volume) / (mask volume). ``KDA`` sums the KDA maps; its approximate
null convolves each experiment's histogram of MA values. Both match NiMARE's
``null_method="approximate"`` (the default of both estimators).

Monte Carlo FWE: :class:`~neurochange.inference.montecarlo.MonteCarloFWE` with the null
engine of :mod:`neurochange.inference.engines.sphere` (foci redrawn in the null mask, as
NiMARE's ``FWECorrector(method="montecarlo")``).
"""

from __future__ import annotations

import numpy as np

from neurochange._docs import fill_doc
from neurochange.inference import stats as inference
from neurochange.inference.engines.array_ale import gpu_namespace
from neurochange.inference.engines.array_sphere import ArraySphereNullEngine
from neurochange.inference.engines.sphere import SphereNullEngine
from neurochange.meta.base import Estimator
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, MetaResult
from neurochange.meta.spheres import DEFAULT_RADIUS_MM, sphere_counts, sphere_ma_csr


# ---------------------------------------------------------------------------- nulls
def mkda_null(prop_active: np.ndarray) -> np.ndarray:
    """Distribution (n+1,) of the number of experiments covering a voxel, P(count = 0..n).

    ``prop_active`` (n,): each experiment's in-mask sphere volume / mask volume, convolved
    one experiment at a time in analysis order, as NiMARE does (pass float32 values to
    reproduce its float32 rounding of ``1 - p``).
    """
    hist = np.ones(1)
    for p in prop_active:
        hist = np.convolve(hist, [1 - p, p])
    return hist


def kda_null(hist: np.ndarray, n_mask: int, n_bins: int) -> np.ndarray:
    """Distribution (n_bins,) of the summed KDA value: convolution of the experiments' MA-value histograms.

    ``hist`` (n_experiments, width): mask voxels per MA value (column 0 ignored; the
    uncovered voxels are put there). Truncated to ``n_bins`` (NiMARE's bins hold every
    reachable sum).
    """
    out = None
    for row in np.asarray(hist, dtype=np.float64):
        row = row.copy()
        row[0] = n_mask - row[1:].sum()
        row /= row.sum()
        out = row if out is None else np.convolve(out, row)
    full = np.zeros(n_bins)
    if out is None:
        full[0] = 1.0
        return full
    m = min(n_bins, len(out))
    full[:m] = out[:m]
    return full


# ---------------------------------------------------------------------------- estimators
def _result(estimator, inputs: AnalysisInputs, stat, bins, weights, params) -> MetaResult:
    p = inference.hist_to_p(stat, weights, bins)
    maps = {"stat": stat, "p": p, "z": inference.p_to_z(p), "logp": inference.p_to_logp(p)}
    return MetaResult(
        grid=inputs.grid,
        maps=maps,
        nulls={NULL_BINS: bins, NULL_APPROXIMATE: weights},
        params={"estimator": {"name": estimator.name, **params, "null_method": "approximate",
                              "reference": f"NiMARE 0.22.1 {estimator.name}"},
                "counts": inputs.counts},
        inputs=inputs,
        estimator=estimator,
    )


class _SphereEstimator(Estimator):
    """The sphere-kernel estimators: the statistic is the sum of the experiments' MA maps (times ``value``)."""

    summary_statistic = "sum"
    gpu = True
    #: KDA counts overlapping spheres of one experiment; MKDA takes their union.
    sum_overlap = False

    def __init__(self, radius: float = DEFAULT_RADIUS_MM, value: float = 1.0):
        if not np.isfinite(radius) or radius <= 0:
            raise ValueError(f"sphere radius must be a positive number of mm, got {radius}")
        self.radius = float(radius)
        self.value = float(value)

    def get_params(self) -> dict:
        return {"radius": self.radius, "value": self.value}

    def _counts(self, inputs: AnalysisInputs):
        return sphere_counts(inputs.foci_ijk, inputs.focus_experiment, inputs.n_experiments, inputs.grid,
                             self.radius, sum_overlap=self.sum_overlap)

    def ma_maps(self, inputs: AnalysisInputs):
        """Yield ``(i, masked voxel indices, MA values)`` of every experiment (float64 values)."""
        indptr, indices, values = sphere_ma_csr(inputs.foci_ijk, inputs.focus_experiment, inputs.n_experiments,
                                                inputs.grid, self.radius, sum_overlap=self.sum_overlap)
        for i in range(inputs.n_experiments):
            sl = slice(indptr[i], indptr[i + 1])
            yield i, indices[sl].astype(np.int64), values[sl] * self.value

    def null_engine(self, result: MetaResult, null_voxels: np.ndarray, threshold: float,
                    n_workers: int = 1, device: str = "cpu"):
        """Null iterations of ``result``'s experiments (:mod:`neurochange.inference.engines.sphere`; with
        ``device="gpu"``, :mod:`neurochange.inference.engines.array_sphere` on CuPy)."""
        args = (result.inputs, self.radius, self.value, self.sum_overlap, null_voxels, threshold)
        if device == "gpu":
            return ArraySphereNullEngine(*args, xp=gpu_namespace())
        return SphereNullEngine(*args)


@fill_doc
class MKDADensity(_SphereEstimator):
    """Multilevel kernel density analysis, density statistic (Wager 2007).

    Parameters
    ----------
    %(radius)s
    value : float
        Value of a sphere voxel (default 1).
    """

    name = "MKDADensity"

    def fit_inputs(self, inputs: AnalysisInputs) -> MetaResult:
        """Density (``stat``: weighted count of experiments whose spheres cover a voxel), p, z, logp."""
        grid = inputs.grid
        counts, hist = self._counts(inputs)
        stat = counts * self.value
        # float32 as NiMARE computes it (float32 MA maps), so the null is bit-identical
        prop_active = (hist[:, 1] * self.value).astype(np.float32) / np.float32(grid.n_voxels)
        bins = np.arange(inputs.n_experiments + 1)
        weights = mkda_null(prop_active)
        return _result(self, inputs, stat, bins, weights,
                       {"kernel": "MKDA sphere", "radius_mm": self.radius, "value": self.value,
                        "weighting": "none (unit weights)"})


@fill_doc
class KDA(_SphereEstimator):
    """Kernel density analysis (Wager 2003, 2004): sum of per-experiment sphere counts.

    Parameters
    ----------
    %(radius)s
    value : float
        Value each focus sphere adds (default 1).
    """

    name = "KDA"
    sum_overlap = True

    def fit_inputs(self, inputs: AnalysisInputs) -> MetaResult:
        """KDA statistic (``stat``: sum over experiments of foci spheres covering a voxel), p, z, logp."""
        counts, hist = self._counts(inputs)
        stat = counts * self.value
        # NiMARE: bin centres 0, v, 2v, ... up to the largest reachable sum plus one bin
        max_poss = float(np.sum(self.value * inputs.foci_per_experiment()))
        bins = np.arange(0, max_poss + self.value * 1.5, self.value)
        weights = kda_null(hist, inputs.grid.n_voxels, len(bins))
        return _result(self, inputs, stat, bins, weights,
                       {"kernel": "KDA sphere", "radius_mm": self.radius, "value": self.value})
