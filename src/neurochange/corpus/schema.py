"""The corpus store's DuckDB schema: its tables, and the views that queries read.

Tables (:data:`SCHEMA`):

- ``sources``: one row per ingested file: source, kind (``database``/``file``), file name,
  path, sha256, size, options (JSON), notes (JSON), ingested_at;
- ``study_sources``: a study's metadata as each source gives it (title, authors, year,
  journal, doi, Neurosynth's reported space), one row per study per source;
- ``experiments``: one row per experiment (``<study>-<contrast>``), with its source, tags and dose;
- ``foci``: one row per peak, MNI mm, with source, table (id and label, e.g. "Table 2"), reported
  space and flags;
- ``study_tags``: study-level tags written by classification (:func:`neurochange.corpus.tagging.classify.tag_corpus`),
  with ``tagged_by`` (the rules' version, and the imported file whose tags won);
- ``tag_evidence``: why each study got its tags: per tag and value, the words found
  (``found_in`` title, abstract, keywords; or a default), their count and points, ``chosen``
  for the values that won;
- ``terms`` and ``term_counts``: NeuroQuery's 156,521-term vocabulary (``core``: one of the
  7,547 terms of its model) and the non-zero counts per study, field (abstract, title,
  keywords) and term (1.53 million rows).

Views: ``studies`` (one row per study id: a PMID in both databases appears once; each field
taken from the first source that has it: imported files, then Neurosynth, then NeuroQuery),
``catalog`` (one row per experiment with its study's fields: what queries filter) and
``term_documents`` (the studies NeuroQuery counted terms in).

Experiments per table: a database's experiment pools every table of its paper. The views
``table_experiments``, ``table_foci`` and ``table_catalog`` split it into one experiment per
table, ``"<study>-<source>-table-<table_id>"`` (name ``"<source>: table <label>"``, direction
``unknown`` until curated, the pooled experiment's tags and dose), with ``pooled_id`` and
``table_id`` columns; imported files' experiments pass through unchanged (``pooled_id`` their own
id). Tables of one study stay one study: pooling and the flow count them by ``study_id``.
"""

from __future__ import annotations

from neurochange.sources.io.databases import NEUROQUERY, NEUROSYNTH
from neurochange.studyset import EXPERIMENT_COLUMNS, TAG_COLUMNS

SCHEMA_VERSION = "2"

_SQL_TYPES = {"string": "VARCHAR", "Int64": "INTEGER", "float64": "DOUBLE"}
_TAG_SQL = ", ".join(f"{c} VARCHAR" for c in TAG_COLUMNS)
_EXPERIMENT_SQL = ", ".join(f"{c} {_SQL_TYPES[t]}" for c, t in EXPERIMENT_COLUMNS.items())
STUDY_FIELDS = ("title", "authors", "year", "journal", "doi")
# Sort key of sources for study metadata: imported files (by name), then Neurosynth, then NeuroQuery.
_SOURCE_RANK = f"CASE source WHEN '{NEUROSYNTH}' THEN '1' WHEN '{NEUROQUERY}' THEN '2' ELSE '0' || source END"
_FIRST_OF = ", ".join(f"arg_min({f}, rank) FILTER (WHERE {f} IS NOT NULL) AS {f}" for f in STUDY_FIELDS)
# Experiment tags win over study tags; a missing tag reads 'unknown' (subtype stays missing).
_TAGS_OF = ", ".join(
    f"coalesce(e.{t}, g.{t}) AS {t}" if t == "subtype" else f"coalesce(e.{t}, g.{t}, 'unknown') AS {t}"
    for t in TAG_COLUMNS)

_IS_DATABASE = f"source IN ('{NEUROSYNTH}', '{NEUROQUERY}')"
_IS_DATABASE_F = f"f.{_IS_DATABASE}"
_TABLE_CONTRAST = "e.source || '-table-' || t.table_id"


def _catalog(name: str, experiments: str, extra: str) -> str:
    """A catalog view: one row per experiment of ``experiments`` with its study's fields and tags."""
    return f"""CREATE OR REPLACE VIEW {name} AS
    SELECT e.experiment_id, e.study_id, e.contrast_id, e.source, e.position, e.n,
           coalesce(e.direction, 'unknown') AS direction,
           {_TAGS_OF}, {", ".join(f"s.{f}" for f in STUDY_FIELDS)}{extra}
    FROM {experiments} e JOIN studies s USING (study_id) LEFT JOIN study_tags g USING (study_id);"""


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS corpus_info (key VARCHAR NOT NULL, value VARCHAR);
CREATE TABLE IF NOT EXISTS sources (
    source VARCHAR NOT NULL, kind VARCHAR NOT NULL, file VARCHAR NOT NULL, path VARCHAR,
    sha256 VARCHAR NOT NULL, size BIGINT, options VARCHAR, notes VARCHAR, ingested_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS study_sources (
    study_id VARCHAR NOT NULL, source VARCHAR NOT NULL, title VARCHAR, authors VARCHAR,
    year INTEGER, journal VARCHAR, doi VARCHAR, reported_space VARCHAR, {_TAG_SQL});
CREATE TABLE IF NOT EXISTS experiments (
    {_EXPERIMENT_SQL}, source VARCHAR NOT NULL, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS foci (
    experiment_id VARCHAR NOT NULL, source VARCHAR NOT NULL, position INTEGER NOT NULL,
    table_id VARCHAR, table_label VARCHAR, x DOUBLE NOT NULL, y DOUBLE NOT NULL, z DOUBLE NOT NULL,
    space VARCHAR NOT NULL, out_of_bounds BOOLEAN NOT NULL, duplicate BOOLEAN NOT NULL);
CREATE TABLE IF NOT EXISTS study_tags (study_id VARCHAR NOT NULL, {_TAG_SQL}, tagged_by VARCHAR);
CREATE TABLE IF NOT EXISTS tag_evidence (
    study_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, value VARCHAR, subtype VARCHAR, chosen BOOLEAN,
    found_in VARCHAR, text VARCHAR, count INTEGER, points DOUBLE);
CREATE TABLE IF NOT EXISTS terms (term_id INTEGER NOT NULL, term VARCHAR NOT NULL, core BOOLEAN NOT NULL);
CREATE TABLE IF NOT EXISTS term_counts (
    study_id VARCHAR NOT NULL, field VARCHAR NOT NULL, term_id INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE OR REPLACE VIEW studies AS
    SELECT study_id,
           {_FIRST_OF},
           list(source ORDER BY rank) AS sources
    FROM (SELECT *, {_SOURCE_RANK} AS rank FROM study_sources)
    GROUP BY study_id;
CREATE OR REPLACE VIEW term_documents AS
    SELECT study_id FROM study_sources WHERE source = '{NEUROQUERY}';
CREATE OR REPLACE VIEW table_experiments AS
    SELECT e.* REPLACE (
               e.study_id || '-' || {_TABLE_CONTRAST} AS experiment_id,
               {_TABLE_CONTRAST} AS contrast_id,
               e.source || ': table ' || coalesce(t.table_label, t.table_id) AS name,
               'unknown' AS direction,
               t.first_focus AS position),
           e.experiment_id AS pooled_id, t.table_id
    FROM experiments e JOIN (
        SELECT experiment_id, table_id, any_value(table_label) AS table_label, min(position) AS first_focus
        FROM foci WHERE {_IS_DATABASE} GROUP BY experiment_id, table_id) t USING (experiment_id)
    UNION ALL BY NAME
    SELECT *, experiment_id AS pooled_id, NULL::VARCHAR AS table_id FROM experiments WHERE NOT {_IS_DATABASE};
CREATE OR REPLACE VIEW table_foci AS
    SELECT f.* REPLACE (
               CASE WHEN {_IS_DATABASE_F} THEN e.study_id || '-' || f.source || '-table-' || f.table_id
               ELSE f.experiment_id END AS experiment_id)
    FROM foci f JOIN experiments e USING (experiment_id);
{_catalog("catalog", "experiments", "")}
{_catalog("table_catalog", "table_experiments", ", e.pooled_id, e.table_id")}
"""
