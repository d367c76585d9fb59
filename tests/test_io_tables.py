"""Focus tables (TSV, CSV, XLSX): defaults, aliases, consistency, errors with line and column, round trips."""

from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
import pytest
from io_helpers import assert_same_studyset, rich_studyset

from neurochange import space
from neurochange.errors import InputError
from neurochange.sources.io import read_studyset, write_studyset
from neurochange.sources.io.sleuth import read_sleuth
from neurochange.sources.io.tables import read_table, write_table


def table(tmp_path, text: str, name="in.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "study\tx\ty\tz\ns1\t-16\t-58\t-22\ns1\t26\t-64\t-50\ns2\t1\t2\t3\n"


def test_minimal_table_defaults(tmp_path):
    ss = read_table(table(tmp_path, MINIMAL))
    assert ss.ids == ["s1-1", "s2-1"]  # no experiment column: contrast "1"
    assert ss.experiments["n"].isna().all()
    assert ss.foci["space"].tolist() == ["MNI"] * 3
    assert any("3 foci give no space; taken as MNI" in note for note in ss.provenance["notes"])
    assert ss.provenance["sources"][0]["format"] == "tsv"
    np.testing.assert_array_equal(ss.foci[["x", "y", "z"]].to_numpy()[0], [-16, -58, -22])


def test_full_table_with_fields_spaces_and_aliases(tmp_path):
    text = (
        "Study ID,Contrast,X,Y,Z,Space,Sample Size,Direction,Modality,Year,Title,Notes\n"
        "s1,a,-16,-58,-22,MNI,16,increase,psychotherapy,2010,\"CBT, a trial\",anything\n"
        "s1,a,26,-64,-50,MNI,,,,,,\n"  # empty cells say nothing
        "s1,b,10,10,10,Talairach,16,decrease,,2010,,\n"
        "\n"
        "s2,,1,2,3,tal,20,unsigned,brain_stimulation,,,\n"
    )
    ss = read_table(table(tmp_path, text, "in.csv"))
    assert ss.ids == ["s1-a", "s1-b", "s2-1"]
    ex = ss.experiments.set_index("experiment_id")
    assert ex.loc["s1-a", ["n", "direction", "modality"]].tolist() == [16, "increase", "psychotherapy"]
    assert ex.loc["s1-b", "modality"] is pd.NA
    st = ss.studies.set_index("study_id")
    assert (st.loc["s1", "year"], st.loc["s1", "title"]) == (2010, "CBT, a trial")
    assert ss.foci["space"].tolist() == ["MNI", "MNI", "TAL", "TAL"]
    np.testing.assert_array_equal(ss.foci[["x", "y", "z"]].to_numpy()[2:], space.tal_to_mni([[10, 10, 10], [1, 2, 3]]))
    assert any("'Notes'" in note for note in ss.provenance["notes"])


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_delimiter_is_read_from_the_header(tmp_path, delimiter):
    ss = read_table(table(tmp_path, MINIMAL.replace("\t", delimiter), "in.csv"))
    assert_same_studyset(ss, read_table(table(tmp_path, MINIMAL)))


ERRORS = [
    ("x\ty\tz\n1\t2\t3\n", 1, "study", "missing column 'study'"),
    ("study\tx\ty\n", 1, "z", "missing column 'z'"),
    ("study\tx\tx\ty\tz\n", 1, "x", "repeats column"),
    ("", 1, None, "empty table"),
    ("\nstudy\tx\ty\tz\n", 1, None, "first line must be the header"),
    ("study\tx\ty\tz\n", None, None, "no foci"),
    (MINIMAL + "s3\t1\t2\t4O\n", 5, "z", "z='4O' is not a number"),
    (MINIMAL + "s3\t1\tNaN\t4\n", 5, "y", "not a number"),
    (MINIMAL + "s3\t1\t\t4\n", 5, "y", "not a number"),
    (MINIMAL + "s3\t-129\t2\t4\n", 5, "x", "beyond"),
    (MINIMAL + "\ts1\t2\t4\n", 5, "study", "study is empty"),
    (MINIMAL + "s3\t1\t2\t4\t5\n", 5, None, "more cells than the header"),
    ("study\tx\ty\tz\tspace\ns1\t1\t2\t3\tColin\n", 2, "space", "unknown space 'Colin'"),
    ("study\tx\ty\tz\tn\ns1\t1\t2\t3\t0\n", 2, "n", "positive whole number"),
    ("study\tx\ty\tz\tn\ns1\t1\t2\t3\t12.5\n", 2, "n", "positive whole number"),
    ("study\tx\ty\tz\tn\ns1\t1\t2\t3\t12\n\ns1\t1\t2\t4\t13\n", 4, "n", "n=12 on line 2 but 13"),
    ("study\tx\ty\tz\tyear\ns1\t1\t2\t3\t2010\ns1\t1\t2\t4\t2011\n", 3, "year", "study 's1' has year=2010"),
    ("study\tx\ty\tz\tdisorder\ns1\t1\t2\t3\tdepression\n", 2, "disorder", "not a valid disorder"),
    ('study\ttitle\tx\ty\tz\ns1\t"a\nb"\t1\t2\t3\ns2\t\t1\t2\tq\n', 4, "z", "not a number"),  # quoted line break
]


@pytest.mark.parametrize("text,line,field,match", ERRORS)
def test_errors_name_line_and_column(tmp_path, text, line, field, match):
    path = table(tmp_path, text)
    with pytest.raises(InputError, match=match) as err:
        read_table(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), line, field)


def test_xlsx_cells_keep_ids_and_name_rows(tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["study", "experiment", "x", "y", "z", "n"])
    sheet.append([12345678, 1, -16, -58.5, -22, 16])
    sheet.append([12345678, 1, 26, -64, "4O", 16])
    book.save(tmp_path / "bad.xlsx")
    with pytest.raises(InputError, match="z='4O'") as err:
        read_table(tmp_path / "bad.xlsx")
    assert (err.value.line, err.value.field) == (3, "z")
    sheet.delete_rows(3)
    book.save(tmp_path / "good.xlsx")
    ss = read_studyset(tmp_path / "good.xlsx")
    assert ss.ids == ["12345678-1"] and ss.experiments["n"].tolist() == [16]
    assert ss.foci[["x", "y", "z"]].to_numpy().tolist() == [[-16.0, -58.5, -22.0]]
    (tmp_path / "junk.xlsx").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read Excel"):
        read_table(tmp_path / "junk.xlsx")


@pytest.mark.parametrize("ext", ["tsv", "csv", "xlsx"])
def test_round_trips(tmp_path, ext, nimare_test_data):
    rich = rich_studyset()
    rich.foci["table_id"] = ["t1", "t1", "t2", None, None, "3", "3"]
    rich.foci["source"] = "neurosynth"
    rich = rich.copy()
    originals = [
        rich.filter_experiments(rich.ids[:3]),  # tables cannot hold experiments without foci
        read_sleuth(nimare_test_data / "test_sleuth_file2.txt"),
        read_table(table(tmp_path, MINIMAL)),
    ]
    for original in originals:
        out = tmp_path / f"out.{ext}"
        summary = write_studyset(original, out)
        assert (summary["experiments"], summary["foci"]) == (len(original), len(original.foci))
        # Excel cells hold 16 significant digits; TSV and CSV are exact.
        assert_same_studyset(read_studyset(out), original, atol=1e-12 if ext == "xlsx" else 0.0)


def test_written_columns_and_left_out(tmp_path):
    rich = rich_studyset()
    summary = write_table(rich, tmp_path / "out.tsv")
    assert summary["experiments_left_out"] == ["12345678-sham"]
    header = (tmp_path / "out.tsv").read_text().splitlines()[0].split("\t")
    assert header[:8] == ["study", "experiment", "x", "y", "z", "space", "reported_space", "n"]
    assert "out_of_bounds" not in header and "source" in header  # study source; flags are recomputed
    written = pd.read_csv(tmp_path / "out.tsv", sep="\t")
    assert set(written["space"]) == {"MNI"} and written["reported_space"].tolist().count("TAL") == 2
    far = rich.copy()
    far.foci.loc[0, "x"] = 140.0  # e.g. a database focus beyond +-128 mm: left out, counted
    summary = write_table(far, tmp_path / "far.tsv")
    assert summary["foci_out_of_bounds"] == 1 and summary["foci"] == len(rich.foci) - 1


def test_format_is_chosen_by_extension_then_content(tmp_path, nimare_test_data):
    sleuth = (nimare_test_data / "test_sleuth_file.txt").read_text()
    (tmp_path / "a.sleuth").write_text(sleuth)
    assert read_studyset(tmp_path / "a.sleuth").provenance["sources"][0]["format"] == "sleuth"
    (tmp_path / "b.dat").write_text((nimare_test_data / "test_pain_dataset.json").read_text())
    assert len(read_studyset(tmp_path / "b.dat")) == 21
    (tmp_path / "c.dat").write_text(MINIMAL)
    with pytest.raises(InputError, match=r"unknown file format '\.dat'; use Sleuth text \(\.txt\), NiMARE or NIMADS JSON"):
        read_studyset(tmp_path / "c.dat")
    with pytest.raises(InputError, match="unknown file format"):
        write_studyset(read_studyset(tmp_path / "a.sleuth"), tmp_path / "out.nii")
