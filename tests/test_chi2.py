"""MKDA chi-square against NiMARE 0.22.1 ``MKDAChi2`` on a seeded Neurosynth split (30 vs 70 studies).

Asserted: every uncorrected map and every FDR map (``FDRCorrector(method="indep")``) under
NiMARE's names, rtol 1e-5 (observed ~1e-7: NiMARE keeps float32 maps); the label-permutation
FWE step, exactly: the same relabelling gives the same max chi-square, largest cluster and
largest mass as NiMARE's permutation function, and the same null gives the same corrected
maps as NiMARE's ``_apply_correction``. Our own permutations come from seeded chunks, so the
null does not depend on the number of cores.
"""

import warnings

import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist
from test_ale import neurosynth_subset

from neurochange.inference.executors import CHUNK_SIZE
from neurochange.inference.permutation import LabelPermutation
from neurochange.meta import chi2 as c2
from neurochange.space import mask_img


def _close(a, b):
    b = np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.nanmax(np.abs(b)))))


@pytest.fixture(scope="module")
def split(data_mirror):
    studyset = neurosynth_subset(data_mirror, n_studies=100, seed=11)
    ids = sorted(studyset.studies["study_id"])
    return studyset.filter_studies(ids[:30]), studyset.filter_studies(ids[30:])


@pytest.fixture(scope="module")
def fitted(split):
    import nimare.meta.cbma.mkda as nm
    from nimare.correct import FDRCorrector

    selection, rest = split
    ours = c2.correct_fdr(c2.MKDAChi2().fit(selection, rest))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = nm.MKDAChi2(mask=mask_img())
        theirs = FDRCorrector(method="indep").transform(est.fit(selection.to_nimare_dataset(), rest.to_nimare_dataset()))
    return ours, est, theirs


def test_uncorrected_and_fdr_maps_equal_nimare(fitted):
    ours, _, theirs = fitted
    assert set(theirs.maps) == set(ours.maps)
    for name, values in theirs.maps.items():
        _close(ours.maps[name], values)
    assert (ours.maps["p_desc-uniformity_level-voxel_corr-FDR_method-indep"] < 0.05).any()


def test_permutation_step_equals_nimare(fitted):
    from scipy import ndimage, sparse

    ours, est, _ = fitted
    n_sel = len(ours.params["groups"]["selection"])
    n_total = ours.n_experiments
    pooled = c2.experiment_ma_csr(ours, 10.0)
    thresh = float(chi2_dist.isf(0.001, 1))
    conn = ndimage.generate_binary_structure(3, 1)
    total = np.asarray(pooled.sum(axis=0)).ravel().astype(np.float64)
    for i in range(2):
        theirs = est._run_label_perm_fwe_permutation(i, sparse.csr_matrix(pooled), n_sel, n_total - n_sel, conn, thresh)
        group1, _ = est._permute_pairwise_group_indices(n_total, n_sel, i)
        mine = c2.permutation_stats(pooled, total, group1, ours.grid.mask, thresh)
        # swapping the labels (summed through the other branch) swaps the one-way tests only
        complement = np.setdiff1d(np.arange(n_total), group1)
        other = c2.permutation_stats(pooled, total, complement, ours.grid.mask, thresh)
        np.testing.assert_allclose(other[[1, 0, 2]], mine, rtol=1e-12)
        np.testing.assert_allclose(mine.ravel(), np.asarray(theirs, dtype=float), rtol=1e-5)


def test_fwe_maps_equal_nimare_correction(fitted):
    ours, est, _ = fitted
    null, _ = c2.fwe_null(ours, LabelPermutation(n_iters=40, seed=5))
    maps, nulls = c2.fwe_maps(ours, null)
    thresh = float(chi2_dist.isf(0.001, 1))
    for row, label in enumerate(c2.LABELS):
        p_v, p_s, p_m = est._apply_correction(ours.maps[f"chi2_desc-{label}"], thresh,
                                              null[:, row, 0], null[:, row, 1], null[:, row, 2])
        np.testing.assert_allclose(maps[f"p_desc-{label}_level-voxel{c2.FWE_SUFFIX}"], p_v, rtol=1e-6)
        np.testing.assert_allclose(maps[f"p_desc-{label}Size_level-cluster{c2.FWE_SUFFIX}"], p_s, rtol=1e-6)
        np.testing.assert_allclose(maps[f"p_desc-{label}Mass_level-cluster{c2.FWE_SUFFIX}"], p_m, rtol=1e-6)
    assert "values_desc-pFgA_level-voxel_corr-fwe_method-montecarlo" in nulls


def test_fwe_null_independent_of_cores(fitted):
    ours, _, _ = fitted
    a, _ = c2.fwe_null(ours, LabelPermutation(n_iters=CHUNK_SIZE + 7, seed=3, n_cores=1))
    b, _ = c2.fwe_null(ours, LabelPermutation(n_iters=CHUNK_SIZE + 7, seed=3, n_cores=2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (CHUNK_SIZE + 7, 3, 3)


def test_pooled_maps_equal_numpy_reference(fitted):
    from neurochange.meta.spheres import sphere_ma_numpy

    ours, _, _ = fitted
    pooled = c2.experiment_ma_csr(ours, 10.0)
    for i in (0, 17, ours.n_experiments - 1):
        cols, _ = sphere_ma_numpy(ours.experiment_foci(i), ours.grid, 10.0)
        np.testing.assert_array_equal(pooled.indices[pooled.indptr[i]:pooled.indptr[i + 1]], cols)


def test_statistics_closed_form():
    # one-way: counts [0, 0, 4] of n=4 -> mean 4/3; chi2 = (x - m)^2 n / (m (n - m))
    x = np.array([0.0, 0.0, 4.0])
    m = 4 / 3
    np.testing.assert_allclose(c2.one_way(x, 4), (x - m) ** 2 * 4 / (m * (4 - m)))
    # 2x2 table [[a, b], [c, d]] = [[8, 2], [2, 8]]: chi2 = N (ad - bc)^2 / (row, col margins)
    np.testing.assert_allclose(c2.two_way(np.array([8.0]), np.array([2.0]), 10, 10), [20 * 60**2 / (10 * 10 * 10 * 10)])
    np.testing.assert_allclose(np.exp(c2.chi2_nlogp(np.array([3.841458820694124]))), [0.05], rtol=1e-12)
