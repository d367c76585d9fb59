"""``diagnose(folder)`` and ``neurochange diagnose``: a results folder in, the same folder with diagnostics out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from workflow_helpers import analysis_folder

from neurochange.cli import cli
from neurochange.diagnostics import jackknife as diagnostics
from neurochange.errors import InputError
from neurochange.simulate import simulate_studyset
from neurochange.sources.io import write_studyset
from neurochange.workflows import diagnose as diagnose_run
from neurochange.workflows.settings import DiagnosticsSettings

CENTRE = (-40, 24, 30)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An ALE folder on 12 simulated experiments (8 near CENTRE) with a sessions dose field."""
    studyset = simulate_studyset([{"n": 12, "centre": CENTRE, "hits": 8}], n_foci=6, spread_mm=3.0, seed=21)
    studyset.experiments["sessions"] = 12.0 - np.arange(12)
    studyset.experiments["imaging"] = ["task_fmri"] * 6 + ["resting_fmri"] * 6
    root = tmp_path_factory.mktemp("diag")
    path = root / "input.tsv"
    write_studyset(studyset, path)
    analysis_folder(path, root / "ale", n_iters=200, seed=4, n_cores=1)
    return root / "ale"


def test_folder_carries_what_was_analysed(folder):
    foci = pd.read_csv(folder / "foci.tsv", sep="\t")
    assert list(foci.columns) == ["experiment_id", "x", "y", "z", "i", "j", "k"]
    assert len(foci) == 12 * 6
    params = json.loads((folder / "params.json").read_text())
    assert params["estimator"]["name"] == "ALE" and params["cluster_p"] == 0.05
    assert (folder / "mask.nii.gz").exists() and (folder / "studyset.tsv").exists()
    analysis = diagnose_run.load_analysis(folder)
    assert analysis.result.n_experiments == 12
    assert analysis.settings["cluster_forming_p"] == 0.001 and analysis.settings["main_n_iters"] == 200
    assert {"sessions", "imaging", "n", "year"} <= set(analysis.fields.columns)


def test_diagnose_adds_columns_and_tables(folder):
    before = pd.read_csv(folder / "clusters.tsv", sep="\t")
    settings = DiagnosticsSettings(failsafe=True, moderators=("sessions", "imaging"), whole_brain=True, n_iters=100,
                                   n_repetitions=2, n_perm=200, max_added=24)
    out = diagnose_run.diagnose(folder, settings, seed=3, n_cores=1)
    after = pd.read_csv(folder / "clusters.tsv", sep="\t")
    assert len(after) == len(before)
    for col in ("jackknife_survived", "max_contribution", "max_contributor", "fail_safe_n", "fail_safe_n_ci_low",
                "fail_safe_n_ci_high", "moderator_sessions_p", "moderator_imaging_stat"):
        assert col in after.columns
    long = pd.read_csv(folder / diagnose_run.PER_CLUSTER_TABLE, sep="\t")
    n_clusters = int(after.cluster_id.max())
    assert len(long) == 12 * n_clusters
    # the numbers written are those of the diagnostics functions on the reloaded result
    analysis = diagnose_run.load_analysis(folder)
    share = diagnostics.contributions(analysis.result, analysis.labels)
    first = long[long.cluster_id == 1].set_index("experiment_id").loc[analysis.result.experiment_ids]
    np.testing.assert_allclose(first["contribution"], share[:, 0], rtol=1e-5)
    assert (after.fail_safe_n.dropna() <= 24).all()
    for name in ("moderator_sessions.png", "moderator_imaging.png", "failsafe.tsv", "cluster_moderators.tsv",
                 "diagnostics.json", "stat_desc-sessions_moderator.nii.gz",
                 "logp_desc-sessions_level-voxel_corr-FWE_method-permutation.nii.gz"):
        assert (folder / name).exists(), name
    assert not [p for p in folder.iterdir() if p.name.startswith(".diagnose")]
    record = json.loads((folder / "diagnostics.json").read_text())
    assert record["seed"] == 3 and record["failsafe"]["n_repetitions"] == 2
    assert out["files"] and "clusters.tsv" in out["files"]
    # running again replaces, never duplicates, the columns
    diagnose_run.diagnose(folder, DiagnosticsSettings(failsafe=False, jackknife=False), seed=3)
    again = pd.read_csv(folder / "clusters.tsv", sep="\t")
    assert "fail_safe_n" not in again.columns and "moderator_sessions_p" not in again.columns
    assert "max_contribution" in again.columns


def test_failure_leaves_folder_unchanged(folder, monkeypatch):
    snapshot = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(diagnose_run.moderators_mod, "plot_moderator", broken)
    with pytest.raises(RuntimeError):
        diagnose_run.diagnose(folder, DiagnosticsSettings(failsafe=False, jackknife=False, moderators=("sessions",),
                                                          n_perm=10), seed=1)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == snapshot
    assert not [p for p in folder.iterdir() if p.name.startswith(".diagnose")]


def test_user_mistakes_are_input_errors(folder, tmp_path):
    with pytest.raises(InputError, match="unknown moderator 'dose'"):
        diagnose_run.diagnose(folder, DiagnosticsSettings(failsafe=False, jackknife=False, moderators=("dose",)))
    with pytest.raises(InputError, match="params.json not found"):
        diagnose_run.load_analysis(tmp_path)
    result = CliRunner().invoke(cli, ["diagnose", str(tmp_path)])
    assert result.exit_code == 2 and "params.json not found" in result.output


def test_cli_diagnose(folder):
    result = CliRunner().invoke(cli, ["diagnose", str(folder), "--no-failsafe", "--moderators", "sessions",
                                      "--iters", "100", "--seed", "2", "--cores", "1", "--permutations", "100"])
    assert result.exit_code == 0, result.output
    assert "cluster" in result.output and "seed 2" in result.output
    after = pd.read_csv(folder / "clusters.tsv", sep="\t")
    assert "moderator_sessions_p" in after.columns and "jackknife_survived" in after.columns
