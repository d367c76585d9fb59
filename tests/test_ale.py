"""ALE and its approximate null against NiMARE 0.22.1 on the same input, plus properties.

Agreement asserted (NiMARE keeps float32 maps, we keep float64):
- ALE: rtol 1e-5, atol 5e-7 (observed: max relative difference ~1e-7, float32 rounding);
- approximate-null histogram: bin centres and weights identical;
- p: identical after rounding ours to float32, except voxels whose ALE lies within float32
  rounding of a bin edge (at most 0.01 % of voxels); z and logp follow.
"""

import numpy as np
import pandas as pd
import pytest
from nimare_reference import load_nimare_dataset, nimare_ale

from neurochange.errors import InputError
from neurochange.inference import stats as inference
from neurochange.meta.ale import ALE
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS
from neurochange.sources.io import read_studyset
from neurochange.space import mni_2mm
from neurochange.studyset import StudySet


def neurosynth_subset(mirror, n_studies=20, n=20, seed=2024) -> StudySet:
    """A seeded random set of Neurosynth studies reported in MNI, each with sample size ``n``."""
    folder = mirror / "neurosynth-v7"
    coords = pd.read_csv(folder / "data-neurosynth_version-7_coordinates.tsv.gz", sep="\t")
    meta = pd.read_csv(folder / "data-neurosynth_version-7_metadata.tsv.gz", sep="\t", usecols=["id", "space"])
    ids = np.sort(meta["id"][meta["space"] == "MNI"].unique())
    pick = np.random.default_rng(seed).choice(ids, n_studies, replace=False)
    sub = coords[coords["id"].isin(pick)]
    studies = pd.DataFrame({"study_id": pick.astype(str)})
    experiments = pd.DataFrame(
        {"experiment_id": [f"{p}-1" for p in pick], "study_id": pick.astype(str), "contrast_id": "1", "n": n}
    )
    foci = pd.DataFrame(
        {"experiment_id": sub["id"].astype(str) + "-1", "x": sub["x"], "y": sub["y"], "z": sub["z"], "space": "MNI"}
    )
    return StudySet(studies, experiments, foci)


@pytest.fixture(scope="module")
def pain(pain_path):
    """(our result, NiMARE estimator, NiMARE result) on test_pain_dataset.json."""
    ours = ALE().fit(read_studyset(pain_path))
    est, theirs = nimare_ale(load_nimare_dataset(pain_path))
    return ours, est, theirs


def _agree(ours, est, theirs, max_p_mismatch=0.0001):
    np.testing.assert_allclose(ours.maps["stat"], theirs.maps["stat"], rtol=1e-5, atol=5e-7)
    np.testing.assert_array_equal(ours.nulls[NULL_BINS], est.null_distributions_[NULL_BINS])
    np.testing.assert_array_equal(ours.nulls[NULL_APPROXIMATE], est.null_distributions_[NULL_APPROXIMATE])
    same = ours.maps["p"].astype(np.float32) == theirs.maps["p"]
    assert np.mean(~same) <= max_p_mismatch  # ALE within float32 rounding of a bin edge
    assert np.mean(np.abs(ours.maps["p"] - theirs.maps["p"])) < 1e-6
    for name in ("z", "logp"):
        np.testing.assert_allclose(ours.maps[name][same], theirs.maps[name][same], rtol=1e-5, atol=1e-5)
        assert np.mean(np.abs(ours.maps[name] - theirs.maps[name])) < 1e-4
        assert np.corrcoef(ours.maps[name], theirs.maps[name])[0, 1] > 0.99999


def test_pain_dataset_equals_nimare(pain):
    _agree(*pain)


def test_pain_dataset_known_numbers(pain):
    ours, _, _ = pain
    stat = ours.maps["stat"]
    assert stat.max() == pytest.approx(0.03404291, abs=5e-9)
    peak = np.argwhere(ours.grid.mask)[stat.argmax()]
    assert tuple(ours.grid.vox_to_mm(peak)[0]) == (38.0, 4.0, 2.0)
    assert ours.maps["z"].max() == pytest.approx(6.8953, abs=1e-4)
    assert int((ours.maps["p"] < 0.001).sum()) == 2696
    counts = ours.params["counts"]
    assert counts["experiments"] == 19 and counts["foci"] == 243 and counts["experiments_without_foci"] == 2
    assert counts["subjects"] == 284  # what NiMARE's description counts for the 19 kept experiments


def test_nidm_pain_dataset_equals_nimare(nimare_resources):
    path = nimare_resources / "nidm_pain_dset.json"
    ours = ALE().fit(read_studyset(path))
    est, theirs = nimare_ale(load_nimare_dataset(path))
    assert ours.params["counts"]["foci"] == 267
    _agree(ours, est, theirs)


def test_neurosynth_subset_equals_nimare(data_mirror):
    studyset = neurosynth_subset(data_mirror)
    ours = ALE().fit(studyset)
    est, theirs = nimare_ale(studyset.to_nimare_dataset())
    assert ours.n_experiments == 20
    _agree(ours, est, theirs)


def test_fixed_fwhm_equals_nimare(pain_path):
    ours = ALE(fwhm=9.0).fit(read_studyset(pain_path))
    est, theirs = nimare_ale(load_nimare_dataset(pain_path), fwhm=9.0)
    _agree(ours, est, theirs)
    assert np.all(ours.estimator.experiment_fwhm(ours.inputs) == 9.0)


def test_ma_maps_rebuild_the_statistic(pain):
    ours, est, _ = pain
    keep = np.ones(ours.grid.n_voxels)
    for i in range(ours.n_experiments):
        keep *= 1.0 - ours.ma_map(i)
    np.testing.assert_allclose(1.0 - keep, ours.maps["stat"], rtol=1e-12, atol=1e-15)
    # NiMARE's MA maps, row for row (its experiments are in sorted id order too)
    theirs = est._collect_ma_maps(coords_key="coordinates", maps_key="ma_maps")
    assert list(est.inputs_["id"]) == ours.experiment_ids
    for i in (0, 7, ours.n_experiments - 1):
        np.testing.assert_array_equal(ours.ma_map(i), theirs[i].toarray().ravel().astype(np.float64))


def test_get_map_and_volume(pain):
    ours, _, _ = pain
    img = ours.get_map("z")
    assert img.shape == (91, 109, 91) and np.allclose(img.affine, mni_2mm().affine)
    vol = ours.get_volume("stat")
    assert vol[ours.grid.mask].tolist() == ours.maps["stat"].tolist() and vol[~ours.grid.mask].max() == 0


def test_approximate_null_numba_equals_numpy(pain):
    ours, _, _ = pain
    values = [vals for _, _, vals in ours.ma_maps()]
    bins = ours.nulls[NULL_BINS]
    np.testing.assert_allclose(
        inference.approximate_null(values, ours.grid.n_voxels, bins),
        inference.approximate_null_numpy(values, ours.grid.n_voxels, bins),
        rtol=1e-12, atol=1e-300,
    )


def test_null_is_a_distribution_and_p_is_monotone(pain):
    ours, _, _ = pain
    weights = ours.nulls[NULL_APPROXIMATE]
    assert weights.min() >= 0 and weights.sum() == pytest.approx(1.0, abs=1e-12)
    order = np.argsort(ours.maps["stat"])
    assert np.all(np.diff(ours.maps["p"][order]) <= 0)
    assert np.all(np.diff(ours.maps["z"][order]) >= 0)
    np.testing.assert_allclose(ours.maps["logp"], -np.log10(ours.maps["p"]))


def test_single_experiment_null_is_its_ma_histogram():
    # one experiment: p of a value = share of mask voxels with MA >= it (closed form)
    grid = mni_2mm()
    studies = pd.DataFrame({"study_id": ["a"]})
    experiments = pd.DataFrame({"experiment_id": ["a-1"], "study_id": ["a"], "contrast_id": ["1"], "n": [12]})
    foci = pd.DataFrame({"experiment_id": ["a-1"], "x": [0.0], "y": [-20.0], "z": [10.0], "space": ["MNI"]})
    result = ALE().fit(StudySet(studies, experiments, foci), grid)
    stat = result.maps["stat"]
    peak = stat.max()
    assert result.maps["p"][stat.argmax()] == pytest.approx(1 / grid.n_voxels)
    assert peak == pytest.approx(float(result.estimator.experiment_kernels(result.inputs)[0].values.max()), rel=1e-7)


def _one_study(n=10, **focus):
    studies = pd.DataFrame({"study_id": ["a", "b"]})
    experiments = pd.DataFrame(
        {"experiment_id": ["a-1", "b-1"], "study_id": ["a", "b"], "contrast_id": ["1", "1"], "n": [n, 12]}
    )
    xyz = {"x": [10.0, -30.0], "y": [20.0, 4.0], "z": [30.0, 2.0], **focus}
    foci = pd.DataFrame({"experiment_id": ["a-1", "b-1"], **xyz, "space": ["MNI", "MNI"]})
    return StudySet(studies, experiments, foci)


def test_missing_sample_size_is_an_input_error_unless_fwhm():
    studyset = _one_study(n=None)
    with pytest.raises(InputError, match="sample size missing for experiment a-1") as err:
        ALE().fit(studyset)
    assert err.value.field == "n"
    result = ALE(fwhm=10).fit(studyset)
    assert result.params["counts"]["subjects"] is None and np.isnan(result.sample_sizes[0])


def test_no_foci_and_all_outside_mask_are_input_errors():
    empty = StudySet(pd.DataFrame({"study_id": ["a"]}),
                     pd.DataFrame({"experiment_id": ["a-1"], "study_id": ["a"], "contrast_id": ["1"], "n": [10]}),
                     None)
    with pytest.raises(InputError, match="no foci"):
        ALE().fit(empty)
    with pytest.raises(InputError, match="all 2 foci fall outside the brain mask"):
        ALE().fit(_one_study(x=[-88.0, 88.0], y=[-120.0, -120.0], z=[-70.0, -70.0]))
    with pytest.raises(InputError, match="beyond"):
        ALE().fit(_one_study(x=[200.0, 150.0]))


def test_fit_twice_same_result_and_input_untouched():
    studyset = _one_study()
    before = studyset.foci.copy()
    a, b = ALE().fit(studyset), ALE().fit(studyset)
    for name in a.maps:
        np.testing.assert_array_equal(a.maps[name], b.maps[name])
    pd.testing.assert_frame_equal(studyset.foci, before)
