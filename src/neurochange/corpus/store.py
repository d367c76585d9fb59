"""The corpus: every study, experiment and focus of the databases and of imported files, in
one embedded DuckDB file (default ``<NEUROCHANGE_HOME>/corpus.duckdb``).

Tables and views: :mod:`neurochange.corpus.schema`.

Ingesting a database or a file is one transaction: it replaces that source's rows, or does
nothing when the source already holds files with the same SHA-256 sums and options; any
error rolls back and leaves the corpus as it was.

Queries (:meth:`Corpus.query`) keep, per study, the experiments of one source: an imported
file's (curated data first), else the preferred database (``source=``, Neurosynth by
default), else the other. So a study in both databases is counted once. Foci beyond
+-128 mm stay in the store and in the returned StudySet (flagged, counted in its notes);
analyses leave them out (:meth:`StudySet.analysis_foci`). Duplicates are kept and flagged
unless ``drop_duplicates``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from neurochange.corpus.query import Query, parse, where_sql
from neurochange.corpus.schema import SCHEMA, SCHEMA_VERSION, STUDY_FIELDS
from neurochange.errors import DataUnavailableError, InputError
from neurochange.sources.download import sha256_file
from neurochange.sources.io import databases
from neurochange.studyset import EXPERIMENT_COLUMNS, TAG_COLUMNS, StudySet

NEUROSYNTH, NEUROQUERY = databases.NEUROSYNTH, databases.NEUROQUERY
DATABASES = (NEUROSYNTH, NEUROQUERY)

#: The files each database is read from, by role.
DATABASE_FILES = {
    NEUROSYNTH: {
        "coordinates": "data-neurosynth_version-7_coordinates.tsv.gz",
        "metadata": "data-neurosynth_version-7_metadata.tsv.gz",
    },
    NEUROQUERY: {
        "coordinates": "data-neuroquery_version-1_coordinates.tsv.gz",
        "metadata": "data-neuroquery_version-1_metadata.tsv.gz",
        "vocabulary": "data-neuroquery_version-1_vocab-neuroquery156521_vocabulary.txt",
        "core_vocabulary": "data-neuroquery_version-1_vocab-neuroquery7547_vocabulary.txt",
        **{field: f"data-neuroquery_version-1_vocab-neuroquery156521_source-{field}_type-count_features.npz"
           for field in databases.NEUROQUERY_TEXT_FIELDS},
    },
}

Progress = Callable[[str], None]
"""``progress(message)``: called at each step of an ingest."""

def default_path() -> Path:
    """``download.home()/"corpus.duckdb"``."""
    from neurochange.sources.download import home

    return home() / "corpus.duckdb"


class Corpus:
    """The DuckDB corpus at ``db_path`` (default :func:`default_path`).

    ``read_only=True`` opens an existing corpus for queries (several processes may read at once).
    """

    def __init__(self, db_path: str | Path | None = None, *, read_only: bool = False):
        self.path = Path(db_path) if db_path is not None else default_path()
        if read_only and not self.path.exists():
            raise DataUnavailableError(
                f"no corpus at {self.path}; build one with `neurochange corpus build` (its --db builds it elsewhere)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            raise DataUnavailableError(f"cannot open corpus {self.path}: {str(exc).splitlines()[0]}") from None
        self.read_only = read_only
        if not read_only:
            self._create_schema()
        self._check_version()

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Corpus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r})"

    def _create_schema(self) -> None:
        self.con.begin()
        try:
            self.con.execute(SCHEMA)
            if not self.con.execute("SELECT count(*) FROM corpus_info").fetchone()[0]:
                self.con.execute("INSERT INTO corpus_info VALUES ('schema_version', ?)", [SCHEMA_VERSION])
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise

    def _check_version(self) -> None:
        try:
            row = self.con.execute("SELECT value FROM corpus_info WHERE key = 'schema_version'").fetchone()
        except duckdb.Error:
            row = None
        if row is None or row[0] != SCHEMA_VERSION:
            raise DataUnavailableError(
                f"{self.path} is not a neurochange corpus of schema {SCHEMA_VERSION}; delete it and run "
                "`neurochange corpus build` again")

    def _rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    # ------------------------------------------------------------------ ingest
    def _unchanged(self, source: str, checksums: dict[str, str], options: dict) -> bool:
        rows = self._rows("SELECT file, sha256, options FROM sources WHERE source = ?", [source])
        return bool(rows) and {f: s for f, s, _ in rows} == checksums and all(
            json.loads(o or "{}") == options for _, _, o in rows)

    def _counts(self, source: str) -> dict:
        (studies,) = self._rows("SELECT count(*) FROM study_sources WHERE source = ?", [source])[0]
        (experiments,) = self._rows("SELECT count(*) FROM experiments WHERE source = ?", [source])[0]
        foci, oob, dup = self._rows(
            "SELECT count(*), coalesce(sum(out_of_bounds::INT), 0), coalesce(sum(duplicate::INT), 0) "
            "FROM foci WHERE source = ?", [source])[0]
        return {"studies": studies, "experiments": experiments, "foci": foci,
                "foci_out_of_bounds": int(oob), "foci_duplicate": int(dup)}

    def ingest_database(self, name: str, files: dict[str, str | Path], *, tal_method: str = "icbm_other",
                        progress: Progress | None = None) -> dict:
        """Ingest Neurosynth or NeuroQuery from ``files`` (file name -> path, as ``fetch_dataset`` gives).

        Returns a report: ``source``, ``status`` (``ingested``, ``replaced`` or ``unchanged``)
        and the source's counts. ``tal_method`` applies to Neurosynth's Talairach studies.
        """
        if name not in DATABASE_FILES:
            raise InputError(f"unknown database {name!r}; use one of {', '.join(DATABASES)}", field="source")
        say = progress or (lambda message: None)
        paths = {}
        for role, file_name in DATABASE_FILES[name].items():
            if file_name not in files:
                raise DataUnavailableError(f"{name}: file {file_name} is missing from the files given")
            paths[role] = Path(files[file_name])
        options = {"tal_method": tal_method} if name == NEUROSYNTH else {}
        say(f"{name}: checking sums")
        checksums = {p.name: sha256_file(p) for p in paths.values()}
        if self._unchanged(name, checksums, options):
            return {"source": name, "status": "unchanged", **self._counts(name)}
        say(f"{name}: reading")
        terms = counts = None
        if name == NEUROSYNTH:
            studyset = databases.read_neurosynth(paths["coordinates"], paths["metadata"], tal_method=tal_method)
        else:
            studyset = databases.read_neuroquery(paths["coordinates"], paths["metadata"])
            terms, counts = databases.read_neuroquery_terms(
                paths["metadata"], paths["vocabulary"],
                {f: paths[f] for f in databases.NEUROQUERY_TEXT_FIELDS}, paths["core_vocabulary"])
        records = [{"file": p.name, "path": str(p.resolve()), "sha256": checksums[p.name], "size": p.stat().st_size}
                   for p in paths.values()]
        say(f"{name}: writing")
        return self._replace_source(name, "database", studyset, records, options, terms, counts)

    def ingest_file(self, path: str | Path, *, progress: Progress | None = None,
                    space_transform: str = "icbm_other") -> dict:
        """Import a user's Sleuth, NiMARE JSON or table file as source ``<file name>`` (Talairach foci to MNI
        by ``space_transform``).

        The same bytes imported again (under any name) change nothing; a changed file of
        the same name replaces its earlier import.
        """
        from neurochange.sources.io import read_studyset

        path = Path(path)
        say = progress or (lambda message: None)
        if not path.is_file():
            raise InputError("no such file", file=path)
        source = path.name
        if source.lower() in DATABASES:
            raise InputError(f"a file cannot be called {source!r} (a database's name); rename it", file=path)
        sha = sha256_file(path)
        same = self._rows("SELECT source FROM sources WHERE kind = 'file' AND sha256 = ?", [sha])
        if same:
            return {"source": same[0][0], "status": "unchanged", **self._counts(same[0][0])}
        say(f"{source}: reading")
        studyset = read_studyset(path, space_transform=space_transform)
        record = {"file": path.name, "path": str(path.resolve()), "sha256": sha, "size": path.stat().st_size}
        say(f"{source}: writing")
        return self.ingest_studyset(studyset, source, [record])

    def ingest_studyset(self, studyset: StudySet, source: str, files: list[dict]) -> dict:
        """Store a user's StudySet as ``source``; ``files``: dicts with ``file``, ``sha256`` (and ``path``, ``size``).

        Foci beyond +-128 mm are an InputError in a user's own data.
        """
        file = files[0].get("path") if files else None
        if source.lower() in DATABASES:
            raise InputError(f"source name {source!r} is reserved for the database", file=file)
        studyset = studyset.copy()
        studyset.flag_foci()
        oob = studyset.foci[studyset.foci["out_of_bounds"]]
        if len(oob):
            row = oob.iloc[0]
            raise InputError(
                f"{len(oob)} foci lie beyond +-128 mm, e.g. ({row.x:g}, {row.y:g}, {row.z:g}) in experiment "
                f"{row.experiment_id!r}: check the coordinates (and their space)", file=file, field="xyz")
        return self._replace_source(source, "file", studyset, files, {})

    def _insert(self, table: str, df: pd.DataFrame) -> None:
        self.con.register("_incoming", df)
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
        finally:
            self.con.unregister("_incoming")

    def _replace_source(self, source: str, kind: str, studyset: StudySet, files: list[dict], options: dict,
                        terms: pd.DataFrame | None = None, counts: pd.DataFrame | None = None) -> dict:
        """Replace every row of ``source`` by ``studyset`` (and NeuroQuery's terms) in one transaction."""
        existed = bool(self._rows("SELECT 1 FROM sources WHERE source = ? LIMIT 1", [source]))
        st = studyset.studies
        studies = st[[c for c in ("study_id", *STUDY_FIELDS, "reported_space", *TAG_COLUMNS) if c in st]].assign(
            source=source)
        experiments = studyset.resolved_experiments()[list(EXPERIMENT_COLUMNS)].assign(
            source=source, position=np.arange(len(studyset.experiments), dtype=np.int32))
        fo = studyset.foci
        foci = fo[["experiment_id", "table_id", "x", "y", "z", "space", "out_of_bounds", "duplicate"]].assign(
            table_label=fo["table_label"] if "table_label" in fo else None, source=source,
            position=np.arange(len(fo), dtype=np.int32))
        notes = json.dumps(studyset.provenance.get("notes", []))
        sources = pd.DataFrame([{"source": source, "kind": kind, "options": json.dumps(options, sort_keys=True),
                                 "notes": notes, **{k: f.get(k) for k in ("file", "path", "sha256", "size")}}
                                for f in files])
        self.con.begin()
        try:
            for table in ("foci", "experiments", "study_sources", "sources"):
                self.con.execute(f"DELETE FROM {table} WHERE source = ?", [source])
            self.con.register("_new_experiments", experiments[["experiment_id"]])
            clash = self._rows("SELECT n.experiment_id, e.source FROM _new_experiments n "
                               "JOIN experiments e USING (experiment_id) LIMIT 1")
            self.con.unregister("_new_experiments")
            if clash:
                raise InputError(f"experiment {clash[0][0]!r} is already in the corpus from {clash[0][1]!r}; "
                                 "give it another contrast or study id", file=files[0].get("path") if files else None)
            self._insert("study_sources", studies)
            self._insert("experiments", experiments)
            self._insert("foci", foci)
            if terms is not None:
                self.con.execute("DELETE FROM term_counts")
                self.con.execute("DELETE FROM terms")
                self._insert("terms", terms)
                self._insert("term_counts", counts)
            self._insert("sources", sources.assign(ingested_at=pd.Timestamp.now(tz="UTC").tz_localize(None)))
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise
        return {"source": source, "status": "replaced" if existed else "ingested", **self._counts(source)}

    # ------------------------------------------------------------------ what is in it
    def sources(self) -> list[str]:
        """Names of the ingested sources (databases first)."""
        rows = self._rows("SELECT DISTINCT source FROM sources")
        order = {NEUROSYNTH: 0, NEUROQUERY: 1}
        return sorted((r[0] for r in rows), key=lambda s: (order.get(s, 2), s))

    def info(self) -> dict:
        """Counts by source (studies, experiments, foci, flagged foci) and overall."""
        out: dict = {"db": str(self.path), "sources": {}}
        for source in self.sources():
            kind, n_files, ingested, options = self._rows(
                "SELECT any_value(kind), count(*), min(ingested_at), any_value(options) FROM sources WHERE source = ?",
                [source])[0]
            out["sources"][source] = {"kind": kind, "files": n_files, "ingested_at": str(ingested),
                                      "options": json.loads(options or "{}"), **self._counts(source)}
        one = lambda sql: int(self._rows(sql)[0][0])  # noqa: E731
        out["studies"] = one("SELECT count(DISTINCT study_id) FROM study_sources")
        out["experiments"] = one("SELECT count(*) FROM experiments")
        out["foci"] = one("SELECT count(*) FROM foci")
        out["studies_in_both_databases"] = one(
            f"SELECT count(*) FROM (SELECT study_id FROM study_sources WHERE source IN ('{NEUROSYNTH}', '{NEUROQUERY}') "
            "GROUP BY study_id HAVING count(DISTINCT source) = 2)")
        out["studies_in_several_sources"] = one(
            "SELECT count(*) FROM (SELECT study_id FROM study_sources GROUP BY study_id HAVING count(*) > 1)")
        out["terms"] = one("SELECT count(*) FROM terms")
        out["term_counts"] = one("SELECT count(*) FROM term_counts")
        from neurochange.corpus.tagging.classify import tagging_info

        out["tagging"] = tagging_info(self)
        return out

    # ------------------------------------------------------------------ decoding data
    def term_counts(self, fields: tuple[str, ...] = ("abstract",), core_only: bool = True) -> pd.DataFrame:
        """NeuroQuery's non-zero term counts summed over ``fields`` (abstract, title, keywords):
        ``study_id``, ``term``, ``count``; ``core_only``: the 7,547 terms of its model's vocabulary."""
        if not self._rows("SELECT 1 FROM terms LIMIT 1"):
            raise InputError("decoding needs NeuroQuery's term counts, which this corpus does not hold; run "
                             "`neurochange corpus build --source neuroquery`", field="vocabulary")
        marks = ", ".join("?" for _ in fields)
        return self.con.execute(
            "SELECT c.study_id, t.term, sum(c.count)::INTEGER AS count FROM term_counts c JOIN terms t USING (term_id) "
            f"WHERE c.field IN ({marks}) {'AND t.core' if core_only else ''} GROUP BY 1, 2 ORDER BY 1, 2",
            list(fields)).df()

    def source_files(self, source: str) -> list[tuple[str, str, str]]:
        """What ``source`` was built from: ``(file, sha256, options)`` of each of its files, sorted; it names
        the build, so caches of what is computed from it (term maps) know when to be remade."""
        return [tuple(r) for r in self._rows(
            "SELECT file, sha256, coalesce(options, '') FROM sources WHERE source = ? ORDER BY 1, 2", [source])]

    def source_foci(self, source: str) -> pd.DataFrame:
        """Every focus ``source`` reports: ``study_id``, ``x``, ``y``, ``z`` (MNI mm), in study order."""
        return self.con.execute(
            "SELECT e.study_id, f.x, f.y, f.z FROM foci f JOIN experiments e USING (experiment_id) "
            "WHERE f.source = ? ORDER BY e.study_id, f.experiment_id, f.position", [source]).df()

    # ------------------------------------------------------------------ queries
    def _validate(self, query: Query) -> None:
        """Check the values only the corpus knows: source names and terms."""
        known = self.sources()
        for value in query.values("source"):
            if value.lower() not in {s.lower() for s in known}:
                raise InputError(f"query: unknown source {value!r}; this corpus holds: {', '.join(known) or 'nothing'}",
                                 field="source")
        terms = sorted(query.terms())
        if not terms:
            return
        if not self._rows("SELECT 1 FROM terms LIMIT 1"):
            raise InputError("query: term counts come from NeuroQuery, which this corpus does not hold; run "
                             "`neurochange corpus build --source neuroquery`", field="term")
        self.con.register("_asked", pd.DataFrame({"term": terms}))
        try:
            missing = [r[0] for r in self._rows(
                "SELECT a.term FROM _asked a ANTI JOIN terms t USING (term) ORDER BY a.term")]
        finally:
            self.con.unregister("_asked")
        if missing:
            candidates = [r[0] for r in self._rows(
                "SELECT term FROM terms WHERE core OR starts_with(term, ?)", [missing[0][:4]])]
            close = difflib.get_close_matches(missing[0], candidates, n=5)
            hint = f"; close terms: {', '.join(close)}" if close else ""
            raise InputError(f"query: {missing[0]!r} is not in NeuroQuery's vocabulary{hint}", field="term")

    def select_ids(self, query: Query | str = "", source: str = NEUROSYNTH,
                   experiments: str = "study") -> pd.DataFrame:
        """Experiments matching ``query``, one source per study: ``experiment_id``, ``study_id``, ``source``.

        Per study: an imported file's experiments, else database ``source``'s, else the other's.
        ``experiments``: ``"study"`` (a database's tables pooled) or ``"table"`` (one per table).
        """
        if source not in DATABASES:
            raise InputError(f"source must be one of {', '.join(DATABASES)}, not {source!r}", field="source")
        catalog = level_view("catalog", experiments)
        query = parse(query) if isinstance(query, str) else query
        self._validate(query)
        where, params = where_sql(query)
        sql = (
            "SELECT experiment_id, study_id, source FROM ("
            "  SELECT experiment_id, study_id, source, position,"
            f"   CASE WHEN source = ? THEN 1 WHEN source IN ('{NEUROSYNTH}', '{NEUROQUERY}') THEN 2 ELSE 0 END AS rank"
            f"  FROM {catalog} WHERE {where}"
            ") QUALIFY rank = min(rank) OVER (PARTITION BY study_id) ORDER BY source, position"
        )
        return self.con.execute(sql, [source, *params]).df()

    def query(self, text: Query | str = "", source: str = NEUROSYNTH, *, drop_duplicates: bool = False,
              experiments: str = "study") -> StudySet:
        """The StudySet of experiments matching ``text`` (see :mod:`neurochange.corpus.query`).

        ``source``: the database whose foci are used for studies in both (``neurosynth`` or
        ``neuroquery``). ``drop_duplicates``: leave out foci flagged as duplicates.
        ``experiments``: ``"study"`` (one experiment per study and source, tables pooled, as
        NiMARE does) or ``"table"`` (one per database table; see :mod:`neurochange.corpus.schema`).
        """
        query = parse(text) if isinstance(text, str) else text
        return self.studyset(self.select_ids(query, source, experiments), query=query, source=source,
                             drop_duplicates=drop_duplicates, experiments=experiments)

    def studyset(self, chosen: pd.DataFrame, *, query: Query | str = "", source: str = NEUROSYNTH,
                 drop_duplicates: bool = False, experiments: str = "study") -> StudySet:
        """The StudySet of the experiments in ``chosen`` (``experiment_id``, ``study_id``, ``source``), in its order.

        ``query``, ``source`` and ``experiments`` are recorded in the provenance (as :meth:`query` does);
        the ids in ``chosen`` are of that level. Foci carry ``focus``, their 1-based number in their
        experiment in stored order (what a curation table's focus rows name), counted before
        ``drop_duplicates`` leaves any out.
        """
        level = experiment_level(experiments)
        query = parse(query) if isinstance(query, str) else query
        chosen = chosen[["experiment_id", "study_id", "source"]].reset_index(drop=True)
        selected = chosen.assign(order=np.arange(len(chosen)))
        self.con.register("_selected", selected)
        try:
            experiments = self.con.execute(
                f"SELECT {', '.join('e.' + c for c in EXPERIMENT_COLUMNS)} FROM {level_view('experiments', level)} e "
                "JOIN _selected s USING (experiment_id) ORDER BY s.order").df()
            foci = self.con.execute(
                "SELECT f.experiment_id, f.x, f.y, f.z, f.space, f.source, f.table_id, f.out_of_bounds, f.duplicate, "
                f"f.table_label FROM {level_view('foci', level)} f JOIN _selected s USING (experiment_id) "
                "ORDER BY s.order, f.position").df()
            studies = self.con.execute(
                f"SELECT st.study_id, {', '.join('st.' + f for f in STUDY_FIELDS)}, c.source, "
                f"{', '.join('g.' + t for t in TAG_COLUMNS)} "
                "FROM studies st JOIN (SELECT study_id, min(source) AS source, min(\"order\") AS first "
                "FROM _selected GROUP BY study_id) c USING (study_id) "
                "LEFT JOIN study_tags g USING (study_id) ORDER BY c.first").df()
            provenance = self._query_provenance(query, source, chosen, foci, drop_duplicates, level)
        finally:
            self.con.unregister("_selected")
        foci["focus"] = foci.groupby("experiment_id", sort=False).cumcount() + 1
        if drop_duplicates:
            foci = foci[~foci["duplicate"].to_numpy(dtype=bool)]
        return StudySet(studies, experiments, foci, provenance)

    def _query_provenance(self, query: Query, source: str, chosen: pd.DataFrame, foci: pd.DataFrame,
                          drop_duplicates: bool, level: str) -> dict:
        used = sorted(set(chosen["source"]))
        files = [dict(zip(("source", "file", "sha256", "options"), r)) for r in self._rows(
            "SELECT source, file, sha256, options FROM sources WHERE list_contains(?, source) ORDER BY source, file",
            [used])]
        for f in files:
            f["options"] = json.loads(f["options"] or "{}")
        notes = []
        n_both = int(self._rows(
            f"SELECT count(*) FROM (SELECT study_id FROM study_sources WHERE source IN ('{NEUROSYNTH}', '{NEUROQUERY}') "
            "AND list_contains(?, study_id) GROUP BY study_id HAVING count(*) = 2)", [chosen["study_id"].tolist()])[0][0])
        if n_both:
            notes.append(f"{_n(n_both, 'selected study is', 'selected studies are')} in both Neurosynth and "
                         f"NeuroQuery; each is counted once, preferring {source}'s foci")
        if NEUROSYNTH in used:
            spaces = dict(self._rows(
                "SELECT reported_space, count(*) FROM study_sources WHERE source = ? AND list_contains(?, study_id) "
                "GROUP BY reported_space",
                [NEUROSYNTH, chosen.loc[chosen["source"] == NEUROSYNTH, "study_id"].tolist()]))
            method = next((f["options"].get("tal_method") for f in files if f["source"] == NEUROSYNTH), None)
            n_tal = int(((foci["source"] == NEUROSYNTH) & (foci["space"] == "TAL")).sum())
            parts = [f"{_n(spaces.get('MNI', 0), 'study', 'studies')} reported in MNI"]
            if spaces.get("TAL"):
                parts.append(f"{_n(spaces['TAL'], 'study', 'studies')} in Talairach, whose {_n(n_tal, 'focus', 'foci')} "
                             f"were converted to MNI with Lancaster 2007 {method}")
            if spaces.get("UNKNOWN"):
                parts.append(f"{_n(spaces['UNKNOWN'], 'study', 'studies')} of unknown space, taken as MNI "
                             "(NiMARE's convention)")
            notes.append("neurosynth: " + "; ".join(parts))
        if NEUROQUERY in used:
            notes.append("neuroquery: no space column; all foci taken as MNI (as NiMARE does)")
        notes += _dataset_notes([s for s in used if s in DATABASES])
        n_oob = int(foci["out_of_bounds"].sum())
        if n_oob:
            notes.append(f"{_n(n_oob, 'focus lies', 'foci lie')} beyond +-128 mm: kept, flagged out_of_bounds; "
                         "analyses leave them out")
        n_dup = int(foci["duplicate"].sum())
        if n_dup:
            notes.append(f"{_n(n_dup, 'focus repeats', 'foci repeat')} an earlier focus of the same table: "
                         + ("dropped" if drop_duplicates else "kept, flagged duplicate"))
        kept_foci = len(foci) - (n_dup if drop_duplicates else 0)
        flow = [{"step": "corpus query", "query": str(query), "source": source, "drop_duplicates": drop_duplicates,
                 "experiments_per": level,
                 "studies": int(chosen["study_id"].nunique()), "experiments": len(chosen), "foci": kept_foci,
                 "by_source": {s: int((chosen["source"] == s).sum()) for s in used}}]
        return {"sources": files, "notes": notes, "flow": flow, "query": str(query)}


EXPERIMENT_LEVELS = ("study", "table")


def experiment_level(experiments: str) -> str:
    """``experiments`` checked: ``"study"`` or ``"table"``."""
    if experiments not in EXPERIMENT_LEVELS:
        raise InputError(f"experiments must be 'study' (tables pooled) or 'table' (one per table), not "
                         f"{experiments!r}", field="experiments")
    return experiments


def level_view(name: str, experiments: str) -> str:
    """The table or view ``name`` (``experiments``, ``foci``, ``catalog``) at level ``experiments``: the
    ``table_`` views of :mod:`neurochange.corpus.schema` for ``"table"``."""
    return f"table_{name}" if experiment_level(experiments) == "table" else name


def _dataset_notes(names: list[str]) -> list[str]:
    """Which release of each database, where from, under which licence (for methods sections)."""
    from neurochange.sources.download import dataset

    notes = []
    for name in names:
        ds = dataset(name)
        notes.append(f"{name}: {ds.title}; github.com/{ds.repository} @ {ds.commit[:12]}; licence {ds.license}")
    return notes


def _n(count: int, one: str, many: str) -> str:
    """``"1 focus"``, ``"2,345 foci"``."""
    return f"{count:,} {one if count == 1 else many}"


def build(corpus: Corpus, source: str = "all", *, tal_method: str = "icbm_other",
          progress: Progress | None = None, download_progress=None) -> list[dict]:
    """Fetch (``download.fetch_dataset``) and ingest Neurosynth, NeuroQuery or both (``"all"``)."""
    from neurochange.sources import download

    if source != "all" and source not in DATABASES:
        raise InputError(f"unknown source {source!r}; use neurosynth, neuroquery or all", field="source")
    names = DATABASES if source == "all" else (source,)
    reports = []
    for name in names:
        if progress:
            progress(f"{name}: fetching")
        files = download.fetch_dataset(name, progress=download_progress)
        reports.append(corpus.ingest_database(name, files, tal_method=tal_method, progress=progress))
    return reports


__all__ = ["Corpus", "build", "default_path", "DATABASES", "DATABASE_FILES", "EXPERIMENT_LEVELS", "experiment_level",
           "level_view"]
