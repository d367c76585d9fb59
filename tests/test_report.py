"""The review report: figures and report.html from a review-like results folder.

The fixture builds a small results folder the way ``neurochange review`` lays it out
(notes/review_layout.md): neurochange's own ALE on NiMARE's pain set (all experiments and two
halves, 300 Monte Carlo iterations), a contrast and a conjunction of the halves, a
``review.json``, ``flow.json``, ``studies.tsv``, a model table and ``provenance.json``. The
model table and the flow counts are made up for the test (the report only prints them).
The review.json fields a newer review writes (limitations, a group's ``montecarlo`` record, model
``specificity``, ``model_comparisons``, the unsigned verdicts) are made up too. The rendered page is
opened in Debian's chromium, headless: every figure must decode and no cluster table may scroll
sideways at 1280 px.
"""

from __future__ import annotations

import hashlib
import html as html_module
import json
import re
import shutil
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from browser import chromium, chromium_images, horizontal_overflow
from workflow_helpers import analysis_folder, conjunction_folder, contrast_folder

from neurochange.errors import InputError
from neurochange.meta.kernels import fwhm_from_sample_size
from neurochange.report import figures, numbers, write_report
from neurochange.results import atlas
from neurochange.results.provenance import sha256_file, write_json
from neurochange.sources.io import read_studyset, write_studyset

N_ITERS = 300
#: What the made-up settings requested (the "pain" group stopped early at N_ITERS, as its montecarlo record says).
MAX_ITERS = 1000
MODEL_ITERS = 2000
PMID = 12345670
LIMITATIONS = ["Database experiments pool all the tables of a paper, whatever their contrast.",
               "No experiment from the databases carries a sign or a sample size."]
SPECIFICITY = {"statistic": 2.3456789, "null_mean": 0.0123456, "p": 0.0123456, "n_placements": 500,
               "note": "mean standardized convergence over the model's regions against the same regions moved"}
COMPARISON = {"group": "pain", "a": "pain_matrix", "b": "other_model", "difference": 0.456789, "ci_low": -0.0456789,
              "ci_high": 0.98765, "p": 1 / 2001, "n_boot": 2000, "note": "95 % percentile bootstrap interval"}


def build_review(out: Path, pain_json: Path) -> Path:
    """A review-like results folder in ``out`` (see the module docstring); returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    studyset = read_studyset(pain_json)
    ids = sorted(studyset.experiments["experiment_id"])
    inputs = out / "inputs"
    inputs.mkdir()
    write_studyset(studyset.filter_experiments(ids[:10]), inputs / "a.json")
    write_studyset(studyset.filter_experiments(ids[10:]), inputs / "b.json")
    runs = {"pain": pain_json, "pain_a": inputs / "a.json", "pain_b": inputs / "b.json",
            "pain_dir-increase": inputs / "b.json", "pain_dir-decrease": inputs / "a.json"}
    clusters = {}
    for name, path in runs.items():
        _, cluster_table = analysis_folder(path, out / f"{name}_est-ale", n_iters=N_ITERS, seed=7, n_cores=1)
        table_path = out / f"{name}_est-ale" / "clusters.tsv"
        table = pd.read_csv(table_path, sep="\t")
        if not any(c.startswith("label_") for c in table.columns):
            table = atlas.add_labels(table)
        if name == "pain":  # a diagnostics column, as a diagnostics step would add it
            table["jackknife_min_share"] = np.round(np.linspace(0.5, 1.0, len(table)), 3)
        table.to_csv(table_path, sep="\t", index=False, float_format="%.6g")
        clusters[name] = cluster_table
    contrast_folder(inputs / "a.json", inputs / "b.json", out / "pain_a_vs_pain_b_contrast", n_iters=N_ITERS, seed=7,
                    n_cores=1)
    record = conjunction_folder(out / "pain_a_est-ale", out / "pain_b_est-ale", out / "pain_a_and_pain_b_conjunction")
    record.update(a="pain_a_est-ale", b="pain_b_est-ale")
    write_json(out / "pain_a_and_pain_b_conjunction" / "overlap.json", record)

    (out / "models").mkdir()
    pd.DataFrame({"region": ["insula", "thalamus", "amygdala"], "definition": ["harvard_oxford: Insular_Cortex"] * 3,
                  "predicted_direction": ["increase", "increase", "decrease"], "n_voxels": [1520, 1400, 380],
                  "voxels_significant": [210, 64, 0], "observed": [0.0123456, 0.00456789, 0.000987654],
                  "p": [1 / (MODEL_ITERS + 1), 0.0123456, 0.4567], "p_holm": [3 / (MODEL_ITERS + 1), 0.0246912, 0.4567],
                  "converges": [True, True, False]}).to_csv(
        out / "models" / "pain_matrix_pain.tsv", sep="\t", index=False, float_format="%.10g")
    summary = {"regions_tested": 3, "regions_converging": 2, "share_converging": 0.6666666666666666,
               "alpha": 0.05, "supported_share": 0.5, "partly_share": 0.2, "contradicted_share": 0.5}
    for stem in ("pain_matrix_pain", "pain_matrix_pain_a"):
        write_json(out / "models" / f"{stem}.json", {"summary": summary, "verdict": "supported",
                                                      "params": {"n_iters": MODEL_ITERS}})
    shutil.copy(out / "models" / "pain_matrix_pain.tsv", out / "models" / "pain_matrix_pain_a.tsv")

    experiments = pd.read_csv(out / "pain_est-ale" / "experiments.tsv", sep="\t")
    in_a = set(ids[:10])
    k = len(experiments)
    studies = pd.DataFrame({
        "experiment_id": experiments["experiment_id"],
        # the first three carry PMIDs, three carry DOIs, the first five came from a database
        "study_id": [str(PMID + i) if i < 3 else e.split("-")[0] for i, e in enumerate(experiments["experiment_id"])],
        "doi": [f"10.1000/pain.{i}" if 2 <= i < 5 else "" for i in range(k)],
        "source": ["neurosynth" if i < 5 else "pain.json" for i in range(k)],
        "title": [f"Pain study {i + 1}" for i in range(k)], "year": 2000 + np.arange(k),
        "n": experiments["n"], "modality": "other", "disorder": "healthy", "design": "acute_challenge",
        "direction": "unknown",
        "groups": ["pain,pain_a" if e in in_a else "pain,pain_b" for e in experiments["experiment_id"]]})
    studies.to_csv(out / "studies.tsv", sep="\t", index=False)
    flow = {"query": "imaging=task_fmri", "preferred_source": "neurosynth",
            "identified": {"experiments": 40, "studies": 35, "by_source": {"pain.json": 21, "neurosynth": 19}},
            "duplicates_removed": {"experiments": 5, "studies": 5, "reason": "study also in another source"},
            "screened": {"experiments": 35, "studies": 35},
            "excluded": [{"criterion": "imaging=task_fmri", "experiments": 14, "studies": 14,
                          "reasons": {"imaging=resting_fmri": 9, "imaging=structural": 5}}],
            "included": {"experiments": 21, "studies": 21, "by_source": {"pain.json": 21}, "foci": 243},
            "groups": {"pain": {"experiments": 19, "studies": 19, "foci": 243},
                       "pain_a": {"experiments": 8, "studies": 8, "foci": 123},
                       "pain_b": {"experiments": 11, "studies": 11, "foci": 120}}}
    write_json(out / "flow.json", flow)

    def group(name, label, n, n_foci, signed=False):
        folders = {d: f"{name}_dir-{d}_est-ale" if signed else None for d in ("increase", "decrease")}
        return {"name": name, "label": label, "query": f"group={name}", "n_experiments": n, "n_studies": n,
                "n_foci": n_foci, "n_increase": 11 if signed else 0, "n_decrease": 8 if signed else 0,
                "n_unsigned": n - (19 if signed else 0), "signed": signed, "underpowered": n < 17,
                "folder": f"{name}_est-ale", "signed_folders": folders, "n_iters_run": N_ITERS,
                "n_clusters": int(clusters[name]["cluster_id"].nunique()) if len(clusters[name]) else 0,
                "note": ""}

    review = {
        "title": "Where does pain converge? (report test)",
        "question": "Which regions do painful stimulation studies report consistently?",
        "neurochange_version": "0.1.0", "seed": 7,
        "settings": {"estimator": "ale", "fwhm": float(fwhm_from_sample_size(20)), "sample_size": 20,
                     "n_iters": MAX_ITERS, "early_stop": 0.1, "cluster_forming_p": 0.001, "cluster_p": 0.05,
                     "null_mask": "brain", "min_experiments": 17, "keep_contrasts": False, "diagnostics_iters": 500,
                     "corpus": "NiMARE's pain test set", "selection": "imaging=task_fmri",
                     "space": "MNI152 2 mm (NiMARE ALE mask)"},
        "limitations": LIMITATIONS,
        "flow": "flow.json", "studies": "studies.tsv",
        "groups": [{**group("pain", "Pain (all)", 19, 243, signed=True),  # stopped early (made up: it ran 300)
                    "montecarlo": {"n_iters_requested": MAX_ITERS, "n_iters_run": N_ITERS, "stopped_early": True,
                                   "precision": 0.1}},
                   group("pain_a", "Pain A", 8, 123), group("pain_b", "Pain B", 11, 120),
                   {"name": "pain_tiny", "label": "Pain (tiny)", "query": "group=pain_tiny", "n_experiments": 2,
                    "n_studies": 2, "n_foci": 20, "n_increase": 0, "n_decrease": 0, "n_unsigned": 2, "signed": False,
                    "underpowered": True, "folder": None, "signed_folders": {"increase": None, "decrease": None},
                    "n_clusters": 0, "note": "not analysed: 2 experiment(s) with foci (at least 5 needed)"}],
        "comparisons": [
            {"name": "pain_a_vs_pain_b", "kind": "contrast", "a": "pain_a", "b": "pain_b",
             "folder": "pain_a_vs_pain_b_contrast", "n_clusters": 0},
            {"name": "pain_a_and_pain_b", "kind": "conjunction", "a": "pain_a", "b": "pain_b",
             "folder": "pain_a_and_pain_b_conjunction", "n_clusters": record["clusters"],
             "overlap": {k: record[k] for k in ("voxels_a", "voxels_b", "voxels_both", "dice", "share_a_in_b",
                                                 "share_b_in_a")}},
            {"name": "pain_a_vs_pain_tiny", "kind": "contrast", "a": "pain_a", "b": "pain_tiny", "folder": None,
             "n_clusters": 0, "note": "not run: a group was not analysed"}],
        "models": [{"name": "pain_matrix", "title": "Pain matrix", "group": "pain", "verdict": "supported",
                    "basis": "signed", "table": "models/pain_matrix_pain.tsv", "summary": summary,
                    "references": ["wager2009"], "specificity": SPECIFICITY},
                   {"name": "pain_matrix", "title": "Pain matrix", "group": "pain_a",
                    "verdict": "convergence where predicted, direction untested", "basis": "unsigned",
                    "table": "models/pain_matrix_pain_a.tsv", "summary": summary, "references": ["wager2009"]}],
        "model_comparisons": [COMPARISON],
        "atlases": [{k: a[k] for k in ("name", "title", "licence", "citation")} for a in atlas.atlas_info()],
        "references": ["eickhoff2016"],
    }
    write_json(out / "review.json", review)
    write_json(out / "provenance.json", {"seed": 7, "versions": {"neurochange": "0.1.0", "numpy": np.__version__},
                                         "inputs": {"pain.json": {"sha256": sha256_file(pain_json)}}})
    return out


@pytest.fixture(scope="module")
def review_folder(tmp_path_factory, nimare_test_data) -> Path:
    out = build_review(tmp_path_factory.mktemp("review") / "out", nimare_test_data / "test_pain_dataset.json")
    write_report(out)
    return out


class _Page(HTMLParser):
    """Tags, attributes and table text of an HTML page."""

    def __init__(self):
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.cells: list[str] = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _text(fragment: str) -> str:
    return html_module.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def _section(html: str, anchor: str, end: str = "<h3") -> str:
    """The HTML from the element with id ``anchor`` to the next ``end`` (the next group's heading)."""
    start = html.index(f'id="{anchor}"')
    stop = html.find(end, start + 10)
    return html[start:stop if stop > 0 else None]


def _cluster_tables(fragment: str) -> list[dict]:
    """Every cluster table of ``fragment``: headings and rows (cells of the row, text folded under it)."""
    tables = []
    for table in re.findall(r'<table class="clusters">(.*?)</table>', fragment, flags=re.DOTALL):
        header = [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table, flags=re.DOTALL)]
        rows = []
        for block in re.findall(r'<tbody class="row[^"]*">(.*?)</tbody>', table, flags=re.DOTALL):
            trs = re.findall(r"<tr[^>]*>(.*?)</tr>", block, flags=re.DOTALL)
            rows.append({"cells": dict(zip(header, (_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", trs[0],
                                                                                   flags=re.DOTALL)))),
                         "fold": _text(trs[1]) if len(trs) > 1 else ""})
        tables.append({"header": header, "rows": rows})
    return tables


def _agrees(shown: str, exact, n_null: int | None = None) -> bool:
    """Whether a printed number is the file's ``exact`` value rounded as printed: as many decimals as the text
    shows; a Monte Carlo p at its floor as the smallest one-digit bound at or above 1 / (n_null + 1)."""
    from decimal import Decimal

    text = shown.replace(",", "").replace("±", "").replace("%", "").strip()
    if text[:1] in "<≤":
        bound, floor = Decimal(text[1:].strip()), Decimal(1) / Decimal(n_null + 1)
        unit = Decimal(1).scaleb(bound.adjusted())
        one_digit = bound == bound.quantize(unit)
        below = bound - unit if bound != unit else Decimal(9) * unit / 10  # the next smaller one-digit number
        smallest = below < floor <= bound
        return (float(exact) * n_null <= 1 + 1e-6 and one_digit and smallest
                and (text[0] == "<") == (bound > floor))
    scale = 100 if shown.endswith("%") else 1
    places = len(text.split(".")[1]) if "." in text else 0
    return round(float(exact) * scale, places) == float(text)


CLUSTER_COLUMNS = {"Cluster": "cluster_id", "x": "peak_x", "y": "peak_y", "z": "peak_z", "Voxels": "size_vox",
                   "Volume (mm³)": "size_mm3", "Peak ALE": "peak_stat", "Peak ALE difference": "peak_stat",
                   "Peak z": "peak_zscore", "p (FWE)": "p_fwe", "Experiments": "n_experiments",
                   "Jackknife min share": "jackknife_min_share"}


# --------------------------------------------------------------------------- numbers
def test_numbers_are_rounded_to_what_they_claim():
    assert numbers.decimals(9.241242951547518, 2) == "9.24" and numbers.decimals(0.13695219123505975, 2) == "0.14"
    assert numbers.significant(0.0540405) == "0.0540" and numbers.significant(0.00995025, 2) == "0.010"
    assert numbers.integer(12345.0) == "12,345" and numbers.cell("3176", "integer") == "3,176"
    assert numbers.cell("8.7656", "z") == "8.77" and numbers.cell("-40", "coordinate") == "-40"
    # p: Monte Carlo floors print as the smallest one-digit bound at or above 1 / (n + 1)
    assert numbers.p_value(1 / 2001, 2000) == "< 0.0005" and numbers.p_value(1 / 3001, 3000) == "< 0.0004"
    assert numbers.p_value(1 / 2000, 2000) == "< 0.0005"  # NiMARE clips corrected p at 1 / n
    assert numbers.p_value(1 / 2000, 1999) == "≤ 0.0005"  # the bound is the floor itself: not "<"
    assert numbers.p_value(0.0123456, 2000) == "0.012" and numbers.p_value(0.37, 2000) == "0.37"
    assert numbers.p_value(0.0999) == "0.10" and numbers.p_value(1.0) == "1.00" and numbers.p_value(0.005) == "0.0050"
    assert numbers.cell("True") == "yes" and numbers.cell(None) == "none" and numbers.cell("pre_post") == "pre_post"
    assert [numbers.count(n, "cluster") for n in (0, 1, 2)] == ["0 clusters", "1 cluster", "2 clusters"]
    assert numbers.count(1, "study", "studies") == "1 study" and numbers.count(12000, "focus", "foci") == "12,000 foci"
    for shown, exact, n in (("9.24", 9.241242951547518, None), ("< 0.0005", 1 / 2001, 2000), ("3,176", 3176, None),
                            ("±10 %", 0.1, None)):
        assert _agrees(shown, exact, n)
    assert not _agrees("9.25", 9.241242951547518) and not _agrees("< 0.001", 1 / 2001, 2000)


# --------------------------------------------------------------------------- content
def test_report_is_self_contained(review_folder):
    page = _page(review_folder / "report.html")
    srcs = [v for tag, k, v in page.attrs if k == "src"]
    hrefs = [v for tag, k, v in page.attrs if k == "href"]
    assert srcs and all(v.startswith("data:image/png;base64,") for v in srcs)
    external = ("#", "https://doi.org/10.", "https://pubmed.ncbi.nlm.nih.gov/")
    local = [v for v in hrefs if not v.startswith(external)]
    assert local and all((review_folder / v).is_file() and v.endswith(".nii.gz") for v in local)  # maps beside it
    assert not [t for t, k, v in page.attrs if t in ("link", "iframe", "object", "embed")]
    html = (review_folder / "report.html").read_text()
    assert "url(" not in html and "@import" not in html


def test_every_figure_is_in_the_page_and_beside_the_results(review_folder):
    html = (review_folder / "report.html").read_text()
    figures_shown = ["pain_est-ale/figure.png", "pain_a_est-ale/figure.png", "pain_b_est-ale/figure.png",
                     "pain_est-ale/figure_signed.png", "pain_a_vs_pain_b_contrast/figure.png",
                     "pain_a_and_pain_b_conjunction/figure.png", "flow.png"]
    import base64

    for name in figures_shown:
        png = (review_folder / name).read_bytes()
        assert png.startswith(b"\x89PNG") and base64.b64encode(png).decode() in html, name
    assert html.count("<img ") == len(figures_shown)


def test_each_figure_links_the_maps_it_shows(review_folder):
    html = (review_folder / "report.html").read_text()
    figures_html = re.findall(r"<figure>.*?</figure>", html, flags=re.DOTALL)
    assert len(figures_html) == 7
    for fig in figures_html[1:]:  # every map figure (the flow figure shows no map)
        links = re.findall(r'<a href="([^"]+)">', fig)
        assert links and all((review_folder / link).is_file() for link in links), fig[-400:]
    signed = next(f for f in figures_html if "increases and decreases after treatment" in f)
    for d in ("increase", "decrease"):
        assert f'href="pain_dir-{d}_est-ale/{figures.CLUSTER_MAP}.nii.gz"' in signed


def test_cluster_numbers_agree_with_the_tsv(review_folder):
    """Every number of every cluster table is its clusters.tsv value at the printed precision."""
    html = (review_folder / "report.html").read_text()
    folders = {"group-pain": ["pain_est-ale", "pain_dir-increase_est-ale", "pain_dir-decrease_est-ale"],
               "group-pain_a": ["pain_a_est-ale"], "group-pain_b": ["pain_b_est-ale"],
               "comparison-pain_a_vs_pain_b": ["pain_a_vs_pain_b_contrast"]}
    checked = 0
    for anchor, names in folders.items():
        tables = _cluster_tables(_section(html, anchor))
        with_rows = [n for n in names if len(pd.read_csv(review_folder / n / "clusters.tsv", sep="\t"))]
        assert len(tables) == len(with_rows), anchor
        for table, name in zip(tables, with_rows):
            tsv = pd.read_csv(review_folder / name / "clusters.tsv", sep="\t", dtype=str, keep_default_na=False)
            n_null = N_ITERS  # every fixture analysis ran N_ITERS iterations or permutations
            assert len(table["rows"]) == len(tsv) > 0
            labels = np.asarray(nib.load(review_folder / name / "clusters_index.nii.gz").dataobj) \
                if (review_folder / name / "clusters_index.nii.gz").is_file() else None
            for row, (_, want) in zip(table["rows"], tsv.iterrows()):
                main = want["is_subpeak"] == "False"
                for heading, shown in row["cells"].items():
                    column = CLUSTER_COLUMNS.get(heading)
                    assert column is not None, f"unexpected column {heading}"
                    if shown == "":
                        assert not main and column in ("cluster_id", "size_vox", "size_mm3", "p_fwe", "n_experiments",
                                                       "jackknife_min_share")
                        continue
                    assert _agrees(shown, want[column], n_null), (name, heading, shown, want[column])
                    checked += 1
                assert re.fullmatch(r"-?\d+\.\d\d", row["cells"]["Peak z"])  # z: 2 decimals
                if main and labels is not None:  # the size printed is the size of the cluster in the map beside it
                    assert int(row["cells"]["Voxels"].replace(",", "")) == int((labels == int(want.cluster_id)).sum())
                for c in (c for c in tsv.columns if c.startswith("label_")):
                    assert want[c] in row["fold"]  # atlas labels folded under the row
    assert checked > 100
    pain = _cluster_tables(_section(html, "group-pain"))[0]
    assert "Jackknife min share" in pain["header"]  # a column no heading lists: readable, not snake_case


def test_settings_and_summaries_have_readable_labels(review_folder):
    html = (review_folder / "report.html").read_text()
    review = json.loads((review_folder / "review.json").read_text())
    headings = [_text(h) for h in re.findall(r'<table class="kv">.*?</table>', html, flags=re.DOTALL)
                for h in re.findall(r"<th>(.*?)</th>", h)]
    keys = set(review["settings"]) | set(review["models"][0]["summary"]) | set(SPECIFICITY)
    assert headings and not [h for h in headings if "_" in h or h in keys]
    settings = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", _section(html, "question", "</section>")))
    assert settings["ALE kernel FWHM (mm)"] == numbers.decimals(review["settings"]["fwhm"], 2)
    assert _agrees(settings["ALE kernel FWHM (mm)"], review["settings"]["fwhm"])
    assert settings["Iterations per diagnostic re-analysis"] == "500"
    assert settings["Monte Carlo iterations (the most any analysis runs; each states what it ran)"] == "1,000"
    assert settings["Early stopping (once every FWE threshold is known within)"] == "±10 %"
    overlap = review["comparisons"][1]["overlap"]
    rows = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", _section(html, "comparison-pain_a_and_pain_b")))
    assert rows["Dice coefficient"] == numbers.decimals(overlap["dice"], 2) and _agrees(rows["Dice coefficient"],
                                                                                        overlap["dice"])
    assert rows["Voxels significant in both"] == f"{overlap['voxels_both']:,}"


def test_groups_state_the_iterations_they_ran(review_folder):
    html = (review_folder / "report.html").read_text()
    assert "Monte Carlo: stopped at 300 of 1,000 iterations: FWE thresholds known within ±10 %." in \
        _section(html, "group-pain")
    assert "Monte Carlo: ran all 300 iterations." in _section(html, "group-pain_a")
    assert "Monte Carlo: ran all 300 permutations." in _section(html, "comparison-pain_a_vs_pain_b")
    # the count of clusters and experiments in words, singular where one
    assert re.search(r"<span>19 experiments</span><span>19 studies</span><span>243 foci</span>", html)


def test_sections_counts_and_badges(review_folder):
    html = (review_folder / "report.html").read_text()
    review = json.loads((review_folder / "review.json").read_text())
    for section in ("question", "limitations", "flow", "studies", "groups", "comparisons", "models", "methods",
                    "atlases", "references", "provenance"):
        assert f'<section id="{section}">' in html
    assert html.count("underpowered: ") == 3  # Pain A (8), Pain B (11), Pain (tiny) (2) have < 17 experiments
    assert "not analysed: 2 experiment(s)" in html and "not run: a group was not analysed" in html
    for a in review["atlases"]:
        assert a["licence"].split()[0] in html
    studies = pd.read_csv(review_folder / "studies.tsv", sep="\t")
    assert all(f'<td class="text">{t}</td>' in html for t in studies["title"])
    assert ">210</td>" in html
    prov = json.loads((review_folder / "provenance.json").read_text())
    assert prov["inputs"]["pain.json"]["sha256"] in html


def test_limitations_come_before_the_results(review_folder):
    html = (review_folder / "report.html").read_text()
    section = _section(html, "limitations", "</section>")
    assert all(f"<li>{html_module.escape(s)}</li>" in section for s in LIMITATIONS)
    assert html.index('<section id="limitations">') < html.index('<section id="groups">')


def test_studies_link_to_pubmed_and_doi(review_folder):
    html = (review_folder / "report.html").read_text()
    studies = _section(html, "studies", "</section>")
    for i in range(3):
        assert f'href="https://pubmed.ncbi.nlm.nih.gov/{PMID + i}/"' in studies
    assert studies.count('href="https://pubmed.ncbi.nlm.nih.gov/') == 3  # ids that are not PMIDs get none
    for i in range(2, 5):
        assert f'href="https://doi.org/10.1000/pain.{i}"' in studies
    assert studies.count('href="https://doi.org/') == 3


def test_verdicts_legend_specificity_and_comparisons(review_folder):
    html = (review_folder / "report.html").read_text()
    models = _section(html, "models", "</section>")
    assert '<td class="verdict supported">supported (signed)</td>' in models
    untested = '<td class="verdict untested">convergence where predicted, direction untested</td>'
    assert untested in models
    css = (review_folder / "report.html").read_text()
    colour = dict(re.findall(r"\.verdict\.(supported|untested) \{ color: (#[0-9a-f]+); \}", css))
    assert colour["untested"] != colour["supported"]
    legend = models[models.index('<dl class="verdicts">'):models.index("</dl>")]
    for verdict in ("supported (signed)", "partly supported (signed)", "not supported (signed)",
                    "contradicted (signed)", "convergence where predicted, direction untested",
                    "partial convergence where predicted, direction untested", "no convergence where predicted",
                    "not enough data"):
        assert f">{verdict}</dt><dd>" in legend
    assert "no experiment carries a sign" in legend and "Holm p ≤ alpha" in legend
    # the regions' p: the floor of 2,000 simulations as a bound, others 2 significant digits / 2 decimals
    section = _section(html, "model-pain_matrix-pain")
    regions = section[section.index('<table class="regions">'):section.index("</table>")]
    cells = {_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", regions)}
    assert {"< 0.0005", "0.012", "0.46", "0.0015", "0.025", "0.0123", "0.000988", "1,520"} <= cells
    assert "Each region's p comes from 2,000 simulations." in section
    # every number of the regions table is the TSV's at the printed precision
    headings = {v: k for k, v in tomllib.loads(
        (resources.files("neurochange") / "resources" / "report" / "columns.toml").read_text())["model_regions"].items()}
    tsv = pd.read_csv(review_folder / "models" / "pain_matrix_pain.tsv", sep="\t", dtype=str)
    header = [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", regions)]
    rows = [[_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r'<tbody class="row[^"]*"><tr>(.*?)</tr>', regions, flags=re.DOTALL)]
    assert len(rows) == len(tsv)
    for row, (_, want) in zip(rows, tsv.iterrows()):
        for name, shown in zip(header, row):
            column = headings.get(name, name.lower().replace(" ", "_"))
            if re.fullmatch(r"[<≤]? ?-?[\d,]+(\.\d+)?", shown):
                assert _agrees(shown, want[column], MODEL_ITERS), (column, shown, want[column])
    spec = {_text(k): _text(v) for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>",
                                                _section(html, "model-pain_matrix-pain"))}
    assert spec["Mean standardized convergence in the model's regions"] == "2.35"
    assert spec["Mean over the moved regions"] == "0.01" and spec["p (specificity)"] == "0.012"
    assert spec["Placements elsewhere in the mask"] == "500" and spec["How it was computed"] == SPECIFICITY["note"]
    table = _section(html, "model-comparisons", "</table>")
    cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table)]
    assert cells[:7] == ["Pain (all)", "Pain matrix", "other_model", "0.46", "-0.05 to 0.99", "< 0.0005", "2,000"]
    assert _agrees(cells[3], COMPARISON["difference"]) and _agrees(cells[5], COMPARISON["p"], COMPARISON["n_boot"])


def test_methods_paragraph_cites_and_lists_references(review_folder):
    html = (review_folder / "report.html").read_text()
    methods = html[html.index('<div class="methods">'):html.index("</div>", html.index('<div class="methods">'))]
    for text in ("Turkeltaub et al., 2002", "Eickhoff et al., 2009", "Eickhoff et al., 2012", "Turkeltaub et al., 2012",
                 "Eickhoff et al., 2016", "Laird et al., 2005", "Nichols et al., 2005", "1,000 iterations at most",
                 "p &lt; 0.001", "p &lt; 0.05", "sample size", "whole brain mask", "pooled", "Harvard-Oxford",
                 # what a database experiment is, and what it lacks
                 "5 experiments of the 19 came from Neurosynth, where an experiment is a whole paper",
                 "no sample size, so every ALE kernel assumed 20 subjects",
                 # the iterations each analysis ran
                 "Iterations run: Pain (all) 300 (stopped early)", "reported as a bound",
                 # the verdict rules, specificity and model comparison
                 "at least 0.50 of its regions", "direction untested", "500 placements", "2,000 bootstrap samples"):
        assert text in methods, text
    refs = html[html.index('<ol class="refs">'):]
    for doi in ("10.1006/nimg.2002.1131", "10.1002/hbm.20718", "10.1002/hbm.20136",
                "10.1016/j.neuroimage.2004.12.005"):
        assert f'href="https://doi.org/{doi}"' in refs


def test_rerender_gives_identical_files(review_folder, tmp_path):
    names = ["report.html", "flow.png", "pain_est-ale/figure.png", "pain_est-ale/figure_signed.png",
             "pain_a_and_pain_b_conjunction/figure.png", "pain_a_vs_pain_b_contrast/figure.png"]
    before = {n: hashlib.sha256((review_folder / n).read_bytes()).hexdigest() for n in names}
    copy = tmp_path / "copy"
    shutil.copytree(review_folder, copy)
    for n in names:
        (copy / n).unlink()
    write_report(copy)
    assert {n: hashlib.sha256((copy / n).read_bytes()).hexdigest() for n in names} == before


def test_old_folder_without_the_new_fields_renders(review_folder, tmp_path):
    """A review.json from before limitations, montecarlo records, specificity and model comparisons."""
    copy = tmp_path / "old"
    shutil.copytree(review_folder, copy)
    review = json.loads((copy / "review.json").read_text())
    for key in ("limitations", "model_comparisons"):
        review.pop(key)
    review["groups"][0].pop("montecarlo")
    review["models"][0].pop("specificity")
    write_json(copy / "review.json", review)
    html = write_report(copy).read_text()
    assert '<section id="limitations">' not in html and "Model comparisons" not in html
    assert "Monte Carlo: ran all 300 iterations." in _section(html, "group-pain")  # from params.json
    assert "Specificity" not in html.split('<section id="methods">')[0]


def test_missing_file_is_an_input_error(review_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(review_folder, copy)
    (copy / "flow.json").unlink()
    with pytest.raises(InputError, match="flow.json"):
        write_report(copy)
    (copy / "review.json").write_text("{")
    with pytest.raises(InputError, match="review.json"):
        write_report(copy)


# --------------------------------------------------------------------------- figures
def _colours(png: Path) -> tuple[int, int]:
    """Strongly warm and strongly cool pixels of a figure."""
    from matplotlib.image import imread

    rgb = imread(png)[..., :3]
    r, b = rgb[..., 0], rgb[..., 2]
    return int(((r > 0.7) & (b < 0.35)).sum()), int(((b > 0.6) & (r < 0.35)).sum())


def test_signed_maps_are_drawn_warm_and_cool(review_folder, tmp_path):
    warm, cool = _colours(review_folder / "pain_est-ale" / "figure_signed.png")
    assert warm > 200 and cool > 200  # increases warm, decreases cool, in one figure
    for direction in ("increase", "decrease"):
        folder = tmp_path / f"pain_dir-{direction}_est-ale"
        shutil.copytree(review_folder / f"pain_dir-{direction}_est-ale", folder)
        warm, cool = _colours(figures.analysis_figure(folder, direction))
        assert (warm > 200 and cool < 20) if direction == "increase" else (cool > 200 and warm < 20), direction
    img, both = figures.signed_map(review_folder / "pain_dir-increase_est-ale",
                                   review_folder / "pain_dir-decrease_est-ale")
    data = np.asarray(img.dataobj)
    up, down = (np.asarray(nib.load(review_folder / f"pain_dir-{d}_est-ale" / f"{figures.CLUSTER_MAP}.nii.gz").dataobj)
                for d in ("increase", "decrease"))
    assert (data > 0).any() and (data < 0).any()
    assert (data != 0).sum() == (up > 0).sum() + (down > 0).sum() - both  # every significant voxel, once


def test_empty_map_figure_says_no_cluster(tmp_path, review_folder):
    folder = tmp_path / "empty_est-ale"
    folder.mkdir()
    img = nib.load(review_folder / "pain_est-ale" / f"{figures.CLUSTER_MAP}.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), folder / f"{figures.CLUSTER_MAP}.nii.gz")
    png = figures.analysis_figure(folder, "empty")
    full = review_folder / "pain_est-ale" / "figure.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.read_bytes() != full.read_bytes()
    assert b"tEXt" not in png.read_bytes() and b"tIME" not in png.read_bytes()


def test_overlap_labels_count_voxels_as_overlap_json(review_folder):
    a = review_folder / "pain_a_est-ale" / f"{figures.CLUSTER_MAP}.nii.gz"
    b = review_folder / "pain_b_est-ale" / f"{figures.CLUSTER_MAP}.nii.gz"
    data = np.asarray(figures.overlap_labels(a, b).dataobj)
    record = json.loads((review_folder / "pain_a_and_pain_b_conjunction" / "overlap.json").read_text())
    assert int((data == 3).sum()) == record["voxels_both"]
    assert int(((data == 1) | (data == 3)).sum()) == record["voxels_a"]
    assert int(((data == 2) | (data == 3)).sum()) == record["voxels_b"]


# --------------------------------------------------------------------------- in a browser
def test_report_renders_in_headless_chromium(review_folder, tmp_path):
    url = (review_folder / "report.html").resolve().as_uri()
    n_images, decoded = chromium_images(review_folder / "report.html", tmp_path)
    assert n_images == 7 and decoded == n_images

    shot = tmp_path / "shot.png"
    chromium(["--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}", url], tmp_path / "profile2")
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3].mean(axis=2)  # grey levels in [0, 1]
    assert pixels.shape == (2400, 1280)
    assert (pixels < 0.5).mean() > 0.01 and pixels.std() > 0.08  # text and figures, not a blank page


def test_cluster_tables_fit_a_1280_px_window(review_folder, tmp_path):
    """At 1280 px no table (cluster tables above all), nor the page, scrolls sideways: labels, diagnostics and
    long text fold under their rows."""
    found = horizontal_overflow(review_folder / "report.html", tmp_path, width=1280)
    html = (review_folder / "report.html").read_text()
    assert found["viewport"] == 1280
    assert found["cluster_tables"] == html.count('<table class="clusters">') >= 6
    assert found["overflow"] == []
