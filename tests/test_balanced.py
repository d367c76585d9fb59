"""Balanced ALE subtraction: NiMARE 0.22.1 BalancedALESubtraction equality, references, properties."""

import math
import warnings

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from neurochange.cli import cli
from neurochange.compare import balanced
from neurochange.errors import InputError
from neurochange.inference import null_masks
from neurochange.meta.ale import ALE
from neurochange.sources.io import read_studyset
from neurochange.space import mask_img, mni_2mm
from neurochange.studyset import StudySet

DESC = "balancedGroup1MinusGroup2"
SEED = 5
#: Small settings (NiMARE's defaults are 1000 / 1000 / 2500): enough to compare, quick to run.
SETTINGS = dict(target_n=8, n_subsamples=20, difference_iterations=20, n_iters=100, null_method="random-foci")


def _renamed(ss: StudySet, suffix: str) -> StudySet:
    """The same experiments under new study ids (``<study><suffix>``)."""
    studies, experiments, foci = ss.studies.copy(), ss.experiments.copy(), ss.foci.copy()
    studies["study_id"] = studies["study_id"] + suffix
    experiments["study_id"] = experiments["study_id"] + suffix
    experiments["experiment_id"] = experiments["study_id"] + "-" + experiments["contrast_id"].astype(str)
    foci["experiment_id"] = foci["experiment_id"].map(dict(zip(ss.experiments["experiment_id"],
                                                               experiments["experiment_id"])))
    return StudySet(studies, experiments, foci, ss.provenance)


@pytest.fixture(scope="module")
def groups(nimare_test_data):
    """Pain set: group 1 = first 11 experiments by id (9 with foci), group 2 = the last 10 moved 30 mm back."""
    ss = read_studyset(nimare_test_data / "test_pain_dataset.json")
    ids = sorted(ss.experiments["experiment_id"])
    foci = ss.foci.copy()
    foci["y"] = foci["y"] - 30.0
    moved = StudySet(ss.studies, ss.experiments, foci, ss.provenance).filter_experiments(ids[11:])
    return ss.filter_experiments(ids[:11]), _renamed(moved, "b")


@pytest.fixture(scope="module")
def nimare_fit(groups):
    from nimare.meta.cbma.ale import BalancedALESubtraction

    a, b = groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = BalancedALESubtraction(mask=mask_img(), random_state=SEED, **SETTINGS)
        res = est.fit(a.to_nimare_dataset(), b.to_nimare_dataset())
    return {k: np.asarray(v) for k, v in res.maps.items()}, est.null_distributions_


@pytest.fixture(scope="module")
def ours(groups):
    a, b = groups
    return balanced.BalancedSubtraction(seed=SEED, n_cores=2, **SETTINGS).fit(a, b)


@pytest.fixture(scope="module")
def fitted_groups(groups):
    grid = mni_2mm()
    return [ALE().fit(g, grid) for g in groups]


def test_maps_and_nulls_have_nimare_names(ours, nimare_fit):
    maps, nulls = nimare_fit
    assert set(maps) <= set(ours.maps)
    assert set(ours.nulls) == {balanced.NULL_MIN, balanced.NULL_MAX} <= set(nulls)


def test_observed_difference_equals_nimare_given_its_subsets(fitted_groups, nimare_fit):
    """NiMARE's subset draws (RandomState(seed).choice, alternating groups) reproduce its map to the bit."""
    r1, r2 = fitted_groups
    n1, n2 = r1.n_experiments, r2.n_experiments
    rng = np.random.RandomState(SEED)
    s1, s2 = [], []
    for _ in range(SETTINGS["difference_iterations"]):
        s1.append(rng.choice(n1, size=SETTINGS["target_n"], replace=False))
        s2.append(rng.choice(n2, size=SETTINGS["target_n"], replace=False) + n1)
    est = balanced.BalancedSubtraction(arithmetic="nimare")
    grid = mni_2mm()
    prior = null_masks.null_mask(grid, "gm")[grid.mask]
    rows = [(c, v) for r in (r1, r2) for _, c, v in r.ma_maps()]
    indptr, cols, keep, support = est._csr(rows, prior)
    observed = np.zeros(grid.n_voxels, dtype=np.float32)
    observed[support] = balanced.mean_balanced_difference(indptr, cols, keep, np.array(s1), np.array(s2),
                                                          len(support))
    theirs = nimare_fit[0][f"stat_desc-{DESC}"]
    assert theirs.dtype == np.float32 and (theirs != 0).sum() > 100000
    np.testing.assert_array_equal(observed, theirs)


def test_p_and_z_from_nimare_nulls_equal_nimare(nimare_fit):
    maps, nulls = nimare_fit
    p, z, _ = balanced.balanced_p_z(maps[f"stat_desc-{DESC}"].astype(np.float64),
                                    nulls[balanced.NULL_MIN], nulls[balanced.NULL_MAX], 0.05)
    assert (maps[f"z_desc-{DESC}"] != 0).sum() > 20  # the moved group gives significant voxels
    np.testing.assert_array_equal(p.astype(np.float32), maps[f"p_desc-{DESC}"])
    np.testing.assert_allclose(z, maps[f"z_desc-{DESC}"], rtol=1e-6, atol=0)


def test_probability_maps_equal_nimare_at_its_cluster_threshold(fitted_groups, nimare_fit):
    """Same subsets (NiMARE's schedule), approximate-null z and clusters: NiMARE's map at one size threshold.

    NiMARE's cluster-size threshold comes from its own random null; the map is a step function
    of it, and one of its steps must give NiMARE's map exactly.
    """
    from nimare.meta.cbma.utils import generate_subset_schedule

    grid = mni_2mm()
    z_cut = float(-balanced.special.ndtri(0.001))
    for k, res in enumerate(fitted_groups, start=1):
        subsets = generate_subset_schedule(res.n_experiments, SETTINGS["target_n"], n_samples=SETTINGS["n_subsamples"],
                                           random_state=SEED + k - 1, exhaustive_limit=10000)
        ours_subsets = balanced.subset_schedule(res.n_experiments, SETTINGS["target_n"], SETTINGS["n_subsamples"],
                                                np.random.default_rng(0))
        if math.comb(res.n_experiments, SETTINGS["target_n"]) <= SETTINGS["n_subsamples"] or \
                SETTINGS["target_n"] == res.n_experiments - 1:  # enumerated: the same list as NiMARE's
            assert sorted(map(tuple, subsets)) == list(map(tuple, ours_subsets))
        rows = [(c, v) for _, c, v in res.ma_maps()]
        per_subset = [balanced.cluster_sizes(balanced.approximate_z([rows[i] for i in s], grid.n_voxels),
                                             grid.mask, z_cut) for s in subsets]
        steps = sorted({0, *np.concatenate([sizes for _, sizes in per_subset]).tolist()})
        theirs = nimare_fit[0][f"prob_desc-group{k}"]
        matches = [t for t in steps if np.array_equal(
            (sum((sizes > t)[labels] for labels, sizes in per_subset) / len(subsets)).astype(np.float32), theirs)]
        assert matches, f"group {k}: no cluster-size threshold reproduces NiMARE's probability map"
        ours = balanced.probability_map(rows, subsets, grid.mask, z_cut, matches[0])
        np.testing.assert_array_equal(ours.astype(np.float32), theirs)
    np.testing.assert_array_equal(nimare_fit[0]["stat_desc-conjunction"],
                                  np.minimum(nimare_fit[0]["prob_desc-group1"], nimare_fit[0]["prob_desc-group2"]))


def test_full_fit_agrees_with_nimare(ours, nimare_fit):
    """Different random draws: the observed maps correlate, the null extrema have the same distribution."""
    maps, nulls = nimare_fit
    stat = ours.maps[f"stat_desc-{DESC}"]
    assert np.corrcoef(stat, maps[f"stat_desc-{DESC}"])[0, 1] > 0.99
    for key in (balanced.NULL_MIN, balanced.NULL_MAX):
        ours_median, their_median = np.median(ours.nulls[key]), np.median(nulls[key])
        assert abs(ours_median - their_median) < 0.1 * abs(their_median), key
    for k in (1, 2):
        assert np.corrcoef(ours.maps[f"prob_desc-group{k}"], maps[f"prob_desc-group{k}"])[0, 1] > 0.95
    # where NiMARE finds group 1 > group 2 (p < .05, z > 0), so do we, mostly; never the opposite sign
    theirs_z, ours_z = maps[f"z_desc-{DESC}"], ours.maps[f"z_desc-{DESC}"]
    assert not np.any((theirs_z > 0) & (ours_z < 0)) and not np.any((theirs_z < 0) & (ours_z > 0))
    assert (ours_z != 0).sum() > 20


def test_numba_equals_numpy_reference():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((9, 300)) < 0.4, rng.random((9, 300)) * 0.05, 0.0)
    s1 = balanced.draw_subsets(rng, 4, 3, 25)
    s2 = balanced.draw_subsets(rng, 5, 3, 25) + 4
    for dtype in (np.float64, np.float32):
        d = dense.astype(dtype)
        indptr = np.concatenate([[0], np.cumsum((d > 0).sum(axis=1))]).astype(np.int64)
        cols = np.concatenate([np.flatnonzero(row) for row in d]).astype(np.int64)
        keep = (dtype(1) - d[d > 0]).astype(dtype)
        got = balanced.mean_balanced_difference(indptr, cols, keep, s1, s2, d.shape[1])
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, balanced.mean_balanced_difference_numpy(d, s1, s2))


def test_subset_schedule():
    rng = np.random.default_rng(1)
    everything = balanced.subset_schedule(6, 3, 100, rng)
    assert len(everything) == math.comb(6, 3) and all(np.all(np.diff(s) > 0) for s in everything)
    assert len(balanced.subset_schedule(9, 8, 2, rng)) == 9  # leave-one-out: all of them, as NiMARE
    some = balanced.subset_schedule(12, 5, 40, rng)
    assert len({tuple(s) for s in some}) == 40 and [tuple(s) for s in some] == sorted(tuple(s) for s in some)
    draws = balanced.draw_subsets(rng, 7, 4, 50)
    assert draws.shape == (50, 4) and all(len(set(r)) == 4 and r.max() < 7 for r in draws)


def test_balanced_p_z_closed_form():
    max_null = np.arange(1, 21) / 100.0  # 0.01 .. 0.20
    min_null = -max_null
    observed = np.array([0.0, 0.195, 0.25, -0.25, 0.19, -0.2])
    p, z, thresholds = balanced.balanced_p_z(observed, min_null, max_null, alpha=0.1)
    # high = 95th percentile of 0.01..0.20 = 0.1905, low = -0.1905
    assert thresholds["high"] == pytest.approx(0.1905) and thresholds["low"] == pytest.approx(-0.1905)
    np.testing.assert_allclose(p, [1.0, 1 / 20, 1 / 20, 1 / 20, 1.0, 1 / 20])
    assert z[1] == pytest.approx(1.6448536269514722) and z[3] == pytest.approx(-1.6448536269514722)
    assert z[0] == z[4] == 0.0


def test_target_n_out_of_range_is_input_error(groups):
    a, b = groups
    with pytest.raises(InputError, match="target-n"):
        balanced.BalancedSubtraction(target_n=50, n_iters=2).fit(a, b)


def test_same_seed_same_maps_whatever_the_cores(groups):
    a, b = groups
    kw = dict(target_n=8, n_subsamples=5, difference_iterations=5, n_iters=10, seed=2, null_method="label-permutation")
    one = balanced.BalancedSubtraction(n_cores=1, **kw).fit(a, b)
    two = balanced.BalancedSubtraction(n_cores=2, **kw).fit(a, b)
    for name in one.maps:
        np.testing.assert_array_equal(one.maps[name], two.maps[name])
    np.testing.assert_array_equal(one.nulls[balanced.NULL_MAX], two.nulls[balanced.NULL_MAX])
    # prior voxels no experiment reaches have difference 0, so min <= 0 <= max
    assert np.all(one.nulls[balanced.NULL_MIN] <= 0) and np.all(one.nulls[balanced.NULL_MAX] >= 0)


def test_contrast_balanced_command(groups, tmp_path):
    a, b = groups
    a_path, b_path = tmp_path / "a.tsv", tmp_path / "b.tsv"
    a.to_table().to_csv(a_path, sep="\t", index=False)
    table = b.to_table()
    table[table["y"] >= -128].to_csv(b_path, sep="\t", index=False)  # a user file may not go beyond 128 mm
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["contrast", str(a_path), str(b_path), "--out", str(out), "--balanced",
                                   "--iters", "8", "--difference-iterations", "4", "--subsamples", "4",
                                   "--seed", "1", "--cores", "1", "--keep-contrasts"])
    assert res.exit_code == 0, res.output
    assert "balanced at 9 experiments per group" in res.output
    for name in (f"z_desc-{DESC}", "prob_desc-group1", "stat_desc-conjunction"):
        assert nib.load(out / f"{name}.nii.gz").shape == (91, 109, 91)
    bad = CliRunner().invoke(cli, ["contrast", str(a_path), str(b_path), "--out", str(tmp_path / "bad"),
                                   "--balanced", "--target-n", "30", "--iters", "2", "--keep-contrasts"])
    assert bad.exit_code == 2 and "target-n" in bad.output
