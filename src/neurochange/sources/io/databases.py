"""Readers of the two public coordinate databases: Neurosynth v7 and NeuroQuery v1.

Each reader returns a :class:`~neurochange.studyset.StudySet` with one experiment per
study (all of a paper's tables pooled, as NiMARE does). The experiment's contrast id is
the database name, so a PMID present in both databases gives two distinct experiments,
``"<pmid>-neurosynth"`` and ``"<pmid>-neuroquery"``, of one study ``"<pmid>"``. Neither
database says a peak's sign or sample size: ``direction`` is ``unsigned`` (pooled tables)
and ``n`` is missing. Each focus keeps its table (``table_id``, and ``table_label``: Neurosynth's
``table_num``, NeuroQuery's ``table_name``), from which the corpus offers one experiment per table.

Coordinates are kept as published, every row: nothing is dropped or merged. Neurosynth's
metadata ``space`` says how a study reported them: ``TAL`` peaks are converted to MNI once,
here (Lancaster 2007, ``icbm_other`` by default as in NiMARE, or ``icbm_spm``), and their
focus ``space`` stays ``TAL`` (the space reported); ``UNKNOWN`` is taken as MNI (NiMARE's
convention). NeuroQuery has no space column: all its peaks are taken as MNI. Foci are
flagged by :meth:`StudySet.flag_foci`: ``out_of_bounds`` (beyond +-128 mm) and
``duplicate`` (repeats an earlier row of the same table: same study, table id and x, y, z).

Files are tab-separated, gzip-compressed, with CSV quoting (titles and table names may
hold quotes, tabs or line breaks inside double quotes). They are read by DuckDB; when that
fails, a slow line-by-line pass finds the first bad line and field and raises one
``InputError`` naming file, line (1-based, the header is line 1) and field.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.studyset import StudySet, experiment_id

NEUROSYNTH = "neurosynth"
NEUROQUERY = "neuroquery"

#: Neurosynth metadata ``space`` values and what each becomes.
NEUROSYNTH_SPACES = {"MNI": "MNI", "TAL": "TAL", "UNKNOWN": "MNI"}

#: The three NeuroQuery term-count matrices: text field -> file-name part.
NEUROQUERY_TEXT_FIELDS = ("abstract", "title", "keywords")


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # "id" (positive integer), "float", "int", "text"
    required: bool = True
    allowed: tuple[str, ...] | None = None


_SQL_TYPES = {"id": "BIGINT", "float": "DOUBLE", "int": "BIGINT", "text": "VARCHAR"}

NEUROSYNTH_COORDINATES = (
    _Column("id", "id"),
    _Column("table_id", "text"),
    _Column("table_num", "text", required=False),
    _Column("peak_id", "int", required=False),
    _Column("x", "float"),
    _Column("y", "float"),
    _Column("z", "float"),
)
NEUROSYNTH_METADATA = (
    _Column("id", "id"),
    _Column("doi", "text", required=False),
    _Column("space", "text", allowed=tuple(NEUROSYNTH_SPACES)),
    _Column("title", "text", required=False),
    _Column("authors", "text", required=False),
    _Column("year", "int", required=False),
    _Column("journal", "text", required=False),
)
NEUROQUERY_COORDINATES = (
    _Column("id", "id"),
    _Column("table_id", "text"),
    _Column("table_name", "text", required=False),
    _Column("x", "float"),
    _Column("y", "float"),
    _Column("z", "float"),
)
NEUROQUERY_METADATA = (
    _Column("id", "id"),
    _Column("title", "text", required=False),
)


# ----------------------------------------------------------------------------- reading tables
def read_tsv(path: str | Path, columns: tuple[_Column, ...], *, unique: str | None = None,
             known_ids: set[str] | None = None) -> pd.DataFrame:
    """Read a (gzipped) database TSV with exactly ``columns``; ``id`` comes back as str.

    ``unique``: a column whose values must not repeat; ``known_ids``: values ``id`` must
    take. Any problem -> one ``InputError`` with file, line and field.
    """
    path = Path(path)
    spec = ", ".join(f"'{c.name}': '{_SQL_TYPES[c.kind]}'" for c in columns)
    sql = (
        f"SELECT * FROM read_csv(?, columns={{{spec}}}, delim='\t', quote='\"', escape='\"', "
        "header=true, auto_detect=false, strict_mode=true)"
    )
    try:
        _check_header(path, columns)
        with duckdb.connect() as con:
            df = con.execute(sql, [str(path)]).df()
    except (duckdb.Error, OSError, EOFError, UnicodeDecodeError) as exc:
        raise _diagnose(path, columns, unique, known_ids, exc) from None
    if not _looks_valid(df, columns, unique, known_ids):
        raise _diagnose(path, columns, unique, known_ids, None)
    df["id"] = df["id"].astype("int64").astype(str)
    return df


def _open_text(path: Path):
    """Text handle on a .gz or plain file (UTF-8, newlines left to the csv module)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _check_header(path: Path, columns: tuple[_Column, ...]) -> None:
    try:
        with _open_text(path) as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the header: {_gzip_reason(exc)}", file=path, line=1) from None
    expected = [c.name for c in columns]
    if header != expected:
        field = next((e for h, e in zip(header + [None] * len(expected), expected) if h != e), None)
        raise InputError(
            f"columns are {' '.join(header)!r}, expected {' '.join(expected)!r} (tab-separated)",
            file=path, line=1, field=field,
        )


def _looks_valid(df, columns, unique, known_ids) -> bool:
    """Vectorised checks of a parsed table; False sends the file to the line-by-line diagnosis."""
    for c in columns:
        col = df[c.name]
        if c.required and col.isna().any():
            return False
        if c.kind == "float" and not np.isfinite(col.to_numpy(dtype=float, na_value=0.0)).all():
            return False
        if c.kind == "id" and (col.dropna() <= 0).any():
            return False
        if c.allowed is not None and not col.dropna().isin(c.allowed).all():
            return False
    if unique is not None and df[unique].duplicated().any():
        return False
    if known_ids is not None and not df["id"].astype("int64").astype(str).isin(known_ids).all():
        return False
    return True


def _gzip_reason(exc: BaseException) -> str:
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"the file is truncated or not valid gzip ({exc})"
    return str(exc)


def _check_value(column: _Column, value: str) -> str | None:
    """Why ``value`` is not valid for ``column``, or None."""
    if value == "":
        return "missing value" if column.required else None
    if column.kind in ("id", "int"):
        try:
            number = int(value)
        except ValueError:
            return f"{value!r} is not an integer"
        if column.kind == "id" and number <= 0:
            return f"{value!r} is not a positive integer id"
    elif column.kind == "float":
        try:
            number = float(value)
        except ValueError:
            return f"{value!r} is not a number"
        if not math.isfinite(number):
            return f"{value!r} is not a finite number"
    if column.allowed is not None and value not in column.allowed:
        return f"{value!r} is not one of {', '.join(column.allowed)}"
    return None


def _diagnose(path: Path, columns, unique, known_ids, exc) -> InputError:
    """Scan the file line by line and return an InputError at the first problem."""
    names = [c.name for c in columns]
    seen: set[str] = set()
    line = 0  # physical lines consumed so far
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh, delimiter="\t", quotechar='"', doublequote=True, strict=True)
            for record in reader:
                start, line = line + 1, reader.line_num
                if start == 1:
                    if record != names:
                        return InputError(f"columns are {record}, expected {names}", file=path, line=1)
                    continue
                if len(record) != len(names):
                    field = names[len(record)] if len(record) < len(names) else None
                    return InputError(
                        f"expected {len(names)} tab-separated fields ({' '.join(names)}), found {len(record)}",
                        file=path, line=start, field=field,
                    )
                for column, value in zip(columns, record):
                    why = _check_value(column, value)
                    if why:
                        return InputError(why, file=path, line=start, field=column.name)
                row = dict(zip(names, record))
                if known_ids is not None and str(int(row["id"])) not in known_ids:
                    return InputError(f"study {row['id']} is not in the metadata file", file=path,
                                      line=start, field="id")
                if unique is not None:
                    if row[unique] in seen:
                        return InputError(f"{row[unique]} appears twice", file=path, line=start, field=unique)
                    seen.add(row[unique])
    except csv.Error as err:
        return InputError(f"malformed quoting: {err}", file=path, line=line + 1)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        return InputError(f"cannot read: {_gzip_reason(err)}", file=path, line=line + 1)
    reason = str(exc).splitlines()[0] if exc is not None else "invalid content"
    return InputError(f"cannot read: {reason}", file=path)


# ----------------------------------------------------------------------------- StudySets
def _foci_frame(coords: pd.DataFrame, source: str, space: pd.Series, xyz: np.ndarray, label: str) -> pd.DataFrame:
    """Foci with the table they were printed in: ``table_id`` and its label (``label`` column, e.g. "Table 2")."""
    labels = coords[label].astype("string").str.split().str.join(" ") if label in coords else pd.NA
    return pd.DataFrame({
        "experiment_id": coords["id"] + f"-{source}",
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "space": space.to_numpy(),
        "source": source,
        "table_id": coords["table_id"].astype(str),
        "table_label": labels,
    })


def _experiments_frame(study_ids: pd.Series, source: str) -> pd.DataFrame:
    return pd.DataFrame({
        "experiment_id": [experiment_id(s, source) for s in study_ids],
        "study_id": study_ids.to_numpy(),
        "contrast_id": source,
        "name": f"{source}: all tables pooled",
        "direction": "unsigned",
    })


def _provenance(source: str, paths: list[Path], notes: list[str]) -> dict:
    return {"sources": [{"source": source, "file": str(p)} for p in paths], "notes": notes}


def read_neurosynth(coordinates_path: str | Path, metadata_path: str | Path,
                    tal_method: str = "icbm_other") -> StudySet:
    """Neurosynth v7 as a StudySet: 14,371 studies, one experiment each, 507,891 foci.

    ``tal_method``: Talairach -> MNI transform for studies reported in TAL
    (``icbm_other``, NiMARE's default, or ``icbm_spm``). Studies carry an extra column
    ``reported_space`` (``MNI``/``TAL``/``UNKNOWN``, as in the metadata file).
    """
    if tal_method not in _space.LANCASTER_2007:
        raise InputError(f"unknown Talairach transform {tal_method!r}; use one of {sorted(_space.LANCASTER_2007)}",
                         field="tal_method")
    meta = read_tsv(metadata_path, NEUROSYNTH_METADATA, unique="id")
    coords = read_tsv(coordinates_path, NEUROSYNTH_COORDINATES, known_ids=set(meta["id"]))
    reported = coords["id"].map(meta.set_index("id")["space"])
    xyz = coords[["x", "y", "z"]].to_numpy(dtype=float, copy=True)
    tal = (reported == "TAL").to_numpy()
    xyz[tal] = _space.tal_to_mni(xyz[tal], tal_method)
    foci = _foci_frame(coords, NEUROSYNTH, reported.map(NEUROSYNTH_SPACES), xyz, "table_num")
    studies = pd.DataFrame({
        "study_id": meta["id"], "title": meta["title"], "authors": meta["authors"],
        "year": meta["year"], "journal": meta["journal"], "doi": meta["doi"],
        "source": NEUROSYNTH, "reported_space": meta["space"],
    })
    counts = meta["space"].value_counts()
    notes = [
        f"neurosynth: {counts.get('MNI', 0):,} studies reported in MNI; "
        f"{counts.get('TAL', 0):,} in Talairach, whose {int(tal.sum()):,} foci were converted to MNI "
        f"with Lancaster 2007 {tal_method}; {counts.get('UNKNOWN', 0):,} of unknown space, "
        f"whose {int((reported == 'UNKNOWN').sum()):,} foci were taken as MNI (NiMARE's convention)"
    ]
    out = StudySet(studies, _experiments_frame(meta["id"], NEUROSYNTH), foci,
                   _provenance(NEUROSYNTH, [Path(coordinates_path), Path(metadata_path)], notes))
    out.provenance["space_counts"] = {"neurosynth": {k: int(counts.get(k, 0)) for k in NEUROSYNTH_SPACES}}
    out.provenance["tal_method"] = tal_method
    out.flag_foci()
    return out


def read_neuroquery(coordinates_path: str | Path, metadata_path: str | Path) -> StudySet:
    """NeuroQuery v1 as a StudySet: 13,459 studies, one experiment each, 469,260 foci (all MNI)."""
    meta = read_tsv(metadata_path, NEUROQUERY_METADATA, unique="id")
    coords = read_tsv(coordinates_path, NEUROQUERY_COORDINATES, known_ids=set(meta["id"]))
    xyz = coords[["x", "y", "z"]].to_numpy(dtype=float, copy=True)
    foci = _foci_frame(coords, NEUROQUERY, pd.Series("MNI", index=coords.index), xyz, "table_name")
    studies = pd.DataFrame({"study_id": meta["id"], "title": meta["title"], "source": NEUROQUERY})
    notes = ["neuroquery: no space column; all foci taken as MNI (as NiMARE does)"]
    out = StudySet(studies, _experiments_frame(meta["id"], NEUROQUERY), foci,
                   _provenance(NEUROQUERY, [Path(coordinates_path), Path(metadata_path)], notes))
    out.flag_foci()
    return out


# ----------------------------------------------------------------------------- term counts
def read_vocabulary(path: str | Path) -> list[str]:
    """One term per line (a final empty line is ignored); terms must be unique."""
    path = Path(path)
    try:
        terms = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read vocabulary: {exc}", file=path) from None
    if terms and terms[-1] == "":
        terms.pop()
    seen: dict[str, int] = {}
    for i, term in enumerate(terms):
        if term == "" or term in seen:
            why = "empty term" if term == "" else f"term {term!r} repeats line {seen[term] + 1}"
            raise InputError(why, file=path, line=i + 1, field="term")
        seen[term] = i
    return terms


def read_term_counts(features_path: str | Path, n_studies: int, n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zeros of a ``*_features.npz`` count matrix: (row, column, count) int arrays.

    The matrix must be ``n_studies x n_terms`` with non-negative whole counts.
    """
    import scipy.sparse

    path = Path(features_path)
    try:
        matrix = scipy.sparse.load_npz(path).tocoo()
    except Exception as exc:  # numpy/zipfile raise many types for a damaged file
        raise InputError(f"cannot read sparse matrix: {exc}", file=path) from None
    if matrix.shape != (n_studies, n_terms):
        raise InputError(f"matrix is {matrix.shape[0]} x {matrix.shape[1]}, expected {n_studies} studies x "
                         f"{n_terms} terms (metadata rows x vocabulary lines)", file=path)
    data = np.asarray(matrix.data)
    keep = data != 0
    rows, cols, data = matrix.row[keep], matrix.col[keep], data[keep]
    if len(data) and (not np.isfinite(data).all() or (data < 0).any() or (data != np.round(data)).any()):
        raise InputError("term counts must be non-negative whole numbers", file=path)
    return rows.astype(np.int64), cols.astype(np.int64), data.astype(np.int64)


def read_neuroquery_terms(metadata_path: str | Path, vocabulary_path: str | Path,
                          features_paths: dict[str, str | Path],
                          core_vocabulary_path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NeuroQuery term counts as two tables.

    Returns ``terms`` (``term_id``, ``term``, ``core``: in the 7,547-term model vocabulary,
    if ``core_vocabulary_path`` is given) and ``counts`` (``study_id``, ``field``, ``term_id``,
    ``count``: the non-zeros only), ``field`` being a key of ``features_paths``
    (``abstract``, ``title``, ``keywords``).
    """
    meta = read_tsv(metadata_path, NEUROQUERY_METADATA, unique="id")
    vocabulary = read_vocabulary(vocabulary_path)
    core = set(read_vocabulary(core_vocabulary_path)) if core_vocabulary_path else set()
    terms = pd.DataFrame({"term_id": np.arange(len(vocabulary), dtype=np.int32), "term": vocabulary,
                          "core": [t in core for t in vocabulary]})
    parts = []
    study_ids = meta["id"].to_numpy()
    for field, path in features_paths.items():
        rows, cols, counts = read_term_counts(path, len(meta), len(vocabulary))
        order = np.lexsort((rows, cols))
        parts.append(pd.DataFrame({"study_id": study_ids[rows[order]], "field": field,
                                   "term_id": cols[order].astype(np.int32),
                                   "count": counts[order].astype(np.int32)}))
    counts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["study_id", "field", "term_id", "count"])
    return terms, counts
