"""Experiments per database table, and curation at the level a researcher works: include/exclude with
reasons, a table's direction, n and contrast name, and flags on single foci. On a small real corpus."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from corpus_helpers import build_corpus, make_subset

from neurochange.cli import cli
from neurochange.corpus.curation import read_curation
from neurochange.corpus.select import select, write_selection
from neurochange.corpus.store import Corpus
from neurochange.errors import InputError
from neurochange.sources.io import read_studyset, write_studyset

STUDY = "18550030"  # in both databases; Neurosynth gives it two tables
OTHER = "19726030"
EXCLUDED = "12165364"
COLUMNS = ["study_id", "experiment_id", "focus", "x", "y", "z", "include", "reason", "direction", "n", "contrast",
           "flag", "note"]


@pytest.fixture(scope="module")
def db(data_mirror, tmp_path_factory):
    subset = make_subset(data_mirror, tmp_path_factory.mktemp("subset"), first=60, extra_ids=(STUDY, OTHER, EXCLUDED))
    return build_corpus(subset, tmp_path_factory.mktemp("db") / "corpus.duckdb")


@pytest.fixture
def corpus(db):
    with Corpus(db, read_only=True) as c:
        yield c


def _tables(corpus, study=STUDY, source="neurosynth"):
    return corpus.con.execute("SELECT experiment_id, table_id FROM table_catalog WHERE study_id = ? AND source = ? "
                              "ORDER BY position", [study, source]).fetchall()


def _write(tmp_path, rows, name="curation.tsv"):
    path = tmp_path / name
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, sep="\t", index=False)
    return path


# ----------------------------------------------------------------------------- experiments per table
@pytest.mark.parametrize("source", ["neurosynth", "neuroquery"])
def test_tables_split_the_pooled_experiment_exactly(corpus, source):
    pooled = corpus.query(f"study={STUDY}", source=source)
    tables = corpus.query(f"study={STUDY}", source=source, experiments="table")
    raw = corpus.con.execute("SELECT DISTINCT table_id, table_label FROM foci WHERE experiment_id = ?",
                             [f"{STUDY}-{source}"]).fetchall()
    assert len(tables.experiments) == len(raw) >= 2
    assert set(tables.experiments["experiment_id"]) == {f"{STUDY}-{source}-table-{t}" for t, _ in raw}
    assert set(tables.experiments["name"]) == {f"{source}: table {label}" for _, label in raw}
    assert set(tables.experiments["direction"]) == {"unknown"}
    assert set(tables.experiments["study_id"]) == {STUDY} and len(tables.studies) == 1
    assert tables.provenance["flow"][-1]["experiments_per"] == "table"
    assert pooled.provenance["flow"][-1]["experiments_per"] == "study"
    # the same foci, only relabelled
    cols = ["x", "y", "z", "space", "duplicate"]
    assert pooled.foci[cols].sort_values(cols).reset_index(drop=True).equals(
        tables.foci[cols].sort_values(cols).reset_index(drop=True))
    for eid, group in tables.foci.groupby("experiment_id"):
        table_id = eid.rsplit("-table-", 1)[1]
        assert set(group["table_id"]) == {table_id}
        assert group["focus"].tolist() == list(range(1, len(group) + 1))


def test_table_counts_over_the_whole_corpus(corpus):
    n_tables = corpus.con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT experiment_id, table_id FROM foci)").fetchone()[0]
    assert corpus.con.execute("SELECT count(*) FROM table_catalog").fetchone()[0] == n_tables
    assert corpus.con.execute("SELECT count(*) FROM table_foci").fetchone()[0] == \
        corpus.con.execute("SELECT count(*) FROM foci").fetchone()[0]


def test_experiments_level_is_checked(corpus):
    with pytest.raises(InputError, match="experiments must be 'study'"):
        corpus.query("", experiments="contrast")


# ----------------------------------------------------------------------------- curated, signed selection
def test_a_curated_signed_selection_uses_exactly_the_tables_kept(corpus, tmp_path):
    (kept, _), (dropped, _) = _tables(corpus)[:2]
    (other_table, _), *_ = _tables(corpus, OTHER)
    path = _write(tmp_path, [
        {"experiment_id": kept, "include": "yes", "direction": "decrease", "n": 16, "contrast": "post < pre"},
        {"experiment_id": other_table, "include": "yes", "direction": "increase", "n": 9},
        {"study_id": EXCLUDED, "include": "no", "reason": "not_treatment"},
    ])
    selection = select(corpus, f"study={STUDY},{OTHER},{EXCLUDED}", curation=path, experiments="table")
    ex = selection.studyset.experiments.set_index("experiment_id")
    assert set(ex.index) == {kept, other_table}
    assert ex.loc[kept, ["direction", "n", "name"]].tolist() == ["decrease", 16, "post < pre"]
    assert ex.loc[other_table, ["direction", "n"]].tolist() == ["increase", 9]
    step = selection.flow["excluded"][-1]
    n_other_tables = len(_tables(corpus, OTHER)) - 1 + len(_tables(corpus)) - 1
    assert step["criterion"] == "curation"
    assert step["reasons"] == {"not_selected": n_other_tables, "not_treatment": len(_tables(corpus, EXCLUDED))}
    assert dropped not in ex.index
    assert selection.flow["curation"]["set_on_included"] == {"contrast": 1, "direction": 2, "include": 2, "n": 2}
    foci = selection.studyset.foci
    stored = corpus.query(f"study={STUDY}", experiments="table").foci
    assert np.array_equal(foci.loc[foci["experiment_id"] == kept, ["x", "y", "z"]].to_numpy(),
                          stored.loc[stored["experiment_id"] == kept, ["x", "y", "z"]].to_numpy())


def test_focus_flags_move_or_leave_out_single_foci(corpus, tmp_path):
    (kept, _), *_ = _tables(corpus)
    stored = corpus.query(f"study={STUDY}", experiments="table").foci
    mine = stored[stored["experiment_id"] == kept].reset_index(drop=True)
    x, y, z = mine.loc[2, ["x", "y", "z"]]
    path = _write(tmp_path, [
        {"experiment_id": kept, "include": "yes", "direction": "increase", "n": 16},
        {"experiment_id": kept, "focus": 3, "x": round(x, 2), "y": round(y, 2), "z": round(z, 2),
         "flag": "wrong_sign"},
        {"experiment_id": kept, "focus": 1, "flag": "out_of_brain"},
        {"experiment_id": kept, "focus": 2, "flag": "duplicate"},
    ])
    selection = select(corpus, f"study={STUDY}", curation=path, experiments="table")
    ex = selection.studyset.experiments.set_index("experiment_id")
    flipped = f"{kept}-flipped"
    assert ex.loc[flipped, ["direction", "n", "study_id"]].tolist() == ["decrease", 16, STUDY]
    foci = selection.studyset.foci
    assert foci.loc[foci["experiment_id"] == flipped, ["x", "y", "z"]].to_numpy().tolist() == [[x, y, z]]
    assert np.array_equal(foci.loc[foci["experiment_id"] == kept, ["x", "y", "z"]].to_numpy(),
                          mine.loc[3:, ["x", "y", "z"]].to_numpy())
    assert selection.flow["focus_flags"] == {"wrong_sign": 1, "out_of_brain": 1, "duplicate": 1}
    listed = selection.table.set_index("experiment_id")
    assert listed.loc[flipped, ["study_id", "direction"]].tolist() == [STUDY, "decrease"]
    assert list(listed.index).index(flipped) == list(listed.index).index(kept) + 1
    assert selection.flow["included"]["experiments_flipped"] == 1
    # the signed maps see it: one increase and one decrease experiment of the same study
    assert sorted(selection.studyset.experiments["direction"]) == ["decrease", "increase"]


def test_a_curated_selection_round_trips_through_nimare_json_and_sleuth(corpus, tmp_path):
    (kept, _), *_ = _tables(corpus)
    path = _write(tmp_path, [
        {"experiment_id": kept, "include": "yes", "direction": "decrease", "n": 16},
        {"experiment_id": kept, "focus": 2, "flag": "wrong_sign"},
    ])
    selection = select(corpus, f"study={STUDY}", curation=path, experiments="table")
    write_selection(selection, tmp_path / "sel")
    for name in ("again.json", "again.txt"):
        write_studyset(selection.studyset, tmp_path / name)
    for file in (tmp_path / "sel" / "studyset.json", tmp_path / "again.txt"):
        back = read_studyset(file)
        a = selection.studyset.resolved_experiments().set_index("experiment_id")
        b = back.resolved_experiments().set_index("experiment_id")
        assert sorted(a.index) == sorted(b.index)
        assert a.loc[b.index, ["direction", "n"]].astype(str).equals(b[["direction", "n"]].astype(str))
        for eid in a.index:
            fa = selection.studyset.foci.loc[selection.studyset.foci["experiment_id"] == eid, ["x", "y", "z"]]
            fb = back.foci.loc[back.foci["experiment_id"] == eid, ["x", "y", "z"]]
            np.testing.assert_allclose(fa.to_numpy(), fb.to_numpy(), atol=1e-6)


@pytest.mark.parametrize("rows, line, field, words", [
    ([{"study_id": STUDY, "include": "no"}], 2, "reason", "excluded without a reason"),
    ([{"study_id": STUDY, "reason": "other"}], 2, "include", "a reason goes with include=no"),
    ([{"study_id": STUDY, "include": "maybe"}], 2, "include", "write yes or no"),
    ([{"study_id": STUDY, "include": "no", "reason": "boring"}], 2, "exclusion_reason", "valid values: not_treatment"),
    ([{"study_id": STUDY, "contrast": "post"}], 2, "contrast", "give its experiment_id"),
    ([{"experiment_id": "{t}", "focus": 999, "flag": "duplicate"}], 2, "focus", "no focus 999"),
    ([{"experiment_id": "{t}", "focus": 1, "x": 99, "flag": "duplicate"}], 2, "xyz", "lies at"),
    ([{"experiment_id": "{t}", "focus": 1, "flag": "sideways"}], 2, "focus_flag", "valid values: wrong_sign"),
    ([{"experiment_id": "{t}", "focus": 1, "flag": "wrong_sign"}], 2, "flag", "set it to increase or decrease"),
    ([{"experiment_id": "{t}", "focus": 1, "n": 3, "flag": "duplicate"}], 2, "n", "sets only flag"),
    ([{"experiment_id": "{t}", "x": 3}], 2, "focus", "belongs to a focus row"),
    ([{"experiment_id": "{t}", "focus": 1, "flag": "duplicate"},
      {"experiment_id": "{t}", "focus": 1, "flag": "wrong_sign"}], 3, "flag", "flagged duplicate on line 2"),
])
def test_curation_decisions_mistakes_name_line_and_field(corpus, tmp_path, rows, line, field, words):
    (table, _), *_ = _tables(corpus)
    rows = [{k: (v.format(t=table) if isinstance(v, str) else v) for k, v in r.items()} for r in rows]
    path = _write(tmp_path, rows)
    with pytest.raises(InputError) as err:
        select(corpus, f"study={STUDY}", curation=path, experiments="table")
    assert (err.value.file, err.value.line, err.value.field) == (str(path), line, field)
    assert words in err.value.message


def test_a_table_id_in_a_study_level_selection_says_how_to_select_tables(corpus, tmp_path):
    (table, _), *_ = _tables(corpus)
    path = _write(tmp_path, [{"experiment_id": table, "direction": "decrease"}])
    with pytest.raises(InputError, match='experiments = "table"'):
        select(corpus, f"study={STUDY}", curation=path)
    pooled = _write(tmp_path, [{"experiment_id": f"{STUDY}-neurosynth", "direction": "decrease"}], "p.tsv")
    with pytest.raises(InputError, match="one experiment per table: use the table's id"):
        select(corpus, f"study={STUDY}", curation=pooled, experiments="table")


def test_the_old_curation_format_reads_as_before(tmp_path):
    path = tmp_path / "old.tsv"
    path.write_text("study_id\texperiment_id\tmodality\tsubtype\tdirection\tn\tnote\n"
                    f"{STUDY}\t\tpsychotherapy\tcbt\t\t16\t\n\t{STUDY}-neurosynth\t\t\tdecrease\t\ttable 2\n")
    cur = read_curation(path)
    assert len(cur.foci) == 0
    assert sorted(cur.rows["field"]) == ["direction", "modality", "n", "subtype"]


def test_cli_select_by_table_prints_exclusions_by_reason(db, tmp_path):
    with Corpus(db, read_only=True) as corpus:
        (kept, _), *_ = _tables(corpus)
    path = _write(tmp_path, [{"experiment_id": kept, "include": "yes", "direction": "decrease", "n": 12}])
    result = CliRunner().invoke(cli, ["select", f"study={STUDY}", "--experiments", "table", "--curation", str(path),
                                      "--db", str(db), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "by curation (not_selected 1)" in result.output
    flow = json.loads((tmp_path / "out" / "flow.json").read_text())
    assert flow["experiments_per"] == "table" and flow["included"]["experiments"] == 1
    studies = pd.read_csv(tmp_path / "out" / "studies.tsv", sep="\t", dtype=str)
    assert studies["experiment_id"].tolist() == [kept]
