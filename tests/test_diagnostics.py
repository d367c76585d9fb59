"""Per-cluster diagnostics: equality with NiMARE's Jackknife and FocusCounter, jackknife on planted effects."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from nimare_reference import load_nimare_dataset, nimare_ale

from neurochange.diagnostics import jackknife as diagnostics
from neurochange.inference import stats as inference
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.results.write import result_clusters
from neurochange.simulate import simulate_studyset
from neurochange.sources.io import read_studyset
from neurochange.studyset import StudySet

#: The main analysis's correction: cluster-forming p .001, brain null mask, cluster-level FWE.
CORRECTOR = MonteCarloFWE(cluster_forming_p=0.001, null_mask="brain", vfwe_only=False)


@pytest.fixture(scope="module")
def pain_corrected(pain_path):
    result = ALE().fit(read_studyset(pain_path))
    return MonteCarloFWE(n_iters=100, seed=3, n_cores=1).correct(result)


def test_contributions_and_focus_counts_equal_nimare(pain_path, pain_corrected):
    """Same clusters (our cluster-FWE z map given to NiMARE as its target), same numbers."""
    from nimare.diagnostics import FocusCounter, Jackknife

    _, labels = result_clusters(pain_corrected)
    n_clusters = int(labels.max())
    assert n_clusters >= 2
    share = diagnostics.contributions(pain_corrected, labels)
    counts = diagnostics.focus_counts(pain_corrected, labels)

    _, theirs = nimare_ale(load_nimare_dataset(pain_path))
    target = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    theirs.maps[target] = pain_corrected.maps[target].astype(np.float32)
    # p from 100 iterations is a multiple of .01: a z threshold between p = .04 and .05 keeps p < .05
    threshold = float(inference.p_to_z(np.array([0.045]))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Jackknife(target_image=target, target_threshold=threshold).transform(theirs)
        theirs = FocusCounter(target_image=target, target_threshold=threshold).transform(theirs)
    their_labels = theirs.maps["label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-positive"]
    ours_masked = labels[pain_corrected.grid.mask]
    jack = theirs.tables[f"{target}_diag-Jackknife_tab-counts_tail-positive"].set_index("id")
    focus = theirs.tables[f"{target}_diag-FocusCounter_tab-counts_tail-positive"].set_index("id")
    assert len(jack.columns) == n_clusters
    ids = pain_corrected.experiment_ids
    assert sorted(jack.index) == ids
    for column in jack.columns:
        their_id = int(column.split()[-1])
        ours = np.unique(ours_masked[np.asarray(their_labels) == their_id])
        assert len(ours) == 1 and ours[0] > 0  # one-to-one: the same voxels
        c = int(ours[0]) - 1
        assert np.sum(ours_masked == c + 1) == np.sum(np.asarray(their_labels) == their_id)
        np.testing.assert_allclose(share[:, c], jack.loc[ids, column].to_numpy(float), atol=2e-6)
        np.testing.assert_array_equal(counts[:, c], focus.loc[ids, column].to_numpy(int))


def test_contributions_of_a_lone_experiment_are_one():
    """A cluster that only one experiment reaches: its contribution is 1, everyone else's 0."""
    studyset = simulate_studyset([{"n": 4, "centre": None}], n_foci=2, seed=1)
    result = ALE().fit(studyset)
    labels = np.zeros(result.grid.shape, dtype=np.int32)
    i, j, k = result.foci_ijk[0]
    labels[i, j, k] = 1
    share = diagnostics.contributions(result, labels)
    assert share.shape == (4, 1)
    owner = result.focus_experiment[0]
    assert share[owner, 0] == pytest.approx(1.0)
    assert np.all(share[np.arange(4) != owner, 0] < 1e-6)
    counts = diagnostics.focus_counts(result, labels)
    assert counts[owner, 0] >= 1 and counts.sum() == counts[owner, 0]


def _lone_cluster_studyset(seed=0):
    """Eight experiments of random foci plus one (n = 200) whose 27 foci fill an 8 mm cube at (40, 20, 30)."""
    base = simulate_studyset([{"n": 8, "centre": None}], n_foci=4, seed=seed)
    grid = np.stack(np.meshgrid(*[np.arange(-4, 5, 4)] * 3, indexing="ij"), -1).reshape(-1, 3) + [40, 20, 30]
    lone = StudySet(
        pd.DataFrame({"study_id": ["lone"]}),
        pd.DataFrame({"experiment_id": ["lone-1"], "study_id": ["lone"], "contrast_id": ["1"], "n": [200]}),
        pd.DataFrame({"experiment_id": "lone-1", "x": grid[:, 0], "y": grid[:, 1], "z": grid[:, 2], "space": "MNI"}),
    )
    return StudySet.concat([base, lone])


def test_cluster_resting_on_one_experiment_is_flagged():
    result = MonteCarloFWE(n_iters=200, seed=1, n_cores=1).correct(ALE().fit(_lone_cluster_studyset()))
    table, labels = result_clusters(result)
    main = table[~table["is_subpeak"]]
    near = main[(main.peak_x - 40).abs().le(10) & (main.peak_y - 20).abs().le(10) & (main.peak_z - 30).abs().le(10)]
    assert len(near) == 1
    c = int(near.cluster_id.iloc[0]) - 1
    share = diagnostics.contributions(result, labels)
    counts = diagnostics.focus_counts(result, labels)
    survived, _ = diagnostics.jackknife(result, labels, CORRECTOR, 0.05, n_iters=200, seed=5, n_cores=1)
    summary, long = diagnostics.cluster_summary(result.experiment_ids, share, counts, survived)
    row = summary.iloc[c]
    assert row.max_contributor == "lone-1"
    assert row.max_contribution > 0.9
    assert row.rests_on == "lone-1"  # dropping it, and only it, loses the cluster
    assert row.jackknife_k == len(result.experiment_ids) - 1
    assert set(long.columns) == {"cluster_id", "experiment_id", "n_foci", "contribution", "survives_without"}
    assert len(long) == share.size


def test_cluster_in_most_experiments_survives_every_leave_one_out():
    studyset = simulate_studyset([{"n": 10, "centre": (-40, 20, 30), "hits": 8}], n_foci=5, spread_mm=2.0, seed=4)
    result = MonteCarloFWE(n_iters=200, seed=2, n_cores=1).correct(ALE().fit(studyset))
    table, labels = result_clusters(result)
    main = table[~table["is_subpeak"]]
    near = main[(main.peak_x + 40).abs().le(8) & (main.peak_y - 20).abs().le(8) & (main.peak_z - 30).abs().le(8)]
    assert len(near) == 1
    c = int(near.cluster_id.iloc[0]) - 1
    survived, best_p = diagnostics.jackknife(result, labels, CORRECTOR, 0.05, n_iters=200, seed=5, n_cores=1)
    assert survived[:, c].all()
    assert np.all(best_p[:, c] < 0.05)


def test_refit_without_nothing_reproduces_the_result(pain_corrected):
    again = diagnostics.refit(pain_corrected)
    np.testing.assert_array_equal(again.maps["stat"], pain_corrected.maps["stat"])
    np.testing.assert_array_equal(again.maps["p"], pain_corrected.maps["p"])
