"""The review end to end, run as a user runs it: the built-in review on the real corpus, and a spec
on a user's own (simulated) file. Numbers in review.json must equal the files beside it; the same
seed gives the same files whatever the core count; mistakes and Ctrl-C leave nothing behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from neurochange.cli import cli
from neurochange.hypotheses import models as hyp_models
from neurochange.results.write import thresh_name
from neurochange.workflows.review import run_review

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT / "examples" / "simulated_review.toml"
VERDICTS = set(hyp_models.VERDICTS)


def _review(args, monkeypatch=None):
    result = CliRunner().invoke(cli, ["review", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def default_review(tmp_path_factory, data_mirror):
    """``neurochange review --out DIR --iters 500``: the README's main job, corpus built on first use."""
    out = tmp_path_factory.mktemp("default") / "review"
    home = out.parent / "home"  # the corpus built on first use: <out>/../home/corpus.duckdb
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROCHANGE_HOME", str(home))
        mp.setenv("NEUROCHANGE_DATA_MIRROR", str(data_mirror))
        _review(["--out", str(out), "--iters", "500", "--seed", "11"])
    return out


@pytest.fixture(scope="module")
def simulated_reviews(tmp_path_factory):
    """The example spec on its simulated file, three times with the same seed: 2 cores, 1 core, and on a
    Dask LocalCluster of 2 worker processes (the groups' analyses as cluster tasks)."""
    base = tmp_path_factory.mktemp("simulated")
    outs = []
    for cores, scheduler in ((2, []), (1, []), (2, ["--scheduler", "local"])):
        out = base / f"cores{cores}{'-dask' if scheduler else ''}"
        _review([str(EXAMPLE), "--out", str(out), "--iters", "200", "--seed", "5", "--cores", str(cores),
                 *scheduler])
        outs.append(out)
    return outs


def _summary(folder: Path) -> dict:
    return json.loads((folder / "review.json").read_text())


def _check_folder_numbers(folder: Path) -> None:
    summary = _summary(folder)
    flow = json.loads((folder / "flow.json").read_text())
    studies = pd.read_csv(folder / "studies.tsv", sep="\t", dtype=str)
    for g in summary["groups"]:
        members = studies["groups"].fillna("").str.split(",").apply(lambda names, n=g["name"]: n in names)
        assert members.sum() == flow["groups"][g["name"]]["experiments"]
        assert g["underpowered"] == (g["n_experiments"] < summary["settings"]["min_experiments"])
        if g["folder"] is None:
            assert g["n_experiments"] < 2 and "not analysed" in g["note"]
            continue
        sub = folder / g["folder"]
        assert len(pd.read_csv(sub / "studies.tsv", sep="\t")) == g["n_experiments"]
        clusters = pd.read_csv(sub / "clusters.tsv", sep="\t") if (sub / "clusters.tsv").stat().st_size else None
        n_clusters = 0 if clusters is None or clusters.empty else clusters["cluster_id"].nunique()
        assert n_clusters == g["n_clusters"]
        index = np.asarray(nib.load(sub / "clusters_index.nii.gz").dataobj)
        assert int(index.max()) == g["n_clusters"]
        if n_clusters:
            main = clusters[~clusters["is_subpeak"]]
            assert (np.bincount(index.ravel())[1:] == main["size_vox"].to_numpy()).all()
        assert (sub / "figure.png").stat().st_size > 1000
        for d, name in g["signed_folders"].items():
            if name:
                assert (folder / name / f"{thresh_name(0.05)}.nii.gz").is_file()
    for c in summary["comparisons"]:
        assert (folder / c["folder"] / "figure.png").is_file()
        if c["kind"] == "conjunction":
            overlap = json.loads((folder / c["folder"] / "overlap.json").read_text())
            est = summary["settings"]["estimator"]
            a = np.asarray(nib.load(folder / f"{c['a']}_est-{est}" / f"{thresh_name(0.05)}.nii.gz").dataobj) > 0
            b = np.asarray(nib.load(folder / f"{c['b']}_est-{est}" / f"{thresh_name(0.05)}.nii.gz").dataobj) > 0
            assert overlap["voxels_both"] == c["overlap"]["voxels_both"] == int((a & b).sum())
            assert overlap["voxels_a"] == int(a.sum()) and overlap["voxels_b"] == int(b.sum())
    for m in summary["models"]:
        assert m["verdict"] in VERDICTS
        if m["table"]:
            regions = pd.read_csv(folder / m["table"], sep="\t")
            assert len(regions) == m["summary"]["regions_tested"]


# ------------------------------------------------------------------ the built-in review
def test_default_review_runs_every_group_comparison_and_model(default_review):
    summary = _summary(default_review)
    names = [g["name"] for g in summary["groups"]]
    assert {"psychotherapy", "brain_stimulation", "pharmacotherapy"} <= set(names)
    assert summary["settings"]["n_iters"] == 500 and summary["seed"] == 11
    # the databases carry no signs: every group is unsigned and says so
    for g in summary["groups"]:
        assert g["n_increase"] == g["n_decrease"] == 0 and not g["signed"]
        assert f"0 of {g['n_experiments']} experiments carry a direction" in g["note"]
    assert {m["basis"] for m in summary["models"]} == {"unsigned"}
    assert len(summary["models"]) == 9 and len(summary["comparisons"]) == 4
    # unsigned data never support a directional model; models tested on one group are compared
    assert not {m["verdict"] for m in summary["models"]} & {"supported", "partly supported", "contradicted"}
    assert {(c["group"], c["a"], c["b"]) for c in summary["model_comparisons"]} >= {
        ("psychotherapy", "cognitive_control_psychotherapy", "bottom_up_medication"),
        ("pharmacotherapy", "cognitive_control_psychotherapy", "bottom_up_medication")}
    for c in summary["model_comparisons"]:
        assert c["ci_low"] <= c["difference"] <= c["ci_high"] and 0 < c["p"] <= 1
    assert (default_review / "report.html").stat().st_size > 100_000
    _check_folder_numbers(default_review)


def test_default_review_groups_hold_comparable_data(default_review):
    """Functional groups hold no structural or diffusion experiment, the structural group nothing else,
    no group a neurological, medical or healthy-only population; the limitations state the corpus's years."""
    from neurochange.vocabulary import groups

    studies = pd.read_csv(default_review / "studies.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert studies["disorder"].isin(groups("disorder")["psychiatric"]).all()
    assert studies["design"].isin(["pre_post", "randomized_comparison"]).all()
    # every selected study was screened: its tags are the screening table's hand labels
    assert (studies["curated"].str.startswith("default_screening.tsv:")).all()
    for _, row in studies.iterrows():
        names = [n for n in row["groups"].split(",") if n]
        if "grey_matter" in names:
            assert row["imaging"] == "structural" and names == ["grey_matter"]
        elif names:
            assert row["imaging"] in groups("imaging")["functional"], row["experiment_id"]
    from neurochange.corpus.store import Corpus

    with Corpus(default_review.parent / "home" / "corpus.duckdb", read_only=True) as corpus:
        first, last = corpus.con.execute("SELECT min(year), max(year) FROM studies").fetchone()
    summary = _summary(default_review)
    assert f"published from {first} to {last}" in " ".join(summary["limitations"])
    k, n = len(studies), studies["study_id"].nunique()
    assert (f"a curation table (titles and abstract terms read by annotators, not full texts) set values by hand for "
            f"{n} of {n} selected studies: of the {k} included experiments, the tags of {k}, the direction of 0 and "
            "the sample size of 0.") in " ".join(summary["limitations"])
    assert pd.to_numeric(studies["year"]).max() <= last
    html = (default_review / "report.html").read_text()
    assert all(sentence.split(":")[0] in html for sentence in summary["limitations"])


def test_default_review_report_shows_the_files_numbers(default_review):
    html = (default_review / "report.html").read_text()
    summary = _summary(default_review)
    for g in summary["groups"]:
        assert g["label"] in html
        if g["n_clusters"]:
            clusters = pd.read_csv(default_review / g["folder"] / "clusters.tsv", sep="\t")
            top = clusters.iloc[0]
            assert re.search(rf">\s*{int(top['peak_x'])}\s*<", html)
    for m in summary["models"]:
        assert m["verdict"] in html
    # the methods say how many included foci were converted from Talairach, counted from studies.tsv's experiments
    coords = summary["coordinates"]
    assert 0 < coords["talairach"] < coords["foci"] and coords["assumed_mni"]
    assert f"{coords['talairach']} of the {coords['foci']} coordinates were reported in Talairach space" in html
    assert "taken as MNI, as NiMARE does" in html


def test_default_review_report_renders_in_chromium(default_review, tmp_path):
    from browser import chromium_images

    n_images, decoded = chromium_images(default_review / "report.html", tmp_path)
    summary = _summary(default_review)
    analysed = sum(g["folder"] is not None for g in summary["groups"])
    assert n_images >= 1 + analysed + len(summary["comparisons"])  # flow, groups, comparisons
    assert decoded == n_images


# ------------------------------------------------------------------ a user's own file
def test_simulated_review_finds_the_planted_changes(simulated_reviews):
    folder = simulated_reviews[0]
    summary = _summary(folder)
    groups = {g["name"]: g for g in summary["groups"]}
    rtms = groups["rtms_depression"]
    assert rtms["signed"] and rtms["n_increase"] == 14 and rtms["n_decrease"] == 14
    peaks = {}
    for d in ("increase", "decrease"):
        clusters = pd.read_csv(folder / rtms["signed_folders"][d] / "clusters.tsv", sep="\t")
        peaks[d] = clusters.loc[~clusters["is_subpeak"], ["peak_x", "peak_y", "peak_z"]].to_numpy()
    # planted: increases at (-40, 30, 30), decreases at (2, 20, -10)
    assert np.linalg.norm(peaks["increase"] - [-40, 30, 30], axis=1).min() < 8
    assert np.linalg.norm(peaks["decrease"] - [2, 20, -10], axis=1).min() < 8
    assert np.linalg.norm(peaks["increase"] - [2, 20, -10], axis=1).min() > 20
    # diagnostics (the example asks for them): the planted clusters rest on no single experiment
    clusters = pd.read_csv(folder / rtms["signed_folders"]["increase"] / "clusters.tsv", sep="\t")
    main = clusters[~clusters["is_subpeak"]].iloc[0]
    assert main["jackknife_survived"] == f"{rtms['n_increase']}/{rtms['n_increase']}"
    assert pd.isna(main["rests_on"]) and 0 < main["max_contribution"] < 0.5
    # the methods: no Talairach conversion claimed (the simulated file is MNI); the diagnostics are described
    html = (folder / "report.html").read_text()
    assert summary["coordinates"]["talairach"] == 0
    assert f"None of the {summary['coordinates']['foci']} coordinates was reported in Talairach space" in html
    assert "Talairach space were converted" not in html and "leave-one-experiment-out jackknife" in html
    verdicts = {m["name"]: m for m in summary["models"]}
    assert verdicts["rtms_dlpfc_sgacc"]["verdict"] == "supported"
    assert verdicts["rtms_dlpfc_sgacc"]["basis"] == "signed"
    assert verdicts["rtms_dlpfc_sgacc"]["verdict_label"] == "supported (signed)"
    assert "supported (signed)" in html
    _check_folder_numbers(folder)


@pytest.mark.parametrize("other", [1, 2], ids=["one-core", "dask-cluster"])
def test_same_seed_same_files_whatever_the_cores_or_the_executor(simulated_reviews, other):
    a, b = simulated_reviews[0], simulated_reviews[other]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    differ = [str(p) for p in files_a if p.name != "timings.json" and (a / p).read_bytes() != (b / p).read_bytes()]
    assert differ == []
    timed = json.loads((b / "timings.json").read_text())["seconds"]
    assert ("group analyses on the cluster" in timed) == (other == 2)
    assert ("contrasts on the cluster" in timed) == (other == 2)


@pytest.fixture(scope="module")
def mkda_review(tmp_path_factory):
    """The example spec with ``estimator = "mkda"`` (its file copied beside it), 200 iterations."""
    base = tmp_path_factory.mktemp("mkda")
    text = EXAMPLE.read_text().replace("[analysis]\n", "[analysis]\nestimator = \"mkda\"\n", 1)
    (base / "spec.toml").write_text(text)
    (base / "simulated_treatments.tsv").write_bytes((EXAMPLE.parent / "simulated_treatments.tsv").read_bytes())
    _review([str(base / "spec.toml"), "--out", str(base / "out"), "--iters", "200", "--seed", "5"])
    return base / "out"


def test_review_with_mkda_estimator_end_to_end(mkda_review):
    folder = mkda_review
    summary = _summary(folder)
    assert summary["settings"]["estimator"] == "mkda" and summary["settings"]["radius_mm"] == 10.0
    groups = {g["name"]: g for g in summary["groups"]}
    rtms = groups["rtms_depression"]
    assert rtms["folder"] == "rtms_depression_est-mkda"
    params = json.loads((folder / rtms["folder"] / "params.json").read_text())
    assert params["estimator"]["name"] == "MKDADensity" and params["montecarlo"]["n_iters"] == 200
    # the planted increase is found by MKDA too
    clusters = pd.read_csv(folder / rtms["signed_folders"]["increase"] / "clusters.tsv", sep="\t")
    peaks = clusters.loc[~clusters["is_subpeak"], ["peak_x", "peak_y", "peak_z"]].to_numpy()
    assert np.linalg.norm(peaks - [-40, 30, 30], axis=1).min() < 10
    # diagnostics of an MKDA result: contributions are shares of the density (sum to 1 over experiments)
    long = pd.read_csv(folder / rtms["signed_folders"]["increase"] / "cluster_experiments.tsv", sep="\t")
    sums = long.groupby("cluster_id")["contribution"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-9)
    contrast = next(c for c in summary["comparisons"] if c["kind"] == "contrast")
    provenance = json.loads((folder / contrast["folder"] / "provenance.json").read_text())
    assert provenance["params"]["estimator"]["name"] == "MKDADensity"
    assert provenance["input"] == {"group1": "rtms_depression", "group2": "cbt_anxiety"}
    _check_folder_numbers(folder)
    html = (folder / "report.html").read_text()
    methods = html[html.index("Convergence within each group"):]
    methods = methods[:methods.index("</section>")]
    assert "multilevel kernel density analysis (MKDA" in methods and "activation likelihood" not in methods
    assert "ALE kernels" in methods  # the model tests say which kernels they use


def test_diagnose_cli_on_an_mkda_folder(mkda_review, tmp_path):
    import shutil

    folder = tmp_path / "mkda"
    shutil.copytree(mkda_review / "cbt_anxiety_est-mkda", folder)
    (folder / "diagnostics.json").unlink(missing_ok=True)
    res = CliRunner().invoke(cli, ["diagnose", str(folder), "--iters", "50", "--repetitions", "2", "--seed", "1"])
    assert res.exit_code == 0, res.output
    record = json.loads((folder / "diagnostics.json").read_text())
    assert record["n_clusters"] >= 1 and record["failsafe"]["null_grid"]["level"] == "cluster"
    assert "the statistic without the experiment" in record["methods"]["contribution"]


# ------------------------------------------------------------------ mistakes and interruptions
def test_spec_mistake_is_one_line_before_computing(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(EXAMPLE.read_text().replace('b = "cbt_anxiety"', 'b = "rtms_depression"', 1)
                    .replace('"simulated_treatments.tsv"', f'"{EXAMPLE.parent / "simulated_treatments.tsv"}"'))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["review", str(spec), "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    line = spec.read_text().splitlines().index('b = "rtms_depression"') + 1
    assert len(lines) == 1 and "comparisons[0].b" in lines[0] and f"line {line}," in lines[0], result.output
    assert not out.exists()


def test_interrupted_review_leaves_nothing(tmp_path):
    out = tmp_path / "out"

    def interrupt(name, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_review(EXAMPLE, out, n_iters=200, seed=1, progress=interrupt)
    assert list(tmp_path.iterdir()) == []
