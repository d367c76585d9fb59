"""ALE in the JALE convention: JALE 0.2.10's (and pyALE's) main-effect ALE, p, z and TFCE.

What differs from :class:`~neurochange.meta.ale.ALE` (NiMARE's convention), each as JALE's
source defines it (re-implemented, checked against JALE 0.2.10 by ``tests/test_jale.py``):

- the grid: JALE's grey-matter prior (Grey10.nii > 0.1, 211,590 voxels;
  :func:`neurochange.sources.jale_prior.jale_grid`) is the analysis mask, the histogram's domain
  and the null's sampling space; foci are rounded up to voxels (Talairach foci converted with
  ``icbm_spm`` and rounded to whole mm first: read the file with ``space_transform="jale"``);
- the kernel: :func:`neurochange.meta.kernels.jale_kernel` (narrower than NiMARE's);
- the ALE over the whole volume, then set to 0 outside the prior (JALE's ``gm_masking``);
- p and z from JALE's histogram null (:mod:`neurochange.inference.jale`, bins of 1e-4);
- clusters where z > ``norm.ppf(1 - cluster_forming_p)``; TFCE of the z map
  (:mod:`neurochange.inference.tfce`);
- Monte Carlo nulls (:mod:`neurochange.inference.engines.jale`) with the observed histogram
  (pyALE, default) or each null's own (JALE 0.2.10).
"""

from __future__ import annotations

import numpy as np

from neurochange.errors import InputError
from neurochange.inference import jale as histogram
from neurochange.inference import tfce
from neurochange.inference.engines.jale import NULL_HISTOGRAMS, JaleNullEngine
from neurochange.meta import kernels
from neurochange.meta.base import Estimator
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.result import MetaResult

#: Keys of the histogram null in ``MetaResult.nulls``.
NULL_TAIL = "histogram_tail_method-jale"
NULL_EDGES = "histogram_edges_method-jale"
NULL_CENTRES = "histogram_centres_method-jale"


class JaleALE(Estimator):
    """Activation likelihood estimation as JALE 0.2.10 computes it (see the module docstring).

    Parameters
    ----------
    null_histogram : {"observed", "per_null"}
        The histogram that gives each Monte Carlo null map its z values: the observed data's
        (pyALE, as published pyALE analyses ran; default) or each null map's own (JALE 0.2.10).
    tfce : bool
        Compute TFCE (the map, and its maximum in every null iteration). Default True, as JALE.
    """

    name = "JaleALE"
    summary_statistic = "ale"
    cutoff_rule = "percentile"

    def __init__(self, null_histogram: str = "observed", tfce: bool = True):
        if null_histogram not in NULL_HISTOGRAMS:
            raise ValueError(f"null_histogram must be one of {NULL_HISTOGRAMS}, got {null_histogram!r}")
        self.null_histogram = null_histogram
        self.tfce = bool(tfce)

    def get_params(self) -> dict:
        return {"null_histogram": self.null_histogram, "tfce": self.tfce}

    # ------------------------------------------------------------------ kernels and MA
    def experiment_kernels(self, inputs: AnalysisInputs) -> list[kernels.KernelCube]:
        missing = [e for e, n in zip(inputs.experiment_ids, inputs.sample_sizes) if np.isnan(n)]
        if missing:
            raise InputError(f"sample size missing for experiment {missing[0]}"
                             + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                             + ": JALE's kernel width follows the sample size; give n for every experiment",
                             field="n")
        fwhm = np.atleast_1d(kernels.fwhm_from_sample_size(inputs.sample_sizes))
        return [kernels.jale_kernel(float(f)) for f in fwhm]

    def _dense_ma(self, inputs: AnalysisInputs, experiment_kernels: list[kernels.KernelCube]):
        """Yield ``(i, MA)`` of every experiment, MA a dense volume over the whole grid."""
        for i, kernel in enumerate(experiment_kernels):
            yield i, kernels.experiment_ma_numpy(kernel, inputs.experiment_foci(i), inputs.grid.shape)

    def ma_maps(self, inputs: AnalysisInputs):
        mask = inputs.grid.mask
        for i, ma in self._dense_ma(inputs, self.experiment_kernels(inputs)):
            values = ma[mask]
            cols = np.flatnonzero(values)
            yield i, cols, values[cols]

    def experiment_columns(self, inputs: AnalysisInputs) -> dict:
        return {"fwhm_mm": np.atleast_1d(kernels.fwhm_from_sample_size(inputs.sample_sizes))}

    # ------------------------------------------------------------------ fit
    def fit_inputs(self, inputs: AnalysisInputs) -> MetaResult:
        """ALE, p, z, -log10 p and (with ``tfce``) TFCE maps at the prior's voxels, and the histogram null."""
        grid = inputs.grid
        if grid.rounding != "ceil":
            raise InputError("the JALE convention needs its own grid (neurochange.sources.jale_prior.jale_grid)",
                             field="grid")
        experiment_kernels = self.experiment_kernels(inputs)
        edges, centres = histogram.bins([k.values.max() for k in experiment_kernels])
        keep = np.ones(grid.shape)
        hist = np.zeros((inputs.n_experiments, len(edges)))
        for i, ma in self._dense_ma(inputs, experiment_kernels):
            keep *= 1.0 - ma
            hist[i] = histogram.experiment_histogram(ma[grid.mask], edges)
        ale = np.where(grid.mask, 1.0 - keep, 0.0)
        tail = histogram.convolve(hist, centres)
        p, z = histogram.p_and_z(ale, tail)
        maps = {"stat": ale[grid.mask], "p": p[grid.mask], "z": z[grid.mask], "logp": -np.log10(p[grid.mask])}
        if self.tfce:
            maps["tfce"] = tfce.tfce_map(np.where(grid.mask, z, 0.0))[grid.mask]
        params = {
            "estimator": {
                "name": self.name,
                "null_histogram": self.null_histogram,
                "tfce": self.tfce,
                "kernel": "JALE kernel, FWHM from sample size (Eickhoff 2009)",
                "reference": "JALE 0.2.10 main effect (pyALE rules with null_histogram='observed')",
            },
            "counts": inputs.counts,
        }
        return MetaResult(grid=grid, maps=maps, nulls={NULL_TAIL: tail, NULL_EDGES: edges, NULL_CENTRES: centres},
                          params=params, inputs=inputs, estimator=self)

    # ------------------------------------------------------------------ inference
    def cluster_forming(self, result: MetaResult, cluster_forming_p: float) -> tuple[str, float]:
        """Clusters form on the z map, above ``norm.ppf(1 - cluster_forming_p)``."""
        return "z", histogram.z_threshold(cluster_forming_p)

    def null_engine(self, result: MetaResult, null_voxels: np.ndarray, threshold: float,
                    n_workers: int = 1, device: str = "cpu") -> JaleNullEngine:
        if not np.array_equal(null_voxels, result.grid.mask):
            raise InputError("the JALE convention draws null foci from its grey-matter prior: use null_mask='brain' "
                             "(the prior is the analysis mask)", field="null_mask")
        return JaleNullEngine(result.grid, result.inputs.focus_experiment, self.experiment_kernels(result.inputs),
                              result.nulls[NULL_TAIL], result.nulls[NULL_EDGES], result.nulls[NULL_CENTRES],
                              threshold, self.null_histogram, self.tfce, n_workers)


__all__ = ["JaleALE", "NULL_CENTRES", "NULL_EDGES", "NULL_TAIL"]
