"""NIMADS studysets (``nimare.nimads.Studyset`` JSON, what Neurosynth-Compose exports), read.

Layout: ``{"id", "name", "studies": [{"id", "name", "authors", "year", "publication", "doi",
"metadata", "analyses": [{"id", "name", "metadata", "points": [{"coordinates": [x, y, z],
"space"}]}]}], "annotations": [...]}``. Read as ``nimare.nimads.Studyset`` reads it, then
``Studyset.to_dataset()`` hands it on:

- the experiment id is ``"<study id>-<analysis id>"``; a study or analysis without an id gets
  NiMARE's positional one (``study-<i>``, ``analysis-<i>`` counting analyses over the file);
- each point's ``space`` is read as NiMARE JSON's ``coords.space`` (:func:`coords_space`):
  Talairach converted to MNI once, none/``UNKNOWN`` taken as MNI with a note, other names an
  error. Spaces are per point, as the Studyset harmonises them (its ``to_dataset`` takes the
  first point's space for the whole analysis: the two differ only where an analysis mixes spaces);
- ``n``, from the first that gives one, in NiMARE's order: the analysis' annotation labels
  ``sample_size``, ``sample_sizes``; its metadata ``sample_sizes``, ``sample_size``; its study's
  metadata ``sample_sizes``, ``sample_size`` (a list's mean, which must be whole, as for NiMARE
  JSON). None of them: ``n`` is missing, as in NiMARE JSON (an ALE then asks for it);
- the string ``"None"`` reads as missing (NiMARE's rule for Neurostore exports);
- an analysis without points is kept with no foci, so analyses can count it as dropped;
- study fields from the study's keys (``name`` is the title, ``publication`` the journal), its
  metadata, then its analyses' metadata (one value per study); neurochange's experiment fields
  (``direction``, tags, dose) from the study's metadata, overridden by the analysis' metadata,
  as NiMARE merges them; the experiment's ``name`` is the analysis' name. Images, texts, other
  annotation labels and point values are skipped.

Errors name the study and analysis by id (``<study>.analyses.<analysis>.points[2].coordinates``),
or by position where the file gives no id (``studies[3]``).
"""

from __future__ import annotations

from pathlib import Path

from neurochange.errors import InputError
from neurochange.sources.io._common import EXPERIMENT_FIELDS, assemble, check_file, field_key, parse_field
from neurochange.sources.io.nimare_json import (
    coords_space,
    expect_object,
    focus,
    load_json,
    sample_size,
    study_fields,
    unknown_space_note,
)
from neurochange.studyset import StudySet

_COORDINATES = ("coordinates[0]", "coordinates[1]", "coordinates[2]")


def is_nimads(data) -> bool:
    """Is parsed JSON a NIMADS studyset (an object whose ``studies`` is a list)?"""
    return isinstance(data, dict) and isinstance(data.get("studies"), list)


def read_nimads(path, *, space_transform: str = "icbm_other") -> StudySet:
    """Read a NIMADS studyset; Talairach foci are converted to MNI (``space`` keeps ``TAL``)."""
    file = check_file(path)
    notes: list[str] = []
    data = load_json(file, notes)
    if not is_nimads(data):
        raise InputError("a NIMADS studyset is an object with a 'studies' list", file=file)
    return nimads_from_data(data, file=file, notes=notes, space_transform=space_transform)


def _denull(value):
    """``"None"`` reads as missing, as NiMARE reads Neurostore exports."""
    return None if isinstance(value, str) and value == "None" else value


def _object(value, what: str, *, file: Path, field: str, required: bool = False) -> dict:
    """A JSON object with ``"None"`` values read as missing (ids are kept as they are, as NiMARE keeps them)."""
    obj = expect_object(value, what, file=file, field=field, required=required)
    return {k: v if k == "id" else _denull(v) for k, v in obj.items()}


def _list(value, what: str, *, file: Path, field: str) -> list:
    """A JSON list; null or absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{what} must be a list", file=file, field=field)
    return value


def _id(obj: dict, default: str, what: str, *, file: Path, field: str) -> str:
    """An object's ``id`` as text, NiMARE's positional ``default`` when there is none."""
    value = obj.get("id")
    if value is None:
        return default
    if isinstance(value, (dict, list, bool)) or not str(value).strip():
        raise InputError(f"{what} id must be a text or a number, got {value!r}", file=file, field=f"{field}.id")
    return str(value)


def nimads_from_data(data: dict, *, file: Path, notes: list[str], space_transform: str = "icbm_other") -> StudySet:
    """The StudySet of a parsed NIMADS studyset read from ``file``."""
    analyses = []  # (study id, analysis id, analysis, where)
    studies: dict[str, tuple[dict, str, dict]] = {}
    seen: set[tuple[str, str]] = set()
    a_row = 0
    for i, study in enumerate(data["studies"]):
        study = _object(study, "a study", file=file, field=f"studies[{i}]", required=True)
        sid = _id(study, f"study-{i}", "a study", file=file, field=f"studies[{i}]")
        s_where = sid if study.get("id") is not None else f"studies[{i}]"
        if sid in studies:
            raise InputError(f"study id {sid!r} is used twice", file=file, field=f"studies[{i}].id")
        metadata = _object(study.get("metadata"), "metadata", file=file, field=f"{s_where}.metadata")
        studies[sid] = (study, s_where, metadata)
        for j, analysis in enumerate(_list(study.get("analyses"), "analyses", file=file, field=f"{s_where}.analyses")):
            a_field = f"{s_where}.analyses[{j}]"
            analysis = _object(analysis, "an analysis", file=file, field=a_field, required=True)
            aid = _id(analysis, f"analysis-{a_row}", "an analysis", file=file, field=a_field)
            a_row += 1
            where = f"{s_where}.analyses.{aid}" if analysis.get("id") is not None else a_field
            if (sid, aid) in seen:
                message = f"analysis id {aid!r} is used twice in study {sid!r}"
                raise InputError(message, file=file, field=f"{a_field}.id")
            seen.add((sid, aid))
            analyses.append((sid, aid, analysis, where))
    if not analyses:
        raise InputError("no experiments: no study has any analyses", file=file)
    labels = _annotation_labels(data, analyses, file)

    experiments: list[dict] = []
    foci: dict[str, list] = {k: [] for k in ("experiment_id", "x", "y", "z", "space", "field")}
    unknown_space: list[str] = []
    analysis_metadata: dict[str, list] = {}
    for sid, aid, analysis, where in analyses:
        study, s_where, smd = studies[sid]
        amd = _object(analysis.get("metadata"), "metadata", file=file, field=f"{where}.metadata")
        analysis_metadata.setdefault(sid, []).append((amd, f"{where}.metadata"))
        label = labels.get((sid, aid), {})
        candidates = [(key, *label[key]) for key in ("sample_size", "sample_sizes") if key in label]
        for place, p_where in ((amd, f"{where}.metadata"), (smd, f"{s_where}.metadata")):
            candidates += [(key, place.get(key), f"{p_where}.{key}") for key in ("sample_sizes", "sample_size")]
        record = {"study_id": sid, "contrast_id": aid, "n": sample_size(candidates, file)}
        record["name"] = parse_field("name", analysis.get("name"), file=file, where=f"{where}.name")
        for place, p_where, skip in ((smd, f"{s_where}.metadata", "name"), (amd, f"{where}.metadata", None)):
            for raw_key, raw in place.items():
                key = field_key(raw_key)
                if key in EXPERIMENT_FIELDS and key != skip:
                    value = parse_field(key, raw, file=file, where=f"{p_where}.{raw_key}")
                    if value is not None:
                        record[key] = value
        experiments.append(record)
        eid = f"{sid}-{aid}"
        no_space = False
        for k, point in enumerate(_list(analysis.get("points"), "points", file=file, field=f"{where}.points")):
            p_where = f"{where}.points[{k}]"
            point = _object(point, "a point", file=file, field=p_where, required=True)
            coordinates = point.get("coordinates")
            if not isinstance(coordinates, list) or len(coordinates) != 3:
                message = f"coordinates must be a list [x, y, z], got {coordinates!r}"
                raise InputError(message, file=file, field=f"{p_where}.coordinates")
            xyz = focus(coordinates, file, p_where, _COORDINATES)
            space = coords_space(point.get("space"), file=file, where=f"{p_where}.space")
            no_space |= space is None
            foci["field"].append(p_where)
            foci["experiment_id"].append(eid)
            for axis, value in zip("xyz", xyz):
                foci[axis].append(value)
            foci["space"].append(space or "MNI")
        if no_space:
            unknown_space.append(eid)

    fields = {}
    for sid, (study, s_where, smd) in studies.items():
        if sid in analysis_metadata:  # a study without analyses has nothing to analyse
            places = [(study, s_where, {"name": "title"}), (smd, f"{s_where}.metadata"), *analysis_metadata[sid]]
            fields[sid] = study_fields(places, file, sid)
    if unknown_space:
        notes.append(unknown_space_note(unknown_space))
    return assemble(fields, experiments, foci, file=file, fmt="nimads", notes=notes, space_transform=space_transform)


def _annotation_labels(data: dict, analyses: list, file: Path) -> dict:
    """``{(study id, analysis id): {label: (value, where)}}`` of the sample-size labels of annotations.

    As NiMARE merges them: an analysis' inline ``annotations`` (a label, or an object of labels),
    then the top-level annotations' notes, each matched by (study, analysis) id, else by the full
    ``study-analysis`` id, else by an analysis id no other study uses. Later ones win.
    """
    wanted = ("sample_size", "sample_sizes")
    out: dict = {}

    def take(key, note: dict, where: str):
        for label in wanted:
            if _denull(note.get(label)) is not None:
                out.setdefault(key, {})[label] = (_denull(note[label]), f"{where}.{label}")

    for sid, aid, analysis, where in analyses:
        inline = expect_object(analysis.get("annotations"), "annotations", file=file, field=f"{where}.annotations")
        take((sid, aid), inline, f"{where}.annotations")
        for ann_id, note in inline.items():
            if isinstance(note, dict):
                take((sid, aid), note, f"{where}.annotations.{ann_id}")
    payloads = _list(data.get("annotations"), "annotations", file=file, field="annotations")
    if not payloads:
        return out
    pairs = {(sid, aid): (sid, aid) for sid, aid, _, _ in analyses}
    full = {f"{sid}-{aid}": (sid, aid) for sid, aid, _, _ in analyses}
    short: dict = {}
    for sid, aid, _, _ in analyses:
        short[aid] = None if aid in short else (sid, aid)
    for p, payload in enumerate(payloads):
        payload = expect_object(payload, "an annotation", file=file, field=f"annotations[{p}]", required=True)
        for q, note in enumerate(_list(payload.get("notes"), "notes", file=file, field=f"annotations[{p}].notes")):
            n_where = f"annotations[{p}].notes[{q}]"
            note = expect_object(note, "a note", file=file, field=n_where, required=True)
            study, analysis = note.get("study"), str(note.get("analysis"))
            key = pairs.get((str(study), analysis)) if study is not None else None
            key = key or full.get(analysis) or short.get(analysis)
            if key is not None:
                labels = expect_object(note.get("note"), "note", file=file, field=f"{n_where}.note")
                take(key, labels, f"{n_where}.note")
    return out
