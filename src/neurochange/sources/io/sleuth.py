"""BrainMap Sleuth text files (GingerALE's input), read and written.

The format::

    // Reference=MNI                      (or Talairach / TAL; spaces around '=' allowed)
    // Smith et al., 2010: faces > shapes (name lines: study, then contrast)
    // Direction=increase                 (neurochange fields, optional, GingerALE ignores them)
    // Subjects=16
    -16   -58   -22                       (one focus a line: x y z, tabs or spaces)

Experiments follow each other, usually separated by blank lines. Files joined with ``cat``
(a new ``// Reference=`` line before an experiment) are read block by block, each in its own
space, as GingerALE users keep them; NiMARE folds such a line into the next name. Reading follows NiMARE's
``convert_sleuth_to_dict`` so that ids match NiMARE's: name lines are joined with a space,
and split into study and contrast at the first ``;`` or ``:`` after a year (else the first
one anywhere; no separator gives contrast ``analysis_1``); the id is ``"<study>-<contrast>"``.

Unlike NiMARE, ``// Key=value`` lines whose key is a neurochange field (``Direction``,
``Modality``, ``Subtype``, ``Disorder``, ``Design``, ``Imaging``, ``Name``, ``Sessions``,
``Weeks``, ``Frequency_hz``, ``Intensity_pct_mt``, ``Pulses``, ``Target``, and study
fields ``Title``, ``Authors``, ``Year``, ``Journal``, ``DOI``, ``Source``) are read as fields
and not as part of the name, before or after the ``Subjects`` line; ``Reported_space=TAL``
records that MNI coordinates were converted from Talairach. Other ``Key=value`` lines after
``Subjects`` (NiMARE's export writes ``PubMedId=``) are skipped. The writer puts field lines
between the name and ``Subjects`` lines, where NiMARE's reader accepts them (it folds them
into the contrast name) and GingerALE takes them as comments.

Talairach coordinates are converted to MNI once, on reading; files are written in MNI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
    format_number,
    missing,
    parse_field,
    parse_number,
    read_text,
    split_lines,
    writable,
)
from neurochange.studyset import StudySet

_REFERENCE = re.compile(r"reference\s*=\s*(.*)", re.IGNORECASE)
_SUBJECTS = re.compile(r"subjects\b\s*([=:]?)\s*(.*)", re.IGNORECASE)
_KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9_ \-]*?)\s*=\s*(.*)")
_YEAR = re.compile(r"(19|20)[0-9]{2}")


def split_study_info(text: str) -> tuple[str, str]:
    """Study and contrast names from a Sleuth name text, as NiMARE splits them.

    The first ``;`` or ``:`` after a year (19xx/20xx) splits; without a year, the first
    ``;``, else the first ``:``; no separator gives contrast ``analysis_1``.
    """
    text = text.strip()
    if not text:
        return "", "analysis_1"
    year = _YEAR.search(text)
    cut = None
    if year:
        after = [i for i in (text.find(";", year.end()), text.find(":", year.end())) if i != -1]
        cut = min(after) if after else None
    if cut is None:
        for sep in ";:":
            if sep in text:
                cut = text.index(sep)
                break
    if cut is None:
        return text, "analysis_1"
    study, contrast = text[:cut].strip(), text[cut + 1 :].strip()
    return study or text, contrast or "analysis_1"


@dataclass
class _Experiment:
    """One experiment as read: its first line, name lines, Subjects, fields and foci."""

    line: int
    space: str
    names: list[str] = field(default_factory=list)
    subjects: int | None = None
    subjects_line: int | None = None
    fields: dict = field(default_factory=dict)
    field_lines: dict = field(default_factory=dict)
    foci: list = field(default_factory=list)  # (line, (x, y, z))

    @property
    def label(self) -> str:
        return " ".join(self.names) or f"starting on line {self.line}"


def _classify_comment(body: str) -> tuple[str, object]:
    """What a comment line (text after ``//``) is: reference, subjects, field, key_value or name."""
    if _REFERENCE.fullmatch(body):
        return "reference", _REFERENCE.fullmatch(body).group(1)
    subjects = _SUBJECTS.fullmatch(body)
    if subjects and (subjects.group(1) == "=" or re.match(r"[+\-]?[0-9]", subjects.group(2))):
        return "subjects", subjects
    key_value = _KEY_VALUE.fullmatch(body)
    if key_value:
        key = field_key(key_value.group(1))
        if key is None and re.fullmatch(r"reported[\s_\-]*space", key_value.group(1).strip(), re.IGNORECASE):
            key = "reported_space"
        return ("field", (key, key_value.group(2))) if key else ("key_value", key_value)
    return "name", body


def _reference_space(lines: list[str], file: Path, offset: int = 0) -> tuple[str, int]:
    """The reference space of the first non-blank line (a ``// Reference=`` line) and its index."""
    for i, raw in enumerate(lines, start=offset):
        text = raw.strip()
        if not text:
            continue
        kind, value = _classify_comment(text[2:].strip()) if text.startswith("//") else ("", None)
        if kind != "reference":
            raise InputError(
                f"no header: a Sleuth file starts with // Reference=MNI or // Reference=Talairach, found {text[:60]!r}",
                file=file,
                line=i + 1,
                field="Reference",
            )
        try:
            return _space.normalize_space(value), i
        except InputError:
            raise InputError(
                f"unknown reference space {value.strip()!r}; use MNI or Talairach (TAL)",
                file=file,
                line=i + 1,
                field="Reference",
            ) from None
    raise InputError(
        "empty file: a Sleuth file starts with // Reference=MNI or // Reference=Talairach",
        file=file,
        line=1,
        field="Reference",
    )


def _comment(exp: _Experiment, body: str, text: str, lineno: int, file: Path, notes: list[str]) -> None:
    """Take one comment line into the experiment being read."""
    kind, value = _classify_comment(body)
    if kind == "reference":
        raise InputError(
            f"a // Reference line inside the header of experiment {exp.label!r}: put it before the "
            "experiment's name line (a new block of experiments in that space)",
            file=file,
            line=lineno,
            field="Reference",
        )
    if kind == "subjects":
        if exp.subjects is not None:
            raise InputError(
                f"a second // Subjects line (the first is on line {exp.subjects_line}) before any "
                f"coordinates: experiment {exp.label!r} has no foci",
                file=file,
                line=lineno,
                field="Subjects",
            )
        if value.group(1) != "=":
            raise InputError(f"write the sample size as // Subjects=N, found {text!r}", file=file, line=lineno, field="Subjects")
        exp.subjects = _subjects(value.group(2), file, lineno)
        exp.subjects_line = lineno
    elif kind == "field":
        key, raw = value
        if key in exp.fields:
            raise InputError(
                f"{key} is given twice for one experiment (first on line {exp.field_lines[key]})",
                file=file,
                line=lineno,
                field=key,
            )
        if key == "reported_space":
            exp.fields[key] = _space.normalize_space(raw, file=file, line=lineno) if raw.strip() else None
        else:
            exp.fields[key] = parse_field(key, raw, file=file, line=lineno)
        exp.field_lines[key] = lineno
    elif exp.subjects is not None:
        if kind == "key_value":
            notes.append(f"line {lineno}: skipped comment {text.strip()!r}")
            return
        raise InputError(
            f"comment line after // Subjects (line {exp.subjects_line}) and before any coordinates: "
            f"put the experiment name before // Subjects, or give experiment {exp.label!r} its foci",
            file=file,
            line=lineno,
        )
    else:
        # NiMARE removes every '//' from a name line before joining them.
        exp.names.append(text.replace("//", "").strip())


def _subjects(raw: str, file: Path, lineno: int) -> int:
    raw = raw.strip()
    if not re.fullmatch(r"\+?[0-9]+", raw) or int(raw) <= 0:
        raise InputError(
            f"Subjects={raw!r} must be a positive whole number (the sample size)", file=file, line=lineno, field="Subjects"
        )
    return int(raw)


def _focus(text: str, lineno: int, file: Path) -> tuple[float, float, float]:
    parts = text.split()
    if len(parts) < 3:
        axis = "xyz"[len(parts)]
        raise InputError(
            f"missing {axis}: a focus line holds three numbers x y z, found {len(parts)}: {text!r}",
            file=file,
            line=lineno,
            field=axis,
        )
    if len(parts) > 3:
        raise InputError(
            f"a focus line holds three numbers x y z, found {len(parts)}: {text[:60]!r}", file=file, line=lineno, field="xyz"
        )
    xyz = tuple(parse_number(p, file=file, line=lineno, field=a) for p, a in zip(parts, "xyz"))
    check_xyz(xyz, file=file, line=lineno)
    return xyz


def _parse(lines: list[str], reference: str, start: int, file: Path, notes: list[str]) -> list[_Experiment]:
    """The experiments after the header line (index ``start``), each with its block's space."""
    experiments: list[_Experiment] = []
    exp = None
    for index in range(start + 1, len(lines)):
        text, lineno = lines[index].strip(), index + 1
        if not text:
            continue
        if text.startswith("//"):
            if exp is None or exp.foci:
                if _classify_comment(text[2:].strip())[0] == "reference":
                    reference = _reference_space([text], file, offset=index)[0]
                    exp = None
                    continue
                exp = _Experiment(lineno, reference)
                experiments.append(exp)
            _comment(exp, text[2:].strip(), text, lineno, file, notes)
            continue
        if exp is None:
            raise InputError(
                "coordinates before any experiment: give a name line and // Subjects=N first",
                file=file,
                line=lineno,
            )
        if not exp.foci:
            _check_header(exp, file)
        exp.foci.append((lineno, _focus(text, lineno, file)))
    if not experiments:
        raise InputError(
            "no experiments: after // Reference, give each experiment a name line, // Subjects=N "
            "and one x y z line per focus",
            file=file,
        )
    if not experiments[-1].foci:
        _check_header(experiments[-1], file)
        raise InputError(f"experiment {experiments[-1].label!r} has no foci", file=file, line=experiments[-1].line)
    return experiments


def _check_header(exp: _Experiment, file: Path) -> None:
    if exp.subjects is None:
        raise InputError(
            f"experiment {exp.label!r} has no // Subjects=N line before its foci",
            file=file,
            line=exp.line,
            field="Subjects",
        )
    if not exp.names:
        raise InputError(
            "experiment has no name line (// Author, year: contrast) before // Subjects",
            file=file,
            line=exp.line,
        )


def read_sleuth(path, *, space_transform: str = "icbm_other") -> StudySet:
    """Read a Sleuth text file; Talairach foci are converted to MNI (``space`` keeps ``TAL``)."""
    file = check_file(path)
    notes: list[str] = []
    lines = split_lines(read_text(file, notes))
    reference, start = _reference_space(lines, file)
    studies: dict[str, dict] = {}
    study_lines: dict[tuple[str, str], int] = {}
    experiments: list[dict] = []
    seen: dict[str, int] = {}
    foci: dict[str, list] = {k: [] for k in ("experiment_id", "x", "y", "z", "space", "reported_space", "line")}
    for exp in _parse(lines, reference, start, file, notes):
        study, contrast = split_study_info(" ".join(exp.names))
        eid = f"{study}-{contrast}"
        if eid in seen:
            raise InputError(
                f"experiment {eid!r} appears twice (first on line {seen[eid]}); give each contrast its own name",
                file=file,
                line=exp.line,
            )
        seen[eid] = exp.line
        study_fields = studies.setdefault(study, {})
        for key in STUDY_FIELDS:
            value = exp.fields.get(key)
            if value is None:
                continue
            if study_fields.get(key) not in (None, value):
                raise InputError(
                    f"study {study!r} has {key}={study_fields[key]!r} on line {study_lines[study, key]}, "
                    f"{value!r} here: one value per study",
                    file=file,
                    line=exp.field_lines[key],
                    field=key,
                )
            study_fields[key] = value
            study_lines[study, key] = exp.field_lines[key]
        record = {"study_id": study, "contrast_id": contrast, "n": exp.subjects}
        record.update({k: exp.fields[k] for k in EXPERIMENT_FIELDS if exp.fields.get(k) is not None})
        experiments.append(record)
        for lineno, xyz in exp.foci:
            foci["line"].append(lineno)
            foci["experiment_id"].append(eid)
            for axis, value in zip("xyz", xyz):
                foci[axis].append(value)
            foci["space"].append(exp.space)
            foci["reported_space"].append(exp.fields.get("reported_space"))
    return assemble(
        studies, experiments, foci, file=file, fmt="sleuth", notes=notes, space_transform=space_transform
    )


# ---------------------------------------------------------------------------------------- writing


def _clean(value) -> str:
    return re.sub(r"[\r\n]+", " ", str(value)).strip()


def _check_name_line(study: str, contrast: str, eid: str) -> str:
    """The name line of an experiment, if it reads back as the same study and contrast."""
    body = f"{study}: {contrast}"
    reads_back = (
        not re.search(r"//|\r|\n", body)
        and _classify_comment(body)[0] in ("name", "key_value")  # both are name lines before // Subjects
        and split_study_info(body) == (study, contrast)
    )
    if not reads_back:
        raise InputError(
            f"experiment {eid!r} cannot be written to Sleuth so that it reads back with the same study "
            f"and contrast ({study!r}, {contrast!r}); write NiMARE JSON or a table instead",
            field="experiment_id",
        )
    return f"// {body}"


def _label(key: str) -> str:
    return "DOI" if key == "doi" else key.capitalize()


def sleuth_lines(studyset: StudySet, *, fields: bool = True) -> tuple[list[str], dict]:
    """The lines of a Sleuth file (MNI) for ``studyset`` and a summary of what they hold.

    Experiments without foci are left out (Sleuth cannot hold them), as are foci beyond
    +-128 mm; every experiment written needs a sample size.
    """
    kept, summary = writable(studyset)
    experiments = kept.resolved_experiments()
    experiments = experiments[~experiments["experiment_id"].isin(summary["experiments_without_foci"])]
    no_n = experiments["experiment_id"][experiments["n"].isna()].tolist()
    if no_n:
        raise InputError(
            f"Sleuth needs a sample size (// Subjects=N) for every experiment; {len(no_n)} have none "
            f"(first: {no_n[0]!r}); add n or write NiMARE JSON or a table",
            field="n",
        )
    studies = kept.studies.set_index("study_id")[list(STUDY_FIELDS)].to_dict("index")
    indices = kept.foci.groupby("experiment_id", sort=False, observed=True).indices
    xyz = kept.foci[["x", "y", "z"]].to_numpy(dtype=float).tolist()
    spaces = kept.foci["space"].to_numpy(dtype=object)
    lines = ["// Reference=MNI"]
    for row in experiments.to_dict("records"):
        lines += ["", _check_name_line(row["study_id"], row["contrast_id"], row["experiment_id"])]
        rows = indices[row["experiment_id"]]
        if fields:
            given = [(key, row.get(key)) for key in EXPERIMENT_FIELDS] + list(studies[row["study_id"]].items())
            lines += [f"// {_label(key)}={_clean(_format(value))}" for key, value in given if not missing(value)]
            reported = set(spaces[rows])
            if reported == {"TAL"}:
                lines.append("// Reported_space=TAL")
            elif len(reported) > 1:
                summary["notes"].append(f"{row['experiment_id']}: mixed reported spaces not recorded")
        lines.append(f"// Subjects={int(row['n'])}")
        lines += ["\t".join(map(format_number, xyz[i])) for i in rows]
    summary["experiments"] = len(experiments)
    summary["experiments_left_out"] = summary["experiments_without_foci"]
    return lines, summary


def _format(value) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def write_sleuth(studyset: StudySet, path, *, fields: bool = True) -> dict:
    """Write ``studyset`` as a Sleuth file in MNI; returns what was written (experiments, foci, left out)."""
    lines, summary = sleuth_lines(studyset, fields=fields)
    with atomic_file(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
    return summary
