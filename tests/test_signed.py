"""Signed ALE on simulated data: planted increases and decreases found in the right direction."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neurochange.cli import cli
from neurochange.compare.signed import combine_signed, split_by_direction
from neurochange.simulate import simulate_studyset
from neurochange.sources.io import write_studyset
from neurochange.space import mni_2mm

INCREASE, DECREASE, UNSIGNED = (40, 20, 30), (-30, -60, 10), (0, 40, -10)


def _value_at(path, xyz):
    img = nib.load(path)
    ijk = np.round(np.linalg.inv(img.affine) @ np.r_[xyz, 1.0])[:3].astype(int)
    return float(img.get_fdata()[tuple(ijk)])


def _near(table: pd.DataFrame, centre, mm=12.0) -> np.ndarray:
    peaks = table.loc[~table["is_subpeak"], ["peak_x", "peak_y", "peak_z"]].to_numpy(float)
    return np.linalg.norm(peaks - np.asarray(centre, float), axis=1) <= mm


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """14 increase experiments (10 with a focus near INCREASE), 14 decrease (10 near DECREASE),
    6 unsigned and 4 uncurated ones all converging on UNSIGNED; 8 foci each, n = 20."""
    base = tmp_path_factory.mktemp("signed")
    ss = simulate_studyset([
        {"n": 14, "direction": "increase", "centre": INCREASE, "hits": 10},
        {"n": 14, "direction": "decrease", "centre": DECREASE, "hits": 10},
        {"n": 6, "direction": "unsigned", "centre": UNSIGNED, "hits": 6},
        {"n": 4, "direction": None, "centre": UNSIGNED, "hits": 4},
    ], seed=1)
    write_studyset(ss, base / "sim.tsv")
    out = base / "out"
    res = CliRunner().invoke(cli, ["ale", str(base / "sim.tsv"), "--signed", "--out", str(out),
                                   "--iters", "300", "--seed", "2"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_planted_clusters_found_in_their_direction(planted):
    out, _ = planted
    inc = pd.read_csv(out / "dir-increase_est-ale" / "clusters.tsv", sep="\t")
    dec = pd.read_csv(out / "dir-decrease_est-ale" / "clusters.tsv", sep="\t")
    assert _near(inc, INCREASE).any() and _near(dec, DECREASE).any()
    # nothing else survives (each direction's false-positive rate is 5% by construction)
    assert _near(inc, INCREASE).all() and _near(dec, DECREASE).all()
    signed = out / "z_desc-signed.nii.gz"
    assert _value_at(signed, INCREASE) > 3 and _value_at(signed, DECREASE) < -3
    assert _value_at(signed, UNSIGNED) == 0.0


def test_no_conflict_where_none_was_planted(planted):
    out, output = planted
    conflict = nib.load(out / "z_desc-conflict.nii.gz").get_fdata()
    assert not conflict.any()
    assert json.loads((out / "overlap.json").read_text())["voxels_both"] == 0
    assert "conflict (both directions converge): 0 voxels" in output


def test_left_out_experiments_are_counted_with_reasons(planted):
    out, output = planted
    record = json.loads((out / "provenance.json").read_text())
    left = record["directions"]["left_out"]
    assert left["unsigned"]["experiments"] == 6 and left["unknown"]["experiments"] == 4
    assert record["directions"]["increase"]["experiments"] == 14
    assert record["directions"]["decrease"]["experiments"] == 14
    assert "left out 6 unsigned experiments" in output and "left out 4 unknown experiments" in output
    for d in ("increase", "decrease"):
        assert (out / f"dir-{d}_est-ale" / "z_desc-size_level-cluster_corr-FWE_method-montecarlo.nii.gz").is_file()


def test_conflict_found_where_both_directions_converge(tmp_path):
    ss = simulate_studyset([
        {"n": 12, "direction": "increase", "centre": INCREASE, "hits": 10},
        {"n": 12, "direction": "decrease", "centre": INCREASE, "hits": 10},
    ], seed=4)
    write_studyset(ss, tmp_path / "sim.tsv")
    res = CliRunner().invoke(cli, ["ale", str(tmp_path / "sim.tsv"), "--signed", "--out", str(tmp_path / "o"),
                                   "--iters", "300", "--seed", "5"])
    assert res.exit_code == 0, res.output
    assert _value_at(tmp_path / "o" / "z_desc-conflict.nii.gz", INCREASE) > 3
    assert _value_at(tmp_path / "o" / "z_desc-signed.nii.gz", INCREASE) == 0.0


def test_combine_signed_closed_form():
    inc = np.array([0.0, 3.0, 4.0, 0.0])
    dec = np.array([0.0, 0.0, 3.5, 5.0])
    maps = combine_signed(inc, dec)
    np.testing.assert_array_equal(maps["z_desc-signed"], [0.0, 3.0, 0.0, -5.0])
    np.testing.assert_array_equal(maps["z_desc-conflict"], [0.0, 0.0, 3.5, 0.0])


def test_split_by_direction_never_guesses():
    ss = simulate_studyset([{"n": 2, "direction": "increase"}, {"n": 3, "direction": "unsigned"},
                            {"n": 1, "direction": None}], grid=mni_2mm())
    parts, left = split_by_direction(ss)
    assert len(parts["increase"].experiments) == 2 and parts["decrease"] is None
    assert left["unsigned"]["experiments"] == 3 and left["unknown"]["experiments"] == 1


def test_contrasts_pooled_within_each_direction(tmp_path):
    """A study with two increase contrasts and one decrease contrast gives one pooled increase
    experiment and one decrease experiment."""
    ss = simulate_studyset([{"n": 3, "direction": "increase"}, {"n": 2, "direction": "decrease"}], seed=3)
    ex = ss.experiments.copy()
    ex.loc[[0, 1, 3], "study_id"] = "shared"
    ex.loc[[0, 1, 3], "experiment_id"] = ["shared-a", "shared-b", "shared-c"]
    ex.loc[[0, 1, 3], "contrast_id"] = ["a", "b", "c"]
    foci = ss.foci.copy()
    foci["experiment_id"] = foci["experiment_id"].replace(
        {"sim0_000-1": "shared-a", "sim0_001-1": "shared-b", "sim1_000-1": "shared-c"})
    studies = ex[["study_id"]].drop_duplicates()
    from neurochange.studyset import StudySet

    write_studyset(StudySet(studies, ex, foci), tmp_path / "sim.tsv")
    res = CliRunner().invoke(cli, ["ale", str(tmp_path / "sim.tsv"), "--signed", "--out", str(tmp_path / "o"),
                                   "--iters", "20", "--seed", "1", "--vfwe-only"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert record["pooled"]["increase"][0]["pooled"] == ["shared-a", "shared-b"]
    assert record["pooled"]["decrease"] == []
    assert record["directions"]["increase"]["experiments"] == 2  # shared-pooled + sim0_002-1
    assert record["directions"]["decrease"]["experiments"] == 2


# ---------------------------------------------------------------------------- MKDA density and KDA
@pytest.fixture(scope="module", params=["mkda", "kda"])
def planted_density(request, tmp_path_factory):
    """The planted data of ``planted`` through ``neurochange mkda|kda --signed``."""
    kind = request.param
    base = tmp_path_factory.mktemp(f"signed-{kind}")
    ss = simulate_studyset([
        {"n": 14, "direction": "increase", "centre": INCREASE, "hits": 10},
        {"n": 14, "direction": "decrease", "centre": DECREASE, "hits": 10},
        {"n": 6, "direction": "unsigned", "centre": UNSIGNED, "hits": 6},
        {"n": 4, "direction": None, "centre": UNSIGNED, "hits": 4},
    ], seed=1)
    write_studyset(ss, base / "sim.tsv")
    out = base / "out"
    res = CliRunner().invoke(cli, [kind, str(base / "sim.tsv"), "--signed", "--out", str(out),
                                   "--iters", "200", "--seed", "2", "--cores", "2"])
    assert res.exit_code == 0, res.output
    return kind, out, res.output


def test_density_planted_clusters_found_in_their_direction(planted_density):
    kind, out, _ = planted_density
    inc = pd.read_csv(out / f"dir-increase_est-{kind}" / "clusters.tsv", sep="\t")
    dec = pd.read_csv(out / f"dir-decrease_est-{kind}" / "clusters.tsv", sep="\t")
    assert _near(inc, INCREASE).any() and _near(dec, DECREASE).any()
    assert not _near(inc, DECREASE).any() and not _near(dec, INCREASE).any()
    signed = out / "z_desc-signed.nii.gz"
    assert _value_at(signed, INCREASE) > 2 and _value_at(signed, DECREASE) < -2
    assert _value_at(signed, UNSIGNED) == 0.0


def test_density_no_conflict_where_none_was_planted(planted_density):
    _, out, output = planted_density
    assert not nib.load(out / "z_desc-conflict.nii.gz").get_fdata().any()
    assert json.loads((out / "overlap.json").read_text())["voxels_both"] == 0
    assert "conflict (both directions converge): 0 voxels" in output


def test_density_left_out_experiments_are_counted_with_reasons(planted_density):
    kind, out, output = planted_density
    record = json.loads((out / "provenance.json").read_text())
    assert record["command"] == f"{kind} --signed"
    left = record["directions"]["left_out"]
    assert left["unsigned"]["experiments"] == 6 and left["unknown"]["experiments"] == 4
    assert record["directions"]["increase"]["experiments"] == 14
    assert record["directions"]["decrease"]["experiments"] == 14
    assert "left out 6 unsigned experiments" in output and "left out 4 unknown experiments" in output
    assert record["params"]["increase"]["estimator"]["name"] == {"mkda": "MKDADensity", "kda": "KDA"}[kind]


def test_density_conflict_found_where_both_directions_converge(tmp_path):
    ss = simulate_studyset([
        {"n": 12, "direction": "increase", "centre": INCREASE, "hits": 10},
        {"n": 12, "direction": "decrease", "centre": INCREASE, "hits": 10},
    ], seed=4)
    write_studyset(ss, tmp_path / "sim.tsv")
    res = CliRunner().invoke(cli, ["mkda", str(tmp_path / "sim.tsv"), "--signed", "--out", str(tmp_path / "o"),
                                   "--iters", "200", "--seed", "5", "--cores", "2"])
    assert res.exit_code == 0, res.output
    assert _value_at(tmp_path / "o" / "z_desc-conflict.nii.gz", INCREASE) > 2
    assert _value_at(tmp_path / "o" / "z_desc-signed.nii.gz", INCREASE) == 0.0
