"""Curation tables: a researcher's decisions on studies, experiments (contrasts or database tables) and foci.

A curation table is a ``.tsv``, ``.csv`` or ``.xlsx`` file with a header line and one row
per study, experiment or focus (the rows show the format, not a reading of these papers)::

    study_id  experiment_id                    focus  include  reason         direction  n   flag       note
    18550030                                                                              16
              18550030-neurosynth-table-14976         yes                     decrease       post < pre
              18550030-neurosynth-table-14977         no       no_change_contrast
              18550030-neurosynth-table-14976  3                                                 wrong_sign

- ``study_id`` (also ``study``, ``pmid``) or ``experiment_id`` (``<study>-<contrast>``, as
  ``corpus query`` lists them; a database table is ``<study>-<source>-table-<table_id>``): which
  record a row sets; an experiment row wins over its study's row.
- record fields: ``modality``, ``subtype``, ``disorder``, ``design``, ``imaging`` (vocabulary values),
  ``direction`` (increase, decrease, unsigned, unknown), ``n`` (a positive whole number),
  ``contrast`` (the experiment's name; experiment rows only), dose fields ``sessions``, ``weeks``,
  ``frequency_hz``, ``intensity_pct_mt``, ``pulses``, ``target``; ``include`` (``yes``/``no``) with,
  for ``no``, a ``reason`` from the vocabulary's ``exclusion_reason`` list. Empty cells change
  nothing. A ``note`` (``notes``, ``comment``) goes with the row into the selection's ``curated`` column.
- a study row applies to every experiment of the study. Setting ``modality`` without
  ``subtype`` clears the subtype; a ``subtype`` must belong to the (curated or tagged) modality,
  and a subtype alone sets the modality it belongs to when that is unambiguous.
- keeping some experiments of a study (``include=yes`` on experiment rows) leaves out its other
  experiments that have no ``include`` of their own, with reason ``not_selected``.
- focus rows: ``experiment_id`` and ``focus`` (its 1-based number in the experiment, in the order
  the corpus lists it), optionally ``x``, ``y``, ``z`` (MNI mm, checked against the corpus within
  0.05 mm), and ``flag``: ``wrong_sign`` (the focus goes to an experiment of the opposite direction,
  ``<experiment>-flipped``), ``duplicate`` or ``out_of_brain`` (left out of analyses).

Mistakes are ``InputError``\\ s naming the file, line and field: unknown columns, values
outside the vocabulary (listing the valid ones), ids the corpus does not hold, the same field
given two values for one record, an exclusion without a reason. Curation is applied when
selecting (never written into the corpus), so it survives any rebuild of the corpus, and its
file, checksum and rows are recorded in the selection's provenance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neurochange.errors import InputError
from neurochange.sources.download import sha256_file
from neurochange.sources.io._common import check_file, parse_field, parse_number, parse_whole
from neurochange.sources.io.tables import table_rows
from neurochange.studyset import DOSE_COLUMNS, TAG_COLUMNS, StudySet
from neurochange.vocabulary import check_value, vocabulary

TAGS = tuple(TAG_COLUMNS)
#: Fields of a study or experiment row.
FIELDS = (*TAGS, "direction", "n", "contrast", *DOSE_COLUMNS, "include", "reason")
#: Columns of a focus row besides ``experiment_id``.
FOCUS_COLUMNS = ("focus", "x", "y", "z", "flag")
ID_ALIASES = {"study_id": "study_id", "study": "study_id", "pmid": "study_id", "experiment_id": "experiment_id",
              "contrast_name": "contrast", "name": "contrast"}
NOTE_COLUMNS = ("note", "notes", "comment", "comments")
INCLUDE = {"yes": "yes", "include": "yes", "included": "yes", "true": "yes", "1": "yes",
           "no": "no", "exclude": "no", "excluded": "no", "false": "no", "0": "no"}
#: Columns of :attr:`Curation.foci`.
FLAG_COLUMNS = ("experiment_id", "focus", "flag", "x", "y", "z", "line")
#: How close (mm) a focus row's x, y, z must be to the corpus's focus.
XYZ_TOLERANCE_MM = 0.05
#: The reason given to a study's experiments left out because a curator kept others of it.
NOT_SELECTED = "not_selected"


@dataclass(frozen=True)
class Curation:
    """A read curation table.

    ``rows``: one row per value set on a study or experiment: ``level`` (study/experiment), ``id``,
    ``field``, ``value``, ``line``, ``study_id``. ``foci``: one row per flagged focus:
    ``experiment_id``, ``focus`` (1-based), ``flag``, ``x``, ``y``, ``z`` (NaN when not given), ``line``.
    ``notes``: (level, id) -> note text.
    """

    file: str
    sha256: str
    rows: pd.DataFrame
    notes: dict
    foci: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=list(FLAG_COLUMNS)))

    def __len__(self) -> int:
        return len(self.rows) + len(self.foci)

    def record(self) -> dict:
        """What the provenance keeps: file, SHA-256, counts of rows, studies, experiments, fields and focus flags."""
        rows = self.rows
        include = rows[rows["field"] == "include"]
        return {"file": self.file, "sha256": self.sha256, "values": len(rows),
                "studies": int(rows.loc[rows["level"] == "study", "id"].nunique()),
                "experiments": int(rows.loc[rows["level"] == "experiment", "id"].nunique()),
                "fields": {k: int(v) for k, v in rows["field"].value_counts().sort_index().items()},
                "included": int((include["value"] == "yes").sum()), "excluded": int((include["value"] == "no").sum()),
                "focus_flags": {k: int(v) for k, v in self.foci["flag"].value_counts().sort_index().items()}}


def _column(name: str, file, index: int) -> str | None:
    key = "_".join(str(name).strip().lower().replace("-", "_").split())
    if key in ID_ALIASES:
        return ID_ALIASES[key]
    if key in FIELDS or key in NOTE_COLUMNS or key in FOCUS_COLUMNS:
        return key
    if not key:
        return None
    valid = ", ".join(["study_id", "experiment_id", *FIELDS, *FOCUS_COLUMNS, "note"])
    raise InputError(f"unknown column {name!r}; a curation table has columns {valid}", file=file, line=1,
                     field=str(name))


def _value(field: str, text: str, file, line: int):
    if field == "n":
        return parse_whole(text, file=file, line=line, field="n")
    if field == "include":
        if text.strip().lower() not in INCLUDE:
            raise InputError(f"include={text!r}: write yes or no", file=file, line=line, field="include")
        return INCLUDE[text.strip().lower()]
    if field in ("reason", "flag"):
        token = "_".join(text.strip().lower().replace("-", " ").split())
        return check_value("exclusion_reason" if field == "reason" else "focus_flag", token, file=file, line=line)
    if field == "contrast":
        return " ".join(text.split())
    return parse_field(field, text, file=file, line=line)


def _focus_row(row: dict, file, line: int) -> dict | None:
    """A focus row's flag and position (None when it flags nothing)."""
    others = [f for f in FIELDS if row.get(f)]
    if others:
        raise InputError(f"a focus row sets only flag, not {others[0]}", file=file, line=line, field=others[0])
    if not row.get("experiment_id"):
        raise InputError("a focus row needs the experiment_id of its focus", file=file, line=line,
                         field="experiment_id")
    focus = parse_whole(row["focus"], file=file, line=line, field="focus")
    xyz = [parse_number(row[a], file=file, line=line, field=a) if row.get(a) else np.nan for a in "xyz"]
    if not row.get("flag"):
        return None
    return {"experiment_id": row["experiment_id"], "focus": focus, "flag": _value("flag", row["flag"], file, line),
            "x": xyz[0], "y": xyz[1], "z": xyz[2], "line": line}


def read_curation(path) -> Curation:
    """Read and check a curation table (values only; ids are checked against a corpus by :func:`check_ids`)."""
    file = check_file(path)
    columns: dict[int, str] | None = None
    records, notes, seen, flags = [], {}, {}, {}
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
        if row.get("focus"):
            focus = _focus_row(row, file, line)
            if focus is not None:
                key = (focus["experiment_id"], focus["focus"])
                if key in flags and flags[key]["flag"] != focus["flag"]:
                    raise InputError(f"focus {key[1]} of {key[0]!r} is flagged {flags[key]['flag']} on line "
                                     f"{flags[key]['line']} but {focus['flag']} here", file=file, line=line,
                                     field="flag")
                flags.setdefault(key, focus)
            continue
        for axis in ("x", "y", "z", "flag"):
            if row.get(axis):
                raise InputError(f"{axis} belongs to a focus row: give its focus number", file=file, line=line,
                                 field="focus")
        level, key = ("experiment", "experiment_id") if row.get("experiment_id") else ("study", "study_id")
        target = row.get(key, "")
        if not target:
            raise InputError("each row needs a study_id or an experiment_id", file=file, line=line, field="study_id")
        if level == "study" and row.get("contrast"):
            raise InputError("contrast names an experiment: give its experiment_id", file=file, line=line,
                             field="contrast")
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
    _check_reasons(seen, file)
    rows = pd.DataFrame(records, columns=["level", "id", "field", "value", "line", "study_id"])
    foci = pd.DataFrame(list(flags.values()), columns=list(FLAG_COLUMNS))
    return Curation(str(file), sha256_file(file), rows, notes, foci)


def _check_reasons(seen: dict, file) -> None:
    """``include=no`` needs a ``reason``; a ``reason`` needs ``include=no``."""
    for (level, target, field), (value, line) in seen.items():
        include = seen.get((level, target, "include"), (None, None))[0]
        if field == "include" and value == "no" and (level, target, "reason") not in seen:
            raise InputError(f"{level} {target!r} is excluded without a reason; give one of "
                             f"{', '.join(vocabulary()['exclusion_reason']['values'])}", file=file, line=line,
                             field="reason")
        if field == "reason" and include != "no":
            raise InputError(f"a reason goes with include=no ({level} {target!r})", file=file, line=line,
                             field="include")


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
    """Every id must be in the corpus: ``studies`` (ids), ``experiments`` (id -> study id, of the level selected)."""
    rows = curation.rows
    for r in rows.drop_duplicates(["level", "id"]).itertuples(index=False):
        if r.level == "study" and r.id not in studies:
            raise InputError(f"study {r.id!r} is not in the corpus", file=curation.file, line=r.line, field="study_id")
        if r.level == "experiment":
            _check_experiment(curation, r.id, r.line, experiments)
            if r.study_id and experiments[r.id] != r.study_id:
                raise InputError(f"experiment {r.id!r} belongs to study {experiments[r.id]!r}, not {r.study_id!r}",
                                 file=curation.file, line=r.line, field="study_id")
    for r in curation.foci.itertuples(index=False):
        _check_experiment(curation, r.experiment_id, r.line, experiments)


def _check_experiment(curation: Curation, target: str, line: int, experiments: dict) -> None:
    if target in experiments:
        return
    if "-table-" in target:
        hint = "; it names a database table: select with experiments = \"table\" (--experiments table)"
    elif any(k.startswith(f"{target.split('-')[0]}-") and "-table-" in k for k in experiments):
        hint = "; this selection has one experiment per table: use the table's id"
    else:
        hint = "; experiment ids look like <study>-<contrast>, e.g. 12345-neurosynth"
    raise InputError(f"experiment {target!r} is not in the corpus{hint}", file=curation.file, line=line,
                     field="experiment_id")


def _unsigned(curation: Curation, focus, direction) -> InputError:
    """The error of a ``wrong_sign`` flag (a :attr:`Curation.foci` row) on an experiment that is not signed."""
    shown = direction if isinstance(direction, str) and direction else "unknown"
    return InputError(f"focus {focus.focus} of {focus.experiment_id!r} is flagged wrong_sign, but the experiment's "
                      f"direction is {shown}: set it to increase or decrease first", file=curation.file,
                      line=focus.line, field="flag")


def check_flag_directions(curation: Curation, directions: dict) -> None:
    """Every ``wrong_sign`` focus's experiment must be signed (increase/decrease) once this table is applied
    (:func:`apply_to_records`) over ``directions``: experiment id -> (study id, direction), as the corpus has them."""
    flagged = curation.foci[curation.foci["flag"] == "wrong_sign"]
    if not len(flagged):
        return
    ids = list(dict.fromkeys(flagged["experiment_id"]))
    stored = [directions.get(e, (None, None)) for e in ids]
    records = pd.DataFrame({"experiment_id": ids, "study_id": [s for s, _ in stored],
                            "direction": [d for _, d in stored], **{t: pd.NA for t in TAGS}})
    resolved = dict(zip(ids, apply_to_records(records, curation)["direction"]))
    for r in flagged.itertuples(index=False):
        if resolved[r.experiment_id] not in OPPOSITE:
            raise _unsigned(curation, r, resolved[r.experiment_id])


def _owner_modality(subtype: str) -> str | None:
    owners = [m for m, subs in vocabulary()["subtype"].items() if subtype in subs]
    return owners[0] if len(owners) == 1 else None


def _set(frame: pd.DataFrame, mask, values: dict, curation: Curation, line_of: dict, by: str,
         note: str | None = None) -> None:
    """Write curated ``values`` into the rows of ``frame`` picked by ``mask``; modality and subtype stay consistent."""
    if not mask.any():
        return
    values = dict(values)
    if "contrast" in values:
        values["name"] = values.pop("contrast")
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

    Adds ``curated`` (``file:line`` of the rows that changed each record, else empty), and
    ``include``/``reason`` when the curation decides any. Study rows first, then experiment rows (which win).
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


def excluded(records: pd.DataFrame, curation: Curation | None) -> pd.Series:
    """The exclusion reason of each record (``apply_to_records`` output), missing for records kept.

    ``include=no`` gives its reason; a study with experiments kept by ``include=yes`` rows loses
    its other experiments that have no ``include`` row, as :data:`NOT_SELECTED`.
    """
    reasons = pd.Series(pd.NA, index=records.index, dtype="string")
    if curation is None or "include" not in records:
        return reasons
    no = (records["include"] == "no").to_numpy()
    if no.any():
        reasons[no] = records.loc[no, "reason"].astype("string")
    rows = curation.rows[(curation.rows["level"] == "experiment") & (curation.rows["field"] == "include")]
    decided = set(rows["id"])
    keeping = set(records.loc[records["experiment_id"].isin(set(rows.loc[rows["value"] == "yes", "id"])),
                              "study_id"])
    others = (records["study_id"].isin(keeping) & ~records["experiment_id"].isin(decided) & ~no).to_numpy()
    reasons[others] = NOT_SELECTED
    return reasons


def apply_to_studyset(studyset: StudySet, curation: Curation | None) -> StudySet:
    """The StudySet with curated values: study tags on ``studies``, everything else on ``experiments``.

    A study row's tags also go onto the study's experiments that carry their own tag, so the
    curated value wins everywhere; ``n``, ``direction``, contrast name and dose always go onto
    experiments. Focus flags are applied by :func:`apply_focus_flags`.
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
    experiments = experiments.drop(columns=[c for c in ("curated", "include", "reason") if c in experiments])
    return StudySet(studies, experiments, studyset.foci, studyset.provenance)


def fields_set(records: pd.DataFrame, curation: Curation | None) -> dict[str, int]:
    """How many of ``records`` (``experiment_id``, ``study_id``) had each field set by curation (study or
    experiment rows), e.g. ``{"direction": 12, "n": 12, "modality": 30, "tags": 30}`` (``tags``: any tag)."""
    if curation is None:
        return {}
    rows = curation.rows
    by_study = rows[rows["level"] == "study"].groupby("id")["field"].agg(set).to_dict()
    by_experiment = rows[rows["level"] == "experiment"].groupby("id")["field"].agg(set).to_dict()
    counts: dict[str, int] = {}
    for study, experiment in zip(records["study_id"], records["experiment_id"]):
        fields = by_study.get(study, set()) | by_experiment.get(experiment, set())
        for field in fields | ({"tags"} if fields & set(TAGS) else set()):
            counts[field] = counts.get(field, 0) + 1
    return dict(sorted(counts.items()))


OPPOSITE = {"increase": "decrease", "decrease": "increase"}
FLIPPED = "flipped"


def apply_focus_flags(studyset: StudySet, curation: Curation | None) -> tuple[StudySet, dict]:
    """Apply focus flags to ``studyset``, whose foci carry ``focus`` (1-based number in their experiment).

    ``duplicate`` and ``out_of_brain`` foci are left out; ``wrong_sign`` foci move to a new experiment
    ``"<experiment>-flipped"`` of the opposite direction (same study, n, tags and dose), which must be
    ``increase`` or ``decrease``. Returns the StudySet and the counts by flag. Flags on experiments not
    in ``studyset`` are ignored (another selection's); a focus number the experiment lacks, or x, y, z
    that do not match, is an InputError naming the curation line.
    """
    counts: dict[str, int] = {}
    if curation is None or not len(curation.foci):
        return studyset, counts
    foci = studyset.foci.copy()
    experiments = studyset.experiments.copy()
    present = set(experiments["experiment_id"])
    drop = np.zeros(len(foci), dtype=bool)
    flipped_rows = []
    index = {key: i for i, key in enumerate(zip(foci["experiment_id"], foci["focus"].astype(int)))}
    for r in curation.foci.itertuples(index=False):
        if r.experiment_id not in present:
            continue
        i = index.get((r.experiment_id, int(r.focus)))
        if i is None:
            n = int((foci["experiment_id"] == r.experiment_id).sum())
            raise InputError(f"experiment {r.experiment_id!r} has {n} foci, no focus {r.focus}", file=curation.file,
                             line=r.line, field="focus")
        xyz = foci.loc[i, ["x", "y", "z"]].to_numpy(dtype=float)
        given = np.array([r.x, r.y, r.z], dtype=float)
        if np.any(np.abs(given - xyz)[~np.isnan(given)] > XYZ_TOLERANCE_MM):
            raise InputError(f"focus {r.focus} of {r.experiment_id!r} lies at ({xyz[0]:g}, {xyz[1]:g}, {xyz[2]:g}), "
                             f"not ({', '.join(f'{v:g}' for v in given)})", file=curation.file, line=r.line,
                             field="xyz")
        counts[r.flag] = counts.get(r.flag, 0) + 1
        if r.flag != "wrong_sign":
            drop[i] = True
            continue
        row = experiments.loc[experiments["experiment_id"] == r.experiment_id].iloc[0]
        if row["direction"] not in OPPOSITE:
            raise _unsigned(curation, r, row["direction"])
        new_id = f"{r.experiment_id}-{FLIPPED}"
        if new_id not in {f["experiment_id"] for f in flipped_rows}:
            flipped_rows.append({**row.to_dict(), "experiment_id": new_id,
                                 "contrast_id": f"{row['contrast_id']}-{FLIPPED}",
                                 "name": f"{row['name']} (foci of the opposite sign, by curation)",
                                 "direction": OPPOSITE[row["direction"]]})
        foci.loc[i, "experiment_id"] = new_id
    foci = foci[~drop]
    if flipped_rows:
        experiments = pd.concat([experiments, pd.DataFrame(flipped_rows)], ignore_index=True)
    provenance = dict(studyset.provenance)
    parts = [f"{n} flagged {flag}" for flag, n in sorted(counts.items())]
    provenance["notes"] = list(provenance.get("notes", [])) + [
        "curation: focus flags applied (" + ", ".join(parts) + "); duplicate and out_of_brain foci left out, "
        "wrong_sign foci moved to an experiment of the opposite direction"]
    return StudySet(studyset.studies, experiments, foci.reset_index(drop=True), provenance), counts


__all__ = ["Curation", "FIELDS", "read_curation", "check_ids", "apply_to_records", "apply_to_studyset", "excluded",
           "apply_focus_flags", "fields_set", "check_flag_directions", "NOT_SELECTED"]
