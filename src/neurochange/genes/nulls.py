"""The CBMA's own null maps, parcellated: the analysis's experiments with their foci redrawn at random in the
null mask (as its Monte Carlo FWE null draws them: each experiment keeps its focus count and kernel),
each null statistic map refitted by the same estimator and averaged over the atlas regions.

The null maps then have the kernels' smoothness and the foci counts of the real map, which a
rotation of the cortex or a shuffle of genes does not give (Fulcher et al. 2021 for why the null
matters). Reproducible: the draws come from ``numpy.random.default_rng(seed)``, one map after
another.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from neurochange.genes.parcellate import parcel_means
from neurochange.meta.result import MetaResult


def null_parcels(result: MetaResult, null_voxels: np.ndarray, index: np.ndarray, n_regions: int, n_maps: int,
                 seed: int, progress=None) -> np.ndarray:
    """(n_maps, n_regions): regional means of ``n_maps`` null statistic maps of ``result``'s experiments, foci drawn
    uniformly from ``null_voxels`` (3-D bool); ``index``: the mask voxels' regions (:func:`region_index`)."""
    inputs = result.inputs
    candidates = np.argwhere(null_voxels)
    rng = np.random.default_rng(seed)
    out = np.empty((n_maps, n_regions))
    for m in range(n_maps):
        drawn = candidates[rng.integers(0, len(candidates), size=len(inputs.foci_ijk))]
        null_inputs = replace(inputs, foci_ijk=drawn, foci_xyz=inputs.grid.vox_to_mm(drawn))
        out[m] = parcel_means(result.estimator.fit_inputs(null_inputs).maps["stat"], index, n_regions)
        if progress is not None:
            progress(m + 1, n_maps)
    return out


__all__ = ["null_parcels"]
