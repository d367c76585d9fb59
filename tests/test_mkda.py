"""MKDA density and KDA against NiMARE 0.22.1 (null_method="approximate") on the same input.

Asserted: statistic maps identical; approximate-null bins and weights identical (MKDA,
bit for bit, with NiMARE's float32 coverage fractions) or within 1e-15 (KDA, summation
order); p identical after rounding ours to float32; z and logp within float32 rounding.
The numba sphere kernel is held to the NumPy reference.
"""

import warnings

import numpy as np
import pytest
from nimare_reference import load_nimare_dataset
from test_ale import neurosynth_subset

from neurochange.meta.mkda import KDA, MKDADensity
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS
from neurochange.meta.spheres import sphere_counts, sphere_ma_numpy, sphere_offsets
from neurochange.sources.io import read_studyset
from neurochange.space import mask_img, mni_2mm


def nimare_fit(cls_name, dset, **kwargs):
    import nimare.meta.cbma.mkda as nm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = getattr(nm, cls_name)(mask=mask_img(), **kwargs)
        return est, est.fit(dset)


def _agree(ours, est, theirs, bins_exact=True):
    np.testing.assert_array_equal(ours.maps["stat"], theirs.maps["stat"])
    np.testing.assert_array_equal(ours.nulls[NULL_BINS], est.null_distributions_[NULL_BINS])
    if bins_exact:
        np.testing.assert_array_equal(ours.nulls[NULL_APPROXIMATE], est.null_distributions_[NULL_APPROXIMATE])
    else:
        np.testing.assert_allclose(ours.nulls[NULL_APPROXIMATE], est.null_distributions_[NULL_APPROXIMATE],
                                   rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ours.maps["p"].astype(np.float32), theirs.maps["p"])
    for name in ("z", "logp"):
        np.testing.assert_allclose(ours.maps[name], theirs.maps[name], rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def pain(nimare_test_data):
    path = nimare_test_data / "test_pain_dataset.json"
    return read_studyset(path), load_nimare_dataset(path)


@pytest.mark.parametrize("cls, name, exact", [(MKDADensity, "MKDADensity", True), (KDA, "KDA", False)])
def test_pain_equals_nimare(pain, cls, name, exact):
    studyset, dset = pain
    ours = cls().fit(studyset)
    est, theirs = nimare_fit(name, dset)
    _agree(ours, est, theirs, bins_exact=exact)
    assert ours.params["counts"]["experiments"] == 19  # 2 of 21 have no foci


def test_radius_option_equals_nimare(pain):
    studyset, dset = pain
    ours = MKDADensity(radius=6).fit(studyset)
    est, theirs = nimare_fit("MKDADensity", dset, kernel__r=6)
    _agree(ours, est, theirs)


def test_neurosynth_subset_equals_nimare(data_mirror):
    studyset = neurosynth_subset(data_mirror, n_studies=60, seed=7)
    dset = studyset.to_nimare_dataset()
    for cls, name, exact in [(MKDADensity, "MKDADensity", True), (KDA, "KDA", False)]:
        ours = cls().fit(studyset)
        est, theirs = nimare_fit(name, dset)
        _agree(ours, est, theirs, bins_exact=exact)


def test_sphere_offsets_nimare_rule():
    from nimare.meta.utils import sphere_kernel_offsets

    for r in (4, 6, 10, 10.5, 15):
        ours = {tuple(o) for o in sphere_offsets(r, [2.0, 2.0, 2.0])}
        theirs = {tuple(o) for o in sphere_kernel_offsets(float(r), (2.0, 2.0, 2.0))}
        assert ours == theirs
    assert len(sphere_offsets(10, [2, 2, 2])) == 515


@pytest.mark.parametrize("sum_overlap", [False, True])
def test_numba_equals_numpy_reference(sum_overlap):
    grid = mni_2mm()
    rng = np.random.default_rng(3)
    n_exp = 6
    per = rng.integers(1, 12, n_exp)
    exp = np.repeat(np.arange(n_exp), per)
    ijk = rng.integers(-3, 95, (len(exp), 3))  # some foci off the grid edge
    ijk[:4] = ijk[4]  # repeated foci in one experiment
    exp[:5] = 0
    exp = np.sort(exp)
    stat, hist = sphere_counts(ijk, exp, n_exp, grid, 10, sum_overlap=sum_overlap)
    ref = np.zeros(grid.n_voxels, dtype=np.int64)
    for e in range(n_exp):
        cols, vals = sphere_ma_numpy(ijk[exp == e], grid, 10, sum_overlap=sum_overlap)
        ref[cols] += vals
        np.testing.assert_array_equal(np.bincount(vals, minlength=hist.shape[1])[1:], hist[e, 1:])
    np.testing.assert_array_equal(stat, ref)


def test_density_counts_experiments_not_foci():
    """Two foci of one experiment at the same place count once for MKDA, twice for KDA."""
    import pandas as pd

    from neurochange.studyset import StudySet

    studies = pd.DataFrame({"study_id": ["a"]})
    experiments = pd.DataFrame({"experiment_id": ["a-1"], "study_id": ["a"], "contrast_id": ["1"], "n": [10]})
    foci = pd.DataFrame({"experiment_id": ["a-1", "a-1"], "x": [0.0, 0.0], "y": [-20.0, -20.0],
                         "z": [10.0, 10.0], "space": "MNI"})
    ss = StudySet(studies, experiments, foci)
    assert MKDADensity().fit(ss).maps["stat"].max() == 1
    assert KDA().fit(ss).maps["stat"].max() == 2
    grid = mni_2mm()
    in_mask = len(sphere_ma_numpy(grid.mm_to_vox([[0.0, -20.0, 10.0]]), grid)[0])
    assert 400 < in_mask <= 515
    assert (MKDADensity().fit(ss).maps["stat"] > 0).sum() == in_mask


# ---------------------------------------------------------------------------- Monte Carlo FWE
N_MC = 200


@pytest.fixture(scope="module")
def mc_pair(pain):
    """Our and NiMARE's Monte Carlo nulls for MKDADensity on the pain set, N_MC iterations each."""
    from nimare.correct import FWECorrector

    from neurochange.inference.montecarlo import MonteCarloFWE

    studyset, dset = pain
    ours = MonteCarloFWE(n_iters=N_MC, seed=4).correct(MKDADensity().fit(studyset))
    est, theirs = nimare_fit("MKDADensity", dset, random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corrected = FWECorrector(method="montecarlo", n_iters=N_MC, n_cores=1).transform(theirs)
    return ours, corrected.estimator.null_distributions_


@pytest.mark.parametrize("key", ["values_desc-size_level-cluster_corr-fwe_method-montecarlo",
                                 "values_desc-mass_level-cluster_corr-fwe_method-montecarlo"])
def test_montecarlo_cluster_null_matches_nimare(mc_pair, key):
    """Same null distribution: ours exceeds NiMARE's median / 90th percentile as often as it should.

    Both are samples of N_MC; the share of ours above NiMARE's q-quantile has standard error
    about sqrt(2 q (1 - q) / N_MC); we allow 4 of them. A two-sample KS test must not reject at 0.001.
    """
    from scipy.stats import ks_2samp

    ours, theirs = mc_pair
    a, b = np.asarray(ours.nulls[key]), np.asarray(theirs[key], dtype=float)
    assert len(a) == len(b) == N_MC
    for q in (0.5, 0.9):
        share = np.mean(a > np.quantile(b, q))
        assert abs(share - (1 - q)) <= 4 * np.sqrt(2 * q * (1 - q) / N_MC) + 1 / N_MC, (q, share)
    assert ks_2samp(a, b).pvalue > 1e-3


def test_montecarlo_voxel_null_matches_nimare(mc_pair):
    ours, theirs = mc_pair
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    a, b = np.asarray(ours.nulls[key]), np.asarray(theirs[key], dtype=float)
    # integer maxima: compare the share reaching each observed level
    for level in np.unique(np.concatenate([a, b])):
        pa, pb = np.mean(a >= level), np.mean(b >= level)
        se = np.sqrt(max(pa * (1 - pa) + pb * (1 - pb), 1 / N_MC) / N_MC)
        assert abs(pa - pb) <= 4 * se + 1 / N_MC, (level, pa, pb)


def test_montecarlo_maps_and_cores(pain):
    from neurochange.inference.executors import CHUNK_SIZE
    from neurochange.inference.montecarlo import MonteCarloFWE
    from neurochange.meta.result import FWE_MAPS, NULL_VOXEL

    studyset, _ = pain
    result = KDA().fit(studyset)
    one = MonteCarloFWE(n_iters=CHUNK_SIZE + 3, seed=9, n_cores=1).correct(result)
    two = MonteCarloFWE(n_iters=CHUNK_SIZE + 3, seed=9, n_cores=2).correct(result)
    for key, values in one.nulls.items():
        np.testing.assert_array_equal(values, two.nulls[key])
    assert set(FWE_MAPS) <= set(one.maps)
    logp = one.maps["logp_level-voxel_corr-FWE_method-montecarlo"]
    null = one.nulls[NULL_VOXEL]
    n = len(null)
    assert logp.max() <= -np.log10(1 / n) + 1e-12 and logp.min() >= -np.log10(1 - 1 / n) - 1e-12
    # voxel-level p = share of null maxima >= the voxel's statistic
    best = np.argmax(result.maps["stat"])
    expected = max(np.mean(null >= result.maps["stat"][best]), 1 / n)
    assert logp[best] == pytest.approx(-np.log10(expected))


@pytest.mark.parametrize("cls", [MKDADensity, KDA])
def test_montecarlo_labelling_equals_scipy_reference(pain, cls):
    """Union-find clusters (numba) = scipy's labelling of the volume: same largest size and mass, to the bit."""
    from neurochange.inference.clusters import max_cluster
    from neurochange.inference.unionfind import max_clusters, neighbour_table

    studyset, _ = pain
    result = cls().fit(studyset)
    grid = result.grid
    neighbours = neighbour_table(np.arange(grid.n_voxels), grid.mask)
    work = (np.empty(grid.n_voxels, dtype=np.int64), np.empty(grid.n_voxels, dtype=np.int64), np.empty(grid.n_voxels))
    rng = np.random.default_rng(0)
    maps = [result.maps["stat"], rng.poisson(0.3, grid.n_voxels).astype(float)]
    for stat in maps:
        for thresh in np.unique(np.quantile(stat, [0.5, 0.9, 0.99])):
            ours = max_clusters(stat, float(thresh), neighbours, *work)
            ref = max_cluster(np.zeros(grid.shape), grid.mask, stat, float(thresh))
            assert ours[0] == ref[0] and ours[1] == ref[1], thresh
            assert ours[0] > 0
