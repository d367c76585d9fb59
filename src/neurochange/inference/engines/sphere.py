"""Null iterations of the MKDA density and KDA statistics, as NiMARE 0.22.1's ``FWECorrector(method="montecarlo")``.

Each iteration puts every focus on a drawn null voxel, keeping the experiments' focus
counts, recomputes the density (or KDA) statistic with the sphere kernel of the fit, and
records the maximum statistic, the largest face-connected cluster above the
cluster-forming threshold (the statistic of uncorrected p = ``cluster_forming_p`` under the
approximate null, NiMARE's ``_p_to_summarystat``) and the largest cluster mass (sum of
statistic minus threshold).

Clusters are found by union-find over a face-neighbour table of the mask voxels
(:func:`neurochange.inference.unionfind.max_clusters`, numba, ~1 ms a map) instead of scipy's
labelling of the whole volume (~30 ms); :func:`neurochange.inference.clusters.max_cluster` (scipy) is the reference
the tests compare it with (equal sizes, equal masses: both sum in voxel order).
"""

from __future__ import annotations

import numpy as np

from neurochange.inference.unionfind import max_clusters, neighbour_table
from neurochange.meta.inputs import AnalysisInputs
from neurochange.meta.spheres import SphereStamp


class SphereNullEngine:
    """Null iterations of a sphere-kernel statistic for :class:`~neurochange.inference.montecarlo.MonteCarloFWE`.

    ``run(draws)`` is safe to call from several threads (each call has its own buffers).
    """

    def __init__(self, inputs: AnalysisInputs, radius: float, value: float, sum_overlap: bool,
                 null_voxels: np.ndarray, threshold: float):
        grid = inputs.grid
        self.grid = grid
        self.value = float(value)
        self.sum_overlap = bool(sum_overlap)
        self.threshold = float(threshold)
        self.null_ijk = np.argwhere(null_voxels)
        per_exp = inputs.foci_per_experiment()
        self.n_foci = int(per_exp.sum())
        self.indptr = np.concatenate([[0], np.cumsum(per_exp)]).astype(np.int64)
        self.width = int(per_exp.max()) + 1 if sum_overlap else 2
        self.radius = float(radius)
        self.neighbours = neighbour_table(np.arange(grid.n_voxels), grid.mask)

    @property
    def n_null(self) -> int:
        return len(self.null_ijk)

    def warm_up(self, draws: np.ndarray) -> None:
        """Compile the numba kernels."""
        self.run(draws[:1])

    def run(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(max statistic, largest cluster size, largest cluster mass), each (n_it,), for the foci
        ``draws`` ((n_it, n_foci) indices into the null voxels, foci in experiment order)."""
        n = self.grid.n_voxels
        parent, size, mass = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n)
        n_it = draws.shape[0]
        out_voxel, out_size, out_mass = np.zeros(n_it), np.zeros(n_it), np.zeros(n_it)
        stamp = SphereStamp(self.grid, self.radius, self.sum_overlap)  # this call's buffers
        for it in range(n_it):
            counts, _ = stamp.counts(self.null_ijk[draws[it]], self.indptr, self.width)
            stat = counts * self.value
            out_voxel[it] = stat.max()
            out_size[it], out_mass[it] = max_clusters(stat, self.threshold, self.neighbours, parent, size, mass)
        return out_voxel, out_size, out_mass
