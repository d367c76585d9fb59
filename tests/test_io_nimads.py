"""NIMADS studysets: equality with nimare.nimads.Studyset(...).to_dataset(), fields, errors, the CLI."""

from __future__ import annotations

import copy
import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neurochange import space
from neurochange.cli import cli
from neurochange.errors import InputError
from neurochange.sources.io import read_studyset
from neurochange.sources.io.nimads import read_nimads

NIMADS_FILES = [
    ("tests/data", "nimads_studyset.json"),  # points without a space, sample sizes in study metadata
    ("tests/data", "sample_size_nimads_studyset.json"),  # Talairach points, sample_size(s) in study metadata
    ("resources", "nidm_pain_studyset.json"),  # sample_sizes in analysis metadata
    ("resources", "neurosynth_laird_studyset.json"),  # no sample sizes, inline annotations
]


@pytest.fixture
def nimads_file(request, nimare_test_data, nimare_resources):
    folder, name = request.param
    return (nimare_test_data if folder == "tests/data" else nimare_resources) / name


def nimare_view(source):
    """NiMARE's Dataset of a NIMADS document (path or dict): ``(ids, {id: n or None}, coordinates)``."""
    from nimare.nimads import Studyset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # "Not applying transforms to ... None"
        try:
            dset = Studyset(source if isinstance(source, dict) else str(source)).to_dataset()
        finally:
            logging.disable(logging.NOTSET)
    meta = dset.metadata.set_index("id")
    sizes = meta["sample_sizes"].to_dict() if "sample_sizes" in meta else {}
    n = {eid: None if sizes.get(eid) is None else float(np.mean(sizes[eid])) for eid in meta.index}
    return list(dset.ids), n, dset.coordinates


def assert_same_as_nimare(ours, source):
    ids, n, coords = nimare_view(source)
    assert sorted(ours.ids) == sorted(ids)
    for eid, mine in ours.experiments.set_index("experiment_id")["n"].items():
        assert (mine is pd.NA) if n[eid] is None else mine == n[eid], eid
    assert len(ours.foci) == len(coords)
    for eid in ours.ids:
        mine = ours.foci.loc[ours.foci["experiment_id"] == eid, ["x", "y", "z"]].to_numpy()
        theirs = coords.loc[coords["id"] == eid, ["x", "y", "z"]].to_numpy(dtype=float)
        # NiMARE sorts by id: compare each experiment's foci as sorted rows
        np.testing.assert_allclose(mine[np.lexsort(mine.T[::-1])], theirs[np.lexsort(theirs.T[::-1])], atol=1e-9)


@pytest.mark.parametrize("nimads_file", NIMADS_FILES, indirect=True, ids=[n for _, n in NIMADS_FILES])
def test_same_experiments_sizes_and_coordinates_as_nimare(nimads_file):
    ours = read_studyset(nimads_file)  # recognised by content: a .json with a 'studies' list
    assert_same_as_nimare(ours, nimads_file)
    doc = json.loads(nimads_file.read_text())
    assert ours.ids == [f"{s['id']}-{a['id']}" for s in doc["studies"] for a in s["analyses"]]  # file order
    assert ours.provenance["sources"][0]["format"] == "nimads"
    assert read_nimads(nimads_file).ids == ours.ids


def test_fields_spaces_and_notes(nimare_test_data, nimare_resources):
    ss = read_studyset(nimare_test_data / "sample_size_nimads_studyset.json")
    study = ss.studies.set_index("study_id").loc["X7NRDxyq7xiy"]
    assert study["title"].startswith("A Multi-Dimensional and Integrative Approach")  # the study's name
    assert (study["journal"], study["year"], study["doi"]) == ("EBioMedicine", 2015, "10.1016/j.ebiom.2015.06.027")
    assert ss.experiments.set_index("experiment_id").loc["X7NRDxyq7xiy-7GmAU8yUEkmR", "name"] == "Strict"
    assert (ss.foci["space"] == "TAL").sum() == 14 and any("Talairach" in note for note in ss.provenance["notes"])
    no_space = read_studyset(nimare_test_data / "nimads_studyset.json")
    assert set(no_space.foci["space"]) == {"MNI"} and any("taken as MNI" in n for n in no_space.provenance["notes"])
    laird = read_studyset(nimare_resources / "neurosynth_laird_studyset.json")
    assert laird.studies.set_index("study_id").loc["17029760", "year"] == 2006  # from the analysis metadata
    assert laird.experiments["n"].isna().all()


def one_study(tmp_path, *, study=None, analysis=None, points=None, doc=None):
    """A NIMADS file of one study with one analysis of two MNI points, changed as asked."""
    pts = [{"coordinates": [10.0, 20.0, 30.0], "space": "MNI"}, {"coordinates": [-10.0, -20.0, 40.0], "space": "MNI"}]
    data = {
        "id": "set",
        "studies": [{"id": "s1", "name": "A study", "year": 2010, "metadata": {},
                     "analyses": [{"id": "a1", "name": "post > pre", "metadata": {"sample_sizes": [20]},
                                   "points": pts if points is None else points, **(analysis or {})}],
                     **(study or {})}],
        **(doc or {}),
    }
    path = tmp_path / "nimads.json"
    path.write_text(json.dumps(data))
    return path, data


@pytest.mark.parametrize(
    "study,analysis,doc,n",
    [
        ({}, {}, {}, 20),
        ({}, {"metadata": {"sample_size": 12}}, {}, 12),
        ({}, {"metadata": {"sample_sizes": [10, 14]}}, {}, 12),  # the mean, as NiMARE's ALE kernel takes it
        ({"metadata": {"sample_size": 30}}, {"metadata": {}}, {}, 30),  # the study's, when the analysis has none
        ({"metadata": {"sample_sizes": [31]}}, {"metadata": {"sample_size": 9}}, {}, 9),  # the analysis' first
        ({"metadata": {"sample_size": "None"}}, {"metadata": {"sample_sizes": None}}, {}, None),  # Neurostore's nulls
        ({}, {"annotations": {"note": {"sample_size": 16}}}, {}, 16),  # annotation labels come first
        ({}, {}, {"annotations": [{"id": "x", "notes": [{"study": "s1", "analysis": "a1",
                                                          "note": {"sample_size": 18}}]}]}, 18),
        ({}, {"metadata": None}, {}, None),
    ],
)
def test_sample_size_as_nimare_reads_it(tmp_path, study, analysis, doc, n):
    path, data = one_study(tmp_path, study=study, analysis=analysis, doc=doc)
    ss = read_studyset(path)
    assert ss.experiments["n"].iloc[0] is pd.NA if n is None else ss.experiments["n"].iloc[0] == n
    assert_same_as_nimare(ss, data)


def test_spaces_are_per_point_as_the_studyset_harmonises_them(tmp_path):
    from nimare.nimads import Studyset

    points = [{"coordinates": [10.0, 20.0, 30.0], "space": "TAL"}, {"coordinates": [-10.0, -20.0, 40.0], "space": None},
              {"coordinates": [12.0, -30.0, 20.0], "space": "MNI"}]
    path, data = one_study(tmp_path, points=points)
    ss = read_studyset(path)
    assert ss.foci["space"].tolist() == ["TAL", "MNI", "MNI"]
    assert any("taken as MNI" in note for note in ss.provenance["notes"])
    xyz = ss.foci[["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(xyz[0], space.tal_to_mni(np.array([[10.0, 20.0, 30.0]]))[0])
    np.testing.assert_array_equal(xyz[1:], [[-10.0, -20.0, 40.0], [12.0, -30.0, 20.0]])
    logging.disable(logging.WARNING)  # "Not applying transforms to ... None"
    try:
        harmonised = Studyset(data).coordinates  # in the Studyset's MNI target, point by point
    finally:
        logging.disable(logging.NOTSET)
    np.testing.assert_allclose(xyz, harmonised[["x", "y", "z"]].to_numpy(dtype=float), atol=1e-9)
    for point in data["studies"][0]["analyses"][0]["points"]:
        point["space"] = "TAL"  # one space per analysis: to_dataset (the first point's space) agrees too
    path.write_text(json.dumps(data))
    assert_same_as_nimare(read_studyset(path), data)


def test_ids_analyses_without_points_and_empty_studies(tmp_path):
    doc = {"studies": [
        {"analyses": [{"points": [{"coordinates": [1, 2, 3], "space": "MNI"}], "metadata": {"sample_size": 5}},
                      {"points": [], "metadata": {"sample_size": 6}}]},
        {"id": "s2", "analyses": []},
        {"id": "s3", "analyses": [{"id": 7, "points": [{"coordinates": [4, 5, 6], "space": "MNI"}]}]},
    ]}
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(doc))
    ss = read_studyset(path)
    assert ss.ids == ["study-0-analysis-0", "study-0-analysis-1", "s3-7"]  # NiMARE's positional ids
    assert ss.studies["study_id"].tolist() == ["study-0", "s3"]  # a study without analyses has nothing to analyse
    kept, counts = ss.analysis_foci()
    assert len(kept) == 2 and counts["experiments_without_foci_ids"] == ["study-0-analysis-1"]
    ids, _, _ = nimare_view(doc)
    assert sorted(ids) == sorted(ss.ids)


def _set(data, path, value):
    """Set ``data[...]`` along ``path`` (keys and indices); ``...`` as value deletes the key."""
    *parents, last = path
    for key in parents:
        data = data[key]
    if value is ...:
        del data[last]
    else:
        data[last] = value


S, A, P = ("studies", 0), ("studies", 0, "analyses", 0), ("studies", 0, "analyses", 0, "points", 1)


@pytest.mark.parametrize(
    "where,value,field,match",
    [
        ((*A, "points"), {"x": 1}, "s1.analyses.a1.points", "points must be a list"),
        (P, "oops", "s1.analyses.a1.points[1]", "a point must be an object, got a string"),
        ((*P, "coordinates"), ..., "s1.analyses.a1.points[1].coordinates", r"must be a list \[x, y, z\]"),
        ((*P, "coordinates"), [1, 2], "s1.analyses.a1.points[1].coordinates", r"must be a list \[x, y, z\]"),
        ((*P, "coordinates"), [1, "4O", 3], "s1.analyses.a1.points[1].coordinates[1]", "not a number"),
        ((*P, "coordinates"), [1, None, 3], "s1.analyses.a1.points[1]", "missing coordinate"),
        ((*P, "coordinates"), [1, 2, 300], "s1.analyses.a1.points[1].coordinates[2]", "beyond"),
        ((*P, "space"), "colin27", "s1.analyses.a1.points[1].space", "unknown coordinate space"),
        ((*A, "metadata"), {"sample_sizes": [10, 11]}, "s1.analyses.a1.metadata.sample_sizes", "mean 10.5"),
        ((*A, "metadata"), {"sample_size": "many"}, "s1.analyses.a1.metadata.sample_size", "not a number"),
        ((*A, "metadata"), {"sample_size": 0}, "s1.analyses.a1.metadata.sample_size", "positive"),
        ((*A, "metadata"), "x", "s1.analyses.a1.metadata", "metadata must be an object"),
        ((*A, "metadata"), {"direction": "up"}, "direction", "not a valid direction"),
        ((*A, "metadata"), {"year": 2011}, "s1.analyses.a1.metadata.year", "one value per study"),
        ((*A, "annotations"), {"n": {"sample_size": 2.5}}, "s1.analyses.a1.annotations.n.sample_size", "mean 2.5"),
        (A, [1], "s1.analyses[0]", "an analysis must be an object, got a list"),
        ((*A, "id"), {"a": 1}, "s1.analyses[0].id", "id must be a text or a number"),
        ((*S, "analyses"), "a1", "s1.analyses", "analyses must be a list"),
        (S, 3, "studies[0]", "a study must be an object, got a number"),
        (("annotations",), [{"notes": ["x"]}], "annotations[0].notes[0]", "a note must be an object"),
    ],
)
def test_errors_name_study_analysis_point_and_field(tmp_path, where, value, field, match):
    path, data = one_study(tmp_path)
    _set(data, where, value)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=match) as err:
        read_studyset(path)
    assert err.value.file == str(path) and err.value.field == field


def test_repeated_ids_and_no_analyses_are_errors(tmp_path):
    path, data = one_study(tmp_path)
    study = data["studies"][0]
    twice = copy.deepcopy(data)
    twice["studies"][0]["analyses"].append(copy.deepcopy(study["analyses"][0]))
    path.write_text(json.dumps(twice))
    with pytest.raises(InputError, match="analysis id 'a1' is used twice in study 's1'") as err:
        read_studyset(path)
    assert err.value.field == "s1.analyses[1].id"
    twice = {"studies": [study, study]}
    path.write_text(json.dumps(twice))
    with pytest.raises(InputError, match="study id 's1' is used twice") as err:
        read_studyset(path)
    assert err.value.field == "studies[1].id"
    path.write_text(json.dumps({"studies": [{"id": "s1", "analyses": []}]}))
    with pytest.raises(InputError, match="no experiments"):
        read_studyset(path)
    study["metadata"] = {"sample_sizes": [0]}  # the study's sample size, read when the analysis has none
    study["analyses"][0]["metadata"] = {}
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="positive") as err:
        read_studyset(path)
    assert err.value.field == "s1.metadata.sample_sizes"


def test_read_nimads_wants_a_studies_list(tmp_path, nimare_test_data):
    with pytest.raises(InputError, match="'studies' list"):
        read_nimads(nimare_test_data / "test_pain_dataset.json")
    path = tmp_path / "studies.json"
    path.write_text(json.dumps({"studies": {"s1": {}}}))  # not a list: read as NiMARE JSON, with a hint
    with pytest.raises(InputError, match="NIMADS studyset needs 'studies' to be a list"):
        read_studyset(path)


def test_cli_ale_runs_on_a_nimads_file(tmp_path, nimare_resources):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["ale", str(nimare_resources / "nidm_pain_studyset.json"), "--out", str(out),
                                   "--iters", "20", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "21 experiments, 267 foci" in res.output
    assert (out / "z.nii.gz").is_file()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["input"]["sources"][0]["format"] == "nimads"


def test_cli_ale_asks_for_missing_sample_sizes(tmp_path, nimare_resources):
    res = CliRunner().invoke(cli, ["ale", str(nimare_resources / "neurosynth_laird_studyset.json"), "--out",
                                   str(tmp_path / "out"), "--iters", "20", "--seed", "1"])
    assert res.exit_code == 2, res.output
    assert "sample size missing" in res.output and "Traceback" not in res.output


def test_a_studyset_object_reads_as_its_file(nimare_test_data):
    from nimare.nimads import Studyset

    path = nimare_test_data / "sample_size_nimads_studyset.json"  # Talairach points: NiMARE's are already MNI
    ours, theirs = read_studyset(Studyset(str(path))), read_studyset(path)
    assert sorted(ours.ids) == sorted(theirs.ids)
    n = theirs.experiments.set_index("experiment_id")["n"]
    assert ours.experiments.set_index("experiment_id")["n"].reindex(n.index).equals(n)
    key = ["experiment_id", "x", "y", "z"]
    mine, file = (s.foci.sort_values(key)[key[1:]].to_numpy() for s in (ours, theirs))
    np.testing.assert_allclose(mine, file, atol=1e-6)
    assert set(ours.foci["space"]) == {"MNI"} and ours.provenance["sources"][0]["format"] == "nimare_dataset"
