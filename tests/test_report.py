"""The review report: figures and report.html from a review-like results folder.

The fixture builds a small results folder the way ``neurochange review`` lays it out
(notes/review_layout.md): neurochange's own ALE on NiMARE's pain set (all experiments and two
halves, 300 Monte Carlo iterations), a contrast and a conjunction of the halves, a
``review.json``, ``flow.json``, ``studies.tsv``, a model table and ``provenance.json``. The
model table and the flow counts are made up for the test (the report only prints them).
The rendered page is opened in Debian's chromium, headless: every figure must decode.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from browser import chromium, chromium_images
from workflow_helpers import analysis_folder, conjunction_folder, contrast_folder

from neurochange.errors import InputError
from neurochange.report import figures, write_report
from neurochange.results import atlas
from neurochange.results.provenance import sha256_file, write_json
from neurochange.sources.io import read_studyset, write_studyset

N_ITERS = 300


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
            "pain_dir-increase": inputs / "b.json"}
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
    pd.DataFrame({"region": ["insula", "thalamus", "amygdala"], "atlas": ["harvard_oxford"] * 3,
                  "predicted": ["increase", "increase", "decrease"], "voxels_in_region": [1520, 1400, 380],
                  "voxels_significant": [210, 64, 0], "converging": [True, True, False]}).to_csv(
        out / "models" / "pain_matrix_pain.tsv", sep="\t", index=False)
    summary = {"regions_tested": 3, "regions_converging": 2, "share_converging": 0.667}
    write_json(out / "models" / "pain_matrix_pain.json", {"summary": summary, "verdict": "partly supported"})

    experiments = pd.read_csv(out / "pain_est-ale" / "experiments.tsv", sep="\t")
    in_a = set(ids[:10])
    studies = pd.DataFrame({
        "experiment_id": experiments["experiment_id"], "study_id": experiments["experiment_id"].str.split("-").str[0],
        "title": [f"Pain study {i + 1}" for i in range(len(experiments))], "year": 2000 + np.arange(len(experiments)),
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

    def group(name, label, n, n_foci, signed=None):
        return {"name": name, "label": label, "query": f"group={name}", "n_experiments": n, "n_studies": n,
                "n_foci": n_foci, "n_increase": 11 if signed else 0, "n_decrease": 0,
                "n_unsigned": n - (11 if signed else 0), "signed": bool(signed), "underpowered": n < 17,
                "folder": f"{name}_est-ale", "signed_folders": {"increase": signed, "decrease": None},
                "n_clusters": int(clusters[name]["cluster_id"].nunique()) if len(clusters[name]) else 0,
                "note": ""}

    review = {
        "title": "Where does pain converge? (report test)",
        "question": "Which regions do painful stimulation studies report consistently?",
        "neurochange_version": "0.1.0", "seed": 7,
        "settings": {"estimator": "ale", "fwhm": None, "n_iters": N_ITERS, "early_stop": None,
                     "cluster_forming_p": 0.001, "cluster_p": 0.05, "null_mask": "brain", "min_experiments": 17,
                     "keep_contrasts": False, "corpus": "NiMARE's pain test set", "selection": "imaging=task_fmri",
                     "space": "MNI152 2 mm (NiMARE ALE mask)"},
        "flow": "flow.json", "studies": "studies.tsv",
        "groups": [group("pain", "Pain (all)", 19, 243, signed="pain_dir-increase_est-ale"),
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
        "models": [{"name": "pain_matrix", "title": "Pain matrix", "group": "pain", "verdict": "partly supported",
                    "basis": "unsigned", "table": "models/pain_matrix_pain.tsv", "summary": summary,
                    "references": ["wager2009"]}],
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


def _rows(html: str, group_id: str) -> list[list[str]]:
    """Rows (cell texts) of the first cluster table after the heading with id ``group_id``."""
    section = html[html.index(f'id="{group_id}"'):]
    table = section[section.index('<table class="clusters">'):section.index("</table>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S)]
            for r in rows]


# --------------------------------------------------------------------------- content
def test_report_is_self_contained(review_folder):
    page = _page(review_folder / "report.html")
    srcs = [v for tag, k, v in page.attrs if k == "src"]
    hrefs = [v for tag, k, v in page.attrs if k == "href"]
    assert srcs and all(v.startswith("data:image/png;base64,") for v in srcs)
    assert all(v.startswith("#") or v.startswith("https://doi.org/10.") for v in hrefs)
    assert not [t for t, k, v in page.attrs if t in ("link", "iframe", "object", "embed")]
    html = (review_folder / "report.html").read_text()
    assert "url(" not in html and "@import" not in html


def test_every_figure_is_in_the_page_and_beside_the_results(review_folder):
    html = (review_folder / "report.html").read_text()
    folders = ["pain_est-ale", "pain_a_est-ale", "pain_b_est-ale", "pain_dir-increase_est-ale",
               "pain_a_vs_pain_b_contrast", "pain_a_and_pain_b_conjunction"]
    import base64

    for name in folders:
        png = (review_folder / name / "figure.png").read_bytes()
        assert png.startswith(b"\x89PNG") and base64.b64encode(png).decode() in html, name
    assert base64.b64encode((review_folder / "flow.png").read_bytes()).decode() in html
    assert html.count("<img ") == len(folders) + 1


def test_cluster_numbers_equal_the_tsv(review_folder):
    html = (review_folder / "report.html").read_text()
    for group in ("pain", "pain_a", "pain_b"):
        table = pd.read_csv(review_folder / f"{group}_est-ale" / "clusters.tsv", sep="\t", dtype=str,
                            keep_default_na=False)
        rows = _rows(html, f"group-{group}")
        header, body = rows[0], rows[1:]
        assert len(body) == len(table) > 0
        col = {h: i for i, h in enumerate(header)}
        for (_, want), got in zip(table.iterrows(), body):
            assert [got[col["x"]], got[col["y"]], got[col["z"]]] == [want.peak_x, want.peak_y, want.peak_z]
            assert got[col["Peak z"]] == want.peak_zscore and got[col["Peak ALE"]] == want.peak_stat
            if want.is_subpeak == "False":
                assert got[col["Cluster"]] == want.cluster_id
                assert got[col["Voxels"]] == want.size_vox and got[col["p (FWE)"]] == want.p_fwe
                # the size printed is the size of the cluster in the map beside it
                labels = np.asarray(nib.load(review_folder / f"{group}_est-ale" / "clusters_index.nii.gz").dataobj)
                assert int(got[col["Voxels"]]) == int((labels == int(want.cluster_id)).sum())
            # the peak z printed is the value of z.nii.gz at the printed peak coordinate
            z_img = nib.load(review_folder / f"{group}_est-ale" / "z.nii.gz")
            ijk = np.rint(np.linalg.solve(z_img.affine, [float(got[col[a]]) for a in "xyz"] + [1.0])[:3]).astype(int)
            assert float(got[col["Peak z"]]) == pytest.approx(float(z_img.dataobj[tuple(ijk)]), rel=1e-5)
            for c in (c for c in table.columns if c.startswith("label_")):
                assert want[c] in got
    pain = _rows(html, "group-pain")
    assert "jackknife_min_share" in pain[0]


def test_sections_counts_and_badges(review_folder):
    html = (review_folder / "report.html").read_text()
    review = json.loads((review_folder / "review.json").read_text())
    for section in ("question", "flow", "studies", "groups", "comparisons", "models", "methods", "atlases",
                    "references", "provenance"):
        assert f'<section id="{section}">' in html
    assert html.count("underpowered: ") == 3  # Pain A (8), Pain B (11), Pain (tiny) (2) have < 17 experiments
    assert "not analysed: 2 experiment(s)" in html and "not run: a group was not analysed" in html
    for a in review["atlases"]:
        assert a["licence"].split()[0] in html
    studies = pd.read_csv(review_folder / "studies.tsv", sep="\t")
    assert all(f'<td class="text">{t}</td>' in html for t in studies["title"])
    ov = review["comparisons"][1]["overlap"]
    assert f"<td>{ov['voxels_both']}</td>" in html and f"<td>{ov['dice']}</td>" in html
    assert "partly supported" in html and ">210</td>" in html
    prov = json.loads((review_folder / "provenance.json").read_text())
    assert prov["inputs"]["pain.json"]["sha256"] in html


def test_methods_paragraph_cites_and_lists_references(review_folder):
    html = (review_folder / "report.html").read_text()
    methods = html[html.index('<div class="methods">'):html.index("</div>", html.index('<div class="methods">'))]
    for text in ("Turkeltaub et al., 2002", "Eickhoff et al., 2009", "Eickhoff et al., 2012", "Turkeltaub et al., 2012",
                 "Eickhoff et al., 2016", "Laird et al., 2005", "Nichols et al., 2005", f"{N_ITERS} iterations",
                 "p &lt; 0.001", "p &lt; 0.05", "sample size", "whole brain mask", "pooled", "Harvard-Oxford"):
        assert text in methods, text
    refs = html[html.index('<ol class="refs">'):]
    for doi in ("10.1006/nimg.2002.1131", "10.1002/hbm.20718", "10.1002/hbm.20136",
                "10.1016/j.neuroimage.2004.12.005"):
        assert f'href="https://doi.org/{doi}"' in refs


def test_rerender_gives_identical_files(review_folder, tmp_path):
    names = ["report.html", "flow.png", "pain_est-ale/figure.png", "pain_a_and_pain_b_conjunction/figure.png",
             "pain_a_vs_pain_b_contrast/figure.png"]
    before = {n: hashlib.sha256((review_folder / n).read_bytes()).hexdigest() for n in names}
    copy = tmp_path / "copy"
    shutil.copytree(review_folder, copy)
    for n in names:
        (copy / n).unlink()
    write_report(copy)
    assert {n: hashlib.sha256((copy / n).read_bytes()).hexdigest() for n in names} == before


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
