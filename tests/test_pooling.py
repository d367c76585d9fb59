"""Pooling dependent experiments (several contrasts of one study) into one experiment."""

import numpy as np
import pandas as pd
import pytest

from neurochange.corpus.pooling import pool_experiments
from neurochange.meta.ale import ALE
from neurochange.sources.io import read_studyset
from neurochange.studyset import StudySet


def _studyset():
    studies = pd.DataFrame({"study_id": ["s1", "s2"]})
    experiments = pd.DataFrame({
        "experiment_id": ["s1-a", "s1-b", "s2-a"],
        "study_id": ["s1", "s1", "s2"],
        "contrast_id": ["a", "b", "a"],
        "n": [12, 15, 20],
        "direction": ["increase", "increase", "decrease"],
        "modality": ["psychotherapy", "psychotherapy", "pharmacotherapy"],
    })
    foci = pd.DataFrame({
        "experiment_id": ["s1-a", "s1-a", "s1-b", "s2-a"],
        "x": [40.0, -40.0, 40.0, 0.0], "y": [4.0, 10.0, 6.0, -50.0], "z": [2.0, 0.0, 2.0, 20.0],
        "space": ["MNI"] * 4,
    })
    return StudySet(studies, experiments, foci)


def test_contrasts_of_one_study_become_one_experiment():
    pooled, report = pool_experiments(_studyset())
    ex = pooled.experiments.set_index("experiment_id")
    assert sorted(ex.index) == ["s1-pooled", "s2-a"]
    assert ex.loc["s1-pooled", "n"] == 15  # the largest n of the pooled contrasts
    assert ex.loc["s1-pooled", "direction"] == "increase"
    assert ex.loc["s1-pooled", "modality"] == "psychotherapy"
    assert (pooled.foci["experiment_id"] == "s1-pooled").sum() == 3
    assert report == [{"experiment_id": "s1-pooled", "study_id": "s1", "pooled": ["s1-a", "s1-b"],
                       "n_values": [12, 15], "n": 15, "n_foci": 3, "direction": "increase"}]


def test_conflicting_directions_pool_as_unsigned():
    ss = _studyset()
    ss.experiments.loc[1, "direction"] = "decrease"
    pooled, report = pool_experiments(StudySet(ss.studies, ss.experiments, ss.foci))
    assert pooled.experiments.set_index("experiment_id").loc["s1-pooled", "direction"] == "unsigned"
    assert report[0]["direction"] == "unsigned"


def test_pooled_ma_is_max_over_all_foci():
    """ALE of the pooled set equals ALE of one experiment holding every focus of the study."""
    pooled, _ = pool_experiments(_studyset())
    res = ALE().fit(pooled)
    manual = _studyset()
    manual.experiments = manual.experiments.drop(index=0)
    manual.experiments.loc[1, "n"] = 15
    manual.foci["experiment_id"] = manual.foci["experiment_id"].replace({"s1-a": "s1-b"})
    ref = ALE().fit(StudySet(manual.studies, manual.experiments, manual.foci))
    assert res.n_experiments == ref.n_experiments == 2
    np.testing.assert_array_equal(res.maps["stat"], ref.maps["stat"])


@pytest.mark.parametrize("name", ["test_pain_dataset.json", "test_sleuth_file.txt"])
def test_one_contrast_per_study_changes_nothing(nimare_test_data, name):
    ss = read_studyset(nimare_test_data / name)
    pooled, report = pool_experiments(ss)
    assert report == [] and pooled is ss


def test_ale_command_pools_by_default_and_says_so(tmp_path):
    from click.testing import CliRunner

    from neurochange.cli import cli
    from neurochange.sources.io import write_studyset

    write_studyset(_studyset(), tmp_path / "two_contrasts.tsv")
    runner = CliRunner()
    res = runner.invoke(cli, ["ale", str(tmp_path / "two_contrasts.tsv"), "--out", str(tmp_path / "pooled"),
                              "--iters", "20", "--seed", "1", "--vfwe-only"])
    assert res.exit_code == 0, res.output
    assert "pooled the contrasts of 1 study into" in res.output and "2 experiments, 4 foci" in res.output
    record = __import__("json").loads((tmp_path / "pooled" / "provenance.json").read_text())
    assert record["pooled"][0]["pooled"] == ["s1-a", "s1-b"]
    kept = runner.invoke(cli, ["ale", str(tmp_path / "two_contrasts.tsv"), "--out", str(tmp_path / "kept"),
                               "--iters", "20", "--seed", "1", "--vfwe-only", "--keep-contrasts"])
    assert kept.exit_code == 0, kept.output
    assert "3 experiments, 4 foci" in kept.output and "pooled" not in kept.output
