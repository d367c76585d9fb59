"""Sleuth text files: equality with NiMARE's reader, syntax variants, errors with line and field, round trips."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from io_helpers import assert_same_studyset, rich_studyset

from neurochange import space
from neurochange.errors import InputError
from neurochange.sources.io import read_studyset, write_studyset
from neurochange.sources.io.sleuth import read_sleuth, split_study_info, write_sleuth


def nimare_sleuth(path):
    from nimare.io import convert_sleuth_to_dataset
    from nimare.utils import mm2vox

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = convert_sleuth_to_dataset(str(path), target="ale_2mm")
    coords = dset.coordinates
    ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(), dset.masker.mask_img.affine)
    return dset, coords, ijk


def write(tmp_path, text: str, name="in.txt", newline="\n"):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


@pytest.mark.parametrize("name", ["test_sleuth_file.txt", "test_sleuth_file2.txt"])
def test_same_experiments_sizes_coordinates_and_voxels_as_nimare(nimare_test_data, name):
    path = nimare_test_data / name
    ours = read_sleuth(path)
    dset, coords, ijk = nimare_sleuth(path)
    assert ours.ids == list(dset.ids)
    n_nimare = dict(zip(dset.metadata["id"], dset.metadata["sample_sizes"]))
    assert ours.experiments.set_index("experiment_id")["n"].to_dict() == {k: v[0] for k, v in n_nimare.items()}
    # NiMARE's Sleuth reader puts foci on its LAS ale_2mm template; neurochange's grid is the same voxels, RAS
    grid = space.Grid.from_img(dset.masker.mask_img)
    canonical = nib.as_closest_canonical(dset.masker.mask_img)
    np.testing.assert_array_equal(space.mni_2mm().affine, canonical.affine)
    np.testing.assert_array_equal(space.mni_2mm().mask, np.asarray(canonical.dataobj) > 0)
    for eid in ours.ids:
        mine = ours.foci[ours.foci["experiment_id"] == eid]
        theirs = coords["id"] == eid
        # NiMARE sorts coordinates by id; within an experiment the file order stays.
        np.testing.assert_allclose(mine[["x", "y", "z"]].to_numpy(), coords.loc[theirs, ["x", "y", "z"]], atol=1e-9)
        xyz = mine[["x", "y", "z"]].to_numpy()
        assert np.array_equal(grid.mm_to_vox(xyz), ijk[theirs.to_numpy()])
        # the same voxel in world space on neurochange's own grid
        ours_mm = space.mni_2mm().vox_to_mm(space.mni_2mm().mm_to_vox(xyz))
        np.testing.assert_array_equal(ours_mm, grid.vox_to_mm(ijk[theirs.to_numpy()]))


def test_known_values_of_nimare_test_files(nimare_test_data):
    first = read_sleuth(nimare_test_data / "test_sleuth_file.txt")
    assert first.ids == [
        "StudyName-ExperimentName",
        "StudyName2-ExperimentName",
        "StudyName3-ExperimentName StudyName3: ExperimentName2 StudyName3: ExperimentName3",
    ]
    assert first.experiments["n"].tolist() == [50, 46, 20]
    assert len(first.foci) == 7 and set(first.foci["space"]) == {"MNI"}
    assert first.foci[["x", "y", "z"]].iloc[0].tolist() == [-16.0, -58.0, -22.0]
    second = read_sleuth(nimare_test_data / "test_sleuth_file2.txt")
    assert set(second.foci["space"]) == {"TAL"}  # the space the foci were reported in
    expected = space.tal_to_mni(np.array([[-18.0, -58.0, -24.0]]))
    np.testing.assert_array_equal(second.foci[["x", "y", "z"]].iloc[[0]].to_numpy(), expected)
    src = second.provenance["sources"][0]
    assert src["format"] == "sleuth" and len(src["sha256"]) == 64
    assert any("Talairach" in note for note in second.provenance["notes"])


@pytest.mark.parametrize(
    "name,line,field,match",
    [
        ("test_sleuth_file3.txt", 5, "z", "z='dog' is not a number"),
        ("test_sleuth_file4.txt", 5, "z", "missing z"),
        ("test_sleuth_file5.txt", 1, "Reference", "unknown reference space 'Dog'"),
    ],
)
def test_nimare_broken_files_are_input_errors(nimare_test_data, name, line, field, match):
    with pytest.raises(ValueError):  # NiMARE refuses them too
        nimare_sleuth(nimare_test_data / name)
    with pytest.raises(InputError, match=match) as err:
        read_sleuth(nimare_test_data / name)
    assert (err.value.line, err.value.field) == (line, field)
    assert str(err.value).startswith(f"{nimare_test_data / name}, line {line}, field {field}: ")


CANONICAL = """// Reference=MNI
// Smith et al., 2010: post > pre
// Subjects=16
-16 -58 -22
26 -64 -50

// Jones 2012; rest
// Subjects=20
1.5 2 3
"""


@pytest.mark.parametrize(
    "variant",
    [
        CANONICAL.replace("// Reference=MNI", "//Reference = MNI"),
        CANONICAL.replace("// Reference=MNI", "// reference=mni152"),
        CANONICAL.replace("// Subjects=16", "//Subjects = 16").replace("// Subjects=20", "// subjects=20"),
        CANONICAL.replace("-16 -58 -22", "-16\t-58\t-22").replace("1.5 2 3", "1.5\t\t2 \t3"),
        CANONICAL.replace("-16 -58 -22", "  -16   -58\t -22  "),
        CANONICAL.replace("\n\n", "\n"),  # experiments need no blank line between them
        CANONICAL.replace("\n\n", "\n\n\n   \n"),
        "\n\n" + CANONICAL,
        "\ufeff" + CANONICAL,
        CANONICAL.replace("-16 -58 -22", "\u221216 -58.0 -2.2e1"),  # Unicode minus, decimals, exponent
    ],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_syntax_variants_read_alike(tmp_path, variant, newline):
    expected = read_sleuth(write(tmp_path, CANONICAL, "canonical.txt"))
    assert_same_studyset(read_sleuth(write(tmp_path, variant, newline=newline)), expected)
    assert expected.ids == ["Smith et al., 2010-post > pre", "Jones 2012-rest"]


@pytest.mark.parametrize("reference", ["Talairach", "TAL", "tal", " Talairach "])
def test_talairach_is_converted_once(tmp_path, reference):
    ss = read_sleuth(write(tmp_path, CANONICAL.replace("Reference=MNI", f"Reference={reference}")))
    np.testing.assert_array_equal(
        ss.foci[["x", "y", "z"]].to_numpy(), space.tal_to_mni(np.array([[-16, -58, -22], [26, -64, -50], [1.5, 2, 3]]))
    )
    assert ss.foci["space"].tolist() == ["TAL"] * 3
    spm = read_sleuth(write(tmp_path, CANONICAL.replace("MNI", "TAL")), space_transform="icbm_spm")
    np.testing.assert_array_equal(spm.foci[["x", "y", "z"]].to_numpy()[0], space.tal_to_mni([-16, -58, -22], "icbm_spm")[0])


FIELDS = """// Reference=MNI
// Smith et al., 2010: post > pre
// Direction=increase
// Modality = Psychotherapy
// subtype=cbt
// Disorder=mdd
// Design=pre_post
// Imaging=task_fmri
// Sessions=12
// Weeks=16.5
// Target=left amygdala
// Year=2010
// Title=CBT: a trial
// Subjects=16
-16 -58 -22

// Smith et al., 2010: pre > post
// Subjects=16
// Direction=decrease
// Year=2010
// PubMedId=123
1 2 3
"""


def test_neurochange_fields_are_read_and_not_part_of_the_name(tmp_path):
    ss = read_sleuth(write(tmp_path, FIELDS))
    assert ss.ids == ["Smith et al., 2010-post > pre", "Smith et al., 2010-pre > post"]
    first, second = ss.experiments.to_dict("records")
    assert (first["direction"], first["modality"], first["subtype"], first["disorder"]) == (
        "increase", "psychotherapy", "cbt", "mdd")
    assert (first["design"], first["imaging"], first["sessions"], first["weeks"]) == ("pre_post", "task_fmri", 12.0, 16.5)
    assert first["target"] == "left amygdala"
    assert second["direction"] == "decrease"  # fields after // Subjects are read too
    study = ss.studies.iloc[0]
    assert (study["year"], study["title"]) == (2010, "CBT: a trial")
    assert any("PubMedId" in note for note in ss.provenance["notes"])  # unknown Key= after Subjects: skipped


ERRORS = [
    # (text, line, field, message fragment)
    (CANONICAL.replace("-64 -50", "-64 4O"), 5, "z", "z='4O' is not a number"),
    (CANONICAL.replace("26 -64", "nan -64"), 5, "x", "x='nan' is not a number"),
    (CANONICAL.replace("26 -64", "inf -64"), 5, "x", "not a number"),
    (CANONICAL.replace("26 -64", "1e400 -64"), 5, "x", "not a finite number"),
    (CANONICAL.replace("26 -64", "12,5 -64"), 5, "x", "not a number"),
    (CANONICAL.replace("26 -64 -50", "26 -64 -50 7"), 5, "xyz", "found 4"),
    (CANONICAL.replace("26 -64 -50", "26"), 5, "y", "missing y"),
    (CANONICAL.replace("26 -64", "130 -64"), 5, "x", "beyond +-128 mm"),
    (CANONICAL.replace("// Subjects=16\n", ""), 2, "Subjects", "no // Subjects=N line"),
    (CANONICAL.replace("Subjects=16", "Subjects=0"), 3, "Subjects", "positive whole number"),
    (CANONICAL.replace("Subjects=16", "Subjects=-3"), 3, "Subjects", "positive whole number"),
    (CANONICAL.replace("Subjects=16", "Subjects=12.5"), 3, "Subjects", "positive whole number"),
    (CANONICAL.replace("Subjects=16", "Subjects=sixteen"), 3, "Subjects", "positive whole number"),
    (CANONICAL.replace("Subjects=16", "Subjects: 16"), 3, "Subjects", "// Subjects=N"),
    (CANONICAL.replace("Reference=MNI", "Reference=Colin27"), 1, "Reference", "unknown reference space 'Colin27'"),
    (CANONICAL.replace("// Reference=MNI\n", ""), 1, "Reference", "no header"),
    ("\n\n-16 -58 -22\n", 3, "Reference", "no header"),
    ("", 1, "Reference", "empty file"),
    ("// Reference=MNI\n\n", None, None, "no experiments"),
    ("// Reference=MNI\n1 2 3\n", 2, None, "coordinates before any experiment"),
    (CANONICAL + "// Smith et al., 2010: post > pre\n// Subjects=3\n1 1 1\n", 10, None, "appears twice"),
    (CANONICAL + "// A: b\n// Reference=TAL\n// Subjects=3\n1 1 1\n", 11, "Reference", "inside the header"),
    (CANONICAL + "// Reference=Colin\n// A: b\n// Subjects=3\n1 1 1\n", 10, "Reference", "unknown reference space"),
    (CANONICAL.replace("// Subjects=16\n", "// Subjects=16\n// Subjects=17\n"), 4, "Subjects", "second // Subjects"),
    (CANONICAL.replace("// Subjects=16\n", "// Subjects=16\n// a late name\n"), 4, None, "after // Subjects"),
    (CANONICAL.replace("// Smith et al., 2010: post > pre\n", ""), 2, None, "no name line"),
    (CANONICAL + "// Last: one\n// Subjects=3\n", 10, None, "has no foci"),
    (FIELDS.replace("Direction=increase", "Direction=up"), 3, "direction", "'up' is not a valid direction"),
    (FIELDS.replace("Sessions=12", "Sessions=twelve"), 9, "sessions", "not a number"),
    (FIELDS.replace("Sessions=12", "Sessions=-2"), 9, "sessions", "must not be negative"),
    (FIELDS.replace("// Subtype=cbt", "").replace("// subtype=cbt", "// Modality=other"), 5, "modality", "twice"),
    (FIELDS.replace("Year=2010\n// PubMedId", "Year=2011\n// PubMedId"), 20, "year", "one value per study"),
]


@pytest.mark.parametrize("text,line,field,match", ERRORS)
def test_errors_name_file_line_and_field(tmp_path, text, line, field, match):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=match.replace("+", r"\+").replace("(", r"\(")) as err:
        read_sleuth(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), line, field)


def test_undecodable_bytes_fall_back_to_windows_1252(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(CANONICAL.replace("Smith", "M\u00fcller").encode("cp1252"))
    ss = read_sleuth(path)
    assert ss.ids[0] == "M\u00fcller et al., 2010-post > pre"
    assert any("not UTF-8" in note for note in ss.provenance["notes"])


NAMES = [
    "Smith et al., 2010: faces > shapes",
    "Study: a; b",
    "Study; a: b",
    "J. Neurosci: Smith 2010; rest",
    "Smith 2010",
    "Smith 2011:",
    ": only contrast",
    "Lee (1999) pre; post: week 8",
    "http://doi.org/10.1/x: a",
]


def test_study_and_contrast_split_like_nimare(tmp_path):
    from nimare.io import convert_sleuth_to_dict

    text = "// Reference=MNI\n" + "".join(f"// {name}\n// Subjects=10\n{i} 0 0\n\n" for i, name in enumerate(NAMES))
    nimare = convert_sleuth_to_dict(str(write(tmp_path, text)))
    theirs = [(study, contrast) for study, v in nimare.items() for contrast in v["contrasts"]]
    ours = read_sleuth(tmp_path / "in.txt").experiments[["study_id", "contrast_id"]]
    assert sorted(map(tuple, ours.to_numpy().tolist())) == sorted(theirs)
    assert len(theirs) == len(NAMES)
    assert split_study_info("Smith et al., 2010: faces > shapes") == ("Smith et al., 2010", "faces > shapes")
    assert split_study_info("Smith 2010") == ("Smith 2010", "analysis_1")


def test_round_trip_with_fields_and_talairach_written_as_mni(tmp_path, nimare_test_data):
    for original in (read_sleuth(nimare_test_data / "test_sleuth_file2.txt"), read_sleuth(write(tmp_path, FIELDS))):
        out = tmp_path / "out.txt"
        summary = write_studyset(original, out)
        assert "// Reference=MNI" in out.read_text().splitlines()[0]
        assert summary["experiments"] == len(original) and summary["foci"] == len(original.foci)
        assert_same_studyset(read_studyset(out), original)


def test_round_trip_of_a_studyset_with_every_field(tmp_path):
    original = rich_studyset()
    summary = write_sleuth(original, tmp_path / "rich.txt")
    assert summary["experiments_left_out"] == ["12345678-sham"]  # Sleuth cannot hold experiments without foci
    back = read_sleuth(tmp_path / "rich.txt")
    assert_same_studyset(back, original.filter_experiments(back.ids))
    assert back.foci["space"].tolist() == original.foci["space"].tolist()  # Talairach-reported foci stay marked


def test_nimare_reads_what_we_write(tmp_path):
    original = rich_studyset()
    write_sleuth(original, tmp_path / "plain.txt", fields=False)
    dset, coords, _ = nimare_sleuth(tmp_path / "plain.txt")
    assert sorted(dset.ids) == sorted(original.ids[:3])  # without field lines NiMARE finds our ids
    np.testing.assert_array_equal(
        coords.sort_values("id", kind="stable")[["x", "y", "z"]].to_numpy(),
        original.foci.sort_values("experiment_id", kind="stable")[["x", "y", "z"]].to_numpy(),
    )
    write_sleuth(original, tmp_path / "fields.txt")
    dset, _, _ = nimare_sleuth(tmp_path / "fields.txt")  # with them NiMARE still reads it
    assert sorted(dset.metadata["sample_sizes"].str[0]) == [16, 16, 24]


def test_writer_refuses_what_sleuth_cannot_hold(tmp_path):
    no_n = rich_studyset()
    no_n.experiments.loc[0, "n"] = None
    with pytest.raises(InputError, match="sample size"):
        write_sleuth(no_n, tmp_path / "x.txt")
    odd = rich_studyset().filter_experiments(["12345678-1"])
    odd.studies["study_id"] = "A: B"
    odd.experiments["study_id"] = "A: B"
    with pytest.raises(InputError, match="cannot be written to Sleuth"):
        write_sleuth(odd, tmp_path / "y.txt")
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "y.txt").exists()


def test_talairach_focus_beyond_128_mm_once_in_mni_is_an_error(tmp_path):
    text = "// Reference=Talairach\n// A 2010: b\n// Subjects=5\n0 0 0\n0 0 127\n"
    with pytest.raises(InputError, match=r"z=127 \(Talairach\) is 13\d\.\d mm in MNI") as err:
        read_sleuth(write(tmp_path, text))
    assert (err.value.line, err.value.field) == (5, "z")


def test_concatenated_files_keep_each_blocks_space(tmp_path):
    """Sleuth files joined with ``cat``: each ``// Reference`` block is read in its own space."""
    mni = "// Reference=MNI\n// A 2001: c1\n// Subjects=10\n10 20 30\n"
    tal = "// Reference=Talairach\n// B 2002: c1\n// Subjects=12\n10 20 30\n-8 4 2\n"
    joined = read_sleuth(write(tmp_path, mni + "\n" + tal + mni.replace("A 2001", "C 2003")))
    alone = {name: read_sleuth(write(tmp_path, text, name)) for name, text in (("m.txt", mni), ("t.txt", tal))}
    foci = joined.foci.set_index("experiment_id")
    assert list(joined.experiments["experiment_id"]) == ["A 2001-c1", "B 2002-c1", "C 2003-c1"]
    assert list(foci["space"]) == ["MNI", "TAL", "TAL", "MNI"]
    np.testing.assert_allclose(foci.loc[["B 2002-c1"], ["x", "y", "z"]], alone["t.txt"].foci[["x", "y", "z"]])
    np.testing.assert_allclose(foci.loc[["A 2001-c1"], ["x", "y", "z"]], alone["m.txt"].foci[["x", "y", "z"]])
