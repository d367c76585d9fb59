"""The one-page summary of a single analysis folder (``neurochange ale``, ``mkda``, ``kda``, ``contrast``).

``write_analysis_page(folder)`` draws ``figure.png`` (:mod:`neurochange.report.figures`; for a signed
analysis ``figure_signed.png`` and each direction's ``figure.png``) and writes ``report.html`` from
``resources/report/analysis.html.j2``: what was analysed, the warnings, the figure, the cluster
tables and the settings, every number read from the folder's files (``provenance.json``,
``clusters*.tsv``). Like the review's report it is one self-contained file (inline PNG and CSS)
whose bytes depend only on the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from neurochange import __version__
from neurochange.report import figures
from neurochange.report.context import report_resource
from neurochange.report.html import REPORT_NAME, _environment, _image
from neurochange.results.outdir import atomic_file

#: Columns of a cluster table shown on the page, and their headings.
CLUSTER_COLUMNS = {"cluster_id": "cluster", "peak_x": "x", "peak_y": "y", "peak_z": "z", "size_vox": "voxels",
                   "size_mm3": "mm³", "peak_stat": "peak", "peak_zscore": "z", "p_fwe": "FWE p",
                   "n_experiments": "experiments", "label_harvard_oxford": "Harvard-Oxford label"}
TITLES = {"ale": "ALE meta-analysis", "mkda": "MKDA density meta-analysis", "kda": "KDA meta-analysis",
          "contrast": "ALE subtraction (A minus B)"}


def _what(name: str, settings: dict) -> str:
    """What the clusters of the table ``name`` are."""
    if name == "clusters_corr-FDR.tsv":
        return f"voxels at FDR q < {settings.get('fdr')}, every cluster"
    if name == "clusters_corr-none.tsv":
        return f"voxels at uncorrected p < {settings.get('uncorrected_p')} (exploratory), every cluster"
    level = "voxel-level" if settings.get("vfwe_only") else "cluster-level"
    return f"{level} FWE p < {settings.get('cluster_p', 0.05)}"


def _clusters(path: Path, settings: dict) -> dict | None:
    """A cluster table for the template: headings and rows (main peaks, sub-peaks marked), or None if absent."""
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t")
    columns = [c for c in CLUSTER_COLUMNS if c in table.columns]
    rows = [{"cells": ["" if pd.isna(r[c]) else (f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]) for c in columns],
             "subpeak": bool(r.get("is_subpeak", False))} for _, r in table.iterrows()]
    return {"file": path.name, "what": _what(path.name, settings),
            "headings": [CLUSTER_COLUMNS[c] for c in columns], "rows": rows,
            "n": int(table["cluster_id"].nunique()) if len(table) else 0}


def _analyses(folder: Path, record: dict) -> list[dict]:
    """The analyses of the folder with their figure and tables: one, or one per direction of a signed run."""
    subfolders = sorted(p for p in folder.glob("dir-*_est-*") if p.is_dir())
    parts = [(p, p.name.split("_")[0].removeprefix("dir-")) for p in subfolders] or [(folder, "")]
    out = []
    for path, direction in parts:
        if record["command"] == "contrast":
            drawn, (_, what) = figures.contrast_figure(path, "A minus B"), figures.contrast_map(path)
        else:
            drawn, (_, what) = figures.analysis_figure(path, direction or "convergence"), figures.analysis_map(path)
        tables = [_clusters(t, record.get("settings", {})) for t in sorted(path.glob("clusters*.tsv"))]
        out.append({"direction": direction, "figure": _image(drawn, what, what, folder),
                    "tables": [t for t in tables if t is not None],
                    "report": (path / "clusters.txt").relative_to(folder).as_posix()
                    if (path / "clusters.txt").is_file() else None})
    return out


def _counts(record: dict) -> list[str]:
    """Sentences on what entered the analysis, from ``provenance.json``."""
    params = record.get("params", {})
    if record["command"] == "contrast":
        counts = params.get("counts", {})
        return [f"{g}: {c.get('experiments', 0):,} experiments, {c.get('foci', 0):,} foci" for g, c in counts.items()]
    if "directions" in record:
        return [f"{d}: {c.get('experiments', 0):,} experiments" for d, c in record["directions"].items()
                if d != "left_out"]
    c = params.get("counts", {})
    return [f"{c.get('experiments', 0):,} experiments, {c.get('foci', 0):,} foci, "
            f"{c.get('subjects') or 'unknown'} subjects"]


def render_analysis_page(folder: str | Path) -> str:
    """The HTML of ``report.html`` for the analysis folder ``folder`` (draws its figures)."""
    folder = Path(folder)
    record = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    command = record["command"].split()[0]
    inputs = record.get("input", {})
    files = [v for k, v in inputs.items() if k.startswith("file") or k.startswith("group")]
    settings = {k: v for k, v in record.get("settings", {}).items() if v is not None and not isinstance(v, dict)}
    ctx = {
        "title": f"{TITLES.get(command, command)} of {' and '.join(map(str, files))}",
        "command": record["command"],
        "counts": _counts(record),
        "warnings": record.get("warnings", []),
        "predicted": record.get("params", {}).get("predicted_thresholds"),
        "pooled": record.get("pooled"),
        "analyses": _analyses(folder, record),
        "settings": settings,
        "seed": settings.get("seed"),
        "version": __version__,
        "css": report_resource("report.css").read_text(encoding="utf-8"),
    }
    return _environment().get_template("analysis.html.j2").render(**ctx)


def write_analysis_page(folder: str | Path) -> Path:
    """Write ``folder/report.html`` (and the figures it shows); return its path."""
    folder = Path(folder)
    html = render_analysis_page(folder)
    with atomic_file(folder / REPORT_NAME, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(html)
    return folder / REPORT_NAME
