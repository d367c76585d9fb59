"""Editing a curation table in place: one record's fields at a time, safely, from several editors.

A curation table (:mod:`neurochange.corpus.curation`) written by a program is a TSV with one row
per record: a study (``study_id``), an experiment (``experiment_id``) or a focus (``experiment_id``
and ``focus``), in the columns of :data:`COLUMNS`. :func:`edit_curation` applies a list of
:class:`Edit`\\ s:

- under an exclusive lock (a ``.lock`` file beside the table), so two editors never interleave;
- each edit may say the value its editor last saw (``expected``): when the file now holds
  another value, the whole request is refused with :class:`EditConflict`, which names the record,
  the field and the value found (two browser tabs never overwrite each other silently);
- the new table is written to a temporary file in the same folder, read back by
  :func:`~neurochange.corpus.curation.read_curation` (and checked by ``check`` when given),
  flushed to disk and renamed over the old one, so a crash or a kill at any moment leaves either
  the old table or the new one, each valid. A rejected edit leaves the file untouched.

Hand-written tables (aliases such as ``pmid``, several rows per record) are read as the reader
reads them and written back with one row per record.
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from neurochange.corpus.curation import FIELDS, NOTE_COLUMNS, Curation, _column, read_curation
from neurochange.errors import InputError
from neurochange.results.outdir import atomic_file
from neurochange.sources.download import sha256_file
from neurochange.sources.io._common import check_file
from neurochange.sources.io.tables import table_rows

#: Columns of a curation table written by :func:`edit_curation`, in order.
COLUMNS = ("study_id", "experiment_id", "focus", "x", "y", "z", "include", "reason", "direction", "n", "contrast",
           *[f for f in FIELDS if f not in ("include", "reason", "direction", "n", "contrast")], "flag", "note")
KEY_COLUMNS = ("study_id", "experiment_id", "focus")


class EditConflict(InputError):
    """An edit's ``expected`` value is no longer the file's: someone else changed the field first."""


@dataclass(frozen=True)
class Edit:
    """Set ``field`` of one record to ``value`` (``""`` clears it).

    The record: a study (``study_id`` only), an experiment (``experiment_id``) or a focus
    (``experiment_id`` and ``focus``). ``expected``: the value the editor last saw (``""`` for
    none), or None to skip that check.
    """

    field: str
    value: str
    study_id: str = ""
    experiment_id: str = ""
    focus: str = ""
    expected: str | None = None

    def key(self) -> tuple[str, str, str]:
        return _key(vars(self))


def version(path: str | Path) -> str:
    """The table's SHA-256, or ``""`` when it does not exist yet."""
    path = Path(path)
    return sha256_file(path) if path.exists() else ""


def _key(row: dict) -> tuple[str, str, str]:
    if row.get("experiment_id"):
        return ("", row["experiment_id"], row.get("focus", ""))
    return (row.get("study_id", ""), "", "")


def read_records(path: str | Path) -> tuple[dict[tuple[str, str, str], dict], str]:
    """The table's records by key ``(study_id, experiment_id, focus)``, each a dict of :data:`COLUMNS`,
    and its version (:func:`version`, from the same check).

    A missing file is an empty table. Rows of the same record merge (the reader has already
    refused conflicting values).
    """
    path = Path(path)
    if not path.exists():
        return {}, ""
    checked = read_curation(path).sha256
    records: dict[tuple[str, str, str], dict] = {}
    columns = None
    for _, cells in table_rows(check_file(path), []):
        if columns is None:
            columns = {i: c for i, c in ((i, _column(n, path, i)) for i, n in enumerate(cells)) if c}
            continue
        row = {("note" if name in NOTE_COLUMNS else name): cells[i].strip()
               for i, name in columns.items() if i < len(cells)}
        if not any(row.values()):
            continue
        record = records.setdefault(_key(row), dict.fromkeys(COLUMNS, ""))
        for name, value in row.items():
            if value and name in record:
                record[name] = value if not record[name] or name != "note" else f"{record[name]}; {value}"
    return records, checked


@contextmanager
def _locked(path: Path):
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(records: dict, fh) -> None:
    writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records.values():
        writer.writerow([record[c] for c in COLUMNS])
    fh.flush()
    os.fsync(fh.fileno())


def _apply(records: dict, edit: Edit) -> None:
    if edit.field not in COLUMNS or edit.field in KEY_COLUMNS:
        fields = ", ".join(c for c in COLUMNS if c not in KEY_COLUMNS)
        raise InputError(f"cannot set {edit.field!r}; fields are {fields}", field=edit.field)
    if not (edit.study_id or edit.experiment_id) or (edit.focus and not edit.experiment_id):
        raise InputError("an edit names a study_id, an experiment_id, or an experiment_id and a focus",
                         field="study_id")
    key = edit.key()
    record = records.get(key)
    current = record[edit.field] if record else ""
    if edit.expected is not None and current != edit.expected:
        what = f"focus {edit.focus} of {edit.experiment_id}" if edit.focus else edit.experiment_id or edit.study_id
        raise EditConflict(f"{what}: {edit.field} is now {current or '(empty)'!r}, not {edit.expected or '(empty)'!r}"
                           " as this page shows; reload and edit again", field=edit.field)
    if record is None:
        record = records[key] = dict.fromkeys(COLUMNS, "")
        record.update(study_id=edit.study_id, experiment_id=edit.experiment_id, focus=edit.focus)
    record[edit.field] = str(edit.value).strip()
    if not any(record[c] for c in COLUMNS if c not in KEY_COLUMNS and c not in ("x", "y", "z")):
        del records[key]


def edit_curation(path: str | Path, edits: list[Edit], check: Callable[[Curation], None] | None = None) -> str:
    """Apply ``edits`` to the curation table at ``path`` (created when missing) atomically; return its new version.

    ``check(curation)``: more checks of the new table (e.g. its ids against the corpus), raising
    ``InputError``. Any error leaves the file as it was; errors name ``path`` and the new table's line.
    """
    path = Path(path)
    if path.suffix.lower() != ".tsv":
        raise InputError("the curation table edited here must be a .tsv file", file=path)
    with _locked(path):
        records, _ = read_records(path)
        for edit in edits:
            try:
                _apply(records, edit)
            except InputError as err:
                raise type(err)(err.message, file=path, field=err.field) from None
        try:
            with atomic_file(path, "w", newline="", encoding="utf-8") as fh:
                _write(records, fh)
                curation = read_curation(fh.name)
                if check is not None:
                    check(curation)
        except InputError as err:
            raise InputError(err.message, file=path, line=err.line, field=err.field) from None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return version(path)


__all__ = ["COLUMNS", "Edit", "EditConflict", "edit_curation", "read_records", "version"]
