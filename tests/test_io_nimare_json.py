"""NiMARE JSON datasets: equality with nimare.dataset.Dataset, fields, errors, round trips."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from io_helpers import assert_same_studyset, rich_studyset

from neurochange import space
from neurochange.errors import InputError
from neurochange.sources.io import read_studyset, write_studyset
from neurochange.sources.io.nimare_json import read_nimare_json, write_nimare_json
from neurochange.sources.io.sleuth import read_sleuth
from neurochange.space import Grid

NIMARE_FILES = [
    ("tests/data", "test_pain_dataset.json"),
    ("tests/data", "test_pain_dataset_multiple_contrasts.json"),
    ("tests/data", "neurosynth_dset.json"),
    ("tests/data", "neurosynth_laird_studies.json"),
    ("resources", "nidm_pain_dset.json"),
]


def nimare_dataset(path, target="ale_2mm"):
    from nimare.dataset import Dataset
    from nimare.utils import mm2vox

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(str(path), target=target)
    coords = dset.coordinates
    ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(), dset.masker.mask_img.affine)
    return dset, coords, ijk


@pytest.fixture
def nimare_file(request, nimare_test_data, nimare_resources):
    folder, name = request.param
    return (nimare_test_data if folder == "tests/data" else nimare_resources) / name


@pytest.mark.parametrize("target", ["ale_2mm", "mni152_2mm"])
@pytest.mark.parametrize("nimare_file", NIMARE_FILES, indirect=True, ids=[n for _, n in NIMARE_FILES])
def test_same_experiments_sizes_and_voxels_as_nimare(nimare_file, target):
    ours = read_nimare_json(nimare_file)
    dset, coords, ijk = nimare_dataset(nimare_file, target)
    assert ours.ids == list(json_ids(nimare_file))  # file order
    assert sorted(ours.ids) == sorted(dset.ids)
    meta = dset.metadata.set_index("id")
    for eid, n in ours.experiments.set_index("experiment_id")["n"].items():
        sizes = meta["sample_sizes"].get(eid) if "sample_sizes" in meta else None
        if sizes is None:
            assert n is pd.NA
        else:
            assert n == np.mean(sizes)  # NiMARE's ALE kernel takes the mean of the list
    grid = Grid.from_img(dset.masker.mask_img)
    if target == "ale_2mm":  # NiMARE's LAS template: neurochange holds the same voxels RAS
        canonical = nib.as_closest_canonical(dset.masker.mask_img)
        np.testing.assert_array_equal(space.mni_2mm().affine, canonical.affine)
    assert len(ours.foci) == len(coords)
    for eid in ours.ids:
        mine = ours.foci[ours.foci["experiment_id"] == eid][["x", "y", "z"]].to_numpy()
        theirs = (coords["id"] == eid).to_numpy()
        # NiMARE's coordinates are sorted by id; compare each experiment's foci as sorted rows.
        order = np.lexsort(mine.T[::-1])
        their_xyz = coords.loc[theirs, ["x", "y", "z"]].to_numpy(dtype=float)
        their_order = np.lexsort(their_xyz.T[::-1])
        np.testing.assert_allclose(mine[order], their_xyz[their_order], atol=1e-9)
        assert np.array_equal(grid.mm_to_vox(mine)[order], ijk[theirs][their_order])


def json_ids(path):
    data = json.loads(path.read_text())
    return [f"{s}-{c}" for s, study in data.items() for c in study["contrasts"]]


def test_pain_dataset_keeps_experiments_without_foci(nimare_test_data):
    ss = read_nimare_json(nimare_test_data / "test_pain_dataset.json")
    assert (len(ss), len(ss.foci)) == (21, 243)
    kept, counts = ss.analysis_foci()
    assert len(kept) == 19 and counts["experiments_without_foci"] == 2
    assert ss.provenance["sources"][0]["format"] == "nimare_json"


def test_spaces_and_study_fields_of_neurosynth_files(nimare_test_data):
    laird = read_nimare_json(nimare_test_data / "neurosynth_laird_studies.json")
    raw = json.loads((nimare_test_data / "neurosynth_laird_studies.json").read_text())
    spaces = {f"{s}-{c}": v["coords"]["space"] for s, st in raw.items() for c, v in st["contrasts"].items()}
    recorded = laird.foci.groupby("experiment_id")["space"].first()
    assert all(recorded[e] == ("TAL" if s == "TAL" else "MNI") for e, s in spaces.items())
    assert any("taken as MNI" in note for note in laird.provenance["notes"])  # UNKNOWN space
    first = laird.studies.set_index("study_id").loc["17029760"]
    assert (first["year"], first["journal"]) == (2006, "Psychiatry research")
    dset = read_nimare_json(nimare_test_data / "neurosynth_dset.json")  # study fields beside 'contrasts'
    assert dset.studies.set_index("study_id").loc["9593960", "year"] == 1998


def test_round_trips(tmp_path, nimare_test_data):
    rich = rich_studyset()
    rich.foci["table_id"] = ["t1", "t1", "t2", None, None, "3", "3"]
    rich.foci["source"] = "neurosynth"
    rich = rich.copy()
    originals = [
        rich,
        read_nimare_json(nimare_test_data / "test_pain_dataset.json"),
        read_nimare_json(nimare_test_data / "neurosynth_laird_studies.json"),
        read_sleuth(nimare_test_data / "test_sleuth_file2.txt"),
    ]
    for original in originals:
        summary = write_studyset(original, tmp_path / "out.json")
        assert (summary["experiments"], summary["foci"]) == (len(original), len(original.foci))
        assert_same_studyset(read_studyset(tmp_path / "out.json"), original)


def test_nimare_reads_what_we_write(tmp_path):
    original = rich_studyset()
    write_nimare_json(original, tmp_path / "out.json")
    dset, coords, _ = nimare_dataset(tmp_path / "out.json")
    assert sorted(dset.ids) == sorted(original.ids)
    meta = dset.metadata.set_index("id")
    assert meta.loc["Smith et al., 2010-post > pre", "direction"] == "increase"
    assert meta.loc["12345678-1", "modality"] == "brain_stimulation"  # study-level tag resolved
    assert meta.loc["12345678-1", "sample_sizes"] == [24]
    np.testing.assert_array_equal(
        np.sort(coords[["x", "y", "z"]].to_numpy(), axis=0), np.sort(original.foci[["x", "y", "z"]].to_numpy(), axis=0)
    )


def contrast_file(tmp_path, contrast: dict, study: dict | None = None):
    data = {"s1": {**(study or {}), "contrasts": {"c1": contrast}}}
    path = tmp_path / "in.json"
    path.write_text(json.dumps(data))
    return path


COORDS = {"space": "MNI", "x": [1.0, 2.0], "y": [3.0, 4.0], "z": [5.0, 6.0]}


@pytest.mark.parametrize(
    "metadata,n",
    [({"sample_sizes": [20]}, 20), ({"sample_sizes": [10, 12]}, 11), ({"sample_sizes": 15}, 15),
     ({"sample_size": 9}, 9), ({"sample_sizes": None}, None), ({}, None)],
)
def test_sample_size_is_nimare_mean(tmp_path, metadata, n):
    ss = read_nimare_json(contrast_file(tmp_path, {"coords": COORDS, "metadata": metadata}))
    got = ss.experiments["n"].iloc[0]
    assert got is pd.NA if n is None else got == n


@pytest.mark.parametrize(
    "name,expected",
    [("MNI", "MNI"), ("mni152_2mm", "MNI"), ("ale_2mm", "MNI"), ("TAL", "TAL"), ("Talairach", "TAL"),
     ("UNKNOWN", "MNI"), (None, "MNI")],
)
def test_coordinate_space_names(tmp_path, name, expected):
    ss = read_nimare_json(contrast_file(tmp_path, {"coords": {**COORDS, "space": name}}))
    assert set(ss.foci["space"]) == {expected}
    xyz = np.array([[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(ss.foci[["x", "y", "z"]].to_numpy(), space.tal_to_mni(xyz) if expected == "TAL" else xyz)


@pytest.mark.parametrize(
    "contrast,field,match",
    [
        ({"coords": COORDS, "metadata": {"sample_sizes": [10, 11]}}, "s1.contrasts.c1.metadata.sample_sizes", "mean 10.5"),
        ({"coords": COORDS, "metadata": {"sample_sizes": [0]}}, "s1.contrasts.c1.metadata.sample_sizes", "positive"),
        ({"coords": COORDS, "metadata": {"sample_sizes": ["many"]}}, "s1.contrasts.c1.metadata.sample_sizes", "not a number"),
        ({"coords": {**COORDS, "space": "colin27"}}, "s1.contrasts.c1.coords.space", "unknown coordinate space"),
        ({"coords": {**COORDS, "x": [1.0]}}, "s1.contrasts.c1.coords", "equal length"),
        ({"coords": {**COORDS, "x": [1.0, 200.0]}}, "s1.contrasts.c1.coords[1].x", "beyond"),
        ({"coords": {**COORDS, "y": [3.0, "4O"]}}, "s1.contrasts.c1.coords[1].y", "not a number"),
        ({"coords": {**COORDS, "z": [5.0, None]}}, "s1.contrasts.c1.coords[1]", "missing"),
        ({"coords": COORDS, "metadata": {"direction": "up"}}, "direction", "not a valid direction"),
        ({"coords": COORDS, "metadata": {"sessions": "many"}}, "s1.contrasts.c1.metadata.sessions", "not a number"),
        ({"coords": COORDS, "metadata": {"year": 2010}}, "s1.contrasts.c1.metadata.year", "one value per study"),
    ],
)
def test_errors_name_the_field(tmp_path, contrast, field, match):
    path = contrast_file(tmp_path, contrast, {"year": 2009})
    with pytest.raises(InputError, match=match) as err:
        read_nimare_json(path)
    assert err.value.file == str(path) and err.value.field == field


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"s1": {"contrasts": {\n "c1": {"coords": [1, 2,]}\n}}}')
    with pytest.raises(InputError, match="not valid JSON") as err:
        read_nimare_json(path)
    assert err.value.line == 2
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="object of studies"):
        read_nimare_json(path)


@pytest.mark.parametrize(
    "data,field,match",
    [
        ({"s1": {"contrasts": {"c1": "oops"}}}, "s1.contrasts.c1", "a contrast must be an object, got a string"),
        ({"s1": {"contrasts": {"c1": [1]}}}, "s1.contrasts.c1", "a contrast must be an object, got a list"),
        ({"s1": "oops"}, "s1", "a study must be an object, got a string"),
        ({"s1": None}, "s1", "a study must be an object, got missing"),
        ({"s1": {"contrasts": ["c1"]}}, "s1.contrasts", "'contrasts' must be an object, got a list"),
        ({"s1": {"contrasts": 3}}, "s1.contrasts", "'contrasts' must be an object, got a number"),
        ({"s1": {"contrasts": {"c1": {"coords": [1, 2, 3]}}}}, "s1.contrasts.c1.coords", "coords must be an object"),
        ({"s1": {"contrasts": {"c1": {"coords": COORDS, "metadata": "n=20"}}}}, "s1.contrasts.c1.metadata",
         "metadata must be an object, got a string"),
        ({"s1": {"contrasts": {"c1": {"metadata": True}}}}, "s1.contrasts.c1.metadata", "got true/false"),
        ({"s1": {"metadata": [], "contrasts": {"c1": {"coords": COORDS}}}}, "s1.metadata",
         "metadata must be an object"),
        ({"s1": {"title": "x"}}, "s1", "needs a 'contrasts' object"),
    ],
)
def test_non_objects_are_errors_naming_study_and_contrast(tmp_path, data, field, match):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=match) as err:
        read_studyset(path)
    assert err.value.file == str(path) and err.value.field == field


def test_null_metadata_and_coords_read_as_absent(tmp_path):
    ss = read_nimare_json(contrast_file(tmp_path, {"coords": None, "metadata": None}))
    assert len(ss) == 1 and len(ss.foci) == 0 and ss.experiments["n"].iloc[0] is pd.NA


def test_nimare_dataset_object_reads_as_its_file(pain_path):
    from nimare.dataset import Dataset

    import neurochange as nc
    from neurochange.studyset import StudySet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(str(pain_path))
    ours, theirs = nc.read_studyset(dset), nc.read_studyset(pain_path)
    assert ours.ids == theirs.ids  # the Dataset's ids, in the file's order
    pd.testing.assert_series_equal(ours.experiments["n"], theirs.experiments["n"])
    in_order = []
    for s in (ours, theirs):  # NiMARE's Dataset sorts each experiment's foci
        s = StudySet(s.studies, s.experiments, s.foci.sort_values(["experiment_id", "x", "y", "z"]), s.provenance)
        s.flag_foci()
        in_order.append(s)
    assert_same_studyset(*in_order, atol=1e-6)
    assert ours.provenance["sources"][0]["format"] == "nimare_dataset"
    assert ours.provenance["sources"][0]["object"] == "nimare.dataset.Dataset"
    grid = space.mni_2mm()
    a, b = nc.ALE().fit(ours, grid), nc.ALE().fit(theirs, grid)
    assert a.maps.keys() == b.maps.keys()
    for name in a.maps:
        np.testing.assert_array_equal(a.maps[name], b.maps[name], err_msg=name)


def test_nimare_dataset_coordinates_are_not_transformed_twice(nimare_test_data):
    from nimare.dataset import Dataset

    path = nimare_test_data / "neurosynth_laird_studies.json"  # Talairach and UNKNOWN spaces
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(str(path), target="ale_2mm")  # NiMARE has moved the Talairach foci to MNI
    ours, theirs = read_studyset(dset), read_studyset(path)
    assert set(ours.foci["space"]) == {"MNI"}
    mine = ours.foci.sort_values(["experiment_id", "x", "y", "z"])[["x", "y", "z"]].to_numpy()
    nimare = dset.coordinates.sort_values(["id", "x", "y", "z"])[["x", "y", "z"]].to_numpy(dtype=float)
    np.testing.assert_array_equal(mine, nimare)
    np.testing.assert_allclose(mine, theirs.foci.sort_values(["experiment_id", "x", "y", "z"])[["x", "y", "z"]],
                               atol=1e-6)


def test_nimare_dataset_errors_name_the_object(tmp_path):
    from nimare.dataset import Dataset

    data = {"s1": {"contrasts": {"c1": {"coords": COORDS, "metadata": {"sample_sizes": [10, 11]}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(data)
    with pytest.raises(InputError, match="mean 10.5") as err:
        read_studyset(dset)
    assert err.value.file == "<Dataset object>" and err.value.field == "s1.contrasts.c1.metadata.sample_sizes"


def test_neurochange_does_not_import_nimare(tmp_path, pain_path):
    import subprocess
    import sys

    code = ("import sys, neurochange as nc; nc.read_studyset(sys.argv[1]); "
            "print(any(m == 'nimare' or m.startswith('nimare.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(pain_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
