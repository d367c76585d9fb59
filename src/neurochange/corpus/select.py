"""Selection of experiments from the corpus, with the record of what was screened, excluded and why.

``select(corpus, "modality=psychotherapy disorder=mdd design=pre_post")`` uses the query
grammar of ``corpus query`` (:mod:`neurochange.corpus.query`) and proceeds as a PRISMA flow:

1. identified: every record (one experiment per study per source) in the corpus;
   ``source=`` clauses keep records of the sources asked for;
2. duplicates removed: a study in several sources keeps one record (an imported file's,
   else the preferred database's, else the other's);
3. screened: the remaining records; each other clause, in the order written, excludes the
   records that fail it, with reasons (for tag fields, the values the excluded records had);
4. assessed: a curation table's ``include=no`` rows (and the experiments of a study it did not
   keep, ``not_selected``) exclude records, counted by reason (the last ``excluded`` step,
   criterion ``curation``);
5. included: what passes every clause and curation. Focus flags of the curation table then move
   or leave out single foci (counted in ``flow["focus_flags"]``).

A record is an experiment: with ``experiments="study"`` a database gives one per study (its
tables pooled), with ``experiments="table"`` one per table (:mod:`neurochange.corpus.schema`).

Tags come from the corpus (``neurochange corpus tag``) with a curation table applied on top
(:mod:`neurochange.corpus.curation`). :func:`write_selection` writes ``studies.tsv`` (one row per
included experiment, with ``study_id``, title, tags and why it was included), ``studyset.json``
(NiMARE JSON), ``flow.json`` and ``provenance.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neurochange.corpus.curation import (
    FLIPPED,
    OPPOSITE,
    Curation,
    apply_focus_flags,
    apply_to_records,
    apply_to_studyset,
    check_ids,
    excluded,
    fields_set,
    read_curation,
)
from neurochange.corpus.query import FIELDS, Clause, Query, parse, where_sql
from neurochange.corpus.store import DATABASES, NEUROSYNTH, Corpus, experiment_level, level_view
from neurochange.corpus.tagging import classify
from neurochange.errors import InputError
from neurochange.studyset import StudySet

TAG_FIELDS = ("modality", "subtype", "disorder", "design", "imaging", "direction")
TABLE_COLUMNS = ("study_id", "experiment_id", "source", "title", "year", "journal", "doi", "n", "direction",
                 "modality", "subtype", "disorder", "design", "imaging", "frequency_hz", "tagged_by", "curated",
                 "included_because",
                 *(f"evidence_{t}" for t in classify.TAG_OUTPUT))


@dataclass
class Selection:
    """The selected StudySet, its ``studies.tsv`` table and its flow record."""

    studyset: StudySet
    table: pd.DataFrame
    flow: dict
    provenance: dict = field(default_factory=dict)


def _records(corpus: Corpus, curation: Curation | None, experiments: str) -> pd.DataFrame:
    records = corpus.con.execute(f"SELECT * FROM {level_view('catalog', experiments)} ORDER BY source, position").df()
    if curation is not None:
        studies = set(records["study_id"])
        check_ids(curation, studies, dict(zip(records["experiment_id"], records["study_id"])))
    return apply_to_records(records, curation)


def _passes(corpus: Corpus, records: pd.DataFrame, clauses) -> pd.DataFrame:
    """One boolean column per clause: does each record pass it (a missing value fails, as in queries)."""
    if not clauses:
        return pd.DataFrame(index=records.index)
    cols, params = [], []
    for i, clause in enumerate(clauses):
        sql, p = where_sql(Query((clause,)))
        cols.append(f"coalesce(({sql}), FALSE) AS c{i}")
        params += p
    columns = [c for c in records.columns if c != "curated"]
    corpus.con.register("_records", records[columns].assign(_row=np.arange(len(records))))
    try:
        out = corpus.con.execute(f"SELECT _row, {', '.join(cols)} FROM _records ORDER BY _row", params).df()
    finally:
        corpus.con.unregister("_records")
    return out.drop(columns="_row").set_axis(records.index)


def _dedupe(records: pd.DataFrame, source: str) -> pd.Series:
    """True for the record each study keeps: an imported file's, else ``source``'s, else the other database's."""
    rank = np.where(records["source"] == source, 1, np.where(records["source"].isin(DATABASES), 2, 0))
    ranked = records.assign(_rank=rank, _order=np.arange(len(records)))
    best = ranked.groupby("study_id")["_rank"].transform("min")
    return pd.Series((ranked["_rank"] == best).to_numpy(), index=records.index)


def _reasons(clause: Clause, failed: pd.DataFrame) -> dict:
    """Why records failed a clause: for tags and sources the values they had, else a count."""
    spec = FIELDS[clause.field]
    if spec.kind in ("tag", "source"):
        values = failed[spec.column].astype("string").fillna("(none)")
        counts = values.groupby(failed["study_id"]).first().value_counts()
        return {f"{clause.field}={v}": int(n) for v, n in counts.sort_index().items()}
    if spec.kind == "int":
        missing = failed[spec.column].isna()
        out = {}
        if missing.any():
            out[f"{clause.field} missing"] = int(failed.loc[missing, "study_id"].nunique())
        if (~missing).any():
            out[f"{clause.field} outside {clause.text}"] = int(failed.loc[~missing, "study_id"].nunique())
        return out
    return {f"fails {clause.text}": int(failed["study_id"].nunique())}


def _has_evidence(corpus: Corpus) -> bool:
    return bool(corpus.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'tag_evidence'").fetchall()[0][0])


def _title_doses(corpus: Corpus, studyset: StudySet) -> StudySet:
    """Experiments without a ``frequency_hz`` get the one their study's title states (tag evidence)."""
    if not _has_evidence(corpus) or not len(studyset.experiments):
        return studyset
    corpus.con.register("_ids", studyset.studies[["study_id"]])
    try:
        found = dict(corpus.con.execute(
            "SELECT e.study_id, any_value(e.value) FROM tag_evidence e JOIN _ids USING (study_id) "
            "WHERE e.tag = 'frequency_hz' GROUP BY e.study_id").fetchall())
    finally:
        corpus.con.unregister("_ids")
    if not found:
        return studyset
    ex = studyset.experiments.copy()
    ex["frequency_hz"] = ex["frequency_hz"].fillna(ex["study_id"].map(found).astype("float64"))
    return StudySet(studyset.studies, ex, studyset.foci, studyset.provenance)


def _count(records: pd.DataFrame) -> dict:
    return {"experiments": int(len(records)), "studies": int(records["study_id"].nunique())}


def _flow(query: Query, source: str, records, identified_mask, dedup_mask, screened, steps, included,
          experiments: str) -> dict:
    by_source = {s: int(n) for s, n in records["source"].value_counts().sort_index().items()}
    flow = {"query": str(query), "preferred_source": source, "experiments_per": experiments,
            "identified": {**_count(records), "by_source": by_source}}
    not_asked = records[~identified_mask]
    if len(not_asked):
        flow["excluded_by_source"] = {**_count(not_asked), "reason": "source not asked for by the query"}
    dupes = records[identified_mask & ~dedup_mask]
    flow["duplicates_removed"] = {
        **_count(dupes), "reason": f"study also in another source; one record kept per study (imported file, "
                                   f"then {source}, then the other database)"}
    flow["screened"] = _count(screened)
    flow["excluded"] = steps
    flow["included"] = {**_count(included), "by_source": {
        s: int(n) for s, n in included["source"].value_counts().sort_index().items()}}
    return flow


def _why(row, clauses) -> str:
    parts = []
    for clause in clauses:
        spec = FIELDS[clause.field]
        if spec.kind in ("tag", "source", "int", "id", "ci"):
            parts.append(f"{clause.field}={row[spec.column]}")
        else:
            parts.append(clause.text)
    return "; ".join(parts) if parts else "no criteria: every record"


def _table(corpus: Corpus, included: pd.DataFrame, clauses, studyset: StudySet) -> pd.DataFrame:
    doses = studyset.experiments.set_index("experiment_id")["frequency_hz"]
    table = included.assign(frequency_hz=included["experiment_id"].map(doses).to_numpy())
    con = corpus.con
    has_evidence = _has_evidence(corpus)
    con.register("_ids", table[["study_id"]].drop_duplicates())
    try:
        tagged = con.execute("SELECT g.study_id, g.tagged_by FROM study_tags g JOIN _ids USING (study_id)").df()
        evidence = con.execute("SELECT e.* FROM tag_evidence e JOIN _ids USING (study_id) WHERE e.chosen").df() \
            if has_evidence else pd.DataFrame(columns=list(classify.EVIDENCE_COLUMNS))
    finally:
        con.unregister("_ids")
    table = table.merge(tagged, on="study_id", how="left")
    table["tagged_by"] = table["tagged_by"].fillna("untagged")
    by_study = dict(tuple(evidence.groupby("study_id"))) if len(evidence) else {}
    for tag in classify.TAG_OUTPUT:
        if tag == "subtype":
            table["evidence_subtype"] = [
                classify.describe(by_study[sid], "modality", sub) if sid in by_study and isinstance(sub, str) else ""
                for sid, sub in zip(table["study_id"], table["subtype"])]
        else:
            table[f"evidence_{tag}"] = [
                classify.describe(by_study[sid], tag) if sid in by_study else "" for sid in table["study_id"]]
    table["subtype"] = table["subtype"].astype("string")
    table["title"] = table["title"].map(lambda t: " ".join(t.split()) if isinstance(t, str) else t)
    table["included_because"] = [_why(r, clauses) for _, r in table.iterrows()]
    table["curated"] = table["curated"].fillna("")
    return table[list(TABLE_COLUMNS)].reset_index(drop=True)


def _with_flipped(table: pd.DataFrame, studyset: StudySet) -> pd.DataFrame:
    """``table`` with a row for each experiment that curation's ``wrong_sign`` flags made (after its source's)."""
    suffix = f"-{FLIPPED}"
    listed = set(table["experiment_id"])
    made = [e for e in studyset.experiments["experiment_id"] if e.endswith(suffix) and e not in listed]
    if not made:
        return table
    rows = []
    for row in table.to_dict("records"):
        rows.append(row)
        if f"{row['experiment_id']}{suffix}" in made:
            rows.append({**row, "experiment_id": f"{row['experiment_id']}{suffix}",
                         "direction": OPPOSITE.get(row["direction"], row["direction"]),
                         "included_because": "foci of the other experiment flagged wrong_sign by curation"})
    return pd.DataFrame(rows, columns=table.columns)


def screen(corpus: Corpus, query: Query | str = "", *, source: str = NEUROSYNTH,
           curation: Curation | str | Path | None = None, experiments: str = "study") -> tuple[pd.DataFrame, dict]:
    """The flow of :func:`select` without building the StudySet (fast on the whole corpus: a PRISMA count).

    Returns the included records (catalog rows, curation applied) and the flow: identified,
    duplicates removed, screened, excluded per criterion and by curation, included.
    """
    if source not in DATABASES:
        raise InputError(f"source must be one of {', '.join(DATABASES)}, not {source!r}", field="source")
    query = parse(query) if isinstance(query, str) else query
    corpus._validate(query)
    if curation is not None and not isinstance(curation, Curation):
        curation = read_curation(curation)
    experiments = experiment_level(experiments)
    records = _records(corpus, curation, experiments)
    source_clauses = [c for c in query.clauses if c.field == "source"]
    clauses = [c for c in query.clauses if c.field != "source"]
    identified = _passes(corpus, records, source_clauses).all(axis=1) if source_clauses else \
        pd.Series(True, index=records.index)
    kept = _dedupe(records[identified], source).reindex(records.index, fill_value=False)
    screened = records[kept]
    passes = _passes(corpus, screened, clauses)
    remaining = pd.Series(True, index=screened.index)
    steps = []
    for i, clause in enumerate(clauses):
        failed = remaining & ~passes[f"c{i}"]
        steps.append({"criterion": clause.text, **_count(screened[failed]),
                      "reasons": _reasons(clause, screened[failed])})
        remaining &= passes[f"c{i}"]
    reasons = excluded(screened, curation)
    if curation is not None:
        failed = remaining & reasons.notna()
        steps.append({"criterion": "curation", **_count(screened[failed]),
                      "reasons": {str(k): int(v) for k, v in reasons[failed].value_counts().sort_index().items()}})
        remaining &= reasons.isna()
    included = screened[remaining]
    flow = _flow(query, source, records, identified, kept, screened, steps, included, experiments)
    flow["curation"] = curation.record() if curation is not None else None
    if curation is not None:
        flow["curation"]["set_on_included"] = fields_set(included, curation)
        undecided = included["include"].isna() if "include" in included else pd.Series(True, index=included.index)
        flow["included"]["awaiting_decision"] = _count(included[undecided.to_numpy()])
    return included, flow


def select(corpus: Corpus, query: Query | str = "", *, source: str = NEUROSYNTH,
           curation: Curation | str | Path | None = None, drop_duplicates: bool = False,
           experiments: str = "study") -> Selection:
    """Select experiments with ``query`` (the ``corpus query`` grammar), recording the flow.

    ``source``: the database whose record a study in both keeps. ``curation``: a curation
    table (path or :class:`~neurochange.corpus.curation.Curation`) applied over the corpus tags.
    ``drop_duplicates``: leave out foci flagged as duplicates. ``experiments``: ``"study"`` or
    ``"table"`` (one experiment per database table). A bad query or table raises one
    ``InputError`` naming what is valid.
    """
    query = parse(query) if isinstance(query, str) else query
    if curation is not None and not isinstance(curation, Curation):
        curation = read_curation(curation)
    included, flow = screen(corpus, query, source=source, curation=curation, experiments=experiments)
    experiments = flow["experiments_per"]
    studyset = corpus.studyset(included[["experiment_id", "study_id", "source"]], query=query, source=source,
                               drop_duplicates=drop_duplicates, experiments=experiments)
    studyset = apply_to_studyset(_title_doses(corpus, studyset), curation)
    n_curated = len(studyset.experiments)
    studyset, flags = apply_focus_flags(studyset, curation)
    # the focus numbers and table labels served curation; the selection's foci keep the StudySet's columns
    studyset = StudySet(studyset.studies, studyset.experiments,
                        studyset.foci.drop(columns=["focus", "table_label"], errors="ignore"), studyset.provenance)
    tagging = classify.tagging_info(corpus)
    flow["tagging"] = tagging or {"note": "the corpus is not tagged: run `neurochange corpus tag`"}
    flow["included"]["foci"] = int(len(studyset.foci))
    if flags:
        flow["focus_flags"] = flags
        flow["included"]["experiments_flipped"] = len(studyset.experiments) - n_curated
    studyset.provenance["flow"].append({"step": "select", **{k: flow[k] for k in ("query", "screened", "included")}})
    studyset.provenance["tagging"] = flow["tagging"]
    studyset.provenance["curation"] = flow["curation"]
    table = _with_flipped(_table(corpus, included, query.clauses, studyset), studyset)
    provenance = {"query": str(query), "preferred_source": source, "drop_duplicates": drop_duplicates,
                  "experiments_per": experiments,
                  "tagging": flow["tagging"], "curation": flow["curation"],
                  "sources": studyset.provenance.get("sources", []), "notes": studyset.provenance.get("notes", [])}
    return Selection(studyset, table, flow, provenance)


def write_selection(selection: Selection, out, overwrite: bool = False) -> dict:
    """Write ``studies.tsv``, ``studyset.json`` (NiMARE), ``flow.json`` and ``provenance.json`` into folder ``out``."""
    from neurochange.results.outdir import atomic_dir
    from neurochange.results.provenance import versions, write_json
    from neurochange.sources.io import write_studyset

    with atomic_dir(out, overwrite) as tmp:
        selection.table.to_csv(tmp / "studies.tsv", sep="\t", index=False, lineterminator="\n")
        summary = write_studyset(selection.studyset, tmp / "studyset.json")
        write_json(tmp / "flow.json", selection.flow)
        write_json(tmp / "provenance.json", {**selection.provenance, "versions": versions()})
    return {"out": str(out), "experiments": summary["experiments"], "foci": summary["foci"],
            "files": ["studies.tsv", "studyset.json", "flow.json", "provenance.json"]}


__all__ = ["Selection", "screen", "select", "write_selection"]
