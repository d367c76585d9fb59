"""Reading and writing StudySets: Sleuth text, NiMARE JSON, NIMADS JSON, focus tables (TSV, CSV, Excel).

``read_studyset`` and ``write_studyset`` pick the format from the file's extension
(``.txt`` Sleuth, ``.json`` NiMARE JSON, ``.tsv``/``.csv``/``.xlsx`` table, or JALE's
experiment file when the table's first column is ``Article``); a file with another extension is
read as Sleuth if it starts with ``//`` and as JSON if with ``{``. A JSON file whose top level
has a ``studies`` list is read as a NIMADS studyset (``nimare.nimads.Studyset``, what
Neurosynth-Compose exports), any other as a NiMARE dataset; JSON is written as NiMARE JSON.
``read_studyset`` also takes an in-memory ``nimare.dataset.Dataset`` (its coordinates, already
in the Dataset's space, are not transformed again).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from neurochange.errors import InputError
from neurochange.sources.io._common import check_file
from neurochange.sources.io.nimads import is_nimads, nimads_from_data, read_nimads
from neurochange.sources.io.nimare_json import (
    is_nimare_dataset,
    load_json,
    nimare_from_data,
    read_nimare_dataset,
    read_nimare_json,
    write_nimare_json,
)
from neurochange.sources.io.sleuth import read_sleuth, write_sleuth
from neurochange.sources.io.tables import read_table, write_table
from neurochange.studyset import StudySet

#: Extension -> format name.
FORMATS = {".txt": "sleuth", ".json": "nimare_json", ".tsv": "tsv", ".csv": "csv", ".xlsx": "xlsx"}
_FORMAT_HELP = "Sleuth text (.txt), NiMARE or NIMADS JSON (.json), or a focus table (.tsv, .csv, .xlsx)"

__all__ = [
    "FORMATS",
    "file_format",
    "read_nimads",
    "read_nimare_dataset",
    "read_nimare_json",
    "read_sleuth",
    "read_studyset",
    "read_table",
    "write_nimare_json",
    "write_sleuth",
    "write_studyset",
    "write_table",
]


def file_format(path, *, sniff: bool = False) -> str:
    """The format of ``path``: by extension, else (when ``sniff``) by its first characters."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None and sniff:
        try:
            with open(path, "rb") as fh:
                start = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        except OSError as exc:
            raise InputError(f"cannot read file: {exc.strerror or exc}", file=path) from None
        fmt = "sleuth" if start.startswith(b"//") else "nimare_json" if start.startswith(b"{") else None
    if fmt is None:
        raise InputError(f"unknown file format {path.suffix or '(no extension)'!r}; use {_FORMAT_HELP}", file=path)
    return fmt


def read_studyset(path, *, space_transform: str = "icbm_other") -> StudySet:
    """Read a StudySet from any supported file, or from a ``nimare.dataset.Dataset`` object.

    Talairach foci become MNI with ``space_transform``: ``icbm_other`` (NiMARE's default) or
    ``icbm_spm`` (Lancaster 2007).
    """
    if not isinstance(path, (str, bytes, PathLike)) and is_nimare_dataset(path):
        return read_nimare_dataset(path, space_transform=space_transform)
    path = check_file(path)
    fmt = file_format(path, sniff=True)
    if fmt == "sleuth":
        return read_sleuth(path, space_transform=space_transform)
    if fmt == "nimare_json":
        notes: list[str] = []
        data = load_json(path, notes)
        read = nimads_from_data if is_nimads(data) else nimare_from_data
        return read(data, file=path, notes=notes, space_transform=space_transform)
    return read_table(path, space_transform=space_transform)


def write_studyset(studyset: StudySet, path) -> dict:
    """Write ``studyset`` (in MNI) to ``path`` in the format its extension names, atomically.

    Returns what was written: ``experiments``, ``foci``, ``foci_out_of_bounds`` (left out),
    ``experiments_without_foci`` (ids), ``experiments_left_out`` (ids: Sleuth and tables cannot
    hold experiments without foci), ``notes``, ``format``, ``file``.
    """
    fmt = file_format(path)
    writer = {"sleuth": write_sleuth, "nimare_json": write_nimare_json}.get(fmt, write_table)
    try:
        summary = writer(studyset, path)
    except InputError as exc:
        raise exc.at(file=path) from None
    except OSError as exc:
        raise InputError(f"cannot write file: {exc.strerror or exc}", file=path) from None
    return {**summary, "format": fmt, "file": str(path)}
