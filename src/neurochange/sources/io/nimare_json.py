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

A study, its ``contrasts``, a contrast, its ``coords`` and ``metadata`` must be objects
(``null`` reads as absent); anything else is an error naming the study and contrast.

An in-memory ``nimare.dataset.Dataset`` (or any object with its ``coordinates``,
``metadata``, ``ids`` and ``space``) is read by :func:`read_nimare_dataset`: its
coordinates are already in ``Dataset.space`` (NiMARE transforms on load), so MNI ones are
not transformed again.

Writing puts MNI coordinates, ``sample_sizes: [n]`` and every field under each contrast's
``metadata`` (the study fields too, as NiMARE's Neurosynth conversion does); Talairach
foci read from a file are marked by ``coords.reported_space``.
"""

from __future__ import annotations

import hashlib
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


def load_json(file: Path, notes: list[str]):
    """The parsed JSON of ``file`` (UTF-8, else Windows-1252 with a note); errors name the line."""
    text = read_text(file, notes)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=file, line=exc.lineno) from None
    except RecursionError:
        raise InputError("not valid JSON: nested too deeply", file=file) from None


_JSON_KINDS = ((bool, "true/false"), (str, "a string"), (list, "a list"), ((int, float), "a number"))


def expect_object(value, what: str, *, file, field: str, required: bool = False) -> dict:
    """``value`` if it is a JSON object; ``{}`` for null (unless ``required``); else an InputError at ``field``."""
    if isinstance(value, dict):
        return value
    if value is None and not required:
        return {}
    kinds = (k for t, k in _JSON_KINDS if isinstance(value, t))
    kind = "missing" if value is None else next(kinds, type(value).__name__)
    raise InputError(f"{what} must be an object, got {kind}", file=file, field=field)


def sample_size(candidates, file: Path):
    """n from the first given ``(key, value, where)``: the mean of a ``sample_sizes`` list (NiMARE's rule)
    or one number; None if none is given."""
    for key, value, where in candidates:
        if value is None or value == []:
            continue
        values = value if isinstance(value, list) else [value]
        if any(v is None or isinstance(v, bool) for v in values):
            raise InputError(f"{key}={value!r} must hold numbers", file=file, field=where)
        numbers = [parse_number(v, file=file, field=where) for v in values]
        mean = sum(numbers) / len(numbers)
        if mean <= 0 or mean != int(mean):
            raise InputError(
                f"{key}={value!r}: NiMARE's kernel would use the mean {mean:g}; neurochange needs a positive "
                "whole sample size per experiment (give one number)",
                file=file,
                field=where,
            )
        return int(mean)
    return None


def _sample_size(metadata: dict, file: Path, where: str):
    """n from ``sample_sizes`` (mean of a list, NiMARE's rule) or ``sample_size``; None if absent."""
    return sample_size([(k, metadata.get(k), f"{where}.{k}") for k in ("sample_sizes", "sample_size")], file)


def focus(values, file: Path, where: str, names=tuple("xyz")) -> tuple[float, float, float]:
    """One focus (x, y, z) as numbers within +-128 mm; errors name ``<where>.<name of the axis>``."""
    if any(v is None or isinstance(v, bool) for v in values):
        raise InputError(f"focus has a missing coordinate: {tuple(values)}", file=file, field=where)
    xyz = tuple(parse_number(v, file=file, field=f"{where}.{n}") for v, n in zip(values, names))
    try:
        check_xyz(xyz, file=file)
    except InputError as exc:
        raise InputError(exc.message, file=file, field=f"{where}.{names['xyz'.index(exc.field)]}") from None
    return xyz


def _foci(coords: dict, file: Path, where: str) -> list[tuple[float, float, float]]:
    """The (x, y, z) of a contrast's ``coords``; none when there are no points."""
    columns = [coords.get(a) for a in "xyz"]
    if any(c is None for c in columns):
        return []
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise InputError("x, y and z must be lists of equal length", file=file, field=f"{where}.coords")
    if all(v is None for c in columns for v in c):  # NiMARE's Studyset export writes [None] for no points
        return []
    return [focus(xyz, file, f"{where}.coords[{i}]") for i, xyz in enumerate(zip(*columns))]


_FOCUS_KEYS = ("reported_space", "table_id", "source")


def _per_focus(coords: dict, key: str, n_foci: int, file: Path, where: str) -> list:
    """A per-focus text column of ``coords`` (a list, or one value for all), None where absent."""
    values = coords.get(key)
    if not isinstance(values, list):
        values = [values] * n_foci
    if len(values) != n_foci or any(isinstance(v, (dict, list, bool)) for v in values):
        message = f"{key} must be one value or a list as long as x, y, z"
        raise InputError(message, file=file, field=f"{where}.coords.{key}")
    return [None if v is None or str(v).strip() == "" else str(v).strip() for v in values]


def study_fields(places, file: Path, sid: str) -> dict:
    """Study fields from ``(object, where)`` places in turn, one value per study.

    A place may add ``aliases`` (``(object, where, {key: field})``) for keys named otherwise there.
    """
    fields: dict = {}
    for place, where, *aliases in places:
        for raw_key, raw in place.items():
            key = (aliases[0] if aliases else {}).get(raw_key) or field_key(raw_key)
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


def unknown_space_note(experiment_ids: list[str]) -> str:
    """The note on experiments that give no coordinate space (NiMARE takes them as its target, MNI)."""
    return (
        f"{len(experiment_ids)} experiments give no coordinate space (first: {experiment_ids[0]!r}); "
        "taken as MNI (NiMARE's convention)"
    )


def read_nimare_json(path, *, space_transform: str = "icbm_other") -> StudySet:
    """Read a NiMARE JSON dataset; Talairach foci are converted to MNI (``space`` keeps ``TAL``)."""
    file = check_file(path)
    notes: list[str] = []
    return nimare_from_data(load_json(file, notes), file=file, notes=notes, space_transform=space_transform)


def nimare_from_data(data, *, file: Path | str, notes: list[str], space_transform: str = "icbm_other",
                     provenance_source: dict | None = None) -> StudySet:
    """The StudySet of a parsed NiMARE JSON dataset read from ``file`` (``provenance_source``: its
    provenance record when it is not a file)."""
    if not isinstance(data, dict) or not data:
        raise InputError("a NiMARE dataset is an object of studies, each with 'contrasts'", file=file)
    studies: dict[str, dict] = {}
    experiments: list[dict] = []
    foci: dict[str, list] = {k: [] for k in ("experiment_id", "x", "y", "z", "space", *_FOCUS_KEYS, "field")}
    unknown_space: list[str] = []
    for sid, study in data.items():
        study = expect_object(study, "a study", file=file, field=str(sid), required=True)
        if "contrasts" not in study:
            hint = " (a NIMADS studyset needs 'studies' to be a list)" if sid == "studies" else ""
            raise InputError(f"each study needs a 'contrasts' object{hint}", file=file, field=str(sid))
        contrasts = expect_object(study["contrasts"], "'contrasts'", file=file, field=f"{sid}.contrasts", required=True)
        checked = {}
        for cid, contrast in contrasts.items():
            where = f"{sid}.contrasts.{cid}"
            contrast = expect_object(contrast, "a contrast", file=file, field=where, required=True)
            metadata = expect_object(contrast.get("metadata"), "metadata", file=file, field=f"{where}.metadata")
            coords = expect_object(contrast.get("coords"), "coords", file=file, field=f"{where}.coords")
            checked[cid] = (where, metadata, coords)
        if contrasts:  # a study without contrasts has nothing to analyse
            places = [(study, str(sid))]
            places.append((expect_object(study.get("metadata"), "metadata", file=file, field=f"{sid}.metadata"),
                           f"{sid}.metadata"))
            places += [(metadata, f"{where}.metadata") for where, metadata, _ in checked.values()]
            studies[sid] = study_fields(places, file, sid)
        for cid, (where, metadata, coords) in checked.items():
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
                rep = rep and coords_space(rep, file=file, where=f"{where}.coords.reported_space")
                foci["reported_space"].append(rep)
                foci["table_id"].append(table_id)
                foci["source"].append(source)
    if not experiments:
        raise InputError("no experiments: no study has any contrasts", file=file)
    if unknown_space:
        notes.append(unknown_space_note(unknown_space))
    return assemble(studies, experiments, foci, file=file, fmt="nimare_json", notes=notes,
                    space_transform=space_transform, source=provenance_source)


def is_nimare_dataset(obj) -> bool:
    """Does ``obj`` look like a ``nimare.dataset.Dataset`` (``coordinates``, ``metadata``, ``ids``, ``space``)?"""
    return all(hasattr(obj, name) for name in ("coordinates", "metadata", "ids", "space"))


def read_nimare_dataset(dset, *, space_transform: str = "icbm_other") -> StudySet:
    """The StudySet of an in-memory ``nimare.dataset.Dataset``, as reading its NiMARE JSON file gives.

    Duck-typed (NiMARE is not imported): any object with a ``coordinates`` table (``id``,
    ``study_id``, ``contrast_id``, ``x``, ``y``, ``z``, ``space``), a ``metadata`` table (``id``,
    ``study_id``, ``contrast_id``, ``sample_sizes``, fields...), ``ids`` and ``space``;
    ``nimare.nimads.Studyset`` has them too. The coordinates are in the space each row names
    (``Dataset.space`` once NiMARE has transformed them), so MNI ones are not transformed again.
    Fields NiMARE keeps beside ``contrasts`` rather than in the metadata (a study's ``year``) are
    not in a Dataset, so they are missing here. The object's tables go through the NiMARE JSON
    reader (one code path, the same checks); errors name the object and the study/contrast, and
    the provenance records the SHA-256 of that JSON.
    """
    label = f"<{type(dset).__name__} object>"
    text = json.dumps(_dataset_dict(dset, label), default=_json_default)
    record = {
        "file": None,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "format": "nimare_dataset",
        "object": f"{type(dset).__module__}.{type(dset).__qualname__}",
        "space": None if dset.space is None else str(dset.space),
    }
    return nimare_from_data(json.loads(text), file=label, notes=[], space_transform=space_transform,
                            provenance_source=record)


def _dataset_dict(dset, label: str) -> dict:
    """The NiMARE JSON dictionary of a Dataset's ``metadata`` and ``coordinates`` tables (in ``ids`` order)."""
    coords, meta = dset.coordinates, dset.metadata
    for name, table, columns in (("coordinates", coords, ("id", "x", "y", "z")), ("metadata", meta, ("id",))):
        lacking = [c for c in columns if not hasattr(table, "columns") or c not in table.columns]
        if lacking:
            raise InputError(f"{name} needs columns {', '.join(columns)} (lacks {', '.join(lacking)})", file=label)
    ids = [str(i) for i in dset.ids]
    parts = {}
    for table in (coords, meta):
        if {"study_id", "contrast_id"} <= set(table.columns):
            for eid, sid, cid in zip(table["id"], table["study_id"], table["contrast_id"]):
                parts.setdefault(str(eid), (str(sid), str(cid)))
    data: dict = {}
    for eid in ids:
        if eid not in parts:
            raise InputError(f"experiment {eid!r} has no study_id and contrast_id", file=label)
        sid, cid = parts[eid]
        data.setdefault(sid, {"contrasts": {}})["contrasts"][cid] = {"metadata": {}}
    skip = {"id", "study_id", "contrast_id"}
    for row in meta.to_dict("records"):
        sid, cid = parts.get(str(row["id"]), (None, None))
        if sid in data and cid in data[sid]["contrasts"]:
            data[sid]["contrasts"][cid]["metadata"] = {
                k: v.tolist() if hasattr(v, "tolist") else v for k, v in row.items() if k not in skip and not missing(v)
            }
    space = coords["space"] if "space" in coords.columns else [dset.space] * len(coords)
    rows: dict[str, dict] = {}
    for eid, x, y, z, s in zip(coords["id"], coords["x"], coords["y"], coords["z"], space):
        s = None if missing(s) else str(s)
        xyz = rows.setdefault(str(eid), {"space": s, "x": [], "y": [], "z": []})
        if xyz["space"] != s:
            raise InputError(f"experiment {eid!r} has coordinates in {xyz['space']!r} and {s!r}", file=label)
        for axis, value in zip("xyz", (x, y, z)):
            xyz[axis].append(None if missing(value) else float(value))
    for eid, xyz in rows.items():
        sid, cid = parts.get(eid, (None, None))
        if sid not in data or cid not in data[sid]["contrasts"]:
            raise InputError(f"coordinates name experiment {eid!r}, which is not among the ids", file=label)
        data[sid]["contrasts"][cid]["coords"] = xyz
    return data


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
