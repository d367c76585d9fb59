"""What the file readers share: decoding text, parsing numbers and metadata fields, building a StudySet.

Readers collect plain records (studies, experiments, foci as reported) and hand them
to :func:`assemble`, which converts Talairach foci to MNI once and validates.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.sources.download import sha256_file
from neurochange.studyset import DOSE_COLUMNS, EXPERIMENT_COLUMNS, STUDY_COLUMNS, TAG_COLUMNS, StudySet
from neurochange.vocabulary import check_value

#: Experiment fields a file may carry besides ids and ``n`` (tags, direction, dose, name).
EXPERIMENT_FIELDS = tuple(c for c in EXPERIMENT_COLUMNS if c not in ("experiment_id", "study_id", "contrast_id", "n"))
#: Study fields a file may carry (one value per study).
STUDY_FIELDS = tuple(c for c in STUDY_COLUMNS if c != "study_id")
#: Other names accepted for fields (NiMARE's Sleuth export writes ``Publication``).
FIELD_ALIASES = {"publication": "journal"}

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def field_key(name: str) -> str | None:
    """The canonical field a column or ``Key=`` name stands for (case, spaces, hyphens ignored), or None."""
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    key = FIELD_ALIASES.get(key, key)
    return key if key in EXPERIMENT_FIELDS or key in STUDY_FIELDS else None


def source_record(path: Path, fmt: str) -> dict:
    """The provenance entry of one input file."""
    return {"file": str(path), "sha256": sha256_file(path), "format": fmt}


def check_file(path) -> Path:
    """``path`` as a Path, or an InputError if it is not a readable file."""
    path = Path(path)
    try:
        is_file, exists = path.is_file(), path.exists()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    if not exists:
        raise InputError("file not found", file=path)
    if not is_file:
        raise InputError("not a file", file=path)
    return path


def read_text(path: Path, notes: list[str]) -> str:
    """The file's text: UTF-8 (with or without BOM), else Windows-1252 with a note."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        notes.append(f"{path.name} is not UTF-8 (first odd byte on line {line}); read as Windows-1252")
        return data.decode("cp1252", errors="replace")


def split_lines(text: str) -> list[str]:
    """Lines as an editor numbers them (LF, CRLF or CR endings)."""
    return re.split(r"\r\n|\r|\n", text)


def parse_number(text, *, file=None, line=None, field=None) -> float:
    """A finite decimal number from text (``12``, ``-4.5``, ``1e2``; a Unicode minus is accepted)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip().replace("\u2212", "-")
        if not _NUMBER.fullmatch(raw):
            raise InputError(f"{field}={str(text)!r} is not a number", file=file, line=line, field=field)
        value = float(raw)
    if not math.isfinite(value):
        raise InputError(f"{field}={str(text)!r} is not a finite number", file=file, line=line, field=field)
    return value


def parse_whole(text, *, file=None, line=None, field=None) -> int:
    """A positive whole number (sample sizes): ``25`` or ``25.0``, not ``25.5``, ``0`` or ``-3``."""
    value = parse_number(text, file=file, line=line, field=field)
    if value != int(value) or value <= 0:
        raise InputError(f"{field}={str(text)!r} must be a positive whole number", file=file, line=line, field=field)
    return int(value)


def check_xyz(xyz, *, file=None, line=None) -> None:
    """A focus written in a user's file must lie within +-128 mm on every axis."""
    for axis, value in zip("xyz", xyz):
        if abs(value) > _space.COORDINATE_LIMIT_MM:
            raise InputError(
                f"{axis}={value:g} lies beyond +-{_space.COORDINATE_LIMIT_MM:g} mm: coordinates must be "
                "MNI or Talairach millimetres",
                file=file,
                line=line,
                field=axis,
            )


def parse_field(field: str, value, *, file=None, line=None, where=None):
    """A metadata value as its column wants it; None when empty.

    Tags are checked against the vocabulary (``Brain stimulation`` reads as
    ``brain_stimulation``); dose fields are non-negative numbers; ``year`` is whole.
    ``where`` names the field in the message (defaults to ``field``).
    """
    where = where or field
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        value = "; ".join(str(v) for v in value)
    if isinstance(value, (dict, list, tuple)) or isinstance(value, bool):
        raise InputError(f"{field} must be a single value, got {value!r}", file=file, line=line, field=where)
    text = str(value).strip()
    if not text:
        return None
    if field in TAG_COLUMNS or field == "direction":
        token = re.sub(r"[\s\-]+", "_", text.lower())
        check_value(field, token, file=file, line=line)
        return token
    if field in DOSE_COLUMNS and DOSE_COLUMNS[field] == "float64":
        number = parse_number(value, file=file, line=line, field=where)
        if number < 0:
            raise InputError(f"{field}={text!r} must not be negative", file=file, line=line, field=where)
        return number
    if field == "year":
        number = parse_number(value, file=file, line=line, field=where)
        if number != int(number):
            raise InputError(f"year={text!r} is not a whole number", file=file, line=line, field=where)
        return int(number)
    return text


def assemble(
    studies: dict[str, dict],
    experiments: list[dict],
    foci: dict[str, list],
    *,
    file: Path,
    fmt: str,
    notes: list[str],
    space_transform: str = "icbm_other",
    source: dict | None = None,
) -> StudySet:
    """Build a StudySet from records; Talairach foci are converted to MNI here, once.

    ``source``: the provenance record of what was read when it is not the file ``file`` (an object).

    ``studies``: study id -> study fields; ``experiments``: dicts with ``study_id``,
    ``contrast_id``, ``n`` and fields; ``foci``: lists ``experiment_id``, ``x``, ``y``,
    ``z`` (as written), ``space`` (the space of x, y, z: ``MNI``/``TAL``), optional
    ``reported_space`` (the space to record, when it differs), ``table_id``/``source``,
    and ``line`` or ``field`` (where each focus is, for errors).
    """
    xyz = np.column_stack([np.asarray(foci[a], dtype=float) for a in "xyz"]) if foci["x"] else np.zeros((0, 3))
    in_tal = np.asarray(foci["space"], dtype=object) == "TAL"
    if in_tal.any():
        xyz[in_tal] = _space.tal_to_mni(xyz[in_tal], space_transform)
        _check_converted(xyz, in_tal, foci, file)
        notes.append(
            f"{int(in_tal.sum())} Talairach foci converted to MNI with Lancaster 2007 {space_transform} "
            "(doi:10.1002/hbm.20345)"
        )
    reported = foci.get("reported_space") or [None] * len(foci["x"])
    focus_table = pd.DataFrame(
        {
            "experiment_id": foci["experiment_id"],
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "space": [r or s for r, s in zip(reported, foci["space"])],
            "table_id": foci.get("table_id") or [None] * len(xyz),
            "source": foci.get("source") or [None] * len(xyz),
        }
    )
    study_table = pd.DataFrame([{"study_id": sid, **fields} for sid, fields in studies.items()])
    experiment_table = pd.DataFrame(
        [{"experiment_id": f"{e['study_id']}-{e['contrast_id']}", **e} for e in experiments]
    )
    provenance = {"sources": [source or source_record(file, fmt)], "notes": list(notes)}
    try:
        studyset = StudySet(study_table, experiment_table, focus_table, provenance)
    except InputError as exc:
        raise exc.at(file=file) from None
    studyset.flag_foci()
    return studyset


def _check_converted(xyz: np.ndarray, in_tal: np.ndarray, foci: dict, file: Path) -> None:
    """Talairach foci must stay within +-128 mm once in MNI too (``foci`` may name ``line`` or ``field``)."""
    beyond = np.nonzero(in_tal & _space.out_of_bounds(xyz))[0]
    if not len(beyond):
        return
    i = int(beyond[0])
    axis = "xyz"[int(np.argmax(np.abs(xyz[i]) > _space.COORDINATE_LIMIT_MM))]
    raise InputError(
        f"{axis}={foci[axis][i]:g} (Talairach) is {xyz[i, 'xyz'.index(axis)]:.1f} mm in MNI, beyond "
        f"+-{_space.COORDINATE_LIMIT_MM:g} mm",
        file=file,
        line=foci["line"][i] if "line" in foci else None,
        field=f"{foci['field'][i]}.{axis}" if "field" in foci else axis,
    )


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float (``-16`` rather than ``-16.0``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def writable(studyset: StudySet) -> tuple[StudySet, dict]:
    """The foci a file may hold (beyond +-128 mm left out) and a summary of what is left out."""
    studyset = studyset.copy()
    studyset.flag_foci()
    outside = studyset.foci["out_of_bounds"].to_numpy()
    kept = StudySet(studyset.studies, studyset.experiments, studyset.foci[~outside], studyset.provenance)
    has_foci = kept.experiments["experiment_id"].isin(kept.foci["experiment_id"])
    summary = {
        "experiments": len(kept.experiments),
        "foci": len(kept.foci),
        "foci_out_of_bounds": int(outside.sum()),
        "experiments_without_foci": kept.experiments["experiment_id"][~has_foci].tolist(),
        "notes": [],
    }
    return kept, summary


def missing(value) -> bool:
    """True for None, NaN and pd.NA."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
