"""`neurochange ale` end to end: the results folder, reproducibility, and user errors."""

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pathlib import Path
from click.testing import CliRunner
from workflow_helpers import analysis_folder

from neurochange.cli import cli

FWE_MAPS = [
    f"{kind}_{level}_corr-FWE_method-montecarlo"
    for level in ("level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster")
    for kind in ("logp", "z")
]


@pytest.fixture(scope="module")
def pain(nimare_test_data):
    return nimare_test_data / "test_pain_dataset.json"


@pytest.fixture(scope="module")
def two_runs(pain, tmp_path_factory):
    """The same input and seed on one core and on two."""
    base = tmp_path_factory.mktemp("ale")
    runner = CliRunner()
    outs = []
    for cores in (1, 2):
        out = base / f"cores{cores}"
        res = runner.invoke(cli, ["ale", str(pain), "--out", str(out), "--iters", "300", "--seed", "7",
                                  "--cores", str(cores)])
        assert res.exit_code == 0, res.output
        outs.append((out, res))
    return outs


def test_results_folder_has_nimare_names(two_runs):
    out, res = two_runs[0]
    names = {p.name for p in out.iterdir()}
    for name in ["stat", "p", "z", "logp", *FWE_MAPS, "clusters_index",
                 "z_desc-size_level-cluster_corr-FWE_method-montecarlo_thresh-05"]:
        assert f"{name}.nii.gz" in names
    assert {"clusters.tsv", "nulls.npz", "provenance.json", "timings.json", "studies.tsv",
            "experiments.tsv"} <= names
    nulls = np.load(out / "nulls.npz")
    for key in ("values_level-voxel_corr-fwe_method-montecarlo",
                "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
                "values_desc-mass_level-cluster_corr-fwe_method-montecarlo"):
        assert nulls[key].shape == (300,)
    assert "19 experiments, 243 foci" in res.output and "2 experiments without foci" in res.output


def test_cluster_table_peak_is_nimare_peak(two_runs):
    out, _ = two_runs[0]
    table = pd.read_csv(out / "clusters.tsv", sep="\t")
    top = table.iloc[0]
    # NiMARE 0.22.1 on this set: max ALE 0.03404291 at (38, 4, 2) mm, max z 6.8953
    assert (top.peak_x, top.peak_y, top.peak_z) == (38, 4, 2)
    assert top.peak_stat == pytest.approx(0.03404291, abs=5e-8)
    assert top.peak_zscore == pytest.approx(6.8953, abs=1e-4)
    assert not top.is_subpeak and table.cluster_id.iloc[0] == 1
    # clusters numbered by size, sub-peaks at least 8 mm from their cluster's stronger peaks
    sizes = table.drop_duplicates("cluster_id").size_vox.to_numpy()
    assert np.all(np.diff(sizes) <= 0)
    for _, grp in table.groupby("cluster_id"):
        xyz = grp[["peak_x", "peak_y", "peak_z"]].to_numpy()
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        assert (d[np.triu_indices(len(xyz), 1)] >= 8).all()
    # the index image agrees with the table
    index = np.asarray(nib.load(out / "clusters_index.nii.gz").dataobj)
    for cid, size in zip(table.drop_duplicates("cluster_id").cluster_id, sizes):
        assert (index == cid).sum() == size


def test_thresholded_map_is_z_inside_significant_clusters(two_runs):
    out, _ = two_runs[0]
    z = np.asarray(nib.load(out / "z.nii.gz").dataobj)
    thresh = np.asarray(nib.load(out / "z_desc-size_level-cluster_corr-FWE_method-montecarlo_thresh-05.nii.gz").dataobj)
    logp = np.asarray(nib.load(out / "logp_desc-size_level-cluster_corr-FWE_method-montecarlo.nii.gz").dataobj)
    inside = thresh != 0
    np.testing.assert_array_equal(inside, logp > -np.log10(0.05))
    np.testing.assert_allclose(thresh[inside], z[inside])
    # every voxel passes the cluster-forming ALE threshold (p < .001 on the approximate null)
    stat = np.asarray(nib.load(out / "stat.nii.gz").dataobj)
    threshold = json.loads((out / "provenance.json").read_text())["params"]["montecarlo"]["cluster_forming_stat"]
    assert stat[inside].min() > np.float32(threshold)


def test_same_seed_same_output_whatever_the_cores(two_runs):
    (a, _), (b, _) = two_runs
    assert (a / "provenance.json").read_bytes() == (b / "provenance.json").read_bytes()
    assert (a / "clusters.tsv").read_bytes() == (b / "clusters.tsv").read_bytes()
    for name in ["stat", *FWE_MAPS]:
        np.testing.assert_array_equal(nib.load(a / f"{name}.nii.gz").get_fdata(), nib.load(b / f"{name}.nii.gz").get_fdata())
    na, nb = np.load(a / "nulls.npz"), np.load(b / "nulls.npz")
    for key in na.files:
        np.testing.assert_array_equal(na[key], nb[key])
    prov = json.loads((a / "provenance.json").read_text())
    assert prov["settings"]["seed"] == 7 and prov["params"]["montecarlo"]["n_iters"] == 300
    assert prov["input"]["sources"][0]["sha256"]
    timings = json.loads((b / "timings.json").read_text())
    assert timings["n_cores"] == 2


def _one_line_error(res):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neurochange: error:"), res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_existing_out_is_an_error(two_runs, pain):
    out, _ = two_runs[0]
    res = CliRunner().invoke(cli, ["ale", str(pain), "--out", str(out), "--iters", "10", "--seed", "1"])
    assert "not empty" in _one_line_error(res)


def _sleuth(tmp_path, text):
    path = tmp_path / "in.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("// Reference=MNI\n", "no experiments|no foci"),
        ("// Reference=MNI\n// a et al., 2001: x\n// Subjects=10\n90 90 90\n80 -110 80\n", "outside the brain mask"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, text, message):
    path = _sleuth(tmp_path, text)
    res = CliRunner().invoke(cli, ["ale", str(path), "--out", str(tmp_path / "out"), "--iters", "10", "--seed", "1"])
    assert re.search(message, _one_line_error(res))
    assert not (tmp_path / "out").exists()


def test_missing_sample_size_without_fwhm(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text("study\tx\ty\tz\tspace\nA\t38\t4\t2\tMNI\n")
    res = CliRunner().invoke(cli, ["ale", str(path), "--out", str(tmp_path / "out"), "--iters", "10", "--seed", "1"])
    assert "sample size missing" in _one_line_error(res)
    res = CliRunner().invoke(cli, ["ale", str(path), "--out", str(tmp_path / "out"), "--iters", "10", "--seed", "1",
                                   "--fwhm", "10"])
    assert res.exit_code == 0, res.output


def test_interrupted_run_leaves_nothing(pain, tmp_path):
    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analysis_folder(pain, tmp_path / "out", n_iters=500, seed=1, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_exits_130_and_writes_nothing(pain, tmp_path, monkeypatch):
    from neurochange.workflows import analysis

    def interrupted(*args, progress=None, **kwargs):
        progress(1, 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(analysis, "run_analysis", interrupted)
    res = CliRunner().invoke(cli, ["ale", str(pain), "--out", str(tmp_path / "out"), "--iters", "10", "--seed", "1"])
    assert res.exit_code == 130
    assert "interrupted" in res.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unwritable_out_is_one_line_before_computing(pain, tmp_path, where):
    """An --out that cannot be created fails at once (exit 2, one line), not after the Monte Carlo."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "out" if where == "file" else Path("/proc") / "neurochange-out"
    res = CliRunner().invoke(cli, ["mkda", str(pain), "--out", str(out), "--iters", "10", "--seed", "1"])
    assert res.exit_code == 2
    line = _one_line_error(res)
    assert str(out) in line and ("cannot be created" in line or "cannot be written" in line)
