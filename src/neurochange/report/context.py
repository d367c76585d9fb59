"""What the report shows, read from a review's results folder into plain data for the template.

``review_context(out)`` reads ``review.json`` and the files it names (flow.json, studies.tsv,
clusters.tsv, overlap numbers, model tables, params.json, provenance.json) and returns a dict of
strings, tables (``{"columns": [...], "rows": [...]}``) and figure paths. Numbers are printed by
:mod:`neurochange.report.numbers` (each column's kind from ``columns.toml``'s ``[formats]``):
rounded to what they can claim, the exact values staying in the files beside the report.
"""

from __future__ import annotations

import functools
import json
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd

from neurochange.errors import InputError
from neurochange.hypotheses.verdict import SIGNED_VERDICTS
from neurochange.report import numbers
from neurochange.workflows.diagnose import CLUSTER_COLUMNS as DIAGNOSTIC_COLUMNS

#: Columns of clusters.tsv the cluster tables leave out (shown elsewhere or internal).
HIDDEN_CLUSTER_COLUMNS = ("experiments", "is_subpeak")
#: Columns shown only on a cluster's main peak row (the same for every peak of a cluster).
CLUSTER_WIDE = ("cluster_id", "size_vox", "size_mm3", "p_fwe", "n_experiments", *DIAGNOSTIC_COLUMNS)
STUDY_COLUMNS = ("experiment_id", "title", "links", "year", "n", "modality", "subtype", "disorder", "design",
                 "direction", "groups")
ESTIMATOR_STAT = {"ale": "ALE", "mkda": "MKDA", "kda": "KDA"}
REVIEW_KEYS = ("title", "question", "settings", "flow", "studies", "groups", "comparisons", "models", "atlases")
DIRECTIONS = ("increase", "decrease")


def report_resource(name: str):
    """A file of ``resources/report/`` (a Traversable)."""
    return resources.files("neurochange").joinpath("resources", "report", name)


@functools.cache
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


def _optional_json(path: Path) -> dict:
    """A JSON file that older folders may lack: {} when absent."""
    return read_json(path, path.name) if path.is_file() else {}


def read_tsv(path: Path) -> pd.DataFrame:
    """A TSV as text cells (no parsing: each number is formatted from the text the file holds)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------- headings and cells
def humanise(key: str) -> str:
    """A readable heading for a key no table lists: ``jackknife_min_share`` -> ``Jackknife min share``."""
    text = " ".join(str(key).replace("_", " ").split())
    return text[:1].upper() + text[1:]


def heading(key: str, headings: dict[str, str]) -> str:
    """``key``'s heading in ``headings``, else :func:`humanise`."""
    return headings.get(key) or humanise(key)


def column_kind(column: str, values=(), kinds: dict[str, str] | None = None) -> str:
    """How ``column`` prints: ``kinds`` (per table) or ``[formats]``; ``*_p`` columns are p; atlas labels
    text; else guessed from ``values`` (integer when all whole, else stat; text when any is not a number)."""
    known = (kinds or {}).get(column) or _toml("columns.toml")["formats"].get(column)
    if known:
        return known
    if column.endswith("_p"):
        return "p"
    if column.startswith("label_"):
        return "text"
    guessed = {numbers.guess_kind(v) for v in values if v not in ("", None)}
    return "text" if not guessed or "text" in guessed else ("stat" if "stat" in guessed else "integer")


def make_table(frame: pd.DataFrame, columns: list[str], headings: dict[str, str], *, kinds=None, n_null=None,
               row_classes=None, blank=None, classes: dict[str, str] | None = None, fold=()) -> dict:
    """Template table of ``frame``'s ``columns``, each cell printed by its column's kind (:func:`column_kind`).

    ``n_null``: the null draws behind the table's Monte Carlo p (their floor prints as a bound).
    ``blank``: per row, the set of columns to leave empty (e.g. repeated cluster fields of sub-peaks).
    ``fold``: columns printed under their row as "heading: value" (``row["fold"]``) instead of as columns.
    A cell holding a list of ``{"text", "href"}`` links prints as those links.
    """
    cols = [c for c in columns if c in frame.columns]
    kind = {c: column_kind(c, frame[c].tolist(), kinds) for c in cols}
    shown = [c for c in cols if c not in fold]

    def text(value, c):
        if isinstance(value, list) or value == "":
            return value
        if kind[c] == "text" and isinstance(value, str) and ";" in value and " " not in value:  # a list: let it wrap
            return value.replace(";", "; ")
        return numbers.cell(value, kind[c], n_null)

    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        skip = blank[i] if blank is not None else ()
        rows.append({"cells": ["" if c in skip else text(row[c], c) for c in shown],
                     "fold": [(heading(c, headings), text(row[c], c)) for c in cols
                              if c in fold and c not in skip and row[c] != ""],
                     "cls": row_classes[i] if row_classes is not None else ""})
    return {"columns": [{"name": c, "heading": heading(c, headings), "numeric": kind[c] in numbers.NUMERIC_KINDS,
                         "cls": _cell_class(c, kind[c], classes)} for c in shown],
            "rows": rows}


def _cell_class(column: str, kind: str, classes: dict[str, str] | None) -> str:
    if kind in numbers.NUMERIC_KINDS:
        return "num"
    return (classes or {}).get(column) or ("label" if column.startswith("label_") else "")


def value_text(key: str, value, n_null: int | None = None) -> str:
    """One entry's value as the report prints it: setting values by ``[setting_values]``, lists joined,
    numbers by the entry's kind."""
    named = _toml("columns.toml")["setting_values"].get(key, {})
    if isinstance(value, list):
        return ", ".join(named.get(str(v), str(v)) for v in value) or "none"
    if isinstance(value, str) and value in named:
        return named[value]
    return numbers.cell(value, column_kind(key, [value]) if numbers.guess_kind(value) != "text" else "text", n_null)


def ordered_rows(values: dict, headings: dict[str, str], n_null: int | None = None, **fmt) -> list[tuple[str, str]]:
    """(heading, text) rows of ``values``: keys in ``headings`` order first, then the others as they come."""
    keys = [k for k in headings if k in values] + [k for k in values if k not in headings]
    return [(heading(k, headings).format(**fmt), value_text(k, values[k], n_null)) for k in keys
            if not isinstance(values[k], dict)]


def _shown_settings(settings: dict) -> dict:
    """The settings the report lists: ALE kernel settings only where an ALE kernel was used (one line when
    each experiment's n sets its kernel), early stopping "off" when not asked for."""
    ale = str(settings.get("estimator", "ale")).lower() == "ale"
    shown = {k: v for k, v in settings.items() if ale or k not in ("fwhm", "sample_size") or v is not None}
    if ale and shown.get("sample_size") is None:
        shown.pop("sample_size", None)
        if shown.get("fwhm") is None:
            shown["fwhm"] = "from each experiment's sample size (Eickhoff et al., 2009)"
    if "early_stop" in shown and shown["early_stop"] is None:
        shown["early_stop"] = "off (every analysis runs all its iterations)"
    return shown


def atlas_heading(title: str) -> str:
    """A short column heading from an atlas title: the part before any parenthesis."""
    return title.split(" (")[0]


# --------------------------------------------------------------------------- Monte Carlo runs
def monte_carlo_run(entry: dict | None, folder: Path | None, settings: dict) -> dict | None:
    """How many iterations an analysis ran and why it stopped: ``{"n_iters_requested", "n_iters_run",
    "stopped_early", "precision"}``.

    From review.json's ``montecarlo`` record of the entry, else the folder's params.json (``montecarlo``)
    or provenance.json (``params.subtraction``, a contrast), else the entry's ``n_iters_run``; None when
    none of them says.
    """
    if entry and entry.get("montecarlo"):
        return dict(entry["montecarlo"])
    record = {}
    if folder is not None:
        params = _optional_json(folder / "params.json") or _optional_json(folder / "provenance.json").get("params", {})
        record = params.get("montecarlo") or params.get("subtraction") or {}
    if record.get("n_iters") is not None:
        stop = record.get("early_stop") or {}
        return {"n_iters_requested": record.get("n_iters_requested", record["n_iters"]),
                "n_iters_run": record["n_iters"], "stopped_early": bool(stop.get("stopped_early")),
                "precision": stop.get("precision")}
    if entry and entry.get("n_iters_run") is not None:
        return {"n_iters_requested": settings.get("n_iters") or entry["n_iters_run"],
                "n_iters_run": entry["n_iters_run"], "stopped_early": False, "precision": settings.get("early_stop")}
    return None


def run_text(run: dict | None, unit: str = "iteration") -> str:
    """What a run did, in words: ``stopped at 3,000 of 10,000 iterations: FWE thresholds known within ±10 %``,
    ``ran all 10,000 iterations``; "" when unknown."""
    if not run:
        return ""
    ran, asked = int(run["n_iters_run"]), int(run.get("n_iters_requested") or run["n_iters_run"])
    precision = run.get("precision")
    if run.get("stopped_early") or ran < asked:
        why = f": FWE thresholds known within {numbers.percent(precision)}" if precision else ""
        return f"stopped at {numbers.integer(ran)} of {numbers.count(asked, unit)}{why}"
    return f"ran all {numbers.count(ran, unit)}" if ran > 1 else f"ran {numbers.count(ran, unit)}"


# --------------------------------------------------------------------------- cluster tables
def cluster_table(path: Path, stat: str, atlas_titles: dict[str, str], n_null: int | None = None,
                  hide: tuple[str, ...] = (), kinds: dict[str, str] | None = None) -> tuple[dict | None, list]:
    """The cluster table of a clusters.tsv (less the ``hide`` columns; atlas labels, moderator tests and the
    ``[cluster_fold]`` columns under each row) and, per cluster, its contributing experiments."""
    if not path.is_file():
        return None, []
    frame = read_tsv(path)
    cols = _toml("columns.toml")
    headings = {k: v.format(stat=stat) for k, v in cols["clusters"].items()}
    for col in frame.columns:
        if col.startswith("label_"):
            name = col.removeprefix("label_")
            headings[col] = cols["atlases"].get(name) or atlas_heading(atlas_titles.get(name, name))
    columns = [c for c in frame.columns if c not in HIDDEN_CLUSTER_COLUMNS and c not in hide]
    fold = [c for c in columns if c.startswith(("label_", "moderator_")) or c in cols["cluster_fold"]["columns"]]
    sub = frame["is_subpeak"].str.lower().isin(("true", "1")).tolist() if "is_subpeak" in frame else [False] * len(
        frame)
    table = make_table(frame, columns, headings, kinds=kinds, n_null=n_null,
                       row_classes=["subpeak" if s else "" for s in sub],
                       blank=[set(CLUSTER_WIDE) if s else set() for s in sub], fold=fold)
    experiments = []
    if "experiments" in frame:
        for s, (_, row) in zip(sub, frame.iterrows()):
            if not s:
                ids = [e for e in row["experiments"].split(";") if e]
                experiments.append((f"Cluster {row.get('cluster_id', '')}", ", ".join(ids) if ids else "none"))
    return table, experiments


def _analysis(out: Path, folder: Path, title: str, stat: str, atlas_titles: dict, run: dict | None, **extra) -> dict:
    """One analysis folder as the template shows it: title, Monte Carlo run, cluster table, experiments."""
    n_null = run["n_iters_run"] if run else None
    table, experiments = cluster_table(folder / "clusters.tsv", stat, atlas_titles, n_null)
    return {"folder": folder, "relative": folder.relative_to(out).as_posix(), "title": title, "run": run,
            "run_text": run_text(run), "clusters": table, "experiments": experiments, **extra}


def _path(out: Path, relative, field: str) -> Path:
    if not relative:
        raise InputError("missing path", file=str(out / "review.json"), field=field)
    return out / relative


def _folder(out: Path, relative, field: str) -> Path:
    path = _path(out, relative, field)
    if not path.is_dir():
        raise InputError(f"folder {relative} does not exist", file=str(out / "review.json"), field=field)
    return path


# --------------------------------------------------------------------------- provenance
def _flatten(prefix: str, value, rows: list) -> None:
    if isinstance(value, dict):
        for k in value:
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], rows)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            name = v.get("file") or v.get("name") if isinstance(v, dict) else None
            _flatten(f"{prefix}[{name}]" if name else f"{prefix}[{i}]", v, rows)
    else:
        rows.append((prefix, value))


def provenance_rows(record: dict) -> dict:
    """provenance.json as key/value rows: seed and version first, versions, input checksums, the rest (keys as
    the file writes them, values as written)."""
    rows: list = []
    _flatten("", record, rows)
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else numbers.cell(v, "text")) for k, v in rows]
    versions = [(k.split(".", 1)[1], v) for k, v in rows if k.startswith("versions.")]
    inputs = [(k, v) for k, v in rows if "sha256" in k.lower() or "checksum" in k.lower()]
    main = [(humanise(k), v) for k, v in rows if k in ("seed", "neurochange_version", "command")]
    taken = {k for k, _ in inputs} | {"seed", "neurochange_version", "command"} | {f"versions.{k}" for k, _ in versions}
    return {"main": main, "versions": versions, "inputs": inputs, "rest": [(k, v) for k, v in rows if k not in taken]}


# --------------------------------------------------------------------------- studies
def study_links(study_id: str, doi: str) -> list[dict]:
    """Links of a study: its PubMed page when its id is a PMID (all digits), its DOI page when it has one."""
    links = []
    if str(study_id).isdigit():
        links.append({"text": "PubMed", "href": f"https://pubmed.ncbi.nlm.nih.gov/{study_id}/"})
    if doi:
        links.append({"text": "DOI", "href": f"https://doi.org/{doi}"})
    return links


def studies_table(studies: pd.DataFrame) -> dict:
    """The included-experiments table, with each study's PubMed and DOI links."""
    frame = studies.copy()
    ids = frame["study_id"] if "study_id" in frame else frame["experiment_id"].str.rsplit("-", n=1).str[0]
    dois = frame["doi"] if "doi" in frame else [""] * len(frame)
    frame["links"] = [study_links(s, d) for s, d in zip(ids, dois)]
    cols = _toml("columns.toml")
    return make_table(frame, list(STUDY_COLUMNS), cols["studies"], classes=cols["studies_classes"])


# --------------------------------------------------------------------------- models
def verdict_label(model: dict) -> str:
    """The verdict as printed: review.json's ``verdict_label``; in older folders, a verdict that weighs direction
    says its basis (``supported (signed)``, and ``supported (unsigned)`` where it rested on convergence only)."""
    if model.get("verdict_label"):
        return model["verdict_label"]
    verdict, basis = str(model.get("verdict", "")), model.get("basis")
    return f"{verdict} ({basis})" if verdict in SIGNED_VERDICTS and basis else verdict


def verdict_class(model: dict) -> str:
    """The CSS class of a verdict (``verdicts.toml``); a direction verdict on unsigned data is untested."""
    verdict = str(model.get("verdict", ""))
    if verdict in SIGNED_VERDICTS and model.get("basis") == "unsigned":
        return "untested"
    known = {v["name"]: v["class"] for v in _toml("verdicts.toml")["verdict"]}
    return known.get(verdict, verdict.replace(" ", "-"))


def verdict_legend() -> list[dict]:
    """What each verdict requires (``verdicts.toml``), for the legend under the verdict table."""
    return [{"label": f"{v['name']} (signed)" if v["name"] in SIGNED_VERDICTS else v["name"], **v}
            for v in _toml("verdicts.toml")["verdict"]]


def _model_null_draws(out: Path, model: dict) -> int | None:
    """The simulations behind a model test's p (``params.n_iters`` of models/<stem>.json, else the entry's
    ``n_iters``), if recorded."""
    record = _optional_json(out / Path(model["table"]).with_suffix(".json")) if model.get("table") else {}
    return (record.get("params") or {}).get("n_iters") or model.get("n_iters")


def model_entry(out: Path, i: int, m: dict, labels: dict) -> dict:
    """One model test as the template shows it: verdict, summary, regions table, specificity."""
    cols = _toml("columns.toml")
    n_null = _model_null_draws(out, m)
    regions = None
    if m.get("table"):
        path = _path(out, m["table"], f"models[{i}].table")
        if not path.is_file():
            raise InputError(f"model table {m['table']} does not exist", file=str(out / "review.json"),
                             field=f"models[{i}].table")
        frame = read_tsv(path)
        regions = make_table(frame, list(frame.columns), cols["model_regions"], n_null=n_null,
                             classes=cols["model_regions_classes"], fold=cols["model_regions_fold"]["columns"])
    summary = m.get("summary", {})
    specificity = m.get("specificity")
    spec_rows = None
    if specificity:
        spec_rows = ordered_rows(specificity, cols["specificity"],
                                 n_null=int(specificity["n_placements"]) if specificity.get("n_placements") else None)
    return {**m, "title": m.get("title") or m["name"], "group_label": labels.get(m["group"], m["group"]),
            "verdict_label": verdict_label(m), "verdict_class": verdict_class(m), "n_null": n_null,
            "summary": ordered_rows(summary, cols["model_summary"]),
            "columns": [value_text(k, summary[k]) if k in summary else "" for k in cols["model_verdict"]],
            "specificity_rows": spec_rows,
            "specificity_p": value_text("p", specificity["p"], specificity.get("n_placements"))
            if specificity and specificity.get("p") is not None else "",
            "regions": regions}


def model_comparison_table(review: dict, labels: dict) -> dict | None:
    """``review["model_comparisons"]`` as a table (model titles, rounded difference and interval, p)."""
    rows = review.get("model_comparisons") or []
    if not rows:
        return None
    titles = {m["name"]: m.get("title") or m["name"] for m in review.get("models", [])}
    cols = _toml("columns.toml")["model_comparison"]
    frame = pd.DataFrame([{
        "group": labels.get(r.get("group"), r.get("group", "")), "a": titles.get(r.get("a"), r.get("a", "")),
        "b": titles.get(r.get("b"), r.get("b", "")), "difference": value_text("difference", r.get("difference")),
        "ci": f"{value_text('ci_low', r.get('ci_low'))} to {value_text('ci_high', r.get('ci_high'))}",
        "p": numbers.cell(r.get("p"), "p", r.get("n_boot")), "n_boot": numbers.cell(r.get("n_boot"), "integer"),
        "note": r.get("note", "")} for r in rows])
    return make_table(frame, list(cols), cols, kinds={c: "text" for c in cols},  # printed above, row by row
                      classes={c: "num" for c in ("difference", "ci", "p", "n_boot")})


# --------------------------------------------------------------------------- the whole folder
def _group_entry(out: Path, i: int, g: dict, settings: dict, stat: str, atlas_titles: dict) -> dict:
    """One group: its run, main analysis and signed analyses (increase, decrease)."""
    label = g.get("label", g["name"])
    if not g.get("folder"):  # not analysed (too few experiments): the note says why
        return {**g, "label": label, "main": None, "signed_analyses": [], "run_text": "", "decoding": None,
                "genes": None}
    folder = _folder(out, g.get("folder"), f"groups[{i}].folder")
    run = monte_carlo_run(g, folder, settings)
    main = _analysis(out, folder, f"{label} ({numbers.count(g.get('n_experiments', 0), 'experiment')}, {stat})",
                     stat, atlas_titles, run)
    signed = []
    for direction in DIRECTIONS:
        rel = (g.get("signed_folders") or {}).get(direction)
        if rel:
            sfolder = _folder(out, rel, f"groups[{i}].signed_folders.{direction}")
            signed.append(_analysis(out, sfolder, f"{label}: {direction}s after treatment", stat, atlas_titles,
                                    monte_carlo_run(None, sfolder, settings), direction=direction))
    return {**g, "label": label, "main": main, "signed_analyses": signed, "run": run, "run_text": main["run_text"],
            "signed_title": f"{label}: increases and decreases after treatment",
            "decoding": _decoding_entry(folder, g.get("decoding")), "genes": _genes_entry(folder, g.get("genes"))}


def _genes_entry(folder: Path, genes: dict | None) -> dict | None:
    """A group's imaging transcriptomics (``review.json``'s ``genes``) as the template shows it."""
    if not genes:
        return None
    p = lambda value: numbers.significant(value, 2)  # noqa: E731
    top = [{"gene": g, "r": numbers.decimals(r, 2), "p_cbma": p(pc), "r_cortex": numbers.decimals(rc, 2),
            "p_spin": p(ps)} for g, r, pc, rc, ps in genes["top"]]
    sets = [{"set": s["set"].replace("_", " "), "n_genes": s["n_genes"], "score": numbers.decimals(s["score"], 3),
             "p_cbma": p(s["p_cbma"]), "q_cbma": p(s["q_cbma"]), "score_cortex": numbers.decimals(s["score_cortex"], 3),
             "p_spin": p(s["p_spin"]), "q_spin": p(s["q_spin"]), "p_random_genes": p(s["p_random_genes"])}
            for s in genes["sets"]]
    return {**genes, "folder": folder / genes["folder"], "top_rows": top, "set_rows": sets}


def _decoding_entry(folder: Path, decoding: dict | None) -> dict | None:
    """A group's decoding (``review.json``'s ``decoding``) as the template shows it: a row per cluster, the map's
    top terms, warnings, and the folder the figures are drawn from."""
    if not decoding:
        return None
    rows = []
    for c in decoding["clusters"]:
        terms = "; ".join(f"{t} ({numbers.decimals(z, 1)})" for t, z in c.get("terms", [])[:6])
        rows.append({"cluster": c["cluster_id"], "voxels": numbers.integer(c["n_voxels"]),
                     "studies": numbers.integer(c["n_studies"]) if "n_studies" in c else "–",
                     "terms": terms or "none at corrected p < .05 by 5 or more studies",
                     "network": (f"{numbers.integer(c['network_voxels'])} ({c['network_share']:.0%} of the mask)"
                                 if "network_voxels" in c else "–")})
    return {"folder": folder / decoding["folder"], "rows": rows,
            "macm": any("macm_map" in c for c in decoding["clusters"]),
            "map_terms": "; ".join(f"{t} ({numbers.decimals(r, 2)})" for t, r in decoding.get("map_terms", [])),
            "warnings": decoding.get("warnings", []), "decoded": bool(decoding.get("map_terms")) or any(
                "terms" in c for c in decoding["clusters"])}


def _comparison_entry(out: Path, i: int, c: dict, labels: dict, groups: list, stat: str, atlas_titles: dict,
                      settings: dict) -> dict:
    cols = _toml("columns.toml")
    a, b = labels.get(c["a"], c["a"]), labels.get(c["b"], c["b"])
    title = f"{a} minus {b} (contrast)" if c["kind"] == "contrast" else f"{a} and {b} (conjunction)"
    if not c.get("folder"):  # not run: the note says why
        return {**c, "folder": None, "title": title, "label_a": a, "label_b": b, "clusters": None,
                "experiments": [], "overlap_rows": [], "run_text": ""}
    folder = _folder(out, c.get("folder"), f"comparisons[{i}].folder")
    conj = c["kind"] == "conjunction"
    run = None if conj else monte_carlo_run(c, folder, settings)
    table, experiments = cluster_table(folder / "clusters.tsv", "conjunction z" if conj else f"{stat} difference",
                                       atlas_titles, n_null=run["n_iters_run"] if run else None,
                                       hide=("peak_zscore",) if conj else (), kinds={"peak_stat": "z"} if conj else None)
    heading_text = ("Clusters of the conjunction map (voxels significant in both groups) and sub-peaks ≥ 8 mm apart; "
                    "coordinates in MNI mm") if conj else None
    entry = {**c, "folder": folder, "relative": folder.relative_to(out).as_posix(), "label_a": a, "label_b": b,
             "clusters": table, "experiments": experiments, "cluster_heading": heading_text, "title": title,
             "run": run, "run_text": run_text(run, "permutation"),
             "empty_note": "No voxel is significant in both maps." if conj else "No cluster survived FWE correction."}
    if not conj:
        entry["overlap_rows"] = ordered_rows({k: c[k] for k in cols["contrast"] if k in c}, cols["contrast"])
        return entry
    record = _optional_json(folder / "overlap.json")
    numbers_ = c.get("overlap") or record
    entry["map"] = record.get("map")
    shown = {k: v for k, v in (numbers_ or {}).items() if k not in ("a", "b", "method", "map")}
    entry["overlap_rows"] = ordered_rows(shown, cols["overlap"], a=a, b=b)
    by_name = {g["name"]: g for g in groups}
    entry["maps"] = tuple(by_name[n]["main"]["folder"] for n in (c["a"], c["b"]) if n in by_name and by_name[n]["main"])
    return entry


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

    groups = [_group_entry(out, i, g, settings, stat, atlas_titles) for i, g in enumerate(review["groups"])]
    comparisons = [_comparison_entry(out, i, c, labels, groups, stat, atlas_titles, settings)
                   for i, c in enumerate(review.get("comparisons", []))]
    models = [model_entry(out, i, m, labels) for i, m in enumerate(review.get("models", []))]
    record = _optional_json(out / "provenance.json")
    return {
        "review": review,
        "title": review["title"],
        "question": review["question"],
        "version": review.get("neurochange_version", ""),
        "seed": review.get("seed"),
        "settings": settings,
        "stat": stat,
        "settings_rows": ordered_rows(_shown_settings(settings), cols["settings"]),
        "limitations": [str(s) for s in review.get("limitations") or []],
        "flow": flow,
        "exclusions": _exclusions(flow),
        "group_counts": _group_counts(flow, labels),
        "studies_file": review["studies"],
        "studies_frame": studies,
        "studies": studies_table(studies),
        "groups": groups,
        "comparisons": comparisons,
        "models": models,
        "model_columns": list(cols["model_verdict"].values()),
        "verdict_legend": verdict_legend() if models else [],
        "model_comparisons": model_comparison_table(review, labels),
        "atlases": [dict(a) for a in atlases],
        "provenance": provenance_rows(record),
    }


def _exclusions(flow: dict) -> dict:
    columns = ["criterion", "experiments", "studies", "reasons"]
    frame = pd.DataFrame([{"criterion": s.get("criterion", ""), "experiments": str(s.get("experiments", "")),
                           "studies": str(s.get("studies", "")),
                           "reasons": "; ".join(f"{k}: {numbers.cell(v)}" for k, v in (s.get("reasons") or {}).items())}
                          for s in flow.get("excluded", [])], columns=columns)
    return make_table(frame, columns, {"criterion": "Criterion", "experiments": "Experiments excluded",
                                       "studies": "Studies", "reasons": "Values of the excluded records"},
                      kinds={"criterion": "text", "reasons": "text"})


def _group_counts(flow: dict, labels: dict) -> dict:
    from neurochange.report.figures import flow_groups

    frame = pd.DataFrame([{"group": labels.get(n, n), **{k: str(v) for k, v in c.items()
                                                          if not isinstance(v, (dict, list))}}
                          for n, c in flow_groups(flow)])
    return make_table(frame, ["group", "experiments", "studies", "foci"],
                      {"group": "Group", "experiments": "Experiments", "studies": "Studies", "foci": "Foci"},
                      kinds={"group": "text"})
