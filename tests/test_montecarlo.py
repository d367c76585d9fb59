"""Monte Carlo FWE: numba iterations equal the dense NumPy/SciPy reference, reproducibility,
agreement with NiMARE 0.22.1, the grey-matter null mask, and early stopping.

Comparison with NiMARE (same input, NiMARE 1,000 iterations on one core, ours 10,000): for
each null (max ALE, largest cluster size, largest cluster mass) the 0.95 quantile's
distribution-free order-statistic interval at 99.5 % confidence is computed from each
sample (binomial ranks, :mod:`neurochange.inference.stopping`); the two intervals must overlap. If
both samples come from the same distribution each interval holds the true quantile with
probability >= 99.5 %, so a false failure has probability <= 1 %. The seeds are fixed, so
the test is deterministic. A two-sample Kolmogorov-Smirnov test (p > 0.001) checks the
whole distributions, and the significant clusters (cluster-size FWE p < 0.05) must have a
Dice coefficient >= 0.95.
"""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from nimare_reference import load_nimare_dataset, nimare_ale
from scipy import ndimage, stats

from neurochange.errors import InputError
from neurochange.inference import montecarlo, null_masks, stopping
from neurochange.inference import stats as inference
from neurochange.inference.engines import ale as null_ale
from neurochange.meta.ale import ALE
from neurochange.meta.result import FWE_MAPS, NULL_APPROXIMATE, NULL_BINS, NULL_MASS, NULL_SIZE, NULL_VOXEL
from neurochange.sources.io import read_studyset
from neurochange.space import Grid
from neurochange.studyset import StudySet

NULLS = (NULL_VOXEL, NULL_SIZE, NULL_MASS)


@pytest.fixture(scope="module")
def pain(pain_path):
    return ALE().fit(read_studyset(pain_path))


def small_grid(size=24):
    """A 2 mm grid of ``size``^3 voxels whose mask is a ball (so rows have varying spans)."""
    ijk = np.indices((size,) * 3).reshape(3, -1).T
    mask = (np.linalg.norm(ijk - (size - 1) / 2, axis=1) < size / 2 - 1).reshape((size,) * 3)
    mask[size // 2, size // 2, 3:6] = False  # a hole inside a row's span
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -size
    return Grid(mask, affine)


def small_studyset(grid, n_experiments=6, seed=0, foci_range=(1, 8)):
    rng = np.random.default_rng(seed)
    inside = np.argwhere(grid.mask)
    rows = []
    for e in range(n_experiments):
        for ijk in inside[rng.integers(0, len(inside), rng.integers(*foci_range))]:
            rows.append((f"s{e}-1", *grid.vox_to_mm(ijk)[0]))
    foci = pd.DataFrame(rows, columns=["experiment_id", "x", "y", "z"]).assign(space="MNI")
    experiments = pd.DataFrame({"experiment_id": [f"s{e}-1" for e in range(n_experiments)],
                                "study_id": [f"s{e}" for e in range(n_experiments)], "contrast_id": "1",
                                "n": rng.integers(8, 30, n_experiments)})
    return StudySet(pd.DataFrame({"study_id": experiments["study_id"]}), experiments, foci)


def _threshold(result, p=0.001):
    return inference.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS], p)


# ---------------------------------------------------------------------------- engine vs reference
@pytest.mark.parametrize("two_stage", [False, True])
def test_iterations_equal_dense_reference_pain(pain, two_stage):
    threshold = _threshold(pain)
    plan = null_ale.build_plan(pain.inputs, pain.estimator.experiment_kernels(pain.inputs), pain.grid.mask, threshold, two_stage=two_stage)
    draws = montecarlo.chunk_draws(11, 0, 6, plan.n_foci, plan.n_null)
    voxel, size, mass = null_ale.run_iterations(plan, draws, null_ale.make_work(plan, 1))
    for it in range(len(draws)):
        ref = null_ale.null_iteration_numpy(pain, plan.null_ijk(draws[it]), threshold)
        assert (voxel[it], size[it]) == ref[:2]
        assert mass[it] == pytest.approx(ref[2], rel=1e-12, abs=1e-15)


def test_extended_layout_holds_every_cube_row_apart(pain):
    # the whole-map pass writes kernel cube rows unclipped: every row within the radius of a
    # mask voxel must hold k - pad .. k + pad inside the layout, and no two rows may share a place
    plan = null_ale.build_plan(pain.inputs, pain.estimator.experiment_kernels(pain.inputs), pain.grid.mask, 0.01)
    geo, pad, (nx, ny, nz) = plan.geometry, plan.pad, plan.padded_shape
    base = geo.ext_base[:-1].reshape(nx, ny)
    has = (geo.row_hi > geo.row_lo).reshape(nx, ny)
    lo = np.where(has, geo.row_lo.reshape(nx, ny), nz)
    hi = np.where(has, geo.row_hi.reshape(nx, ny), 0)
    owners = np.zeros(plan.n_extended, dtype=np.int64)
    for a in range(nx):
        for b in range(ny):
            near = (slice(max(0, a - pad), a + pad + 1), slice(max(0, b - pad), b + pad + 1))
            if not has[near].any():
                continue
            places = base[a, b] + np.arange(lo[near].min() - pad, hi[near].max() + pad)
            assert places.min() >= 0 and places.max() < plan.n_extended
            owners[places] += 1
    assert owners.max() == 1


@pytest.mark.parametrize("two_stage", [False, True])
@pytest.mark.parametrize("p", [0.001, 0.05])
def test_iterations_equal_dense_reference_small_grid(two_stage, p):
    # few foci on a ball-shaped mask, kernels cut by the mask; at p < 0.001 many iterations
    # have no supra-threshold voxel (the two-stage engine then computes the whole map),
    # at p < 0.05 clusters are large
    grid = small_grid()
    result = ALE().fit(small_studyset(grid), grid)
    threshold = _threshold(result, p)
    plan = null_ale.build_plan(result.inputs, result.estimator.experiment_kernels(result.inputs), grid.mask, threshold, two_stage=two_stage)
    draws = montecarlo.chunk_draws(3, 0, 40, plan.n_foci, plan.n_null)
    voxel, size, mass = null_ale.run_iterations(plan, draws, null_ale.make_work(plan, 2))
    assert 0 < np.mean(size > 0) < 1 if p == 0.001 else size.min() > 20
    for it in range(len(draws)):
        ref = null_ale.null_iteration_numpy(result, plan.null_ijk(draws[it]), threshold)
        assert (voxel[it], size[it]) == ref[:2]
        assert mass[it] == pytest.approx(ref[2], rel=1e-12, abs=1e-15)


def test_both_engines_give_identical_nulls(pain):
    # the corrector picks the faster engine by timing: results must not depend on it
    grid = small_grid()
    for result in (pain, ALE().fit(small_studyset(grid), grid)):
        plan = null_ale.build_plan(result.inputs, result.estimator.experiment_kernels(result.inputs), result.grid.mask, _threshold(result), two_stage=True)
        draws = montecarlo.chunk_draws(8, 0, 30, plan.n_foci, plan.n_null)
        work = null_ale.make_work(plan, 2)
        two = null_ale.run_iterations(plan, draws, work, two_stage=True)
        whole = null_ale.run_iterations(plan, draws, work, two_stage=False)
        for a, b in zip(two, whole):
            np.testing.assert_array_equal(a, b)


def test_stage_two_overflow_falls_back_to_the_whole_map(pain):
    threshold = _threshold(pain)
    plan = null_ale.build_plan(pain.inputs, pain.estimator.experiment_kernels(pain.inputs), pain.grid.mask, threshold, two_stage=True)
    draws = montecarlo.chunk_draws(12, 0, 4, plan.n_foci, plan.n_null)
    roomy = null_ale.run_iterations(plan, draws, null_ale.make_work(plan, 1))
    cramped = null_ale.run_iterations(plan, draws, null_ale.make_work(plan, 1, n_entries=10))
    for a, b in zip(roomy, cramped):
        np.testing.assert_array_equal(a, b)
    assert plan.two_stage and not null_ale.build_plan(pain.inputs, pain.estimator.experiment_kernels(pain.inputs), pain.grid.mask, threshold, two_stage=False).two_stage


def test_largest_cluster_union_find_equals_scipy_label():
    grid = small_grid(20)
    result = ALE().fit(small_studyset(grid), grid)
    plan = null_ale.build_plan(result.inputs, result.estimator.experiment_kernels(result.inputs), grid.mask, 0.5)
    geo = plan.geometry
    rng = np.random.default_rng(5)
    labels = np.zeros(plan.n_compact, np.int32)
    parent, size_acc = np.zeros(plan.n_compact, np.int64), np.zeros(plan.n_compact, np.int64)
    mass_acc = np.zeros(plan.n_compact)
    for density in (0.05, 0.3, 0.6, 0.9):
        values = ndimage.gaussian_filter(rng.random(grid.shape), 1.0)
        supra = grid.mask & (values > np.quantile(values[grid.mask], 1 - density))
        ijk = np.argwhere(supra)  # in a random order: union-find must not depend on it
        ijk = ijk[rng.permutation(len(ijk))]
        padded = ijk + plan.pad
        rows = padded[:, 0] * geo.ny + padded[:, 1]
        compact = geo.row_off[rows] + padded[:, 2] - geo.row_lo[rows]
        vals = values[tuple(ijk.T)]
        got = null_ale.largest_cluster(compact, rows, vals, len(ijk), 0.25, geo.ny, geo.row_lo, geo.row_hi,
                                       geo.row_off, labels, parent, size_acc, mass_acc)
        lab, n = ndimage.label(supra, structure=null_ale.FACE_CONNECTIVITY)
        sizes = np.bincount(lab.ravel())[1:]
        masses = ndimage.sum(values - 0.25, labels=lab, index=np.arange(1, n + 1))
        assert got[0] == sizes.max()
        assert got[1] == pytest.approx(np.max(masses), rel=1e-12)
        assert not labels.any()


# ---------------------------------------------------------------------------- reproducibility
def test_same_seed_same_nulls_whatever_the_cores(pain):
    a = montecarlo.MonteCarloFWE(n_iters=300, seed=5, n_cores=1).correct(pain)
    b = montecarlo.MonteCarloFWE(n_iters=300, seed=5, n_cores=2).correct(pain)
    for key in NULLS:
        np.testing.assert_array_equal(a.nulls[key], b.nulls[key])
    for name in FWE_MAPS:
        np.testing.assert_array_equal(a.maps[name], b.maps[name])
    c = montecarlo.MonteCarloFWE(n_iters=250, seed=5, n_cores=2).correct(pain)  # a prefix of the same stream
    np.testing.assert_array_equal(c.nulls[NULL_VOXEL], a.nulls[NULL_VOXEL][:250])
    d = montecarlo.MonteCarloFWE(n_iters=300, seed=6, n_cores=2).correct(pain)
    assert not np.array_equal(d.nulls[NULL_VOXEL], a.nulls[NULL_VOXEL])


def test_correct_outputs_progress_and_params(pain):
    calls = []
    result = montecarlo.MonteCarloFWE(n_iters=250, seed=1, n_cores=2).correct(pain, progress=lambda *a: calls.append(a))
    assert calls[-1] == (250, 250) and [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert set(FWE_MAPS) <= set(result.maps) and set(NULLS) <= set(result.nulls)
    assert "p" in result.maps and "z_level-voxel_corr-FWE_method-montecarlo" not in pain.maps  # original untouched
    run = result.params["montecarlo"]
    assert run["n_iters"] == 250 and run["seed"] == 1 and run["cluster_forming_stat"] == 0.01038
    assert run["null_mask_voxels"] == pain.grid.n_voxels
    # voxel-level p: share of null maxima >= the statistic, within [1/n, 1 - 1/n]
    null = result.nulls[NULL_VOXEL]
    stat = pain.maps["stat"]
    p = np.clip([(null >= s).mean() for s in stat[::997]], 1 / 250, 1 - 1 / 250)
    np.testing.assert_allclose(10 ** -result.maps["logp_level-voxel_corr-FWE_method-montecarlo"][::997], p)
    vfwe = montecarlo.MonteCarloFWE(n_iters=100, seed=1, n_cores=1, vfwe_only=True).correct(pain)
    assert {n for n in vfwe.maps if "corr" in n} == {n for n in FWE_MAPS if "level-voxel" in n}
    assert set(vfwe.nulls) == {NULL_BINS, NULL_APPROXIMATE, NULL_VOXEL}


def test_observed_cluster_p_by_hand():
    mask = np.ones((10, 10, 10), bool)
    stat = np.zeros(mask.shape)
    stat[1:3, 1:3, 1:3] = 0.5  # 8 voxels, mass 8 * 0.4
    stat[6, 6, 6] = 0.9  # 1 voxel, mass 0.8
    p_size, p_mass = montecarlo.observed_cluster_p(stat, mask, 0.1, null_size=[1, 2, 9, 10], null_mass=[0.1, 1, 2, 5])
    vol_size, vol_mass = p_size.reshape(mask.shape), p_mass.reshape(mask.shape)
    assert vol_size[1, 1, 1] == 0.5 and vol_size[6, 6, 6] == 0.75  # sizes >= 8: 2 of 4; >= 1: 4 of 4 -> 1 - 1/4
    assert vol_mass[1, 1, 1] == 0.25 and vol_mass[6, 6, 6] == 0.75  # masses >= 3.2: 1 of 4; >= 0.8: 3 of 4
    assert vol_size[0, 0, 0] == 0.75 and vol_mass[0, 0, 0] == 0.75  # background, as NiMARE: 1 - 1/n


def test_bad_null_mask_is_an_input_error(pain):
    with pytest.raises(InputError, match="unknown null mask"):
        montecarlo.MonteCarloFWE(n_iters=100, null_mask="white").correct(pain)
    with pytest.raises(InputError, match="no voxels"):
        montecarlo.MonteCarloFWE(n_iters=100, null_mask=np.zeros(pain.grid.shape, bool)).correct(pain)


# ---------------------------------------------------------------------------- NiMARE
def _intervals_overlap(a, b, confidence=0.995):
    ia = stopping.quantile_interval(a, 0.95, confidence)
    ib = stopping.quantile_interval(b, 0.95, confidence)
    return ia.low <= ib.high and ib.low <= ia.high, ia, ib


def _nimare_fwe(path, n_iters, **kwargs):
    from nimare.correct import FWECorrector

    _, result = nimare_ale(load_nimare_dataset(path), random_state=20260101, **kwargs)
    logging.disable(logging.INFO)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corrected = FWECorrector(method="montecarlo", n_iters=n_iters, n_cores=1).transform(result)
    logging.disable(logging.NOTSET)
    return corrected


def test_montecarlo_agrees_with_nimare(pain_path, pain):
    theirs = _nimare_fwe(pain_path, 1000)
    ours = montecarlo.MonteCarloFWE(n_iters=10000, seed=20260101).correct(pain)
    for key in NULLS:
        a, b = ours.nulls[key], theirs.estimator.null_distributions_[key]
        overlap, ia, ib = _intervals_overlap(a, b)
        assert overlap, (key, ia, ib)
        assert stats.ks_2samp(a, b).pvalue > 0.001, key
    for name in ("z_desc-size_level-cluster_corr-FWE_method-montecarlo",
                 "z_desc-mass_level-cluster_corr-FWE_method-montecarlo"):
        a = ours.maps[name] > stats.norm.isf(0.05)
        b = theirs.maps[name] > stats.norm.isf(0.05)
        assert b.sum() > 1000 and 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.95


def test_grey_matter_mask_is_nimares(pain):
    from nilearn.maskers import NiftiMasker
    from nimare.utils import _mask_coverage_to_mask

    from neurochange.space import mask_img

    theirs = _mask_coverage_to_mask(NiftiMasker(mask_img()).fit(), mask_coverage="gm")
    ours = null_masks.grey_matter_mask(pain.grid)
    np.testing.assert_array_equal(ours, theirs)
    assert 0.5 < ours.sum() / pain.grid.n_voxels < 0.95


def test_grey_matter_null_agrees_with_nimare_and_raises_thresholds(pain_path, pain):
    theirs = _nimare_fwe(pain_path, 300, mask_coverage="gm")
    ours = montecarlo.MonteCarloFWE(n_iters=3000, seed=7, null_mask="gm").correct(pain)
    brain = montecarlo.MonteCarloFWE(n_iters=3000, seed=7).correct(pain)
    assert ours.params["montecarlo"]["null_mask"] == "gm"
    for key in NULLS:
        overlap, ia, ib = _intervals_overlap(ours.nulls[key], theirs.estimator.null_distributions_[key])
        assert overlap, (key, ia, ib)
    assert np.quantile(ours.nulls[NULL_VOXEL], 0.95) > np.quantile(brain.nulls[NULL_VOXEL], 0.95)


# ---------------------------------------------------------------------------- early stopping
def test_order_statistic_ranks_cover():
    # exact coverage of the chosen ranks is >= the confidence asked for
    for n in (200, 1000, 5000):
        lo, hi = stopping.order_statistic_ranks(n, 0.95, 0.99)
        coverage = stats.binom.cdf(hi - 1, n, 0.95) - stats.binom.cdf(lo - 1, n, 0.95)
        assert coverage >= 0.99 and 1 <= lo < 0.95 * n < hi <= n
    assert stopping.order_statistic_ranks(20, 0.95, 0.99)[1] == 21  # too few draws: no upper bound
    # empirical coverage on a known distribution
    rng = np.random.default_rng(0)
    truth = stats.expon.ppf(0.95)
    hits = [stopping.quantile_interval(rng.exponential(size=500), 0.95, 0.9) for _ in range(400)]
    assert np.mean([h.low <= truth <= h.high for h in hits]) >= 0.87


def test_early_stopped_thresholds_within_precision_of_a_long_run():
    """Early-stopped runs (precision 10 %, default confidence) against a 100,000-iteration
    run, 40 seeds: the 0.95 quantiles of all three nulls lie within 10 % of the long run's
    in >= 95 % of the seeds (small grid and kernels, so that this takes seconds)."""
    grid = small_grid()
    result = ALE(fwhm=6.0).fit(small_studyset(grid, n_experiments=8, seed=4, foci_range=(3, 8)), grid)
    long = montecarlo.MonteCarloFWE(n_iters=100000, seed=999).null_distributions(result)[0]
    truth = {k: np.quantile(long[k], 0.95) for k in NULLS}
    assert truth[NULL_SIZE] >= 10
    precision = 0.1
    within, iterations = [], []
    for seed in range(40):
        corrector = montecarlo.MonteCarloFWE(n_iters=100000, seed=seed, early_stop=precision, check_every=500)
        nulls, run = corrector.null_distributions(result)
        assert run["early_stop"]["stopped_early"]
        iterations.append(run["n_iters"])
        within.append(all(abs(np.quantile(nulls[k], 0.95) - truth[k]) <= precision * truth[k] for k in NULLS))
    assert np.mean(within) >= 0.95
    assert max(iterations) < 100000 and min(iterations) >= 500


def test_early_stop_records_intervals(pain):
    result = montecarlo.MonteCarloFWE(n_iters=3000, seed=2, early_stop=0.5, check_every=1000).correct(pain)
    run = result.params["montecarlo"]
    assert run["n_iters"] == 1000 and run["early_stop"]["stopped_early"]
    for key in NULLS:
        iv = run["early_stop"]["intervals"][key]
        assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["n"] == 1000
        assert len(result.nulls[key]) == 1000
