"""Moderators: statistics against closed forms, planted moderators found, shuffled ones not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neurochange.diagnostics import moderators
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.results.write import result_clusters
from neurochange.simulate import simulate_studyset

CENTRE = (-40, 24, 30)


def test_correlations_and_f_equal_scipy():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(12, 5))
    x = rng.normal(size=12)
    np.testing.assert_allclose(moderators.correlations(x, y)[0], [stats.pearsonr(x, y[:, v])[0] for v in range(5)])
    groups = np.repeat([0, 1, 2], 4)
    np.testing.assert_allclose(
        moderators.f_statistics(groups, y)[0],
        [stats.f_oneway(*(y[groups == g, v] for g in range(3)))[0] for v in range(5)],
    )
    rho = moderators.statistic(x, "numeric", y, rank_response=True)
    np.testing.assert_allclose(rho, [stats.spearmanr(x, y[:, v])[0] for v in range(5)])


def test_moderator_values_kinds_and_missing():
    table = pd.DataFrame({"sessions": [8, None, 12], "imaging": ["task_fmri", None, "pet_spect"],
                          "target": ["dlpfc", "dlpfc", None]}, index=["a", "b", "c"])
    v, kind = moderators.moderator_values(table, "sessions", ["c", "a", "b"])
    assert kind == "numeric" and v[0] == 12 and v[1] == 8 and np.isnan(v[2])
    v, kind = moderators.moderator_values(table, "imaging", ["a", "b", "c"])
    assert kind == "categorical" and list(v) == ["task_fmri", None, "pet_spect"]
    assert list(moderators.present(v, kind)) == [True, False, True]


@pytest.fixture(scope="module")
def planted():
    """16 experiments; the 10 with the most sessions report a focus near CENTRE."""
    studyset = simulate_studyset([{"n": 16, "centre": CENTRE, "hits": 10}], n_foci=6, spread_mm=3.0, seed=11)
    result = MonteCarloFWE(n_iters=200, seed=1, n_cores=1).correct(ALE().fit(studyset))
    ids = result.experiment_ids  # sim0_000-1 ... sim0_015-1: the first 10 hit
    sessions = 16.0 - np.arange(16)  # more sessions, the effect
    shuffled = np.random.default_rng(5).permutation(sessions)
    table = pd.DataFrame({"sessions": sessions, "weeks": shuffled,
                          "imaging": ["task_fmri"] * 10 + ["resting_fmri"] * 6}, index=ids)
    table.loc[ids[15], "weeks"] = np.nan  # one missing value: left out, counted
    return result, table


def test_planted_moderator_found_in_its_cluster_shuffled_not(planted):
    result, table = planted
    clusters, labels = result_clusters(result)
    main = clusters[~clusters["is_subpeak"]]
    near = main[(main.peak_x - CENTRE[0]).abs().le(8) & (main.peak_y - CENTRE[1]).abs().le(8)
                & (main.peak_z - CENTRE[2]).abs().le(8)]
    assert len(near) == 1
    c = int(near.cluster_id.iloc[0])
    rows = moderators.cluster_moderators(result, labels, table, ["sessions", "weeks", "imaging"], n_perm=2000, seed=1)
    row = rows[rows.cluster_id == c].set_index("moderator")
    assert row.loc["sessions", "statistic"] > 0.5 and row.loc["sessions", "p_perm"] < 0.01
    assert row.loc["imaging", "p_perm"] < 0.01 and row.loc["imaging", "kind"] == "categorical"
    assert row.loc["weeks", "p_perm"] > 0.05
    assert row.loc["weeks", "n_experiments"] == 15


def test_whole_brain_finds_planted_moderator_not_shuffled(planted):
    result, table = planted
    found = moderators.whole_brain(result, table, "sessions", n_perm=500, seed=2)
    centre = result.grid.mm_to_vox(np.array([CENTRE], dtype=float))[0]
    index = np.flatnonzero(np.ravel_multi_index(np.argwhere(result.grid.mask).T, result.grid.shape)
                           == np.ravel_multi_index(centre, result.grid.shape))[0]
    assert found["stat"][index] > 0.5
    assert found["p"][index] < 0.05
    assert found["null_max"].shape == (500,)
    imaging = moderators.whole_brain(result, table, "imaging", n_perm=500, seed=2)
    assert imaging["kind"] == "categorical" and imaging["p"][index] < 0.05
    shuffled = moderators.whole_brain(result, table, "weeks", n_perm=500, seed=2)
    assert shuffled["n_experiments"] == 15
    assert shuffled["p"].min() >= 0.05


def test_plot_writes_png(planted, tmp_path):
    result, table = planted
    _, labels = result_clusters(result)
    response = moderators.cluster_response(result, labels)
    rows = moderators.cluster_moderators(result, labels, table, ["sessions", "imaging"], n_perm=100,
                                         response=response)
    for name in ("sessions", "imaging"):
        values, kind = moderators.moderator_values(table, name, result.experiment_ids)
        moderators.plot_moderator(tmp_path / f"{name}.png", name, values, kind, response, rows, result.experiment_ids)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
