"""The query grammar: parsing, errors, parameterized SQL, and results on a small real corpus
checked against the same selection computed from the files with pandas and scipy."""

from __future__ import annotations

import re
import shutil

import duckdb
import pandas as pd
import pytest
import scipy.sparse
from corpus_helpers import build_corpus, make_subset, read_raw
from hypothesis import given
from hypothesis import strategies as st

from neurochange.corpus.query import FIELDS, Clause, Query, parse, to_sql, where_sql, word_pattern
from neurochange.corpus.store import DATABASE_FILES, Corpus
from neurochange.errors import InputError
from neurochange.vocabulary import allowed

NS, NQ = DATABASE_FILES["neurosynth"], DATABASE_FILES["neuroquery"]


# ----------------------------------------------------------------------------- parsing
def test_parse_the_example_query():
    q = parse('year>=2010 journal="Biol Psychiatry" title:depression source=neurosynth term:psychotherapy>=2')
    assert q.clauses == (
        Clause("year", ">=", (2010,), text="year>=2010"),
        Clause("journal", "=", ("biol psychiatry",), text='journal="Biol Psychiatry"'),
        Clause("title", ":", ("depression",), text="title:depression"),
        Clause("source", "=", ("neurosynth",), text="source=neurosynth"),
        Clause("term", ">=", (2,), terms=("psychotherapy",), text="term:psychotherapy>=2"),
    )


@pytest.mark.parametrize("text, field, op, values, terms", [
    ("disorder=mdd,gad", "disorder", "=", ("mdd", "gad"), ()),
    ("Disorder=MDD", "disorder", "=", ("mdd",), ()),
    ("direction!=unknown", "direction", "!=", ("unknown",), ()),
    ("n<20", "n", "<", (20,), ()),
    ("year<=2001", "year", "<=", (2001,), ()),
    ("year>2001", "year", ">", (2001,), ()),
    ("year=2001,2003", "year", "=", (2001, 2003), ()),
    ('title:"working memory",rest*', "title", ":", ("working memory", "rest*"), ()),
    ('title!:"say \\"hi\\""', "title", "!:", ('say "hi"',), ()),
    ("pmid=123", "study", "=", ("123",), ()),
    ("term:anxiety", "term", ">=", (1,), ("anxiety",)),
    ('term:"Major  Depression"<3', "term", "<", (3,), ("major depression",)),
    ("term.abstract:fear=0", "term", "=", (0,), ("fear",)),
    ("term.title:fear,anxiety!=1", "term.title", "!=", (1,), ("fear", "anxiety")),
    ("term.keywords:pain", "term.keywords", ">=", (1,), ("pain",)),
])
def test_parse_one_clause(text, field, op, values, terms):
    (clause,) = parse(text).clauses
    assert (clause.field, clause.op, clause.values, clause.terms) == (field, op, values, terms)


def test_empty_query_selects_everything():
    assert parse("  ").clauses == () and where_sql(parse("")) == ("TRUE", [])


@pytest.mark.parametrize("text, field, words", [
    ("foo=1", "foo", "valid fields: study, experiment, source, year"),
    ("disorder=depression", "disorder", "valid values: " + ", ".join(allowed("disorder"))),
    ("modality=cbt", "modality", "'cbt' is not a valid modality"),
    ("year>=20x0", "year", "not a whole number"),
    ("year>=2010,2011", "year", ">= compares with one value"),
    ("n:20", "n", "takes the operators = != >= <= > <"),
    ("title", "title", "expected an operator"),
    ('title="abc', None, "unclosed quote"),
    ("title=", None, "a value is missing"),
    ("term>=2", "term", "term:<term>"),
    ("term:fear>=-1", "term", "cannot be negative"),
    ("term:fear>=1,2", "term", "one number"),
    ('title:"a"b', "title", "unexpected 'b'"),
    ("=3", None, "expected a field name"),
])
def test_mistakes_are_one_input_error(text, field, words):
    with pytest.raises(InputError) as info:
        parse(text)
    assert info.value.field == field and words in info.value.message


def test_every_tag_field_checks_the_vocabulary():
    for name in ("modality", "subtype", "disorder", "design", "imaging", "direction"):
        assert FIELDS[name].kind == "tag"
        value = allowed(name)[0]
        assert parse(f"{name}={value}").clauses[0].values == (value,)
        with pytest.raises(InputError, match="valid values"):
            parse(f"{name}=not_a_value")


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1).filter(str.strip),
                min_size=1, max_size=3))
def test_quoted_values_round_trip(values):
    quoted = ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    (clause,) = parse(f"title:{quoted}").clauses
    assert clause.values == tuple(values)


# ----------------------------------------------------------------------------- SQL
def test_values_never_enter_the_sql_text():
    evil = "x'); DROP TABLE foci; --"
    sql, params = to_sql(parse(f'title="{evil}" journal:"{evil}" study={"abc"} term:"{evil}"'))
    assert "DROP" not in sql and "abc" not in sql
    assert evil.lower() in params and "abc" in params
    assert sql.count("?") == len(params)


@pytest.mark.parametrize("phrase, text, hit", [
    ("depression", "Depression and the brain", True),
    ("depression", "antidepression", False),
    ("depress*", "Depressive symptoms", True),
    ("working memory", "Verbal working  memory load", True),
    ("working memory", "memory working", False),
    ("a.b", "axb", False),
    ("c++", "C++ programmers", True),
    ("uber", "Über alles", False),
    ("über", "ÜBER alles", True),
    ("ber", "Über alles", False),
])
def test_word_pattern(phrase, text, hit):
    assert duckdb.execute("SELECT regexp_matches(?, ?)", [text, word_pattern(phrase)]).fetchone()[0] == hit


# ----------------------------------------------------------------------------- results on a small corpus
@pytest.fixture(scope="module")
def subset(data_mirror, tmp_path_factory):
    return make_subset(data_mirror, tmp_path_factory.mktemp("subset"))


@pytest.fixture(scope="module")
def corpus(subset, tmp_path_factory):
    path = build_corpus(subset, tmp_path_factory.mktemp("db") / "corpus.duckdb")
    with Corpus(path, read_only=True) as c:
        yield c


@pytest.fixture(scope="module")
def studies(subset):
    """One row per study, as the files give it: Neurosynth metadata first, else NeuroQuery's title."""
    ns = read_raw(subset["neurosynth"][NS["metadata"]]).assign(in_ns=True)
    nq = read_raw(subset["neuroquery"][NQ["metadata"]]).assign(in_nq=True)
    merged = ns.merge(nq, on="id", how="outer", suffixes=("", "_nq"))
    merged["title"] = merged["title"].fillna(merged["title_nq"])
    merged["year"] = pd.to_numeric(merged["year"].replace("", None))
    return merged.fillna({"in_ns": False, "in_nq": False}).set_index("id")


def selected(corpus, text, source="neurosynth") -> set[str]:
    return set(corpus.query(text, source=source).studies["study_id"])


def test_year(corpus, studies):
    assert selected(corpus, "year>=2010") == set(studies.index[studies["year"] >= 2010])
    assert selected(corpus, "year=1999,2004") == set(studies.index[studies["year"].isin([1999, 2004])])
    # a missing year fails comparisons and passes !=
    assert selected(corpus, "year!=2004") == set(studies.index[studies["year"] != 2004])
    assert set(studies.index[studies["year"].isna()]) <= selected(corpus, "year!=2004")


def test_text_fields(corpus, studies):
    def words(col, pattern):
        return set(studies.index[studies[col].fillna("").str.contains(pattern, flags=re.I, regex=True)])

    assert selected(corpus, "title:depress*") == words("title", r"(?:^|\W)depress\w*")
    assert selected(corpus, 'title:"working memory"') == words("title", r"(?:^|\W)working\s+memory(?:\W|$)")
    assert selected(corpus, "title!:the") == set(studies.index) - words("title", r"(?:^|\W)the(?:\W|$)")
    journal = studies["journal"].dropna().iloc[0]
    assert selected(corpus, f'journal="{journal.upper()}"') == set(studies.index[studies["journal"] == journal])
    author = studies["authors"].dropna().iloc[0].split()[0]
    assert selected(corpus, f"authors:{author}") == words("authors", rf"(?:^|\W){re.escape(author)}(?:\W|$)")
    doi = studies["doi"].dropna().iloc[3]
    assert selected(corpus, f"doi={doi.upper()}") == {studies.index[studies["doi"] == doi][0]}


def test_source_and_ids(corpus, studies):
    assert selected(corpus, "source=neuroquery") == set(studies.index[studies["in_nq"]])
    assert selected(corpus, "source!=neuroquery") == set(studies.index[studies["in_ns"]])
    ids = list(studies.index[:3])
    assert selected(corpus, "study=" + ",".join(ids)) == set(ids)
    assert corpus.query(f"experiment={ids[0]}-neurosynth").ids in ([f"{ids[0]}-neurosynth"], [])


def _term_counts(subset, field: str, term: str) -> pd.Series:
    meta = read_raw(subset["neuroquery"][NQ["metadata"]])
    vocabulary = subset["neuroquery"][NQ["vocabulary"]].read_text().split("\n")
    matrix = scipy.sparse.load_npz(subset["neuroquery"][NQ[field]]).tocsc()
    return pd.Series(matrix[:, vocabulary.index(term)].toarray().ravel(), index=meta["id"])


def test_term_counts(corpus, subset):
    abstract = _term_counts(subset, "abstract", "memory")
    assert (abstract >= 2).sum() > 0
    assert selected(corpus, "term:memory>=2") == set(abstract.index[abstract >= 2])
    assert selected(corpus, "term:memory") == set(abstract.index[abstract >= 1])
    assert selected(corpus, "term:memory=0") == set(abstract.index[abstract == 0])
    assert selected(corpus, "term:memory<3 term:memory>1") == set(abstract.index[abstract == 2])
    title = _term_counts(subset, "title", "memory")
    keywords = _term_counts(subset, "keywords", "memory")
    assert selected(corpus, "term.title:memory") == set(title.index[title >= 1])
    assert selected(corpus, "term.keywords:memory") == set(keywords.index[keywords >= 1])
    pain = _term_counts(subset, "abstract", "pain")
    assert selected(corpus, "term:memory,pain>=3") == set(abstract.index[(abstract >= 3) | (pain >= 3)])
    # term clauses only match studies NeuroQuery counted, whatever the preferred source
    assert selected(corpus, "term:memory=0", source="neuroquery") == set(abstract.index[abstract == 0])


def test_unknown_term_or_source_lists_what_is_valid(corpus):
    with pytest.raises(InputError, match="close terms: .*working memory"):
        corpus.query("term:\"working memori\"")
    with pytest.raises(InputError, match="this corpus holds: neurosynth, neuroquery"):
        corpus.query("source=brainmap")


def test_term_query_without_neuroquery(subset, tmp_path):
    with Corpus(tmp_path / "ns.duckdb") as c:
        c.ingest_database("neurosynth", subset["neurosynth"])
        with pytest.raises(InputError, match="corpus build --source neuroquery"):
            c.query("term:memory")


def test_tags_from_study_tags(corpus, studies, tmp_path):
    path = tmp_path / "tagged.duckdb"
    shutil.copyfile(corpus.path, path)
    tagged = list(studies.index[:4])
    with Corpus(path) as c:
        c.con.executemany("INSERT INTO study_tags (study_id, disorder, modality, subtype) VALUES (?, ?, ?, ?)",
                          [(tagged[0], "mdd", "psychotherapy", "cbt"), (tagged[1], "gad", "psychotherapy", None),
                           (tagged[2], "mdd", "pharmacotherapy", "ssri")])
        assert set(c.query("disorder=mdd").studies["study_id"]) == {tagged[0], tagged[2]}
        assert set(c.query("disorder=mdd,gad modality=psychotherapy").studies["study_id"]) == set(tagged[:2])
        assert len(c.query("disorder=unknown").studies) == len(studies) - 3
        assert set(c.query("subtype!=cbt").studies["study_id"]) == set(studies.index) - {tagged[0]}
        result = c.query(f"study={tagged[0]}")
        assert result.studies[["disorder", "modality", "subtype"]].iloc[0].tolist() == ["mdd", "psychotherapy", "cbt"]


def test_query_object_helpers():
    q = parse("term:fear term.title:pain,fear source=neurosynth")
    assert q.terms() == {"fear", "pain"} and q.values("source") == ["neurosynth"]
    assert str(q) == "term:fear term.title:pain,fear source=neurosynth"
    assert isinstance(q, Query)
