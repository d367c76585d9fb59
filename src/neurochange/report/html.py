"""The review report: one self-contained HTML file written beside the results it describes.

``write_report(out)`` draws the figures (:mod:`neurochange.report.figures`), reads the folder
(:mod:`neurochange.report.context`), writes the methods paragraph from
``resources/report/methods.txt.j2`` with citations from ``references.bib``, and renders
``resources/report/report.html.j2`` over the sections listed in ``sections.toml``. Images are
inline base64 PNGs and the CSS is inline: the file opens from disk with no network. Nothing in
it depends on the time or the machine, so the same folder gives the same bytes.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import tomllib
from pathlib import Path
from urllib.parse import quote

import jinja2

from neurochange.report import figures, numbers
from neurochange.report.context import report_resource, review_context
from neurochange.results.outdir import atomic_file
from neurochange.sources import references

REPORT_NAME = "report.html"
FLOW_FIGURE = "flow.png"


#: The figure of a group's increases and decreases, drawn into its main folder.
SIGNED_FIGURE = "figure_signed.png"
PANELS = "Glass brain (top) and axial slices on the MNI152 template (bottom); L = left."


def _image(path: Path, caption: str, alt: str, out: Path, maps=()) -> dict:
    """An inline image for the template: base64 data, pixel size (from the PNG header), caption, and links to
    the NIfTI ``maps`` it shows (relative to the results folder ``out``)."""
    data = Path(path).read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    links = [{"text": Path(m).relative_to(out).as_posix(), "href": quote(Path(m).relative_to(out).as_posix())}
             for m in maps]
    return {"data": base64.b64encode(data).decode("ascii"), "width": width, "height": height,
            "caption": caption, "alt": alt, "links": links}


def draw_figures(ctx: dict, out: Path) -> None:
    """Attach every figure of the report to ``ctx``: flow.png (drawn), each analysis folder's figure.png
    (drawn when the analysis did not write one) and, per signed group, its increases and decreases on one
    diverging colour map (``figure_signed.png`` in the group's folder)."""
    labels = {g["name"]: g["label"] for g in ctx["groups"]}
    path = figures.flow_figure(out / ctx["review"]["flow"], out / FLOW_FIGURE, labels=labels)
    ctx["flow_figure"] = _image(path, "Study flow (PRISMA-style): records identified, removed, screened, "
                                      "excluded by criterion, included, and experiments per group.", "study flow", out)
    for g in ctx["groups"]:
        if g["main"]:
            a = g["main"]
            path = _drawn(a["folder"] / "figure.png", lambda a=a: figures.analysis_figure(a["folder"], a["title"]))
            _, what = figures.analysis_map(a["folder"])
            a["figure"] = _image(path, f"{a['title']}: {what}. {PANELS}", a["title"], out,
                                 figures.analysis_sources(a["folder"]))
        if g["signed_analyses"]:
            g["signed_figure"] = _signed_image(g, out, ctx["settings"].get("cluster_p") or 0.05)
        if g.get("decoding"):
            _decoding_images(g, out)
        if g.get("genes"):
            folder = g["genes"]["folder"]
            path = _drawn(folder / "gene_sets.png", lambda folder=folder, g=g: figures.gene_set_figure(
                folder / "gene_set_nulls.tsv", folder / "gene_sets.tsv", folder / "gene_sets.png",
                f"{g['label']}: gene sets against their nulls"))
            g["genes"]["figure"] = _image(path, f"{g['label']}: each gene set's score (mean Spearman r of its genes "
                                                "with the map across regions; line) against the same score over "
                                                "the CBMA's null maps (all regions) and over rotations of the "
                                                "cortex (spin test; cortical regions).", "gene sets", out)
    for c in ctx["comparisons"]:
        if c["folder"] is None:
            continue
        if c["kind"] == "contrast":
            p = float(ctx["settings"].get("cluster_p") or 0.05)
            path = _drawn(c["folder"] / "figure.png", lambda c=c, p=p: figures.contrast_figure(c["folder"], c["title"], p))
            _, what = figures.contrast_map(c["folder"], p)
            caption = f"{c['title']}: {what}; warm: {c['label_a']} > {c['label_b']}, cool: {c['label_b']} > " \
                      f"{c['label_a']}."
            maps = figures.contrast_sources(c["folder"])
        else:
            if len(c["maps"]) != 2:
                raise_missing(c)
            map_a, map_b = (_conjunction_input(c, folder) for folder in c["maps"])
            path = _drawn(c["folder"] / "figure.png", lambda c=c, map_a=map_a, map_b=map_b: figures.overlap_figure(
                map_a, map_b, c["folder"] / "figure.png", labels=(c["label_a"], c["label_b"]), title=c["title"]))
            caption = f"{c['title']}: significant voxels of {map_a.name.removesuffix('.nii.gz')} in " \
                      f"{c['label_a']} only, {c['label_b']} only, or both (the glass brain shows, along each line of " \
                      f"sight, both over {c['label_b']} only over {c['label_a']} only; the slices show every voxel)."
            maps = [m for m in (map_a, map_b, *sorted(c["folder"].glob("z_desc-conjunction*.nii.gz"))) if m.is_file()]
        c["figure"] = _image(path, caption, c["title"], out, maps)


def _signed_image(group: dict, out: Path, cluster_p: float) -> dict:
    """The figure of a signed group: increases warm, decreases cool, on one diverging colour map."""
    folders = {a["direction"]: a["folder"] for a in group["signed_analyses"]}
    title = group["signed_title"]
    path = _drawn(group["main"]["folder"] / SIGNED_FIGURE, lambda: figures.signed_figure(
        folders.get("increase"), folders.get("decrease"), group["main"]["folder"] / SIGNED_FIGURE, title))
    _, n_both = figures.signed_map(folders.get("increase"), folders.get("decrease"))
    shown = " and ".join(f"{d}s" for d in folders)
    caption = (f"{title}: z of {shown} where each direction's own analysis is FWE-significant (clusters with "
               f"FWE p < {numbers.threshold(cluster_p)}); increases warm (positive), decreases cool (negative)"
               + (f"; {numbers.count(n_both, 'voxel')} significant in both directions show the larger z" if n_both
                  else "") + f". {PANELS}")
    maps = [m for f in folders.values() for m in figures.analysis_sources(f)]
    return _image(path, caption, title, out, maps)


def _decoding_images(group: dict, out: Path) -> None:
    """The bars of each cluster's top terms and the glass brains of its coactivation network."""
    d, label = group["decoding"], group["label"]
    folder = d["folder"]
    if (folder / "cluster_terms.tsv").is_file():
        path = _drawn(folder / "terms.png", lambda: figures.terms_figure(
            folder / "cluster_terms.tsv", folder / "terms.png", f"{label}: terms of each cluster's studies"))
        d["terms_figure"] = _image(path, f"{label}: for each cluster, the terms most associated with the studies "
                                         "that report a focus in it (association z; corrected p < .05, terms "
                                         "labelling 5 or more of those studies).", "cluster terms", out)
    if d["macm"]:
        clusters = [int(r["cluster"]) for r in d["rows"] if (folder / f"macm_cluster-{r['cluster']}.nii.gz").is_file()]
        path = _drawn(folder / "macm.png", lambda: figures.macm_figure(
            folder, clusters, folder / "macm.png", f"{label}: coactivation network of each cluster"))
        d["macm_figure"] = _image(path, f"{label}: where the studies reporting a focus in each cluster report foci "
                                        "more often than the other studies (MKDA chi-square association z, "
                                        "positive at FDR q < .05). Coactivation across tasks, not resting-state "
                                        "connectivity.", "coactivation networks", out,
                                  [folder / f"macm_cluster-{c}.nii.gz" for c in clusters])


def _drawn(path: Path, draw) -> Path:
    """``path`` if the analysis already wrote its figure, else the figure ``draw()`` writes."""
    return path if path.is_file() else draw()


def _conjunction_input(comparison: dict, folder: Path) -> Path:
    """The map of a group folder that the conjunction read (overlap.json's ``map``, else the figure's map)."""
    name = comparison.get("map")
    if name:
        return folder / f"{name.removesuffix('.nii.gz')}.nii.gz"
    path, _ = figures.analysis_map(folder)
    return path if path is not None else folder / f"{figures.CLUSTER_MAP}.nii.gz"


def raise_missing(comparison: dict) -> None:
    from neurochange.errors import InputError

    raise InputError(f"comparison {comparison['name']} names a group that is not in groups",
                     file="review.json", field="comparisons")


# --------------------------------------------------------------------------- methods and references
class Citations:
    """Collects the bibliography keys a text cites, in first-cited order."""

    def __init__(self):
        self.keys: list[str] = []

    def __call__(self, *keys: str) -> str:
        """``(Turkeltaub et al., 2002; Eickhoff et al., 2009, 2012)`` for ``keys``; records them."""
        return "(" + self.inner(*keys) + ")"

    def inner(self, *keys: str) -> str:
        """The citation without parentheses; consecutive works of the same authors share their names."""
        parts: list[list[str]] = []
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
            who, year = references.cite(key).rsplit(", ", 1)
            if parts and parts[-1][0] == who:
                parts[-1].append(year)
            else:
                parts.append([who, year])
        return "; ".join(f"{p[0]}, {', '.join(p[1:])}" for p in parts)


#: Databases whose experiments are whole papers (all tables pooled), by their source name in studies.tsv.
DATABASES = {"neurosynth": "Neurosynth", "neuroquery": "NeuroQuery"}
#: Number formats the templates use as filters: ``{{ n | integer }}``, ``{{ n | count("study", "studies") }}``.
FILTERS = {"integer": numbers.integer, "count": numbers.count, "percent": numbers.percent,
           "threshold": numbers.threshold, "share": lambda v: numbers.decimals(v, 2),
           "mm": lambda v: numbers.decimals(v, 2)}


def _databases(studies, tables: bool = False) -> dict:
    """How many included experiments came from each database: whole papers with pooled tables, or
    (``tables``) single tables (ids ``<study>-<source>-table-<table_id>``)."""
    if "source" not in studies:
        return {}
    is_table = studies["experiment_id"].astype(str).str.contains("-table-", regex=False)
    counts = studies.loc[is_table == tables, "source"].value_counts()
    return {name: int(counts[key]) for key, name in DATABASES.items() if key in counts}


def _curated_database_records(studies) -> dict:
    """Of the included database experiments: how many carry a direction (increase/decrease) and a sample size."""
    if "source" not in studies:
        return {"signed": 0, "sized": 0}
    db = studies[studies["source"].isin(list(DATABASES))]
    signed = db["direction"].isin(["increase", "decrease"]).sum() if "direction" in db else 0
    sized = db["n"].notna().sum() if "n" in db else 0
    return {"signed": int(signed), "sized": int(sized)}


def _runs(ctx: dict) -> list[dict]:
    """Every Monte Carlo run of the review (groups, signed analyses, contrasts): label, iterations, stop."""
    runs = []
    for g in ctx["groups"]:
        for a in [g["main"], *g["signed_analyses"]] if g["main"] else []:
            if a["run"]:
                runs.append({"label": g["label"] + (f", {a['direction']}s" if a.get("direction") else ""), **a["run"]})
    for c in ctx["comparisons"]:
        if c.get("run"):
            runs.append({"label": c["title"], "unit": "permutation", **c["run"]})
    return runs


def _verdict_rules(models: list[dict]) -> dict | None:
    """The verdict thresholds (shares, alpha) when every tested model uses the same ones, else None."""
    keys = ("supported_share", "partly_share", "contradicted_share", "alpha")
    found = {tuple(m.get("summary", {}).get(k) for k in keys) for m in models if m.get("summary", {}).get("alpha")}
    return dict(zip(keys, found.pop())) if len(found) == 1 else None


def methods_text(ctx: dict, cite: Citations) -> list[str]:
    """The methods paragraphs (plain text) from ``methods.txt.j2`` and the folder's settings."""
    review = ctx["review"]
    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    env.filters.update(FILTERS)
    template = env.from_string(report_resource("methods.txt.j2").read_text(encoding="utf-8"))
    model_refs = list(dict.fromkeys(k for m in review.get("models", []) for k in m.get("references", [])))
    atlas_refs = list(dict.fromkeys(k for a in review.get("atlases", []) for k in atlas_keys(a)))
    analysed = [g for g in ctx["groups"] if g["main"]]
    run = [c for c in ctx["comparisons"] if c["folder"] is not None]
    tested = [m for m in review.get("models", []) if m.get("table")]
    text = template.render(
        runs=_runs(ctx),
        databases=_databases(ctx["studies_frame"]),
        database_tables=_databases(ctx["studies_frame"], tables=True),
        database_curated=_curated_database_records(ctx["studies_frame"]),
        n_included=len(ctx["studies_frame"]),
        unsigned_groups=[g["label"] for g in analysed if not g.get("signed")],
        verdict_rules=_verdict_rules(tested),
        model_iters=sorted({m["n_null"] for m in ctx["models"] if m.get("n_null")}),
        specificity=[m["specificity"] for m in review.get("models", []) if m.get("specificity")],
        model_comparisons=review.get("model_comparisons") or [],
        settings=_Attr(ctx["settings"]),
        flow=ctx["flow"],
        coordinates=review.get("coordinates"),
        groups=analysed,
        signed_groups=[g["label"] for g in analysed if g.get("signed")],
        underpowered=[g["label"] for g in analysed if g.get("underpowered")],
        contrasts=[c["title"].removesuffix(" (contrast)") for c in run if c["kind"] == "contrast"],
        conjunctions=[c["title"].removesuffix(" (conjunction)") for c in run if c["kind"] == "conjunction"],
        models=review.get("models", []),
        model_refs=model_refs,
        atlases=review.get("atlases", []),
        atlas_refs=atlas_refs,
        atlas_cites=[(a.get("title", a["name"]), atlas_keys(a)) for a in review.get("atlases", [])],
        version=ctx["version"],
        seed=ctx["seed"],
        cite=cite,
    )
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return [p for p in paragraphs if p]


def atlas_keys(atlas: dict) -> list[str]:
    """Bibliography keys of an atlas entry: its ``citations`` list, else its ``citation``."""
    return list(atlas.get("citations") or ([atlas["citation"]] if atlas.get("citation") else []))


class _Attr(dict):
    """A dict whose missing keys read as None in templates (settings may omit optional entries)."""

    def __getattr__(self, name):
        return self.get(name)


def reference_list(keys: list[str]) -> list[dict]:
    """Full references of ``keys``, sorted by first author and year: text, DOI, URL."""
    bib = references.load_bib()
    entries = []
    for key in dict.fromkeys(keys):
        text = references.reference(key)
        doi, url = bib[key].get("doi"), bib[key].get("url")
        for link in (f" https://doi.org/{doi}" if doi else None, f" {url}" if url else None):
            if link and text.endswith(link):
                text = text[: -len(link)]
        entries.append({"key": key, "text": text, "doi": doi, "url": url})
    return sorted(entries, key=lambda e: (e["text"].lower(), e["key"]))


# --------------------------------------------------------------------------- the page
def _environment() -> jinja2.Environment:
    def load(name: str):
        source = report_resource(name)
        if not source.is_file():
            return None
        return source.read_text(encoding="utf-8"), None, lambda: True

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


def sections(ctx: dict) -> list[dict]:
    """The sections of ``sections.toml`` whose ``show_if`` entry (if any) is non-empty in ``ctx``."""
    listed = tomllib.loads(report_resource("sections.toml").read_text(encoding="utf-8"))["section"]
    return [s for s in listed if not s.get("show_if") or ctx.get(s["show_if"])]


def render_report(out: str | Path) -> str:
    """The report's HTML for the results folder ``out`` (draws the figures into the folder)."""
    out = Path(out)
    ctx = review_context(out)
    draw_figures(ctx, out)
    cite = Citations()
    ctx["methods"] = methods_text(ctx, cite)
    for m in ctx["models"]:
        m["citations"] = cite.inner(*m["references"]) if m.get("references") else ""
    for a in ctx["atlases"]:
        a["citation"] = cite.inner(*atlas_keys(a)) if atlas_keys(a) else ""
    ctx["references"] = reference_list(cite.keys + list(ctx["review"].get("references", [])))
    ctx["sections"] = sections(ctx)
    ctx["css"] = report_resource("report.css").read_text(encoding="utf-8")
    return _environment().get_template("report.html.j2").render(**ctx)


def write_report(out: str | Path) -> Path:
    """Write ``out/report.html`` (and the figures it shows) from the results folder ``out``; return its path."""
    out = Path(out)
    html = render_report(out)
    path = out / REPORT_NAME
    with atomic_file(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(html)
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)  # readable like any file the user writes (the temporary file was 0600)
    return path
