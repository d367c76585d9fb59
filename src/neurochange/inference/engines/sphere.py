"""Monte Carlo FWE for the MKDA density and KDA maps, as NiMARE 0.22.1's ``FWECorrector(method="montecarlo")``.

Each iteration redraws every focus uniformly (with replacement) from the mask voxels,
keeping the experiments' focus counts, recomputes the density (or KDA) statistic with the
sphere kernel of the fit, and records the maximum statistic, the largest face-connected
cluster above the cluster-forming threshold (the statistic of uncorrected p =
``voxel_thresh`` under the approximate null, NiMARE's ``_p_to_summarystat``) and the
largest cluster mass (sum of statistic minus threshold). Corrected p = share of null
maxima >= the observed value, within [1/n, 1 - 1/n]. Iterations run in chunks with their
own streams spawned from one ``SeedSequence``, so results do not depend on ``cores``.

Clusters are found by union-find over a face-neighbour table of the mask voxels
(:func:`neurochange.inference.unionfind.max_clusters`, numba, ~1 ms a map) instead of scipy's
labelling of the whole volume (~30 ms); :func:`_max_cluster` (scipy) stays as the reference
the tests compare it with (equal sizes, equal masses: both sum in voxel order).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from neurochange.inference import stats as inference
from neurochange.inference.clusters import FACE_CONNECTIVITY
from neurochange.inference.unionfind import max_clusters, neighbour_table
from neurochange.meta import mkda
from neurochange.meta.result import (
    FWE_SUFFIX,
    NULL_APPROXIMATE,
    NULL_BINS,
    NULL_MASS,
    NULL_SIZE,
    NULL_VOXEL,
    MetaResult,
)

CHUNK_ITERS = 50


def _max_cluster(volume: np.ndarray, mask: np.ndarray, stat: np.ndarray, thresh: float) -> tuple[float, float]:
    """Reference (scipy labelling of the volume): largest cluster size and mass of ``stat > thresh``."""
    volume[mask] = stat
    supra = volume > thresh
    labels, n = ndimage.label(supra, structure=FACE_CONNECTIVITY)
    if n == 0:
        return 0.0, 0.0
    flat = labels.ravel()
    sizes = np.bincount(flat)[1:]
    masses = np.bincount(flat, weights=np.where(supra, volume - thresh, 0.0).ravel())[1:]
    return float(sizes.max()), float(masses.max())


def _chunk(result: MetaResult, sum_overlap: bool, radius: float, value: float, n_iters: int, seed, thresh: float,
           neighbours: np.ndarray):
    grid = result.grid
    rng = np.random.default_rng(seed)
    null_ijk = np.argwhere(grid.mask)
    n_exp = result.n_experiments
    parent = np.empty(grid.n_voxels, dtype=np.int64)
    size = np.empty(grid.n_voxels, dtype=np.int64)
    mass = np.empty(grid.n_voxels)
    out = np.zeros((n_iters, 3))
    per_exp = np.bincount(result.focus_experiment, minlength=n_exp)
    indptr = np.concatenate([[0], np.cumsum(per_exp)]).astype(np.int64)
    width = int(per_exp.max()) + 1 if sum_overlap else 2
    offsets = mkda.sphere_offsets(radius, grid.voxel_size)
    shape = np.array(grid.shape, dtype=np.int64)
    to_masked = mkda.masked_index(grid.mask)
    for it in range(n_iters):
        ijk = null_ijk[rng.integers(0, len(null_ijk), len(result.focus_experiment))]
        counts, _ = mkda._sphere_counts(offsets, ijk, indptr, shape, to_masked, grid.n_voxels, sum_overlap, width)
        stat = counts * value
        out[it, 0] = stat.max()
        out[it, 1:] = max_clusters(stat, thresh, neighbours, parent, size, mass)
    return out


def montecarlo_null(result: MetaResult, n_iters: int = 1000, seed: int = 0, voxel_thresh: float = 0.001,
                    cores: int = 1) -> np.ndarray:
    """(n_iters, 3): per iteration the max statistic, the largest cluster (voxels) and the largest cluster mass."""
    est = result.params["estimator"]
    sum_overlap = {"MKDADensity": False, "KDA": True}[est["name"]]
    thresh = inference.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS], voxel_thresh)
    sizes = [min(CHUNK_ITERS, n_iters - s) for s in range(0, n_iters, CHUNK_ITERS)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    neighbours = neighbour_table(np.arange(result.grid.n_voxels), result.grid.mask)
    args = [(result, sum_overlap, est["radius_mm"], est["value"], k, s, thresh, neighbours)
            for k, s in zip(sizes, seeds)]
    with ThreadPoolExecutor(max_workers=max(1, cores)) as pool:
        parts = list(pool.map(lambda a: _chunk(*a), args))
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def fwe_maps(result: MetaResult, null: np.ndarray, voxel_thresh: float = 0.001) -> dict:
    """Voxel, cluster-size and cluster-mass FWE maps (``{logp,z}_..._corr-FWE_method-montecarlo``) from ``null``."""
    grid = result.grid
    stat = result.maps["stat"]
    thresh = inference.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS], voxel_thresh)
    vol = np.zeros(grid.shape)
    vol[grid.mask] = stat
    labels, n = ndimage.label(vol > thresh, structure=FACE_CONNECTIVITY)
    lab = labels[grid.mask]
    sizes = np.bincount(lab, minlength=n + 1).astype(float)
    masses = np.bincount(lab, weights=np.where(lab > 0, stat - thresh, 0.0), minlength=n + 1)
    sizes[0] = masses[0] = 0.0
    p = {
        "level-voxel": inference.null_to_p(stat, null[:, 0]),
        "desc-size_level-cluster": inference.null_to_p(sizes, null[:, 1])[lab],
        "desc-mass_level-cluster": inference.null_to_p(masses, null[:, 2])[lab],
    }
    maps = {}
    for level, pv in p.items():
        maps[f"logp_{level}{FWE_SUFFIX}"] = inference.p_to_logp(pv)
        maps[f"z_{level}{FWE_SUFFIX}"] = inference.p_to_z(pv)
    return maps


def correct_fwe(result: MetaResult, n_iters: int = 1000, seed: int = 0, voxel_thresh: float = 0.001,
                cores: int = 1) -> MetaResult:
    """A new result with the Monte Carlo FWE maps, nulls (NiMARE keys) and settings of ``result`` (MKDADensity or KDA)."""
    null = montecarlo_null(result, n_iters, seed, voxel_thresh, cores)
    thresh = inference.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS], voxel_thresh)
    nulls = {NULL_VOXEL: null[:, 0], NULL_SIZE: null[:, 1], NULL_MASS: null[:, 2]}
    params = {"montecarlo": {"n_iters": n_iters, "seed": seed, "chunk_iters": CHUNK_ITERS,
                             "cluster_forming_p": voxel_thresh, "cluster_forming_stat": thresh,
                             "null_foci": "uniform over mask voxels (NiMARE)", "connectivity": "face (6)"}}
    return result.with_maps(fwe_maps(result, null, voxel_thresh), nulls, params)
