"""What the report shows, read from a review's results folder into plain data for the template.

``review_context(out)`` reads ``review.json`` and the files it names (flow.json, studies.tsv,
clusters.tsv, overlap numbers, model tables, provenance.json) and returns a dict of strings,
tables (``{"columns": [...], "rows": [...]}``) and figure paths. Table cells are the text of
the files, unchanged, so the report prints exactly the numbers written beside it.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd

from neurochange.errors import InputError
from neurochange.workflows.diagnose import CLUSTER_COLUMNS as DIAGNOSTIC_COLUMNS

#: Columns of clusters.tsv the cluster tables leave out (shown elsewhere or internal).
HIDDEN_CLUSTER_COLUMNS = ("experiments", "is_subpeak")
#: Columns shown only on a cluster's main peak row (the same for every peak of a cluster).
CLUSTER_WIDE = ("cluster_id", "size_vox", "size_mm3", "p_fwe", "n_experiments", *DIAGNOSTIC_COLUMNS)
STUDY_COLUMNS = ("experiment_id", "title", "year", "n", "modality", "subtype", "disorder", "design", "direction",
                 "groups")
ESTIMATOR_STAT = {"ale": "ALE", "mkda": "MKDA", "kda": "KDA"}
REVIEW_KEYS = ("title", "question", "settings", "flow", "studies", "groups", "comparisons", "models", "atlases")


def report_resource(name: str):
    """A file of ``resources/report/`` (a Traversable)."""
    return resources.files("neurochange").joinpath("resources", "report", name)


def _toml(name: str) -> dict:
    return tomllib.loads(report_resource(name).read_text(encoding="utf-8"))


def read_json(path: Path, what: str) -> dict:
    """A JSON file of the results folder; InputError naming it when missing or malformed."""
    if not path.is_file():
        raise InputError(f"{what} is missing from the results folder", file=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", file=str(path), line=err.lineno) from None


def read_tsv(path: Path) -> pd.DataFrame:
    """A TSV as text cells (no parsing, so numbers print exactly as written)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() != ""


def make_table(frame: pd.DataFrame, columns: list[str], headings: dict[str, str], *, row_classes=None,
               blank=None, classes: dict[str, str] | None = None) -> dict:
    """Template table of ``frame``'s ``columns`` (text cells); numeric columns are right-aligned.

    ``blank``: per row, the set of columns to leave empty (e.g. repeated cluster fields of sub-peaks).
    """
    cols = [c for c in columns if c in frame.columns]
    numeric = {c: bool(len(frame)) and all(_is_number(v) for v in frame[c] if v != "") for c in cols}
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        skip = blank[i] if blank is not None else ()
        rows.append({"cells": ["" if c in skip else row[c] for c in cols],
                     "cls": row_classes[i] if row_classes is not None else ""})
    return {"columns": [{"name": c, "heading": headings.get(c, c), "numeric": numeric[c],
                         "cls": "num" if numeric[c] else (classes or {}).get(c) or ("label" if c.startswith("label_")
                                                                                      else "")} for c in cols],
            "rows": rows}


def ordered_rows(values: dict, headings: dict[str, str], **fmt) -> list[tuple[str, str]]:
    """(heading, text) rows of ``values``: keys in ``headings`` order first, then the others as they come."""
    keys = [k for k in headings if k in values] + [k for k in values if k not in headings]
    return [(headings.get(k, k).format(**fmt), _settings_value(values[k])) for k in keys
            if not isinstance(values[k], (dict, list))]


def _shown_settings(settings: dict) -> dict:
    """The settings the report lists: ALE kernel settings only where an ALE kernel was used."""
    ale = str(settings.get("estimator", "ale")).lower() == "ale"
    return {k: v for k, v in settings.items() if ale or k not in ("fwhm", "sample_size") or v is not None}


def atlas_heading(title: str) -> str:
    """A short column heading from an atlas title: the part before any parenthesis."""
    return title.split(" (")[0]


def _settings_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def cluster_table(path: Path, stat: str, atlas_titles: dict[str, str], hide: tuple[str, ...] = ()
                  ) -> tuple[dict | None, list]:
    """The cluster table of a clusters.tsv (less the ``hide`` columns) and, per cluster, its contributing
    experiments."""
    if not path.is_file():
        return None, []
    frame = read_tsv(path)
    headings = {k: v.format(stat=stat) for k, v in _toml("columns.toml")["clusters"].items()}
    for col in frame.columns:
        if col.startswith("label_"):
            name = col.removeprefix("label_")
            headings[col] = _toml("columns.toml")["atlases"].get(name) or atlas_heading(atlas_titles.get(name, name))
    columns = [c for c in frame.columns if c not in HIDDEN_CLUSTER_COLUMNS and c not in hide]
    sub = frame["is_subpeak"].str.lower().isin(("true", "1")).tolist() if "is_subpeak" in frame else [False] * len(
        frame)
    table = make_table(frame, columns, headings, row_classes=["subpeak" if s else "" for s in sub],
                       blank=[set(CLUSTER_WIDE) if s else set() for s in sub])
    experiments = []
    if "experiments" in frame:
        for s, (_, row) in zip(sub, frame.iterrows()):
            if not s:
                ids = [e for e in row["experiments"].split(";") if e]
                experiments.append((f"Cluster {row.get('cluster_id', '')}", ", ".join(ids) if ids else "none"))
    return table, experiments


def _path(out: Path, relative, field: str) -> Path:
    if not relative:
        raise InputError("missing path", file=str(out / "review.json"), field=field)
    return out / relative


def _folder(out: Path, relative, field: str) -> Path:
    path = _path(out, relative, field)
    if not path.is_dir():
        raise InputError(f"folder {relative} does not exist", file=str(out / "review.json"), field=field)
    return path


def _flatten(prefix: str, value, rows: list) -> None:
    if isinstance(value, dict):
        for k in value:
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], rows)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            name = v.get("file") or v.get("name") if isinstance(v, dict) else None
            _flatten(f"{prefix}[{name}]" if name else f"{prefix}[{i}]", v, rows)
    else:
        rows.append((prefix, ", ".join(map(str, value)) if isinstance(value, list) else _settings_value(value)))


def provenance_rows(record: dict) -> dict:
    """provenance.json as key/value rows: seed and version first, versions, input checksums, the rest."""
    rows: list = []
    _flatten("", record, rows)
    versions = [(k.split(".", 1)[1], v) for k, v in rows if k.startswith("versions.")]
    inputs = [(k, v) for k, v in rows if "sha256" in k.lower() or "checksum" in k.lower()]
    main = [(k, v) for k, v in rows if k in ("seed", "neurochange_version", "command")]
    taken = {k for k, _ in inputs} | {k for k, _ in main} | {f"versions.{k}" for k, _ in versions}
    return {"main": main, "versions": versions, "inputs": inputs, "rest": [(k, v) for k, v in rows if k not in taken]}


def review_context(out: str | Path) -> dict:
    """Everything the report template needs, read from the results folder ``out`` (no statistics)."""
    out = Path(out)
    review = read_json(out / "review.json", "review.json")
    for key in REVIEW_KEYS:
        if key not in review:
            raise InputError(f"review.json has no {key!r}", file=str(out / "review.json"), field=key)
    settings = review["settings"]
    stat = ESTIMATOR_STAT.get(str(settings.get("estimator", "ale")).lower(), str(settings.get("estimator")))
    atlases = review.get("atlases", [])
    atlas_titles = {a["name"]: a.get("title", a["name"]) for a in atlases}
    labels = {g["name"]: g.get("label", g["name"]) for g in review["groups"]}

    flow = read_json(_path(out, review["flow"], "flow"), "flow.json")
    studies_path = _path(out, review["studies"], "studies")
    if not studies_path.is_file():
        raise InputError("studies.tsv is missing from the results folder", file=str(studies_path))
    studies = read_tsv(studies_path)
    cols = _toml("columns.toml")

    groups = []
    for i, g in enumerate(review["groups"]):
        label = g.get("label", g["name"])
        if not g.get("folder"):  # not analysed (too few experiments): the note says why
            groups.append({**g, "label": label, "main": None, "signed_analyses": []})
            continue
        folder = _folder(out, g.get("folder"), f"groups[{i}].folder")
        table, experiments = cluster_table(folder / "clusters.tsv", stat, atlas_titles)
        signed = []
        for direction in ("increase", "decrease"):
            rel = (g.get("signed_folders") or {}).get(direction)
            if rel:
                sfolder = _folder(out, rel, f"groups[{i}].signed_folders.{direction}")
                stable, sexp = cluster_table(sfolder / "clusters.tsv", stat, atlas_titles)
                signed.append({"direction": direction, "folder": sfolder, "clusters": stable, "experiments": sexp,
                               "title": f"{g.get('label', g['name'])}: {direction}s after treatment"})
        groups.append({**g, "label": g.get("label", g["name"]),
                       "main": {"folder": folder, "clusters": table, "experiments": experiments,
                                "title": f"{g.get('label', g['name'])} ({g.get('n_experiments')} experiments, {stat})"},
                       "signed_analyses": signed})

    comparisons = []
    for i, c in enumerate(review.get("comparisons", [])):
        a, b = labels.get(c["a"], c["a"]), labels.get(c["b"], c["b"])
        title = f"{a} minus {b} (contrast)" if c["kind"] == "contrast" else f"{a} and {b} (conjunction)"
        if not c.get("folder"):  # not run: the note says why
            comparisons.append({**c, "folder": None, "title": title, "label_a": a, "label_b": b, "clusters": None,
                                "experiments": [], "overlap_rows": []})
            continue
        folder = _folder(out, c.get("folder"), f"comparisons[{i}].folder")
        conj = c["kind"] == "conjunction"
        table, experiments = cluster_table(folder / "clusters.tsv", "conjunction z" if conj else f"{stat} difference",
                                           atlas_titles, hide=("peak_zscore",) if conj else ())
        heading = ("Clusters of the conjunction map (voxels significant in both groups) and sub-peaks ≥ 8 mm apart; "
                   "coordinates in MNI mm") if conj else None
        entry = {**c, "folder": folder, "label_a": a, "label_b": b, "clusters": table, "experiments": experiments,
                 "cluster_heading": heading,
                 "empty_note": "No voxel is significant in both maps." if conj else "No cluster survived FWE correction."}
        entry["title"] = title
        if c["kind"] == "contrast":
            entry["overlap_rows"] = ordered_rows({k: c[k] for k in cols["contrast"] if k in c}, cols["contrast"])
        if c["kind"] == "conjunction":
            record = read_json(folder / "overlap.json", "overlap.json") if (folder / "overlap.json").is_file() else {}
            numbers = c.get("overlap") or record
            entry["map"] = record.get("map")
            shown = {k: v for k, v in (numbers or {}).items() if k not in ("a", "b", "method", "map")}
            entry["overlap_rows"] = ordered_rows(shown, cols["overlap"], a=a, b=b)
            groups_by_name = {g["name"]: g for g in groups}
            entry["maps"] = tuple(groups_by_name[n]["main"]["folder"] for n in (c["a"], c["b"])
                                  if n in groups_by_name and groups_by_name[n]["main"])
        comparisons.append(entry)

    models = []
    for i, m in enumerate(review.get("models", [])):
        regions = None
        if m.get("table"):
            path = _path(out, m["table"], f"models[{i}].table")
            if not path.is_file():
                raise InputError(f"model table {m['table']} does not exist", file=str(out / "review.json"),
                                 field=f"models[{i}].table")
            frame = read_tsv(path)
            regions = make_table(frame, list(frame.columns), {})
        summary: list = []
        _flatten("", m.get("summary", {}), summary)
        values = dict(summary)
        models.append({**m, "title": m.get("title") or m["name"], "group_label": labels.get(m["group"], m["group"]),
                       "verdict_class": str(m.get("verdict", "")).replace(" ", "-"), "summary": summary,
                       "columns": [values.get(k, "") for k in cols["model_verdict"]],
                       "regions": regions})

    prov_path = out / "provenance.json"
    record = read_json(prov_path, "provenance.json") if prov_path.is_file() else {}

    groups_in_flow = [(n, c) for n, c in _flow_groups(flow)]
    return {
        "review": review,
        "title": review["title"],
        "question": review["question"],
        "version": review.get("neurochange_version", ""),
        "seed": review.get("seed"),
        "settings": settings,
        "stat": stat,
        "settings_rows": ordered_rows(_shown_settings(settings), cols["settings"]),
        "flow": flow,
        "exclusions": make_table(pd.DataFrame(
            [{"criterion": s.get("criterion", ""), "experiments": str(s.get("experiments", "")),
              "studies": str(s.get("studies", "")),
              "reasons": "; ".join(f"{k}: {v}" for k, v in (s.get("reasons") or {}).items())}
             for s in flow.get("excluded", [])], columns=["criterion", "experiments", "studies", "reasons"]),
            ["criterion", "experiments", "studies", "reasons"],
            {"criterion": "Criterion", "experiments": "Experiments excluded", "studies": "Studies",
             "reasons": "Values of the excluded records"}),
        "group_counts": make_table(pd.DataFrame(
            [{"group": labels.get(n, n), **{k: str(v) for k, v in c.items() if not isinstance(v, (dict, list))}}
             for n, c in groups_in_flow]), ["group", "experiments", "studies", "foci"],
            {"group": "Group", "experiments": "Experiments", "studies": "Studies", "foci": "Foci"}),
        "studies_file": review["studies"],
        "studies": make_table(studies, list(STUDY_COLUMNS), cols["studies"], classes=cols["studies_classes"]),
        "groups": groups,
        "comparisons": comparisons,
        "models": models,
        "model_columns": list(cols["model_verdict"].values()),
        "atlases": [dict(a) for a in atlases],
        "provenance": provenance_rows(record),
    }


def _flow_groups(flow: dict):
    from neurochange.report.figures import flow_groups

    return flow_groups(flow)
