"""Estimators: from a StudySet to statistic maps (ALE), with p from the approximate null.

``ALE`` reproduces NiMARE 0.22.1's ``ALE`` (``null_method="approximate"``) on the same
input: the same kernels, foci-to-voxel rounding, MA maps, ALE values (float64 here,
float32 in NiMARE) and approximate null. Which experiments and foci enter: :func:`neurochange.meta.inputs.analysis_inputs`.

The protocol every estimator offers: :class:`~neurochange.meta.base.Estimator` (checked on each
by ``tests/test_estimator_checks.py``).
"""

from __future__ import annotations

import numpy as np

from neurochange._docs import fill_doc
from neurochange.errors import InputError
from neurochange.inference import stats as inference
from neurochange.inference import tfce
from neurochange.inference.engines.ale import AleNullEngine
from neurochange.inference.engines.array_ale import ArrayAleNullEngine, gpu_namespace
from neurochange.inference.engines.jale import JaleNullEngine
from neurochange.meta import kernels
from neurochange.meta.base import Estimator
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, MetaResult


@fill_doc
class ALE(Estimator):
    """Activation likelihood estimation (Turkeltaub 2002; Eickhoff 2009, 2012).

    Parameters
    ----------
    fwhm : float, optional
        One kernel FWHM (mm) for every experiment. Default: from each experiment's
        sample size (Eickhoff 2009), which then must be known for every experiment.
    null_method : {"approximate"}
        How p values are computed: the approximate (histogram convolution) null.
    tfce : bool
        Also a ``tfce`` map: threshold-free cluster enhancement of the z map as JALE computes it
        (:mod:`neurochange.inference.tfce`), with Monte Carlo FWE on the largest null TFCE.
    """

    name = "ALE"
    summary_statistic = "ale"

    def __init__(self, fwhm: float | None = None, null_method: str = "approximate", tfce: bool = False):
        if null_method != "approximate":
            raise ValueError(f"null_method must be 'approximate', got {null_method!r}")
        if fwhm is not None and (not np.isfinite(fwhm) or fwhm <= 0):
            raise InputError(f"kernel FWHM must be a positive number of mm, got {fwhm}", field="fwhm")
        self.fwhm = fwhm
        self.null_method = null_method
        self.tfce = bool(tfce)

    def get_params(self) -> dict:
        return {"fwhm": self.fwhm, "null_method": self.null_method, "tfce": self.tfce}

    # ------------------------------------------------------------------ kernels
    def experiment_fwhm(self, inputs: AnalysisInputs) -> np.ndarray:
        """Kernel FWHM (mm) of each experiment, (n_experiments,) float64."""
        if self.fwhm is not None:
            return np.full(inputs.n_experiments, self.fwhm)
        missing = [e for e, n in zip(inputs.experiment_ids, inputs.sample_sizes) if np.isnan(n)]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(
                f"sample size missing for experiment {shown}: the ALE kernel width follows the "
                "sample size; give n for every experiment or a fixed FWHM (--fwhm)",
                field="n",
            )
        return np.asarray(kernels.fwhm_from_sample_size(inputs.sample_sizes), dtype=float).reshape(-1)

    def experiment_kernels(self, inputs: AnalysisInputs) -> list[kernels.KernelCube]:
        """The kernel of each experiment (one shared object per distinct width)."""
        voxel_size = inputs.grid.voxel_size
        return [kernels.ale_kernel(float(f), voxel_size, fixed=self.fwhm is not None)
                for f in self.experiment_fwhm(inputs)]

    def ma_maps(self, inputs: AnalysisInputs):
        """Yield ``(i, masked voxel indices, MA values)`` of every experiment (MA = max over its foci)."""
        calc = kernels.MACalculator(inputs.grid.mask)
        for i, kernel in enumerate(self.experiment_kernels(inputs)):
            cols, vals = calc(kernel, inputs.experiment_foci(i))
            yield i, cols, vals

    def experiment_columns(self, inputs: AnalysisInputs) -> dict:
        """Per-experiment kernel columns of ``experiments.tsv``."""
        return {"fwhm_mm": self.experiment_fwhm(inputs)}

    # ------------------------------------------------------------------ fit
    def fit_inputs(self, inputs: AnalysisInputs) -> MetaResult:
        """ALE, p, z and -log10 p maps of ``inputs``."""
        grid = inputs.grid
        n_mask = grid.n_voxels
        keep = np.ones(n_mask)  # running product of (1 - MA) over experiments
        ma_values: list[np.ndarray] = []
        max_ma = np.zeros(inputs.n_experiments)
        for i, cols, vals in self.ma_maps(inputs):
            keep[cols] *= 1.0 - vals
            ma_values.append(vals)
            max_ma[i] = vals.max() if len(vals) else 0.0
        stat = 1.0 - keep

        bins = inference.histogram_bins(max_ma)
        weights = inference.approximate_null(ma_values, n_mask, bins)
        p = inference.hist_to_p(stat, weights, bins)
        maps = {"stat": stat, "p": p, "z": inference.p_to_z(p), "logp": inference.p_to_logp(p)}
        if self.tfce:
            maps["tfce"] = tfce.tfce_map(grid.to_img(maps["z"], np.float64).get_fdata())[grid.mask]
        params = {
            "estimator": {
                "name": self.name,
                "null_method": self.null_method,
                "fwhm": self.fwhm,
                **({"tfce": True} if self.tfce else {}),
                "kernel": "fixed FWHM" if self.fwhm is not None else "FWHM from sample size (Eickhoff 2009)",
                "reference": "NiMARE 0.22.1 ALE",
            },
            "counts": inputs.counts,
        }
        return MetaResult(grid=grid, maps=maps, nulls={NULL_BINS: bins, NULL_APPROXIMATE: weights}, params=params,
                          inputs=inputs, estimator=self)

    gpu = True

    def null_engine(self, result: MetaResult, null_voxels: np.ndarray, threshold: float, n_workers: int = 1,
                    device: str = "cpu"):
        """Null ALE iterations of ``result``'s experiments (:mod:`neurochange.inference.engines.ale`; with
        ``device="gpu"``, :mod:`neurochange.inference.engines.array_ale` on CuPy); with ``tfce`` (CPU only),
        each iteration's largest TFCE too, from the sparse engine of :mod:`neurochange.inference.engines.jale`
        on the same foci with NiMARE's z."""
        experiment_kernels = self.experiment_kernels(result.inputs)
        if device == "gpu":
            if self.tfce:
                raise InputError("TFCE's null runs on the CPU: use --device cpu with --tfce", field="device")
            return ArrayAleNullEngine(result.inputs, experiment_kernels, null_voxels, threshold, gpu_namespace())
        engine = AleNullEngine(result.inputs, experiment_kernels, null_voxels, threshold, n_workers)
        if not self.tfce:
            return engine
        bins, weights = result.nulls[NULL_BINS], result.nulls[NULL_APPROXIMATE]
        zlut = inference.p_to_z(inference.bin_p(weights))  # z of each bin, as hist_to_p and p_to_z give it
        return WithTfce(engine, JaleNullEngine(result.grid, result.inputs.focus_experiment, experiment_kernels, None,
                                               bins, bins, np.inf, "observed", True, n_workers, zlut=zlut,
                                               null_voxels=null_voxels))


class WithTfce:
    """A null engine whose iterations also give the largest TFCE, from a second engine on the same draws."""

    def __init__(self, engine, tfce_engine):
        self.engine, self.tfce_engine = engine, tfce_engine

    @property
    def n_foci(self) -> int:
        return self.engine.n_foci

    @property
    def n_null(self) -> int:
        return self.engine.n_null

    def warm_up(self, draws: np.ndarray) -> None:
        self.engine.warm_up(draws)
        self.tfce_engine.warm_up(draws)

    def run(self, draws: np.ndarray):
        return (*self.engine.run(draws)[:3], self.tfce_engine.run(draws)[3])
