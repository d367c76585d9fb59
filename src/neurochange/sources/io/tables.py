"""Focus tables (TSV, CSV, Excel .xlsx), one row per focus, read and written.

Columns (header on line 1; names are case-insensitive, spaces read as ``_``):

- ``study`` (required): study id (PMID, DOI or your own). Also accepted: ``study_id``, ``id``.
- ``experiment``: contrast id within the study; empty or absent means ``1`` (the id NiMARE's
  Neurosynth conversion gives a study's only contrast). Also accepted: ``contrast``,
  ``contrast_id``. The experiment id is ``"<study>-<experiment>"``.
- ``x``, ``y``, ``z`` (required): focus in mm, within +-128 mm.
- ``space``: ``MNI`` or ``TAL``/``Talairach``, the space of x, y, z. Empty, absent or
  ``UNKNOWN`` is taken as MNI, as NiMARE does, and the count is noted in the provenance.
  Talairach foci are converted to MNI once, on reading.
- ``reported_space``: the space to record when x, y, z were already converted (written by
  neurochange for foci first reported in Talairach).
- ``n``: sample size, a positive whole number (also ``sample_size``, ``subjects``).
- experiment fields: ``name``, ``direction``, ``modality``, ``subtype``, ``disorder``,
  ``design``, ``imaging``, ``sessions``, ``weeks``, ``frequency_hz``, ``intensity_pct_mt``,
  ``pulses``, ``target``; study fields: ``title``, ``authors``, ``year``, ``journal``, ``doi``,
  ``source``; focus fields: ``table_id``, ``focus_source``.

An experiment's ``n`` and fields, and a study's fields, may be given on any of its rows
(empty cells say nothing); two different values are an error naming the line. Other columns
are skipped and noted. ``.csv`` files may use ``,`` ``;`` or tabs (read from the header line).

Numbers are written in their shortest exact form, so TSV and CSV round trips are exact;
Excel cells hold 16 significant digits, so coordinates converted from Talairach come back
from ``.xlsx`` within 1e-12 mm.
"""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.results.outdir import atomic_file
from neurochange.sources.io._common import (
    EXPERIMENT_FIELDS,
    STUDY_FIELDS,
    assemble,
    check_file,
    check_xyz,
    field_key,
    missing,
    parse_field,
    parse_number,
    parse_whole,
    read_text,
    writable,
)
from neurochange.studyset import StudySet

TABLE_FORMATS = {".tsv": "tsv", ".csv": "csv", ".xlsx": "xlsx"}
ALIASES = {
    "study_id": "study",
    "id": "study",
    "contrast": "experiment",
    "contrast_id": "experiment",
    "sample_size": "n",
    "subjects": "n",
}
FOCUS_FIELDS = ("table_id", "focus_source")
CORE = ("study", "experiment", "x", "y", "z", "space", "reported_space", "n")
REQUIRED = ("study", "x", "y", "z")
DEFAULT_EXPERIMENT = "1"


def _column(name: str) -> str | None:
    key = "_".join(str(name).strip().lower().split())
    key = ALIASES.get(key, key)
    if key in CORE or key in FOCUS_FIELDS:
        return key
    return field_key(key)


def _rows_text(path: Path, fmt: str, notes: list[str]):
    """(line, cells) for a TSV/CSV file; line is where the row starts (1-based)."""
    text = read_text(path, notes)
    first = text.split("\n", 1)[0]
    delimiter = "\t"
    if fmt == "csv" and ("," in first or not ("\t" in first or ";" in first)):
        delimiter = ","
    elif fmt == "csv" and "\t" not in first:
        delimiter = ";"
    reader = csv.reader(_io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"cannot read table: {exc}", file=path, line=reader.line_num) from None


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _rows_xlsx(path: Path):
    """(line, cells) for the first sheet of an Excel workbook."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=False, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and key errors for bad files
        raise InputError(f"cannot read Excel workbook: {type(exc).__name__}: {exc}", file=path) from None
    sheet = book.worksheets[0]
    for line, row in enumerate(sheet.iter_rows(min_row=1, min_col=1, values_only=True), start=1):
        yield line, [_cell_text(v) for v in row]


def table_rows(path: Path, notes: list[str]):
    """(line, cells) of a .tsv, .csv or .xlsx file (another extension is read as TSV)."""
    fmt = TABLE_FORMATS.get(path.suffix.lower(), "tsv")
    return _rows_xlsx(path) if fmt == "xlsx" else _rows_text(path, fmt, notes)


def _header(cells: list[str], file: Path, notes: list[str]) -> dict[str, int]:
    """Column name -> index, after aliases; unknown columns noted."""
    columns: dict[str, int] = {}
    skipped = []
    for index, name in enumerate(cells):
        if not name.strip():
            continue
        key = _column(name)
        if key is None:
            skipped.append(name.strip())
            continue
        if key in columns:
            raise InputError(f"column {name!r} repeats column {cells[columns[key]]!r}", file=file, line=1, field=name)
        columns[key] = index
    missing_columns = [c for c in REQUIRED if c not in columns]
    if missing_columns:
        raise InputError(
            f"missing column {missing_columns[0]!r}; a focus table needs columns study, x, y, z "
            "(and usually experiment, space, n)",
            file=file,
            line=1,
            field=missing_columns[0],
        )
    if skipped:
        notes.append(f"{file.name}: skipped unknown columns {', '.join(repr(s) for s in skipped)}")
    return columns


class _Consistent:
    """Values that must agree across rows (an experiment's n and fields, a study's fields)."""

    def __init__(self, file: Path):
        self.file = file
        self.values: dict = {}

    def set(self, owner: str, what: str, key: str, value, line: int) -> None:
        if value is None:
            return
        old = self.values.setdefault((owner, key), (value, line))
        if old[0] != value:
            raise InputError(
                f"{what} {owner!r} has {key}={old[0]!r} on line {old[1]} but {value!r} here",
                file=self.file,
                line=line,
                field=key,
            )

    def get(self, owner: str, key: str):
        return self.values.get((owner, key), (None, None))[0]


def read_table(path, *, space_transform: str = "icbm_other") -> StudySet:
    """Read a focus table (.tsv, .csv, .xlsx), or JALE's experiment file (:mod:`.jale_excel`) when its header
    is JALE's; Talairach foci are converted to MNI."""
    file = check_file(path)
    fmt = TABLE_FORMATS.get(file.suffix.lower(), "tsv")
    notes: list[str] = []
    rows = table_rows(file, notes)
    columns = None
    consistent = _Consistent(file)
    studies: dict[str, None] = {}
    experiments: dict[str, tuple[str, str]] = {}
    foci: dict[str, list] = {
        k: [] for k in ("experiment_id", "x", "y", "z", "space", "reported_space", "table_id", "source", "line")
    }
    unknown_space = 0
    parsed: dict = {}
    for line, cells in rows:
        if columns is None:
            if not any(c.strip() for c in cells):
                raise InputError("the first line must be the header (study, x, y, z, ...)", file=file, line=line)
            # JALE's experiment file: the rest of the same rows (jale_excel imports this module, hence here)
            from neurochange.sources.io.jale_excel import is_jale_header, jale_studyset

            if is_jale_header(cells):
                return jale_studyset(rows, file, notes, space_transform)
            columns = _header(cells, file, notes)
            width = len(cells)
            experiment_keys = [k for k in EXPERIMENT_FIELDS if k in columns]
            study_keys = [k for k in STUDY_FIELDS if k in columns]
            continue
        if not any(c.strip() for c in cells):
            continue
        extra = [c for c in cells[width:] if c.strip()]
        if extra:
            raise InputError(f"row has more cells than the header ({len(cells)} > {width})", file=file, line=line)

        def cell(key: str) -> str:
            index = columns.get(key)
            return cells[index].strip() if index is not None and index < len(cells) else ""

        study = cell("study")
        if not study:
            raise InputError("study is empty", file=file, line=line, field="study")
        contrast = cell("experiment") or DEFAULT_EXPERIMENT
        eid = f"{study}-{contrast}"
        studies.setdefault(study, None)
        experiments.setdefault(eid, (study, contrast))
        xyz = tuple(parse_number(cell(a), file=file, line=line, field=a) for a in "xyz")
        check_xyz(xyz, file=file, line=line)
        space_text = cell("space")
        if not space_text or space_text.lower() == "unknown":
            unknown_space += 1
            space = "MNI"
        else:
            space = _space.normalize_space(space_text, file=file, line=line)
        reported = cell("reported_space")
        foci["line"].append(line)
        foci["experiment_id"].append(eid)
        for axis, value in zip("xyz", xyz):
            foci[axis].append(value)
        foci["space"].append(space)
        foci["reported_space"].append(_space.normalize_space(reported, file=file, line=line) if reported else None)
        foci["table_id"].append(cell("table_id") or None)
        foci["source"].append(cell("focus_source") or None)
        if cell("n"):
            consistent.set(eid, "experiment", "n", parse_whole(cell("n"), file=file, line=line, field="n"), line)
        for owner, what, keys in ((eid, "experiment", experiment_keys), (study, "study", study_keys)):
            for key in keys:
                text = cell(key)
                if (key, text) not in parsed:  # values repeat down the rows: parse each once
                    parsed[key, text] = parse_field(key, text, file=file, line=line)
                consistent.set(owner, what, key, parsed[key, text], line)
    if columns is None:
        raise InputError("empty table: the first line must be the header (study, x, y, z, ...)", file=file, line=1)
    if not experiments:
        raise InputError("no foci: the table has a header but no rows", file=file)
    if unknown_space:
        notes.append(f"{unknown_space} foci give no space; taken as MNI (NiMARE's convention)")
    study_records = {s: {k: consistent.get(s, k) for k in STUDY_FIELDS} for s in studies}
    experiment_records = [
        {"study_id": s, "contrast_id": c, **{k: consistent.get(eid, k) for k in ("n", *EXPERIMENT_FIELDS)}}
        for eid, (s, c) in experiments.items()
    ]
    return assemble(
        study_records, experiment_records, foci, file=file, fmt=fmt, notes=notes, space_transform=space_transform
    )


# ---------------------------------------------------------------------------------------- writing


def table_frame(studyset: StudySet):
    """The table to write: one row per focus, MNI x, y, z, documented columns only.

    Built from :meth:`StudySet.to_table`; columns empty throughout are left out (study,
    experiment, x, y, z, space and n always stay).
    """
    kept, summary = writable(studyset)
    table = kept.to_table().rename(columns={"source": "focus_source", "source_study": "source", "space": "reported_space"})
    table["space"] = "MNI"
    order = [*CORE, *EXPERIMENT_FIELDS, *STUDY_FIELDS, *FOCUS_FIELDS]
    table = table[[c for c in order if c in table.columns]]
    keep = [c for c in table.columns if c in ("study", "experiment", "x", "y", "z", "space", "n") or table[c].notna().any()]
    if "reported_space" in keep and (table["reported_space"] == "MNI").all():
        keep.remove("reported_space")
    summary["experiments"] -= len(summary["experiments_without_foci"])
    summary["experiments_left_out"] = summary["experiments_without_foci"]
    return table[keep], summary


def write_table(studyset: StudySet, path) -> dict:
    """Write ``studyset`` as a focus table (.tsv, .csv or .xlsx by extension); returns what was written."""
    path = Path(path)
    fmt = TABLE_FORMATS.get(path.suffix.lower(), "tsv")
    table, summary = table_frame(studyset)
    if fmt == "xlsx":
        _write_xlsx(table, path)
        return summary
    with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
        # pandas writes floats in their shortest exact form and missing values as empty cells.
        table.to_csv(fh, sep="\t" if fmt == "tsv" else ",", index=False, lineterminator="\n")
    return summary


def _write_xlsx(table, path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("foci")
    sheet.append(list(table.columns))
    for row in table.itertuples(index=False):
        cells = []
        for value in row:
            value = None if missing(value) else (value.item() if hasattr(value, "item") else value)
            cells.append(value)
        sheet.append(cells)
    with atomic_file(path, "wb") as fh:
        book.save(fh)
