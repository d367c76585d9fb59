"""Fuzzing the readers: any text or bytes give a StudySet or an InputError, never another exception.

What does read is checked further: finite MNI foci, and it writes and reads back the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from io_helpers import assert_same_studyset

from neurochange.errors import InputError
from neurochange.sources.io import read_studyset, write_studyset
from neurochange.sources.io.nimare_json import read_nimare_json
from neurochange.sources.io.sleuth import read_sleuth
from neurochange.sources.io.tables import read_table

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JUNK_NUMBERS = st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "4O", "1_0", "12,5", "\u0663", "",
                                "0x10", "-128.0001", "129"])
GOOD_NUMBERS = st.one_of(
    st.integers(-100, 100).map(str),
    st.floats(-100, 100).map(repr),
    st.sampled_from(["-0", "+5", ".5", "5.", "\u221212", "1e-400", "128", "-127.5", "-1.5e1"]),
)


def mostly(good, bad, one_in: int = 25):
    """``good``, except about one draw in ``one_in`` from ``bad`` (a middle value: Hypothesis favours the ends)."""
    return st.integers(0, one_in - 1).flatmap(lambda i: bad if i == one_in // 2 else good)


NUMBERS = mostly(GOOD_NUMBERS, JUNK_NUMBERS, 40)
WORDS = st.one_of(st.sampled_from(["Smith et al., 2010", "a: b", "x; y", "2010", "==", "//", "Subjects", ""]),
                  st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=8))
FIELD_VALUES = {
    "Direction": ["increase", "decrease", "unsigned", ""],
    "Modality": ["psychotherapy", "Brain stimulation"],
    "Title": ["A: b", "x=y", ""],
    "Reported_space": ["TAL", "MNI"],
    "Sessions": ["12", "0.5"],
    "PubMedId": ["123", "x"],
}
FIELD_LINES = st.sampled_from(sorted(FIELD_VALUES)).flatmap(
    lambda key: st.builds(lambda v: f"// {key}={v}", mostly(st.sampled_from(FIELD_VALUES[key]), st.one_of(
        st.just("x"), NUMBERS), 10))
)
JUNK_LINES = st.one_of(
    st.sampled_from(["// Reference=MNI", "// Reference=Dog", "// Subjects=", "// Subjects=0", "// Subjects: 4", "//",
                     "// Subjects=2.5", "1 2", "1 2 3 4"]),
    st.text(max_size=12),
)


@st.composite
def sleuth_texts(draw):
    """Mostly well-formed Sleuth files with a few lines changed, dropped or added."""
    lines = [draw(st.sampled_from(["// Reference=MNI", "// Reference = Talairach", "//Reference=TAL"]))]
    for _ in range(draw(st.integers(1, 4))):
        lines.append("")
        lines.append(f"// {draw(WORDS)}: {draw(WORDS)}")
        lines += draw(st.lists(FIELD_LINES, max_size=2))
        lines.append(f"// Subjects={draw(mostly(st.integers(1, 99).map(str), NUMBERS))}")
        for _ in range(draw(st.integers(1, 4))):
            lines.append(draw(st.sampled_from([" ", "\t", "  "])).join(draw(st.lists(NUMBERS, min_size=3, max_size=3))))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        index = draw(st.integers(0, len(lines)))
        action = draw(st.sampled_from(["insert", "replace", "drop"]))
        if action == "insert" or index == len(lines):
            lines.insert(index, draw(JUNK_LINES))
        elif action == "replace":
            lines[index] = draw(JUNK_LINES)
        else:
            del lines[index]
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def read_or_input_error(reader, path):
    try:
        studyset = reader(path)
    except InputError as err:
        assert str(err) and err.file == str(path)
        event(f"InputError field {err.field}")
        return None
    event("read")
    return studyset


def check_read(studyset, folder):
    """What reads must be finite, MNI, and survive a write and read back (TSV) unchanged."""
    xyz = studyset.foci[["x", "y", "z"]].to_numpy(dtype=float)
    assert np.isfinite(xyz).all()
    assert set(studyset.foci["space"]) <= {"MNI", "TAL"}
    if len(studyset.foci) == 0:
        return
    write_studyset(studyset, folder / "back.tsv")
    kept = studyset.filter_experiments(studyset.foci["experiment_id"].unique())
    assert_same_studyset(read_studyset(folder / "back.tsv"), kept)


@FUZZ
@given(text=st.text())
def test_sleuth_reader_on_any_text(folder, text):
    path = folder / "any.txt"
    path.write_text(text, encoding="utf-8", newline="")
    read_or_input_error(read_sleuth, path)


@FUZZ
@given(data=st.binary())
def test_readers_on_any_bytes(folder, data):
    for name, reader in (("b.txt", read_sleuth), ("b.tsv", read_table), ("b.csv", read_table),
                         ("b.xlsx", read_table), ("b.json", read_nimare_json)):
        path = folder / name
        path.write_bytes(data)
        read_or_input_error(reader, path)


@FUZZ
@given(text=sleuth_texts())
def test_sleuth_reader_on_sleuth_like_text(folder, text):
    path = folder / "like.txt"
    path.write_bytes(text.encode("utf-8"))
    studyset = read_or_input_error(read_sleuth, path)
    if studyset is not None:
        check_read(studyset, folder)
        # Sleuth back: either a clear refusal or the same experiments.
        try:
            write_studyset(studyset, folder / "back.txt")
        except InputError:
            return
        assert_same_studyset(read_sleuth(folder / "back.txt"), studyset)


OPTIONAL_COLUMNS = ["experiment", "space", "n", "direction", "year", "title", "reported_space", "table_id", "notes", ""]
CELLS = {
    "study": mostly(st.sampled_from(["s1", "s2", "12345678"]), st.just(""), 10),
    "experiment": st.sampled_from(["1", "a", ""]),
    "space": mostly(st.sampled_from(["MNI", "TAL", "Talairach", "UNKNOWN", ""]), st.just("colin"), 10),
    "reported_space": st.sampled_from(["MNI", "TAL", ""]),
    "n": mostly(st.just("20"), NUMBERS, 10),
    "direction": mostly(st.sampled_from(["increase", ""]), st.sampled_from(["decrease", "up"]), 10),
    "year": mostly(st.sampled_from(["2010", ""]), st.sampled_from(["2011", "soon"]), 10),
}


@st.composite
def table_texts(draw):
    """Mostly well-formed focus tables with a few cells or rows changed."""
    delimiter = draw(st.sampled_from(["\t", ",", ";"]))
    columns = ["study", "x", "y", "z"] + draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), max_size=4, unique=True))
    columns = draw(st.permutations(columns))
    rows = [columns]
    for _ in range(draw(st.integers(0, 6))):
        rows.append([draw(CELLS.get(c, NUMBERS if c in "xyz" else st.text(max_size=6))) for c in columns])
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        row = draw(st.integers(0, len(rows) - 1))
        if rows[row]:
            rows[row][draw(st.integers(0, len(rows[row]) - 1))] = draw(
                st.one_of(JUNK_NUMBERS, st.text(max_size=6), st.just('"a' + delimiter + 'b"'), st.just('"')))
    if draw(st.integers(0, 9)) == 0:
        rows.append([draw(st.text(max_size=4))])
    name = "like.tsv" if delimiter == "\t" else "like.csv"
    return name, draw(st.sampled_from(["\n", "\r\n"])).join(delimiter.join(r) for r in rows)


@FUZZ
@given(table=table_texts())
def test_table_reader_on_table_like_text(folder, table):
    name, text = table
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    studyset = read_or_input_error(read_table, path)
    if studyset is not None:
        check_read(studyset, folder)


@FUZZ
@given(text=st.text())
def test_table_reader_on_any_text(folder, text):
    path = folder / "any.tsv"
    path.write_text(text, encoding="utf-8", newline="")
    read_or_input_error(read_table, path)


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10,
)
CONTRAST = st.fixed_dictionaries(
    {},
    optional={
        "coords": st.fixed_dictionaries(
            {}, optional={"space": st.sampled_from(["MNI", "TAL", "UNKNOWN", "x", None]),
                          **{a: st.lists(st.one_of(st.floats(-150, 150), st.none(), st.text(max_size=3)), max_size=3)
                             for a in "xyz"}}),
        "metadata": st.dictionaries(st.sampled_from(["sample_sizes", "sample_size", "direction", "year", "title",
                                                     "sessions"]), JSON_VALUES, max_size=3),
    },
)


@FUZZ
@given(data=st.dictionaries(st.text(max_size=4), st.one_of(
    JSON_VALUES, st.fixed_dictionaries({"contrasts": st.dictionaries(st.text(max_size=4), CONTRAST, max_size=3)}))))
def test_json_reader_on_dataset_like_json(folder, data):
    import json

    path = folder / "like.json"
    path.write_text(json.dumps(data))
    studyset = read_or_input_error(read_nimare_json, path)
    if studyset is not None:
        write_studyset(studyset, folder / "back.json")
        assert_same_studyset(read_nimare_json(folder / "back.json"), studyset)
