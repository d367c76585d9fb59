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

The experiments, their foci (voxel indices) and kernel widths are kept so that later
steps (cluster tables, contributions, jackknife) can rebuild any experiment's MA map
with :meth:`MetaResult.ma_map`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import nibabel as nib
import numpy as np

from neurochange.meta import kernels
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
        JSON-ready settings and counts: ``estimator`` (name, fwhm, kernel rule),
        ``counts`` (experiments, foci, subjects, experiments dropped and why), and after
        correction ``montecarlo`` (iterations requested and run, seed, chunk size,
        cluster-forming p and ALE threshold, null mask and its voxel count, early stopping
        with the final quantile intervals).
    experiment_ids : list[str]
        Experiments analysed, in analysis order (sorted by id, as NiMARE orders them).
    foci_ijk : ndarray (n_foci, 3) int64
        Voxel index of each focus (half-to-even rounding; may lie outside the grid).
    foci_xyz : ndarray (n_foci, 3) float64
        The foci in MNI mm, as analysed.
    focus_experiment : ndarray (n_foci,) int64
        Index into ``experiment_ids`` of each focus; foci of one experiment are contiguous.
    experiment_fwhm : ndarray (n_experiments,) float64
        Kernel FWHM (mm) of each experiment.
    sample_sizes : ndarray (n_experiments,) float64
        Sample size of each experiment (NaN where unknown and a fixed FWHM was used).
    fixed_fwhm : bool
        Whether the FWHM was fixed by the user (it changes float rounding of the kernel).
    """

    grid: Grid
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    experiment_ids: list[str] = field(default_factory=list)
    foci_ijk: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))
    foci_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    focus_experiment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    experiment_fwhm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fixed_fwhm: bool = False

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
    @property
    def n_experiments(self) -> int:
        return len(self.experiment_ids)

    def kernel(self, i: int) -> kernels.KernelCube:
        """The ALE kernel of experiment ``i``."""
        return kernels.ale_kernel(float(self.experiment_fwhm[i]), self.grid.voxel_size, fixed=self.fixed_fwhm)

    def experiment_foci(self, i: int) -> np.ndarray:
        """Voxel indices (k, 3) of experiment ``i``'s foci."""
        return self.foci_ijk[self.focus_experiment == i]

    def ma_map(self, i: int) -> np.ndarray:
        """Masked MA map (float64, one value per mask voxel) of experiment ``i``."""
        cols, vals = kernels.MACalculator(self.grid.mask)(self.kernel(i), self.experiment_foci(i))
        out = np.zeros(self.grid.n_voxels)
        out[cols] = vals
        return out

    def ma_maps(self):
        """Yield ``(i, masked voxel indices, MA values)`` for every experiment (sparse)."""
        calc = kernels.MACalculator(self.grid.mask)
        for i in range(self.n_experiments):
            cols, vals = calc(self.kernel(i), self.experiment_foci(i))
            yield i, cols, vals
