"""The DuckDB corpus: counts, idempotent and all-or-nothing ingests, one source per study in
queries, imported files, the `corpus` commands, and one full build of both databases."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from click.testing import CliRunner
from corpus_helpers import (
    OUT_OF_BOUNDS_IDS,
    build_corpus,
    copy_subset,
    make_subset,
    read_raw,
    rewrite_gz_text,
    truncate_gz,
)

from neurochange.cli import cli
from neurochange.corpus import schema as schema_module
from neurochange.corpus.store import DATABASE_FILES, Corpus, build
from neurochange.errors import DataUnavailableError, InputError
from neurochange.sources.io import read_studyset, write_studyset
from neurochange.sources.io.databases import read_neuroquery, read_neurosynth
from neurochange.studyset import StudySet

NS, NQ = DATABASE_FILES["neurosynth"], DATABASE_FILES["neuroquery"]
TABLES = ("sources", "study_sources", "experiments", "foci", "study_tags", "terms", "term_counts")


def fingerprint(corpus: Corpus) -> dict:
    """Row count and an order-free hash of every table: equal fingerprints, equal contents."""
    return {t: corpus.con.execute(f"SELECT count(*), sum(hash(r)::HUGEINT) FROM {t} r").fetchone() for t in TABLES}


@pytest.fixture(scope="module")
def subset(data_mirror, tmp_path_factory):
    return make_subset(data_mirror, tmp_path_factory.mktemp("subset"))


@pytest.fixture(scope="module")
def built(subset, tmp_path_factory):
    """A corpus file holding both subsets (closed; copy it before writing)."""
    return build_corpus(subset, tmp_path_factory.mktemp("db") / "corpus.duckdb")


@pytest.fixture
def corpus(built, tmp_path):
    """A writable copy of the small corpus."""
    path = tmp_path / "corpus.duckdb"
    shutil.copyfile(built, path)
    with Corpus(path) as c:
        yield c


@pytest.fixture(scope="module")
def reader_sets(subset):
    return {
        "neurosynth": read_neurosynth(subset["neurosynth"][NS["coordinates"]], subset["neurosynth"][NS["metadata"]]),
        "neuroquery": read_neuroquery(subset["neuroquery"][NQ["coordinates"]], subset["neuroquery"][NQ["metadata"]]),
    }


def user_studyset(pmid: str, *, x=1.0, contrast="c1") -> StudySet:
    """Two curated experiments: one of a database study (``pmid``), one of a study of its own."""
    return StudySet(
        studies=pd.DataFrame({"study_id": [pmid, "smith2020"], "title": ["Curated", "CBT for depression"],
                              "year": [2011, 2020]}),
        experiments=pd.DataFrame({
            "experiment_id": [f"{pmid}-{contrast}", "smith2020-post"], "study_id": [pmid, "smith2020"],
            "contrast_id": [contrast, "post"], "n": [20, 15], "direction": ["increase", "decrease"],
            "modality": ["psychotherapy", "psychotherapy"], "subtype": ["cbt", "cbt"], "disorder": ["mdd", "gad"]}),
        foci=pd.DataFrame({"experiment_id": [f"{pmid}-{contrast}"] * 2 + ["smith2020-post"],
                           "x": [x, 2.0, 3.0], "y": [4.0, 5.0, 6.0], "z": [7.0, 8.0, 9.0], "space": "MNI"}),
    )


# ----------------------------------------------------------------------------- counts
def test_counts_match_the_files(corpus, subset):
    info = corpus.info()
    ns_meta = read_raw(subset["neurosynth"][NS["metadata"]])
    nq_meta = read_raw(subset["neuroquery"][NQ["metadata"]])
    for name, meta in (("neurosynth", ns_meta), ("neuroquery", nq_meta)):
        files = DATABASE_FILES[name]
        coords = pd.read_csv(subset[name][files["coordinates"]], sep="\t")
        got = info["sources"][name]
        assert (got["studies"], got["experiments"], got["foci"]) == (len(meta), len(meta), len(coords))
        assert got["foci_duplicate"] == int(coords.duplicated(["id", "table_id", "x", "y", "z"]).sum())
        assert got["foci_out_of_bounds"] == int((coords[["x", "y", "z"]].abs() > 128).any(axis=1).sum())
        assert got["files"] == len(files)
    both = set(ns_meta["id"]) & set(nq_meta["id"])
    assert info["studies_in_both_databases"] == len(both) > 0
    assert info["studies"] == len(set(ns_meta["id"]) | set(nq_meta["id"]))
    assert info["sources"]["neuroquery"]["foci_out_of_bounds"] > 0
    nnz = sum(scipy.sparse.load_npz(subset["neuroquery"][NQ[f]]).nnz for f in ("abstract", "title", "keywords"))
    assert (info["terms"], info["term_counts"]) == (156_521, nnz)


def test_studies_view_has_one_row_per_study(corpus):
    n, distinct = corpus.con.execute("SELECT count(*), count(DISTINCT study_id) FROM studies").fetchone()
    assert n == distinct == corpus.info()["studies"]
    # metadata of a study in both comes from Neurosynth (year, journal); NeuroQuery has titles only
    row = corpus.con.execute(
        "SELECT s.year, s.journal, s.sources FROM studies s WHERE len(s.sources) = 2 LIMIT 1").fetchone()
    assert row[0] is not None and row[1] is not None and row[2] == ["neurosynth", "neuroquery"]


# ----------------------------------------------------------------------------- ingest
def test_second_ingest_changes_nothing(corpus, subset):
    before = fingerprint(corpus)
    for name in ("neurosynth", "neuroquery"):
        assert corpus.ingest_database(name, subset[name])["status"] == "unchanged"
    assert fingerprint(corpus) == before


def test_new_option_replaces_the_source(corpus, subset):
    before = corpus.info()["sources"]["neurosynth"]
    report = corpus.ingest_database("neurosynth", subset["neurosynth"], tal_method="icbm_spm")
    assert report["status"] == "replaced"
    assert {k: report[k] for k in ("studies", "foci", "foci_duplicate")} == {
        k: before[k] for k in ("studies", "foci", "foci_duplicate")}
    assert corpus.info()["sources"]["neurosynth"]["options"] == {"tal_method": "icbm_spm"}
    assert corpus.ingest_database("neurosynth", subset["neurosynth"], tal_method="icbm_spm")["status"] == "unchanged"


def _corrupt_truncated(files):
    truncate_gz(files["neurosynth"][NS["coordinates"]])


def _corrupt_columns(files):
    rewrite_gz_text(files["neurosynth"][NS["metadata"]], lambda t: t.replace("\tspace\t", "\tspaces\t", 1))


def _corrupt_number(files):
    lines = None

    def edit(text):
        nonlocal lines
        lines = text.split("\n")
        parts = lines[100].split("\t")
        parts[4] = "12,5"
        lines[100] = "\t".join(parts)
        return "\n".join(lines)

    rewrite_gz_text(files["neurosynth"][NS["coordinates"]], edit)


def _corrupt_matrix(files):
    path = files["neuroquery"][NQ["title"]]
    path.write_bytes(path.read_bytes()[:-200])


@pytest.mark.parametrize("corrupt, name, where", [
    (_corrupt_truncated, "neurosynth", (NS["coordinates"], None, "truncated")),
    (_corrupt_columns, "neurosynth", (NS["metadata"], 1, "columns are")),
    (_corrupt_number, "neurosynth", (NS["coordinates"], 101, "'12,5' is not a number")),
    (_corrupt_matrix, "neuroquery", (NQ["title"], None, "cannot read sparse matrix")),
])
def test_corrupt_file_leaves_corpus_unchanged(corpus, subset, tmp_path, corrupt, name, where):
    files = copy_subset(subset, tmp_path / "copy")
    corrupt(files)
    before = fingerprint(corpus)
    with pytest.raises(InputError) as info:
        corpus.ingest_database(name, files[name])
    file_name, line, words = where
    assert info.value.file.endswith(file_name) and words in info.value.message
    if line is not None:
        assert info.value.line == line
    assert fingerprint(corpus) == before


def test_failure_mid_write_rolls_back(corpus, subset, monkeypatch):
    before = fingerprint(corpus)
    original = Corpus._insert

    def failing(self, table, df):
        if table == "foci":
            raise RuntimeError("disk full")
        return original(self, table, df)

    monkeypatch.setattr(Corpus, "_insert", failing)
    with pytest.raises(RuntimeError):
        corpus.ingest_database("neurosynth", subset["neurosynth"], tal_method="icbm_spm")
    assert fingerprint(corpus) == before
    monkeypatch.setattr(Corpus, "_insert", original)
    assert corpus.ingest_database("neurosynth", subset["neurosynth"])["status"] == "unchanged"


# ----------------------------------------------------------------------------- queries
def test_query_counts_each_study_once_preferring_neurosynth(corpus, reader_sets):
    ns, nq = (reader_sets[n] for n in ("neurosynth", "neuroquery"))
    both = set(ns.studies["study_id"]) & set(nq.studies["study_id"])
    for prefer, first, second in (("neurosynth", ns, nq), ("neuroquery", nq, ns)):
        result = corpus.query("", source=prefer)
        assert len(result.studies) == len(result.experiments) == corpus.info()["studies"]
        chosen = result.experiments.set_index("study_id")["contrast_id"]
        assert (chosen[sorted(both)] == prefer).all()
        expected = pd.concat([first.foci, second.foci[~second.foci["experiment_id"].str.removesuffix(
            "-" + second.experiments["contrast_id"].iloc[0]).isin(both)]])
        assert len(result.foci) == len(expected)
        flow = result.provenance["flow"][0]
        assert flow["by_source"][prefer] == len(first.studies)
        assert flow["studies"] == len(result.studies) and flow["foci"] == len(result.foci)
    # the chosen experiment's foci are the reader's, in the published order
    one = corpus.query(f"study={sorted(both)[0]}", source="neuroquery")
    theirs = nq.foci[nq.foci["experiment_id"] == one.ids[0]]
    np.testing.assert_array_equal(one.foci[["x", "y", "z"]].to_numpy(), theirs[["x", "y", "z"]].to_numpy())
    assert one.foci["table_id"].tolist() == theirs["table_id"].tolist()


def test_source_clause_selects_a_database(corpus, reader_sets):
    result = corpus.query("source=neuroquery")
    assert (result.experiments["contrast_id"] == "neuroquery").all()
    assert len(result.experiments) == len(reader_sets["neuroquery"].experiments)


def test_out_of_bounds_foci_are_kept_flagged_and_left_out_of_analyses(corpus):
    result = corpus.query("study=" + ",".join(OUT_OF_BOUNDS_IDS), source="neuroquery")
    n_oob = int(result.foci["out_of_bounds"].sum())
    assert n_oob == corpus.info()["sources"]["neuroquery"]["foci_out_of_bounds"] == 8
    assert any(f"{n_oob} foci lie beyond +-128 mm" in note for note in result.provenance["notes"])
    kept, counts = result.analysis_foci()
    assert counts["foci_out_of_bounds"] == n_oob and len(kept.foci) == len(result.foci) - n_oob


def test_duplicates_kept_unless_dropped(corpus):
    with_dups = corpus.query("source=neurosynth")
    n_dup = int(with_dups.foci["duplicate"].sum())
    assert n_dup == corpus.info()["sources"]["neurosynth"]["foci_duplicate"] > 0
    without = corpus.query("source=neurosynth", drop_duplicates=True)
    assert len(without.foci) == len(with_dups.foci) - n_dup and not without.foci["duplicate"].any()
    assert without.provenance["flow"][0]["foci"] == len(without.foci)


def test_query_provenance_records_files_and_spaces(corpus):
    result = corpus.query("source=neurosynth")
    files = {f["file"]: f for f in result.provenance["sources"]}
    assert set(files) == {NS["coordinates"], NS["metadata"]}
    assert all(len(f["sha256"]) == 64 and f["options"] == {"tal_method": "icbm_other"} for f in files.values())
    spaces = corpus.con.execute("SELECT reported_space, count(*) FROM study_sources WHERE source = 'neurosynth' "
                                "GROUP BY ALL").fetchall()
    note = next(n for n in result.provenance["notes"] if n.startswith("neurosynth:"))
    for reported, n in spaces:
        label = {"MNI": "reported in MNI", "TAL": "in Talairach", "UNKNOWN": "of unknown space"}[reported]
        assert f"{n:,} {'study' if n == 1 else 'studies'} {label}" in note


# ----------------------------------------------------------------------------- imported files
def test_imported_experiments_win_for_their_study(corpus, reader_sets, tmp_path):
    pmid = sorted(set(reader_sets["neurosynth"].studies["study_id"]) & set(reader_sets["neuroquery"].studies["study_id"]))[0]
    path = tmp_path / "curated.json"
    write_studyset(user_studyset(pmid), path)
    report = corpus.ingest_file(path)
    assert (report["source"], report["status"], report["experiments"], report["foci"]) == ("curated.json", "ingested", 2, 3)
    before = fingerprint(corpus)
    assert corpus.ingest_file(path)["status"] == "unchanged"
    assert fingerprint(corpus) == before
    result = corpus.query(f"study={pmid}")
    assert result.ids == [f"{pmid}-c1"] and result.studies["source"].tolist() == ["curated.json"]
    assert corpus.query(f"study={pmid} source=neurosynth").ids == [f"{pmid}-neurosynth"]
    # tags and sample sizes of imported experiments are queryable
    assert corpus.query("disorder=mdd,gad").ids == [f"{pmid}-c1", "smith2020-post"]
    assert corpus.query("subtype=cbt direction=decrease n<18").ids == ["smith2020-post"]
    assert corpus.query("modality=psychotherapy").ids == [f"{pmid}-c1", "smith2020-post"]
    assert len(corpus.query("modality=unknown").experiments) == corpus.info()["studies"] - 1
    # a changed file of the same name replaces the earlier import
    write_studyset(user_studyset(pmid, x=10.0), path)
    assert corpus.ingest_file(path)["status"] == "replaced"
    assert corpus.query(f"study={pmid}").foci["x"].tolist() == [10.0, 2.0]


def test_bad_imports_leave_corpus_unchanged(corpus, reader_sets, tmp_path):
    pmid = reader_sets["neurosynth"].studies["study_id"].iloc[0]
    before = fingerprint(corpus)
    with pytest.raises(InputError, match="beyond"):
        corpus.ingest_studyset(user_studyset(pmid, x=130.0), "far.json", [{"file": "far.json", "sha256": "0" * 64}])
    with pytest.raises(InputError, match="already in the corpus from 'neurosynth'"):
        corpus.ingest_studyset(user_studyset(pmid, contrast="neurosynth"), "clash.json",
                               [{"file": "clash.json", "sha256": "1" * 64}])
    with pytest.raises(InputError, match="file not found|no such file"):
        corpus.ingest_file(tmp_path / "missing.json")
    assert fingerprint(corpus) == before


def test_missing_corpus_is_an_error(tmp_path):
    with pytest.raises(DataUnavailableError, match="corpus build"):
        Corpus(tmp_path / "none.duckdb", read_only=True)
    (tmp_path / "junk.duckdb").write_text("not a database")
    with pytest.raises(DataUnavailableError):
        Corpus(tmp_path / "junk.duckdb")


# ----------------------------------------------------------------------------- command line
def test_cli_info_query_import(built, tmp_path, reader_sets):
    db = tmp_path / "corpus.duckdb"
    shutil.copyfile(built, db)
    runner = CliRunner()
    result = runner.invoke(cli, ["corpus", "info", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "neurosynth" in result.output and "in both databases" in result.output

    out = tmp_path / "sel.json"
    result = runner.invoke(cli, ["corpus", "query", "source=neurosynth", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    back = read_studyset(out)
    assert len(back.experiments) == len(reader_sets["neurosynth"].experiments)
    assert f"{len(back.experiments):,} experiments" in result.output
    again = runner.invoke(cli, ["corpus", "query", "source=neurosynth", "--db", str(db), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output

    bad = runner.invoke(cli, ["corpus", "query", "yeer>=2010", "--db", str(db)])
    assert bad.exit_code == 2 and "unknown field 'yeer'" in bad.output and "Traceback" not in bad.output

    user = tmp_path / "mine.json"
    write_studyset(user_studyset("123"), user)
    result = runner.invoke(cli, ["corpus", "import", str(user), "--db", str(db)])
    assert result.exit_code == 0 and "mine.json" in result.output and "ingested" in result.output
    result = runner.invoke(cli, ["corpus", "import", str(user), "--db", str(db)])
    assert result.exit_code == 0 and "unchanged" in result.output


# ----------------------------------------------------------------------------- the real databases
@pytest.mark.slow
def test_full_build_of_both_databases(data_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCHANGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEUROCHANGE_DATA_MIRROR", str(data_mirror))
    result = CliRunner().invoke(cli, ["corpus", "build"])
    assert result.exit_code == 0, result.output
    assert "19,148 studies (8,682 in both databases)" in result.output
    with Corpus() as corpus:
        assert corpus.path == tmp_path / "home" / "corpus.duckdb"
        info = corpus.info()
        ns, nq = info["sources"]["neurosynth"], info["sources"]["neuroquery"]
        assert (ns["studies"], ns["experiments"], ns["foci"]) == (14_371, 14_371, 507_891)
        assert (nq["studies"], nq["experiments"], nq["foci"]) == (13_459, 13_459, 469_260)
        assert (ns["foci_duplicate"], ns["foci_out_of_bounds"]) == (51_820, 0)
        assert (nq["foci_duplicate"], nq["foci_out_of_bounds"]) == (70, 70)
        assert (info["studies"], info["studies_in_both_databases"], info["experiments"]) == (19_148, 8_682, 27_830)
        assert info["terms"] == 156_521 and info["term_counts"] == 1_531_999
        before = fingerprint(corpus)
        reports = build(corpus)
        assert [r["status"] for r in reports] == ["unchanged", "unchanged"]
        assert fingerprint(corpus) == before
        # a term query agrees with NeuroQuery's own matrix: studies whose abstract says "psychotherapy"
        folder = data_mirror / "neuroquery-v1"
        vocabulary = (folder / NQ["vocabulary"]).read_text().split("\n")
        column = scipy.sparse.load_npz(folder / NQ["abstract"]).tocsc()[:, vocabulary.index("psychotherapy")]
        selected = corpus.query("term:psychotherapy>=2", source="neuroquery")
        assert len(selected.experiments) == int((column.toarray() >= 2).sum())
        assert (selected.experiments["contrast_id"] == "neuroquery").all()
        everything = corpus.query("")
        assert len(everything.studies) == 19_148
        assert everything.provenance["flow"][0]["by_source"] == {"neuroquery": 19_148 - 14_371, "neurosynth": 14_371}


def test_schema_module_documents_its_tables():
    for table in TABLES:
        assert f"``{table}``" in schema_module.__doc__
