"""Fail-safe N: the search, the critical values, the null experiments, and growth with planted effects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurochange.diagnostics import failsafe
from neurochange.inference import stats as inference
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta.ale import ALE
from neurochange.results.write import result_clusters
from neurochange.simulate import simulate_studyset

#: The main analysis's correction: cluster-forming p .001, brain null mask, cluster-level FWE.
CORRECTOR = MonteCarloFWE(cluster_forming_p=0.001, null_mask="brain", vfwe_only=False)


def test_search_finds_each_clusters_boundary_exactly():
    truth = np.array([1, 7, 33, 150, 10_000])  # lost from this many added on

    calls = []

    def survive(m):
        calls.append(m)
        return m < truth

    values, censored, n_eval = failsafe.search(survive, len(truth), start=20, max_added=200)
    np.testing.assert_array_equal(values, [1, 7, 33, 150, 200])
    np.testing.assert_array_equal(censored, [False, False, False, False, True])
    assert len(calls) == len(set(calls)) == n_eval  # never evaluates one m twice
    assert n_eval < 40  # shared bisection, not a scan


@pytest.mark.parametrize("cluster_p", [0.05, 0.01])
def test_critical_value_agrees_with_null_to_p(cluster_p):
    rng = np.random.default_rng(0)
    null = rng.integers(0, 300, size=1000).astype(float)
    crit = failsafe.critical_value(null, cluster_p)
    observed = np.arange(0, 400, dtype=float)
    p = inference.null_to_p(observed, null)
    np.testing.assert_array_equal(observed > crit, p < cluster_p)


def test_noise_experiments_resample_sizes_and_counts():
    studyset = simulate_studyset([{"n": 6, "centre": None}], n_foci=5, seed=2)
    result = ALE().fit(studyset)
    result = dataclasses.replace(result, inputs=dataclasses.replace(
        result.inputs, sample_sizes=np.array([10.0, 12, 14, 16, 18, 20])))
    assert (result.inputs.foci_per_experiment() == 5).all()
    noise = failsafe.noise_experiments(result, 50, np.random.default_rng(1), result.grid.mask)
    assert len(noise.experiments) == 50
    assert set(noise.experiments["n"].astype(int)) <= {10, 12, 14, 16, 18, 20}
    assert (noise.foci.groupby("experiment_id").size() == 5).all()
    ijk = result.grid.mm_to_vox(noise.foci[["x", "y", "z"]].to_numpy(float))
    assert result.grid.mask[tuple(ijk.T)].all()


def test_added_null_map_equals_refit():
    studyset = simulate_studyset([{"n": 5, "centre": (30, 20, 10), "hits": 5}], n_foci=4, seed=3)
    result = ALE().fit(studyset)
    noise = failsafe.noise_experiments(result, 4, np.random.default_rng(2), result.grid.mask)
    added = failsafe.AddedNull(result, noise)
    from neurochange.diagnostics.jackknife import refit

    full = refit(result, extra=failsafe._first(noise, 3))
    np.testing.assert_allclose(added.stat(3), full.maps["stat"], rtol=0, atol=1e-14)


def _fail_safe(hits, seed=0):
    studyset = simulate_studyset([{"n": 12, "centre": (-38, 22, 28), "hits": hits}], n_foci=10, spread_mm=4.0,
                                 seed=seed)
    result = MonteCarloFWE(n_iters=200, seed=1, n_cores=1).correct(ALE().fit(studyset))
    table, labels = result_clusters(result)
    main = table[~table["is_subpeak"]]
    near = main[(main.peak_x + 38).abs().le(8) & (main.peak_y - 22).abs().le(8) & (main.peak_z - 28).abs().le(8)]
    assert len(near) == 1
    c = int(near.cluster_id.iloc[0]) - 1
    out = failsafe.fail_safe_n(result, labels, CORRECTOR, 0.05, n_repetitions=2,
                               n_iters=200, seed=7, n_cores=1)
    assert out["values"].shape == (2, int(labels.max()))
    assert out["ci_low"][c] <= out["median"][c] <= out["ci_high"][c]
    return out["median"][c]


def test_fail_safe_n_grows_with_experiments_carrying_the_effect():
    assert _fail_safe(hits=9) > _fail_safe(hits=6)


def test_rule_at_zero_added_reproduces_the_main_clusters():
    """With the main analysis's threshold and null, the survival rule keeps exactly its clusters."""
    from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, NULL_SIZE

    studyset = simulate_studyset([{"n": 10, "centre": (30, -60, 40), "hits": 7}], n_foci=6, spread_mm=3.0, seed=5)
    result = MonteCarloFWE(n_iters=200, seed=2, n_cores=1).correct(ALE().fit(studyset))
    _, labels = result_clusters(result)
    assert labels.max() >= 1
    u = inference.hist_threshold(result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS], 0.001)
    crit = failsafe.critical_value(result.nulls[NULL_SIZE], 0.05)
    assert failsafe.survives(result.maps["stat"], result.grid, labels, u, crit, "cluster").all()
    # and a cluster-free labelling of the supra-threshold but non-significant clusters is not kept
    from neurochange.inference.clusters import label_clusters

    supra, sizes = label_clusters(result.get_volume("stat") > u)
    small = np.where(np.isin(supra, np.flatnonzero(sizes <= crit) + 1), supra, 0)
    small = np.unique(small, return_inverse=True)[1].reshape(supra.shape)
    if small.max():
        assert not failsafe.survives(result.maps["stat"], result.grid, small, u, crit, "cluster").any()
