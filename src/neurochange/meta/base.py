"""The estimator protocol: what every estimator offers the correctors, comparisons and diagnostics.

An estimator turns a StudySet into statistic maps (:meth:`Estimator.fit`), gives each
experiment's modelled activation (:meth:`Estimator.ma_maps`: what subtraction, diagnostics
and fail-safe N combine) and the null iterations that Monte Carlo FWE runs
(:meth:`Estimator.null_engine`). ``type(e)(**e.get_params())`` is the same estimator.
"""

from __future__ import annotations

import numpy as np

from neurochange import space as _space
from neurochange._docs import fill_doc
from neurochange.inference import stats
from neurochange.meta.inputs import AnalysisInputs, analysis_inputs
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, MetaResult
from neurochange.studyset import StudySet


class Estimator:
    """Base of ALE, MKDADensity and KDA (see the module docstring)."""

    #: NiMARE's class name, written to ``params["estimator"]["name"]``.
    name = ""
    #: How experiments' MA maps combine into the statistic: ``"ale"`` (``1 - prod(1 - MA)``) or ``"sum"``.
    summary_statistic = ""
    #: Which clusters are significant: ``"p"`` (FWE p below cluster_p, NiMARE) or ``"percentile"``
    #: (larger than the null's 95th percentile, JALE).
    cutoff_rule = "p"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def get_params(self) -> dict:
        """The constructor's arguments."""
        raise NotImplementedError

    @fill_doc
    def fit(self, studyset: StudySet, grid: _space.Grid | None = None) -> MetaResult:
        """Statistic, p, z and -log10 p maps (NiMARE 0.22.1's names), with the approximate null.

        Parameters
        ----------
        %(studyset)s
        %(grid)s
        """
        return self.fit_inputs(analysis_inputs(studyset, grid or _space.mni_2mm()))

    def fit_inputs(self, inputs: AnalysisInputs) -> MetaResult:
        """As :meth:`fit`, on inputs already on a grid."""
        raise NotImplementedError

    def ma_maps(self, inputs: AnalysisInputs):
        """Yield ``(i, masked voxel indices, MA values)`` for every experiment (sparse, float64 values)."""
        raise NotImplementedError

    def experiment_columns(self, inputs: AnalysisInputs) -> dict:
        """Per-experiment kernel columns of ``experiments.tsv`` (default: none)."""
        return {}

    def cluster_forming(self, result: MetaResult, cluster_forming_p: float) -> tuple[str, float]:
        """The map clusters form on and its threshold: the statistic at uncorrected ``cluster_forming_p``
        under the approximate null (NiMARE's rule; the JALE convention forms them on z)."""
        return "stat", stats.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS],
                                            cluster_forming_p)

    #: Whether :meth:`null_engine` has a GPU engine (``device="gpu"``).
    gpu = False

    def null_engine(self, result: MetaResult, null_voxels: np.ndarray, threshold: float, n_workers: int = 1,
                    device: str = "cpu"):
        """The Monte Carlo null iterations of ``result``'s experiments, foci drawn from ``null_voxels`` (3-D bool),
        clusters formed above ``threshold``: an object with ``n_foci``, ``n_null``, ``warm_up(draws)`` and
        ``run(draws) -> (max statistic, largest cluster size, largest cluster mass)`` per iteration.
        ``device``: ``"cpu"`` or ``"gpu"`` (estimators with :attr:`gpu` only)."""
        raise NotImplementedError
