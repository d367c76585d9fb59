"""The result of a meta-analysis: maps, null distributions, settings, and what built them.

``MetaResult`` is plain data that an estimator returns and a corrector extends (never
in place: ``with_maps`` returns a new result). Maps are masked 1-D float64 arrays
(one value per mask voxel of ``grid``) keyed by NiMARE 0.22.1's names, so users can
switch between the two:

========================================================  ==========================================
``stat``                                                  ALE
``p``, ``z``, ``logp``                                    uncorrected, from the approximate null
``{logp,z}_level-voxel_corr-FWE_method-montecarlo``       voxel-level FWE
``{logp,z}_desc-size_level-cluster_corr-FWE_method-...``  cluster-size FWE (every voxel of a cluster)
``{logp,z}_desc-mass_level-cluster_corr-FWE_method-...``  cluster-mass FWE
========================================================  ==========================================

``nulls`` holds NiMARE's null-distribution keys: ``histogram_bins`` and
``histweights_corr-none_method-approximate`` (the approximate null), and after Monte
Carlo correction ``values_level-voxel_corr-fwe_method-montecarlo`` (max ALE per
iteration), ``values_desc-size_level-cluster_corr-fwe_method-montecarlo`` (largest
cluster, voxels) and ``values_desc-mass_level-cluster_corr-fwe_method-montecarlo``
(largest cluster mass: sum over its voxels of ALE minus the cluster-forming threshold).

The experiments and their foci (:class:`~neurochange.meta.inputs.AnalysisInputs`) and the
estimator that fitted them are kept, so that later steps (cluster tables, contributions,
jackknife, Monte Carlo) can rebuild any experiment's MA map and refit subsets.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import nibabel as nib
import numpy as np

from neurochange.meta.inputs import AnalysisInputs
from neurochange.space import Grid

#: NiMARE's names of the corrected maps written by Monte Carlo FWE correction.
FWE_SUFFIX = "_corr-FWE_method-montecarlo"
FWE_MAPS = tuple(
    f"{kind}_{level}{FWE_SUFFIX}"
    for level in ("level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster")
    for kind in ("logp", "z")
)
#: NiMARE's keys of the Monte Carlo null distributions (note the lower-case ``fwe``).
NULL_VOXEL = "values_level-voxel_corr-fwe_method-montecarlo"
NULL_SIZE = "values_desc-size_level-cluster_corr-fwe_method-montecarlo"
NULL_MASS = "values_desc-mass_level-cluster_corr-fwe_method-montecarlo"
#: Largest TFCE per iteration (JALE convention).
NULL_TFCE = "values_desc-tfce_level-voxel_corr-fwe_method-montecarlo"
NULL_BINS = "histogram_bins"
NULL_APPROXIMATE = "histweights_corr-none_method-approximate"


@dataclass
class MetaResult:
    """Maps, nulls and settings of one meta-analysis on one grid.

    Attributes
    ----------
    grid : Grid
        The voxel grid; every map has one value per ``grid.mask`` voxel (C order).
    maps : dict[str, ndarray]
        Masked 1-D float64 maps by NiMARE name (see the module docstring).
    nulls : dict[str, ndarray]
        Null distributions by NiMARE key.
    params : dict
        JSON-ready settings and counts: ``estimator`` (name and kernel settings),
        ``counts`` (experiments, foci, subjects, experiments dropped and why), and after
        correction ``montecarlo`` (iterations requested and run, seed, chunk size,
        cluster-forming p and threshold, null mask and its voxel count, early stopping
        with the final quantile intervals).
    inputs : AnalysisInputs or None
        The experiments and foci analysed (None for results read from maps alone).
    estimator : object or None
        The fitted estimator: it owns the kernels (``ma_maps``) and the Monte Carlo null
        engine (``null_engine``) of the result.
    """

    grid: Grid
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    inputs: AnalysisInputs | None = None
    estimator: object | None = None

    # ------------------------------------------------------------------ maps
    def get_map(self, name: str, dtype=np.float32) -> nib.Nifti1Image:
        """A map as a NIfTI image on ``grid`` (zero outside the mask)."""
        if name not in self.maps:
            raise KeyError(f"no map named {name!r}; maps: {', '.join(self.maps)}")
        return self.grid.to_img(self.maps[name], dtype=dtype)

    def get_volume(self, name: str) -> np.ndarray:
        """A map as a 3-D float64 array on ``grid`` (zero outside the mask)."""
        vol = np.zeros(self.grid.shape)
        vol[self.grid.mask] = self.maps[name]
        return vol

    def with_maps(
        self, maps: dict | None = None, nulls: dict | None = None, params: dict | None = None
    ) -> "MetaResult":
        """A new result with maps, nulls and params added (the original is unchanged)."""
        return replace(
            self,
            maps={**self.maps, **(maps or {})},
            nulls={**self.nulls, **(nulls or {})},
            params={**copy.deepcopy(self.params), **(params or {})},
        )

    # ------------------------------------------------------------------ experiments
    def _inputs(self) -> AnalysisInputs:
        if self.inputs is None:
            raise ValueError("this result carries no analysis inputs (experiments and foci)")
        return self.inputs

    @property
    def n_experiments(self) -> int:
        return 0 if self.inputs is None else self.inputs.n_experiments

    @property
    def experiment_ids(self) -> list[str]:
        """Experiments analysed, in analysis order (sorted by id, as NiMARE orders them)."""
        return [] if self.inputs is None else list(self.inputs.experiment_ids)

    @property
    def foci_ijk(self) -> np.ndarray:
        return self._inputs().foci_ijk

    @property
    def foci_xyz(self) -> np.ndarray:
        return self._inputs().foci_xyz

    @property
    def focus_experiment(self) -> np.ndarray:
        return self._inputs().focus_experiment

    @property
    def sample_sizes(self) -> np.ndarray:
        return self._inputs().sample_sizes

    def experiment_foci(self, i: int) -> np.ndarray:
        """Voxel indices (k, 3) of experiment ``i``'s foci."""
        return self._inputs().experiment_foci(i)

    def ma_maps(self):
        """Yield ``(i, masked voxel indices, MA values)`` for every experiment (sparse), from the estimator's kernels."""
        if self.estimator is None:
            raise ValueError("this result carries no estimator, so no modelled activation maps")
        return self.estimator.ma_maps(self._inputs())

    def ma_map(self, i: int) -> np.ndarray:
        """Masked MA map (float64, one value per mask voxel) of experiment ``i``."""
        out = np.zeros(self.grid.n_voxels)
        for j, cols, vals in self.ma_maps():
            if j == i:
                out[cols] = vals
                break
        return out
