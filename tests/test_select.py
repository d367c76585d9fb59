"""Selection with its flow record, curation tables, and the `select` / `corpus tag` commands, on a small real corpus."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from corpus_helpers import build_corpus, make_subset

from neurochange.cli import cli
from neurochange.corpus.curation import read_curation
from neurochange.corpus.select import TABLE_COLUMNS, select, write_selection
from neurochange.corpus.store import Corpus
from neurochange.corpus.tagging.classify import tag_corpus
from neurochange.errors import InputError, OutputExistsError
from neurochange.sources.io import read_studyset

#: Treatment studies kept in the small corpus besides the first records of each database
#: (psychotherapy, rTMS, VNS, ECT and SSRI studies of depression; some in both databases).
TREATMENT_IDS = ("18550030", "19726030", "20421135", "20934190", "12165364", "16043331", "18559283", "17585888",
                 "26247910", "29747140", "22772359")
QUERIES = ("", "year>=2010", "source=neuroquery", "modality=none", "title:depress*",
           "modality=psychotherapy,pharmacotherapy,brain_stimulation disorder=mdd", "term:therapy>=1 year<2015")


def _build(subset, path):
    with Corpus(build_corpus(subset, path)) as corpus:
        tag_corpus(corpus)
    return path


@pytest.fixture(scope="module")
def subset(data_mirror, tmp_path_factory):
    return make_subset(data_mirror, tmp_path_factory.mktemp("subset"), first=150, extra_ids=TREATMENT_IDS)


@pytest.fixture(scope="module")
def db(subset, tmp_path_factory):
    return _build(subset, tmp_path_factory.mktemp("db") / "corpus.duckdb")


@pytest.fixture
def corpus(db):
    with Corpus(db, read_only=True) as c:
        yield c


def _tags(corpus, study_id):
    return corpus.con.execute("SELECT modality, subtype, disorder, design FROM study_tags WHERE study_id = ?",
                              [study_id]).fetchone()


def _curation(tmp_path, text, name="curation.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- selection and flow
@pytest.mark.parametrize("query", QUERIES)
def test_select_includes_what_corpus_query_returns(corpus, query):
    selection = select(corpus, query)
    assert sorted(selection.studyset.ids) == sorted(corpus.query(query).ids)
    assert list(selection.table["experiment_id"]) == selection.studyset.ids


def test_flow_adds_up_and_gives_reasons(corpus):
    query = "modality=psychotherapy,brain_stimulation,pharmacotherapy disorder=mdd year>=2000"
    flow = select(corpus, query).flow
    records, studies = corpus.con.execute("SELECT count(*), count(DISTINCT study_id) FROM experiments").fetchone()
    both = corpus.info()["studies_in_both_databases"]
    assert flow["identified"] == {"experiments": records, "studies": studies,
                                  "by_source": flow["identified"]["by_source"]}
    assert sum(flow["identified"]["by_source"].values()) == records
    assert flow["duplicates_removed"]["experiments"] == both
    assert flow["screened"] == {"experiments": studies, "studies": studies}
    assert [s["criterion"] for s in flow["excluded"]] == query.split()
    excluded = sum(s["studies"] for s in flow["excluded"])
    assert flow["screened"]["studies"] - excluded == flow["included"]["studies"] > 0
    for step in flow["excluded"][:2]:  # tag clauses: the values the excluded studies had
        assert sum(step["reasons"].values()) == step["studies"]
        assert not any(r.split("=")[1] in step["criterion"].split("=")[1].split(",") for r in step["reasons"])
    assert flow["excluded"][0]["reasons"]["modality=none"] > 0
    assert flow["tagging"]["rules_version"] == "2.1" and flow["curation"] is None


def test_source_clause_applies_before_duplicates(corpus):
    flow = select(corpus, "source=neuroquery").flow
    assert flow["excluded_by_source"]["experiments"] == flow["identified"]["by_source"]["neurosynth"]
    assert flow["duplicates_removed"]["experiments"] == 0
    assert flow["included"]["by_source"] == {"neuroquery": flow["identified"]["by_source"]["neuroquery"]}


def test_every_included_study_says_why(corpus):
    query = "modality=psychotherapy,brain_stimulation,pharmacotherapy disorder=mdd"
    table = select(corpus, query).table
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) >= 5
    for row in table.itertuples():
        assert f"modality={row.modality}" in row.included_because and "disorder=mdd" in row.included_because
        assert row.evidence_modality.startswith(f"modality={row.modality}: ")
        assert row.evidence_disorder.startswith("disorder=mdd: ")
        assert row.tagged_by == "rules 2.1"
        assert (row.modality, row.disorder) == _tags(corpus, row.study_id)[::2]
    assert {"18550030", "20421135"} <= set(table["study_id"])


def test_write_selection_writes_the_four_files(corpus, tmp_path):
    selection = select(corpus, "disorder=mdd")
    out = tmp_path / "sel"
    summary = write_selection(selection, out)
    assert sorted(p.name for p in out.iterdir()) == ["flow.json", "provenance.json", "studies.tsv", "studyset.json"]
    table = pd.read_csv(out / "studies.tsv", sep="\t", dtype={"study_id": str})
    assert list(table["study_id"]) == list(selection.table["study_id"])
    back = read_studyset(out / "studyset.json")
    with_foci = set(selection.studyset.foci["experiment_id"])
    assert set(back.ids) == {e for e in selection.studyset.ids if e in with_foci}
    assert summary["foci"] == len(back.foci) == len(selection.studyset.analysis_foci()[0].foci)
    assert json.loads((out / "flow.json").read_text()) == json.loads(json.dumps(selection.flow))
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["tagging"]["rules_version"] == "2.1" and provenance["query"] == "disorder=mdd"
    with pytest.raises(OutputExistsError):
        write_selection(selection, out)
    write_selection(selection, out, overwrite=True)


@pytest.mark.parametrize("query, field, words", [
    ("modality=psychotherpy", "modality", "valid values: psychotherapy, brain_stimulation"),
    ("treatment=cbt", "treatment", "valid fields: study, experiment"),
    ("design=prepost", "design", "valid values: pre_post, randomized_comparison"),
    ("source=brainmap", "source", "this corpus holds: neurosynth, neuroquery"),
    ("term:psychotherapyy", "term", "not in NeuroQuery's vocabulary"),
])
def test_bad_queries_say_what_is_valid(corpus, query, field, words):
    with pytest.raises(InputError) as err:
        select(corpus, query)
    assert err.value.field == field and words in str(err.value)


# ----------------------------------------------------------------------------- curation
def test_curated_tags_win_over_rules(corpus, tmp_path):
    sid = corpus.con.execute("SELECT study_id FROM study_tags WHERE modality = 'none' ORDER BY study_id LIMIT 1"
                             ).fetchone()[0]
    path = _curation(tmp_path, "study_id\tmodality\tsubtype\tdisorder\tdesign\tnote\n"
                               f"{sid}\tpsychotherapy\tcbt\tmdd\tpre_post\tchecked the full text\n")
    query = "modality=psychotherapy subtype=cbt disorder=mdd design=pre_post"
    assert sid not in set(select(corpus, query).table["study_id"])
    selection = select(corpus, query, curation=path)
    row = selection.table[selection.table["study_id"] == sid].iloc[0]
    assert (row.modality, row.subtype, row.disorder, row.design) == ("psychotherapy", "cbt", "mdd", "pre_post")
    assert row.curated == "curation.tsv:2 (checked the full text)" and row.tagged_by == "rules 2.1"
    study = selection.studyset.studies.set_index("study_id").loc[sid]
    assert (study.modality, study.subtype) == ("psychotherapy", "cbt")
    record = selection.flow["curation"]
    assert record["sha256"] == read_curation(path).sha256 and record["studies"] == 1 and record["values"] == 4
    assert selection.provenance["curation"] == record


def test_experiment_direction_and_n_reach_the_studyset_and_nimare_json(corpus, tmp_path):
    eid, sid = corpus.con.execute("SELECT experiment_id, study_id FROM catalog WHERE study_id = '18550030' "
                                  "AND source = 'neurosynth'").fetchone()
    path = _curation(tmp_path, f"experiment_id,direction,n,frequency_hz\n{eid},decrease,17,\n", "c.csv")
    selection = select(corpus, "study=18550030", curation=path)
    ex = selection.studyset.experiments.set_index("experiment_id").loc[eid]
    assert (ex.direction, ex.n) == ("decrease", 17)
    assert selection.table.iloc[0][["direction", "n"]].tolist() == ["decrease", 17]
    selection_q = select(corpus, "direction=decrease n>=17", curation=path)
    assert selection_q.studyset.ids == [eid]
    write_selection(selection, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "studyset.json").read_text())
    contrast = data[sid]["contrasts"]["neurosynth"]
    assert contrast["metadata"]["sample_sizes"] == [17] and contrast["metadata"]["direction"] == "decrease"


def test_study_rows_reach_every_experiment_and_keep_modality_and_subtype_consistent(corpus, tmp_path):
    path = _curation(tmp_path, "study_id\tmodality\tsubtype\tn\n16043331\t\trtms\t12\n18550030\tpharmacotherapy\t\t\n")
    selection = select(corpus, "study=16043331,18550030", curation=path, source="neuroquery")
    tags = selection.table.set_index("study_id")
    assert tags.loc["16043331", ["modality", "subtype", "n"]].tolist() == ["brain_stimulation", "rtms", 12]
    assert tags.loc["18550030", "modality"] == "pharmacotherapy" and pd.isna(tags.loc["18550030", "subtype"])
    experiments = selection.studyset.resolved_experiments().set_index("study_id")
    assert experiments.loc["16043331", ["modality", "subtype", "n"]].tolist() == ["brain_stimulation", "rtms", 12]


def test_a_title_frequency_reaches_the_experiments_unless_curated(corpus, tmp_path):
    selection = select(corpus, "study=22772359")  # "... after-effects of 1-Hz magnetic stimulation ..."
    assert selection.table["frequency_hz"].tolist() == [1.0]
    assert selection.studyset.experiments["frequency_hz"].tolist() == [1.0]
    path = _curation(tmp_path, "study_id\tfrequency_hz\n22772359\t0.9\n")
    curated = select(corpus, "study=22772359", curation=path)
    assert curated.table["frequency_hz"].tolist() == [0.9]
    assert curated.studyset.experiments["frequency_hz"].tolist() == [0.9]


def test_curation_survives_a_rebuild(subset, tmp_path):
    path = _curation(tmp_path, "study_id\tmodality\tdisorder\tdesign\n12165364\tbrain_stimulation\tmdd\tpre_post\n")
    query = "modality=brain_stimulation disorder=mdd design=pre_post"
    results = []
    for name in ("first.duckdb", "rebuilt.duckdb"):
        with Corpus(_build(subset, tmp_path / name), read_only=True) as corpus:
            selection = select(corpus, query, curation=path)
            results.append((selection.table.drop(columns="curated"), selection.flow["curation"]))
    assert results[0][0].equals(results[1][0]) and results[0][1] == results[1][1]
    assert "12165364" in set(results[0][0]["study_id"])


@pytest.mark.parametrize("text, line, field, words", [
    ("study_id\tmodality\n18550030\tpsychotherapy\n99999999\tpsychotherapy\n", 3, "study_id", "not in the corpus"),
    ("study_id\tmodality\n18550030\ttalk_therapy\n", 2, "modality", "valid values: psychotherapy"),
    ("study_id\tdisorder\n18550030\tdepression\n", 2, "disorder", "valid values: mdd, bipolar"),
    ("study_id\tdirection\n18550030\tup\n", 2, "direction", "valid values: increase, decrease"),
    ("study_id\tn\n18550030\t0\n", 2, "n", "positive whole number"),
    ("study_id\tn\n18550030\t12.5\n", 2, "n", "whole number"),
    ("study_id\tmodaliti\n18550030\tpsychotherapy\n", 1, "modaliti", "a curation table has columns study_id"),
    ("modality\npsychotherapy\n", 1, "study_id", "needs a study_id or an experiment_id column"),
    ("study_id\tn\n18550030\t12\n18550030\t14\n", 3, "n", "has n=12 on line 2 but 14 here"),
    ("study_id\tmodality\tsubtype\n18550030\tpharmacotherapy\tcbt\n", 2, "subtype", "not a subtype of pharmacotherapy"),
    ("study_id\tsubtype\n18550030\tssri\n", None, None, None),  # a subtype alone sets its modality: fine
    ("experiment_id\tdirection\n18550030-brainmap\tdecrease\n", 2, "experiment_id", "not in the corpus"),
    ("study_id\texperiment_id\tn\n19726030\t18550030-neurosynth\t5\n", 2, "study_id", "belongs to study '18550030'"),
])
def test_curation_mistakes_name_file_line_and_field(corpus, tmp_path, text, line, field, words):
    path = _curation(tmp_path, text)
    if words is None:
        tags = select(corpus, "study=18550030", curation=path).table.iloc[0]
        assert (tags.modality, tags.subtype) == ("pharmacotherapy", "ssri")
        return
    with pytest.raises(InputError) as err:
        select(corpus, "study=18550030", curation=path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), line, field)
    assert words in err.value.message


def test_curation_in_csv_and_excel(corpus, tmp_path):
    import openpyxl

    csv = _curation(tmp_path, "Study ID,Design\n18550030,randomized_comparison\n", "c.csv")
    book = openpyxl.Workbook()
    book.active.append(["study_id", "design"])
    book.active.append([18550030, "randomized comparison"])
    book.save(tmp_path / "c.xlsx")
    for path in (csv, tmp_path / "c.xlsx"):
        assert select(corpus, "study=18550030", curation=path).table.iloc[0]["design"] == "randomized_comparison"


# ----------------------------------------------------------------------------- command line
def test_cli_select_and_corpus_tag(db, tmp_path):
    work = tmp_path / "corpus.duckdb"
    shutil.copyfile(db, work)
    runner = CliRunner()
    result = runner.invoke(cli, ["corpus", "tag", "--db", str(work)])
    assert result.exit_code == 0 and result.output.startswith("tags") and "unchanged" in result.output
    out = tmp_path / "sel"
    query = "modality=psychotherapy,brain_stimulation,pharmacotherapy disorder=mdd"
    result = runner.invoke(cli, ["select", query, "--out", str(out), "--db", str(work)])
    assert result.exit_code == 0, result.output
    assert "excluded" in result.output and f"wrote {out}" in result.output
    assert (out / "flow.json").exists()
    again = runner.invoke(cli, ["select", query, "--out", str(out), "--db", str(work)])
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.parametrize("args", [
    ["select", "modality=psychotherpy"],
    ["select", "treatment=cbt"],
    ["select", "disorder=mdd", "--curation", "{tmp}/missing.tsv"],
    ["corpus", "tag", "--rules", "{tmp}/missing.toml"],
])
def test_cli_mistakes_give_one_line_and_exit_2(db, tmp_path, args):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "select":
        args += ["--out", str(tmp_path / "out")]
    work = tmp_path / "corpus.duckdb"
    shutil.copyfile(db, work)
    result = CliRunner().invoke(cli, [*args, "--db", str(work)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("neurochange: error:")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
