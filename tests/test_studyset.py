"""The data model: validation, filtering, concatenation, pandas and NiMARE conversion."""

import numpy as np
import pandas as pd
import pytest

from neurochange.errors import InputError
from neurochange.studyset import StudySet


def _small(**experiment_overrides):
    studies = pd.DataFrame({"study_id": ["s1", "s2"], "year": [2010, 2015], "disorder": ["mdd", "ocd"]})
    experiments = pd.DataFrame(
        {
            "experiment_id": ["s1-a", "s1-b", "s2-a"],
            "study_id": ["s1", "s1", "s2"],
            "contrast_id": ["a", "b", "a"],
            "n": [12, 12, 20],
            "direction": ["increase", "decrease", None],
            "disorder": [None, "gad", None],
            "sessions": [16, 16, np.nan],
        }
    )
    for key, value in experiment_overrides.items():
        experiments[key] = value
    foci = pd.DataFrame(
        {
            "experiment_id": ["s1-a", "s1-a", "s1-b", "s2-a", "s2-a"],
            "x": [40.0, -40, 0, 20, 20],
            "y": [4.0, 4, 60, -90, -90],
            "z": [2.0, 2, 0, 140, 140],
            "space": ["MNI", "MNI", "TAL", "MNI", "MNI"],
            "table_id": ["t1", "t1", "t1", "t2", "t2"],
        }
    )
    ss = StudySet(studies, experiments, foci)
    ss.flag_foci()
    return ss


def test_tags_pass_from_study_to_experiment_unless_set():
    ex = _small().resolved_experiments().set_index("experiment_id")
    assert ex.loc["s1-a", "disorder"] == "mdd"
    assert ex.loc["s1-b", "disorder"] == "gad"
    assert ex.loc["s2-a", "disorder"] == "ocd"


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"n": [0, 12, 20]}, "positive integer"),
        ({"n": [-3, 12, 20]}, "positive integer"),
        ({"direction": ["up", None, None]}, "not a valid direction"),
        ({"study_id": ["s1", "s1", "s9"]}, "unknown study"),
        ({"experiment_id": ["s1-a", "s1-a", "s2-a"]}, "duplicate experiment"),
        ({"n": ["twelve", 12, 20]}, "wrong type"),
    ],
)
def test_validation_errors(overrides, match):
    with pytest.raises(InputError, match=match):
        _small(**overrides)


def test_non_finite_coordinates_and_unknown_space_are_errors():
    ss = _small()
    foci = ss.foci.copy()
    foci.loc[0, "x"] = np.inf
    with pytest.raises(InputError, match="finite"):
        StudySet(ss.studies, ss.experiments, foci)
    foci = ss.foci.copy()
    foci["space"] = foci["space"].astype(object)
    foci.loc[0, "space"] = "colin"
    with pytest.raises(InputError, match="unknown space"):
        StudySet(ss.studies, ss.experiments, foci)


def test_flags_and_analysis_foci():
    ss = _small()
    assert ss.foci["out_of_bounds"].tolist() == [False, False, False, True, True]
    assert ss.foci["duplicate"].tolist() == [False, False, False, False, True]
    kept, counts = ss.analysis_foci()
    assert counts["foci_out_of_bounds"] == 2
    assert counts["experiments_without_foci_ids"] == ["s2-a"]
    assert kept.ids == ["s1-a", "s1-b"] and len(kept.foci) == 3
    report = ss.mask_report().set_index("experiment_id")
    assert report.loc["s2-a", "n_out_of_bounds"] == 2
    assert report.loc["s1-a", "n_outside_mask"] == 0


def test_filter_and_concat():
    ss = _small()
    one = ss.filter_studies(["s1"])
    two = ss.filter_studies(["s2"])
    assert one.ids == ["s1-a", "s1-b"] and len(one.studies) == 1
    both = StudySet.concat([one, two])
    assert both.ids == ss.ids and len(both.foci) == len(ss.foci)
    with pytest.raises(InputError, match="duplicate experiment"):
        StudySet.concat([one, one])


def test_table_round_trip():
    ss = _small()
    table = ss.to_table()
    assert table.columns[:7].tolist() == ["study", "experiment", "x", "y", "z", "space", "n"]
    back = StudySet.from_table(table)
    assert back.ids == ss.ids
    pd.testing.assert_frame_equal(back.foci[["x", "y", "z"]], ss.foci[["x", "y", "z"]])
    ex = back.experiments.set_index("experiment_id")
    assert ex.loc["s1-b", "direction"] == "decrease" and ex.loc["s1-a", "sessions"] == 16


def test_nimare_dataset_has_same_experiments_and_sample_sizes():
    ss = _small()
    dset = ss.to_nimare_dataset()
    assert sorted(dset.ids) == sorted(ss.ids)
    n = dset.metadata.set_index("id")["sample_sizes"]
    assert n["s1-a"] == [12] and n["s2-a"] == [20]
    assert len(dset.coordinates) == len(ss.foci)
    assert dset.metadata.set_index("id").loc["s1-b", "direction"] == "decrease"


def test_nimare_studyset_has_same_experiments():
    ss = _small()
    nimads = ss.to_nimare_studyset()
    analyses = [a for study in nimads.studies for a in study.analyses]
    assert len(analyses) == 3
    assert sum(len(a.points) for a in analyses) == len(ss.foci)
