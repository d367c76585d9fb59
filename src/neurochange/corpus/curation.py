"""Curation tables: a researcher's corrections of tags, direction, sample size and dose, by study or experiment.

A curation table is a ``.tsv``, ``.csv`` or ``.xlsx`` file with a header line and one row
per study or experiment::

    study_id   experiment_id         modality        subtype  disorder  design    n   direction  note
    18550030                         psychotherapy   cbt      mdd       pre_post  16
               18550030-neurosynth                                                    decrease   table 2, post < pre

- ``study_id`` (also ``study``, ``pmid``) or ``experiment_id`` (``<study>-<contrast>``, as
  ``corpus query`` lists them): which record a row corrects; an experiment row wins over its
  study's row.
- fields: ``modality``, ``subtype``, ``disorder``, ``design``, ``imaging`` (vocabulary values),
  ``direction`` (increase, decrease, unsigned, unknown), ``n`` (a positive whole number),
  dose fields ``sessions``, ``weeks``, ``frequency_hz``, ``intensity_pct_mt``, ``pulses``,
  ``target``. Empty cells change nothing. A ``note`` (``notes``, ``comment``) goes with the
  row into the selection's ``curated`` column.
- a study row applies to every experiment of the study. Setting ``modality`` without
  ``subtype`` clears the subtype; a ``subtype`` must belong to the (curated or tagged) modality,
  and a subtype alone sets the modality it belongs to when that is unambiguous.

Mistakes are ``InputError``\\ s naming the file, line and field: unknown columns, values
outside the vocabulary (listing the valid ones), ids the corpus does not hold, the same field
given two values for one record. Curation is applied when selecting (never written into the
corpus), so it survives any rebuild of the corpus, and its file, checksum and rows are
recorded in the selection's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurochange.errors import InputError
from neurochange.sources.download import sha256_file
from neurochange.sources.io._common import check_file, parse_field, parse_whole
from neurochange.sources.io.tables import table_rows
from neurochange.studyset import DOSE_COLUMNS, TAG_COLUMNS, StudySet
from neurochange.vocabulary import vocabulary

TAGS = tuple(TAG_COLUMNS)
FIELDS = (*TAGS, "direction", "n", *DOSE_COLUMNS)
ID_ALIASES = {"study_id": "study_id", "study": "study_id", "pmid": "study_id", "experiment_id": "experiment_id"}
NOTE_COLUMNS = ("note", "notes", "comment", "comments")


@dataclass(frozen=True)
class Curation:
    """A read curation table: ``rows`` has ``level`` (study/experiment), ``id``, ``field``, ``value``, ``line``."""

    file: str
    sha256: str
    rows: pd.DataFrame
    notes: dict  # (level, id) -> note text

    def __len__(self) -> int:
        return len(self.rows)

    def record(self) -> dict:
        """What the provenance keeps: file, SHA-256, counts of rows, studies, experiments and fields."""
        rows = self.rows
        return {"file": self.file, "sha256": self.sha256, "values": len(rows),
                "studies": int(rows.loc[rows["level"] == "study", "id"].nunique()),
                "experiments": int(rows.loc[rows["level"] == "experiment", "id"].nunique()),
                "fields": {k: int(v) for k, v in rows["field"].value_counts().sort_index().items()}}


def _column(name: str, file, index: int) -> str | None:
    key = "_".join(str(name).strip().lower().replace("-", "_").split())
    if key in ID_ALIASES:
        return ID_ALIASES[key]
    if key in FIELDS or key in NOTE_COLUMNS:
        return key
    if not key:
        return None
    valid = ", ".join(["study_id", "experiment_id", *FIELDS, "note"])
    raise InputError(f"unknown column {name!r}; a curation table has columns {valid}", file=file, line=1,
                     field=str(name))


def _value(field: str, text: str, file, line: int):
    if field == "n":
        n = parse_whole(text, file=file, line=line, field="n")
        if n <= 0:
            raise InputError(f"n={text!r}: a sample size must be a positive whole number", file=file, line=line,
                             field="n")
        return n
    return parse_field(field, text, file=file, line=line)


def read_curation(path) -> Curation:
    """Read and check a curation table (values only; ids are checked against a corpus by :func:`check_ids`)."""
    file = check_file(path)
    columns: dict[int, str] | None = None
    records, notes, seen = [], {}, {}
    for line, cells in table_rows(file, []):
        if columns is None:
            if not any(c.strip() for c in cells):
                raise InputError("the first line must be the header (study_id or experiment_id, then fields)",
                                 file=file, line=line)
            columns = {i: c for i, c in ((i, _column(n, file, i)) for i, n in enumerate(cells)) if c}
            names = list(columns.values())
            repeated = {n for n in names if names.count(n) > 1}
            if repeated:
                raise InputError(f"column {sorted(repeated)[0]!r} appears twice", file=file, line=1,
                                 field=sorted(repeated)[0])
            if not {"study_id", "experiment_id"} & set(names):
                raise InputError("a curation table needs a study_id or an experiment_id column", file=file, line=1,
                                 field="study_id")
            continue
        row = {name: cells[i].strip() if i < len(cells) else "" for i, name in columns.items()}
        extra = [c for c in cells[max(columns) + 1:] if c.strip()] if columns else []
        if extra:
            raise InputError(f"{len(extra)} more cells than the header has columns", file=file, line=line)
        if not any(row.values()):
            continue
        level, key = ("experiment", "experiment_id") if row.get("experiment_id") else ("study", "study_id")
        target = row.get(key, "")
        if not target:
            raise InputError("each row needs a study_id or an experiment_id", file=file, line=line, field="study_id")
        for name in NOTE_COLUMNS:
            if row.get(name):
                notes[(level, target)] = row[name]
        for field in FIELDS:
            text = row.get(field, "")
            if not text:
                continue
            value = _value(field, text, file, line)
            old = seen.setdefault((level, target, field), (value, line))
            if old[0] != value:
                raise InputError(f"{level} {target!r} has {field}={old[0]!r} on line {old[1]} but {value!r} here",
                                 file=file, line=line, field=field)
            if old[1] == line:
                records.append({"level": level, "id": target, "field": field, "value": value, "line": line,
                                "study_id": row.get("study_id", "")})
        _check_subtype(row, file, line)
    rows = pd.DataFrame(records, columns=["level", "id", "field", "value", "line", "study_id"])
    return Curation(str(file), sha256_file(file), rows, notes)


def _check_subtype(row: dict, file, line: int) -> None:
    modality, subtype = row.get("modality"), row.get("subtype")
    if not subtype:
        return
    subtype = parse_field("subtype", subtype, file=file, line=line)
    if modality:
        modality = parse_field("modality", modality, file=file, line=line)
        valid = vocabulary()["subtype"].get(modality, [])
        if subtype not in valid:
            raise InputError(f"subtype {subtype!r} is not a subtype of {modality}; valid: {', '.join(valid) or 'none'}",
                             file=file, line=line, field="subtype")


def check_ids(curation: Curation, studies: set, experiments: dict) -> None:
    """Every id must be in the corpus: ``studies`` (ids), ``experiments`` (id -> study id)."""
    rows = curation.rows
    for r in rows.drop_duplicates(["level", "id"]).itertuples(index=False):
        if r.level == "study" and r.id not in studies:
            raise InputError(f"study {r.id!r} is not in the corpus", file=curation.file, line=r.line, field="study_id")
        if r.level == "experiment":
            if r.id not in experiments:
                hint = "; experiment ids look like <study>-<contrast>, e.g. 12345-neurosynth"
                raise InputError(f"experiment {r.id!r} is not in the corpus{hint}", file=curation.file, line=r.line,
                                 field="experiment_id")
            if r.study_id and experiments[r.id] != r.study_id:
                raise InputError(f"experiment {r.id!r} belongs to study {experiments[r.id]!r}, not {r.study_id!r}",
                                 file=curation.file, line=r.line, field="study_id")


def _owner_modality(subtype: str) -> str | None:
    owners = [m for m, subs in vocabulary()["subtype"].items() if subtype in subs]
    return owners[0] if len(owners) == 1 else None


def _set(frame: pd.DataFrame, mask, values: dict, curation: Curation, line_of: dict, by: str,
         note: str | None = None) -> None:
    """Write curated ``values`` into the rows of ``frame`` picked by ``mask``; modality and subtype stay consistent."""
    if not mask.any():
        return
    values = dict(values)
    if "subtype" in values and "modality" not in values:
        owner = _owner_modality(values["subtype"])
        if owner is not None:
            values["modality"] = owner
    elif "modality" in values and "subtype" not in values:
        values["subtype"] = None
    for field, value in values.items():
        if field not in frame.columns:
            frame[field] = pd.Series(pd.NA, index=frame.index, dtype="object")
        frame.loc[mask, field] = value
    if "subtype" in values and values["subtype"] is not None:
        for modality in frame.loc[mask, "modality"].dropna().unique():
            if values["subtype"] not in vocabulary()["subtype"].get(modality, []):
                valid = ", ".join(vocabulary()["subtype"].get(modality, [])) or "none"
                raise InputError(f"subtype {values['subtype']!r} does not belong to modality {modality!r} of "
                                 f"{by}; valid subtypes: {valid}", file=curation.file, line=line_of.get("subtype"),
                                 field="subtype")
    where = "; ".join(f"{Path(curation.file).name}:{line}" for line in sorted(set(line_of.values())))
    where += f" ({note})" if note else ""
    frame.loc[mask, "curated"] = frame.loc[mask, "curated"].fillna("").map(
        lambda old: "; ".join(x for x in dict.fromkeys((old.split("; ") if old else []) + [where]) if x))


def _grouped(curation: Curation, level: str):
    rows = curation.rows[curation.rows["level"] == level]
    for target, group in rows.groupby("id", sort=True):
        yield target, dict(zip(group["field"], group["value"])), dict(zip(group["field"], group["line"]))


def apply_to_records(records: pd.DataFrame, curation: Curation | None) -> pd.DataFrame:
    """Experiment records (``experiment_id``, ``study_id``, tags, ``n``, ``direction``...) with curation applied.

    Adds ``curated`` (``file:line`` of the rows that changed each record, else empty).
    Study rows first, then experiment rows (which win).
    """
    out = records.copy()
    out["curated"] = pd.Series(pd.NA, index=out.index, dtype="object")
    if curation is None:
        return out
    for level, key in (("study", "study_id"), ("experiment", "experiment_id")):
        for target, values, lines in _grouped(curation, level):
            _set(out, (out[key] == target).to_numpy(), values, curation, lines, f"{level} {target}",
                 curation.notes.get((level, target)))
    return out


def apply_to_studyset(studyset: StudySet, curation: Curation | None) -> StudySet:
    """The StudySet with curated values: study tags on ``studies``, everything else on ``experiments``.

    A study row's tags also go onto the study's experiments that carry their own tag, so the
    curated value wins everywhere; ``n``, ``direction`` and dose always go onto experiments.
    """
    if curation is None:
        return studyset
    studies = studyset.studies.copy()
    studies["curated"] = pd.Series(pd.NA, index=studies.index, dtype="object")
    experiments = apply_to_records(studyset.experiments, curation)
    for target, values, lines in _grouped(curation, "study"):
        tags = {f: v for f, v in values.items() if f in TAGS}
        if "modality" in values and "subtype" not in values:
            tags["subtype"] = None
        if tags:
            _set(studies, (studies["study_id"] == target).to_numpy(), tags, curation, lines, f"study {target}")
    for frame in (studies, experiments):
        for col in TAGS:
            frame[col] = frame[col].astype("string")
    studies = studies.drop(columns="curated")
    return StudySet(studies, experiments.drop(columns="curated"), studyset.foci, studyset.provenance)


__all__ = ["Curation", "FIELDS", "read_curation", "check_ids", "apply_to_records", "apply_to_studyset"]
