"""NiMARE JSON datasets (``nimare.dataset.Dataset`` files), read and written.

Layout: ``{study_id: {"contrasts": {contrast_id: {"coords": {"space", "x", "y", "z"},
"metadata": {"sample_sizes": [n], ...}}}}}``; the experiment id is ``"<study>-<contrast>"``.

Reading, as ``nimare.dataset.Dataset`` does:

- ``coords.space``: ``TAL``/``Talairach`` (any name with "tal") is converted to MNI once;
  names with "mni" or "ale" (``MNI``, ``mni152_2mm``) are MNI; ``UNKNOWN`` or no space is
  taken as MNI and noted. Other names are an error (NiMARE would leave them untransformed).
- ``n`` is the mean of ``metadata.sample_sizes`` (NiMARE's ALE kernel takes ``np.mean``),
  else ``metadata.sample_size``; a mean that is not a whole number is an error, since
  neurochange keeps one whole sample size per experiment.
- Contrasts without coordinates are kept with no foci, so analyses can count them as dropped.
- neurochange fields (``direction``, ``modality``, ..., ``sessions``, ...) are read from each
  contrast's ``metadata``; study fields (``title``, ``authors``, ``year``, ``journal``,
  ``doi``, ``source``) from the study's keys, its ``metadata``, or its contrasts' metadata
  (one value per study). Other keys (images, labels, texts) are skipped.

Writing puts MNI coordinates, ``sample_sizes: [n]`` and every field under each contrast's
``metadata`` (the study fields too, as NiMARE's Neurosynth conversion does); Talairach
foci read from a file are marked by ``coords.reported_space``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    read_text,
    writable,
)
from neurochange.studyset import StudySet


def coords_space(name, *, file=None, where=None) -> str | None:
    """``MNI``/``TAL`` for a NiMARE coords space name; None for UNKNOWN or none given."""
    if name is None or str(name).strip().lower() in ("", "unknown"):
        return None
    key = str(name).strip().lower()
    if "tal" in key:
        return "TAL"
    if "mni" in key or "ale" in key:
        return "MNI"
    raise InputError(f"unknown coordinate space {name!r}; use MNI or TAL", file=file, field=where)


def _sample_size(metadata: dict, file: Path, where: str):
    """n from ``sample_sizes`` (mean of a list, NiMARE's rule) or ``sample_size``; None if absent."""
    for key in ("sample_sizes", "sample_size"):
        value = metadata.get(key)
        if value is None or value == []:
            continue
        values = value if isinstance(value, list) else [value]
        if any(v is None or isinstance(v, bool) for v in values):
            raise InputError(f"{key}={value!r} must hold numbers", file=file, field=f"{where}.{key}")
        numbers = [parse_number(v, file=file, field=f"{where}.{key}") for v in values]
        mean = sum(numbers) / len(numbers)
        if mean <= 0 or mean != int(mean):
            raise InputError(
                f"{key}={value!r}: NiMARE's kernel would use the mean {mean:g}; neurochange needs a positive "
                "whole sample size per experiment (give one number)",
                file=file,
                field=f"{where}.{key}",
            )
        return int(mean)
    return None


def _foci(coords: dict, file: Path, where: str) -> list[tuple[float, float, float]]:
    """The (x, y, z) of a contrast's ``coords``; none when there are no points."""
    columns = [coords.get(a) for a in "xyz"]
    if any(c is None for c in columns):
        return []
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise InputError("x, y and z must be lists of equal length", file=file, field=f"{where}.coords")
    if all(v is None for c in columns for v in c):  # NiMARE's Studyset export writes [None] for no points
        return []
    foci = []
    for i, xyz in enumerate(zip(*columns)):
        point = f"{where}.coords[{i}]"
        if any(v is None or isinstance(v, bool) for v in xyz):
            raise InputError(f"focus {i} has a missing coordinate: {xyz}", file=file, field=point)
        xyz = tuple(parse_number(v, file=file, field=f"{point}.{a}") for v, a in zip(xyz, "xyz"))
        try:
            check_xyz(xyz, file=file)
        except InputError as exc:
            raise InputError(exc.message, file=file, field=f"{point}.{exc.field}") from None
        foci.append(xyz)
    return foci


_FOCUS_KEYS = ("reported_space", "table_id", "source")


def _per_focus(coords: dict, key: str, n_foci: int, file: Path, where: str) -> list:
    """A per-focus text column of ``coords`` (a list, or one value for all), None where absent."""
    values = coords.get(key)
    if not isinstance(values, list):
        values = [values] * n_foci
    if len(values) != n_foci or any(isinstance(v, (dict, list, bool)) for v in values):
        raise InputError(f"{key} must be one value or a list as long as x, y, z", file=file, field=f"{where}.coords.{key}")
    return [None if v is None or str(v).strip() == "" else str(v).strip() for v in values]


def _study_fields(study: dict, contrasts: dict, file: Path, sid: str) -> dict:
    """Study fields from the study's keys, its metadata, then its contrasts' metadata."""
    fields: dict = {}
    places = [(study, f"{sid}"), (study.get("metadata") or {}, f"{sid}.metadata")]
    places += [((c or {}).get("metadata") or {}, f"{sid}.contrasts.{cid}.metadata") for cid, c in contrasts.items()]
    for place, where in places:
        if not isinstance(place, dict):
            raise InputError("metadata must be an object", file=file, field=where)
        for raw_key, raw in place.items():
            key = field_key(raw_key)
            if key not in STUDY_FIELDS:
                continue
            value = parse_field(key, raw, file=file, where=f"{where}.{raw_key}")
            if value is None:
                continue
            if fields.get(key, value) != value:
                raise InputError(
                    f"study {sid!r} has {key} {fields[key]!r} and {value!r}: one value per study",
                    file=file,
                    field=f"{where}.{raw_key}",
                )
            fields[key] = value
    return fields


def read_nimare_json(path, *, space_transform: str = "icbm_other") -> StudySet:
    """Read a NiMARE JSON dataset; Talairach foci are converted to MNI (``space`` keeps ``TAL``)."""
    file = check_file(path)
    notes: list[str] = []
    text = read_text(file, notes)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=file, line=exc.lineno) from None
    except RecursionError:
        raise InputError("not valid JSON: nested too deeply", file=file) from None
    if not isinstance(data, dict) or not data:
        raise InputError("a NiMARE dataset is an object of studies, each with 'contrasts'", file=file)
    studies: dict[str, dict] = {}
    experiments: list[dict] = []
    foci: dict[str, list] = {k: [] for k in ("experiment_id", "x", "y", "z", "space", *_FOCUS_KEYS, "field")}
    unknown_space: list[str] = []
    for sid, study in data.items():
        if not isinstance(study, dict) or not isinstance(study.get("contrasts"), dict):
            raise InputError("each study needs a 'contrasts' object", file=file, field=str(sid))
        contrasts = study["contrasts"]
        if contrasts:  # a study without contrasts has nothing to analyse
            studies[sid] = _study_fields(study, contrasts, file, sid)
        for cid, contrast in contrasts.items():
            where = f"{sid}.contrasts.{cid}"
            if not isinstance(contrast, dict):
                raise InputError("a contrast must be an object", file=file, field=where)
            metadata = contrast.get("metadata") or {}
            coords = contrast.get("coords") or {}
            if not isinstance(metadata, dict) or not isinstance(coords, dict):
                raise InputError("metadata and coords must be objects", file=file, field=where)
            record = {"study_id": sid, "contrast_id": cid, "n": _sample_size(metadata, file, f"{where}.metadata")}
            for raw_key, raw in metadata.items():
                key = field_key(raw_key)
                if key in EXPERIMENT_FIELDS:
                    record[key] = parse_field(key, raw, file=file, where=f"{where}.metadata.{raw_key}")
            experiments.append(record)
            points = _foci(coords, file, where)
            space = coords_space(coords.get("space"), file=file, where=f"{where}.coords.space")
            if points and space is None:
                unknown_space.append(f"{sid}-{cid}")
            reported, table_ids, sources = (_per_focus(coords, k, len(points), file, where) for k in _FOCUS_KEYS)
            for i, (xyz, rep, table_id, source) in enumerate(zip(points, reported, table_ids, sources)):
                foci["field"].append(f"{where}.coords[{i}]")
                foci["experiment_id"].append(f"{sid}-{cid}")
                for axis, value in zip("xyz", xyz):
                    foci[axis].append(value)
                foci["space"].append(space or "MNI")
                foci["reported_space"].append(rep and coords_space(rep, file=file, where=f"{where}.coords.reported_space"))
                foci["table_id"].append(table_id)
                foci["source"].append(source)
    if not experiments:
        raise InputError("no experiments: no study has any contrasts", file=file)
    if unknown_space:
        notes.append(
            f"{len(unknown_space)} experiments give no coordinate space (first: {unknown_space[0]!r}); "
            "taken as MNI (NiMARE's convention)"
        )
    return assemble(
        studies, experiments, foci, file=file, fmt="nimare_json", notes=notes, space_transform=space_transform
    )


def _plain(value):
    """A JSON-ready scalar (NumPy and pandas scalars unwrapped)."""
    value = value.item() if hasattr(value, "item") else value
    return value


def nimare_dict(studyset: StudySet) -> tuple[dict, dict]:
    """The NiMARE dataset dictionary for ``studyset`` and a summary of what it holds.

    Builds on :meth:`StudySet.to_nimare_dict`, adding study fields to each contrast's
    metadata and ``coords.reported_space`` where foci were reported in Talairach.
    """
    kept, summary = writable(studyset)
    data = kept.to_nimare_dict()
    studies = {
        sid: {k: _plain(v) for k, v in fields.items() if not missing(v)}
        for sid, fields in kept.studies.set_index("study_id")[list(STUDY_FIELDS)].iterrows()
    }
    fo = kept.foci
    per_focus = {k: fo[k].astype(object).where(fo[k].notna(), None).to_numpy() for k in ("space", "table_id", "source")}
    indices = fo.groupby("experiment_id", sort=False, observed=True).indices
    for sid, cid, eid in kept.experiments[["study_id", "contrast_id", "experiment_id"]].itertuples(index=False):
        contrast = data[str(sid)]["contrasts"][str(cid)]
        contrast["metadata"].update(studies[sid])
        rows = indices.get(eid)
        if rows is None:
            continue
        spaces = per_focus["space"][rows].tolist()
        if any(s != "MNI" for s in spaces):
            contrast["coords"]["reported_space"] = spaces[0] if len(set(spaces)) == 1 else spaces
        for key in ("table_id", "source"):
            values = per_focus[key][rows].tolist()
            if any(v is not None for v in values):
                contrast["coords"][key] = [None if v is None else str(v) for v in values]
    summary["experiments_left_out"] = []
    return data, summary


def write_nimare_json(studyset: StudySet, path) -> dict:
    """Write ``studyset`` as a NiMARE JSON dataset (MNI); returns what was written."""
    data, summary = nimare_dict(studyset)
    text = json.dumps(data, indent=2, allow_nan=False, default=_json_default)
    with atomic_file(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text + "\n")
    return summary


def _json_default(value):
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite number")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
