"""Nulls on a Dask cluster (a LocalCluster of 2 worker processes) are byte-identical to local threads: ALE and
MKDA Monte Carlo, chi-square and subtraction label permutations; whatever the batching; with a worker killed
mid-run; and the command line's --scheduler, including an unreachable scheduler (one line, exit 2)."""

from __future__ import annotations

import functools
import os
import signal
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from test_ale import neurosynth_subset

from neurochange.cli import cli
from neurochange.compare.subtraction import Subtraction
from neurochange.inference import executors, montecarlo, null_masks
from neurochange.inference.executors import DaskExecutor, ThreadExecutor, run_chunks, using
from neurochange.inference.permutation import LabelPermutation
from neurochange.meta import chi2 as c2
from neurochange.meta.ale import ALE
from neurochange.meta.mkda import MKDADensity
from neurochange.meta.result import NULL_MASS, NULL_SIZE, NULL_VOXEL
from neurochange.sources.io import read_studyset


@pytest.fixture(scope="module")
def pain(pain_path):
    studyset = read_studyset(pain_path)
    studyset.experiments["n"] = 20
    return studyset


@pytest.fixture(scope="module")
def cluster():
    with DaskExecutor("local", 2) as executor:
        yield executor


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("estimator", [ALE(), MKDADensity()], ids=["ale", "mkda"])
def test_monte_carlo_nulls_equal_on_threads_and_on_dask(pain, cluster, estimator):
    result = estimator.fit(pain)
    corrector = montecarlo.MonteCarloFWE(n_iters=250, seed=11, n_cores=2)
    local, _ = corrector.null_distributions(result)
    remote, record = corrector.null_distributions(result, executor=cluster)
    _equal(local, remote)
    assert record["n_iters"] == 250 and cluster.n_workers == 2


def test_label_permutations_equal_on_threads_and_on_dask(data_mirror, pain_path, cluster):
    fitted = c2.MKDAChi2().fit(neurosynth_subset(data_mirror, 20, seed=1), neurosynth_subset(data_mirror, 24, seed=2))
    local, _ = c2.fwe_null(fitted, LabelPermutation(n_iters=150, seed=3, n_cores=2))
    with using(cluster):
        remote, _ = c2.fwe_null(fitted, LabelPermutation(n_iters=150, seed=3, n_cores=2))
    np.testing.assert_array_equal(local, remote)
    a, b = read_studyset(pain_path), read_studyset(pain_path)
    a = a.filter_experiments(np.arange(len(a.experiments)) < 10)
    b = b.filter_experiments(np.arange(len(b.experiments)) >= 10)
    for s in (a, b):
        s.experiments["n"] = 20
    threads = Subtraction(n_iters=120, seed=4, n_cores=2).fit(a, b)
    with using(cluster):
        dask = Subtraction(n_iters=120, seed=4, n_cores=2).fit(a, b)
    _equal(threads.nulls, dask.nulls)
    for name in threads.maps:
        np.testing.assert_array_equal(threads.maps[name], dask.maps[name], err_msg=name)


def test_batching_does_not_change_the_nulls(pain):
    result = ALE().fit(pain)
    reference, _ = montecarlo.MonteCarloFWE(n_iters=350, seed=2, n_cores=2).null_distributions(result)
    threshold = result.estimator.cluster_forming(result, 0.001)[1]
    engine = result.estimator.null_engine(result, null_masks.null_mask(result.grid, "brain"), threshold, 2)
    with ThreadExecutor(2) as pool:
        for batch in (1, 3):
            run = run_chunks(functools.partial(montecarlo._null_chunk, seed=2), 350, pool, batch=batch,
                             shared=(engine,))
            for i, key in enumerate((NULL_VOXEL, NULL_SIZE, NULL_MASS)):
                np.testing.assert_array_equal(np.concatenate([r[i] for r in run.results]), reference[key])


def test_a_worker_killed_mid_run_does_not_change_the_nulls(pain):
    result = ALE().fit(pain)
    corrector = montecarlo.MonteCarloFWE(n_iters=3000, seed=9, n_cores=2)
    reference, _ = corrector.null_distributions(result)
    with DaskExecutor("local", 2) as executor:
        progress, killed = [], []

        def kill_one():
            pid = next(iter(executor.client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        def on_progress(done, total):
            progress.append(done)
            if done >= 500 and not killed:
                threading.Thread(target=kill_one).start()

        remote, _ = corrector.null_distributions(result, progress=on_progress, executor=executor)
    assert killed and progress[-1] == 3000
    _equal(reference, remote)


def test_cli_scheduler_local_equals_threads_and_unreachable_is_one_line(pain_path, tmp_path, monkeypatch):
    runner = CliRunner()
    args = [pain_path.as_posix(), "--iters", "200", "--seed", "8", "--sample-size", "20", "--cores", "2"]
    ok = runner.invoke(cli, ["ale", *args, "--out", str(tmp_path / "threads")])
    assert ok.exit_code == 0, ok.output
    ok = runner.invoke(cli, ["ale", *args, "--out", str(tmp_path / "dask"), "--scheduler", "local"])
    assert ok.exit_code == 0, ok.output
    a, b = (np.load(tmp_path / name / "nulls.npz") for name in ("threads", "dask"))
    _equal(dict(a), dict(b))
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    bad = runner.invoke(cli, ["ale", *args, "--out", str(tmp_path / "bad"), "--scheduler", "tcp://127.0.0.1:9"])
    assert bad.exit_code == 2
    assert bad.output.count("\n") == 1 and "cannot reach the Dask scheduler 'tcp://127.0.0.1:9'" in bad.output
    assert not (tmp_path / "bad").exists()
    monkeypatch.setenv(executors.ENV_SCHEDULER, "tcp://127.0.0.1:9")
    bad = runner.invoke(cli, ["ale", *args, "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "cannot reach the Dask scheduler" in bad.output


def test_balanced_subtraction_and_region_tests_equal_on_dask(pain, cluster):
    from neurochange.compare.balanced import BalancedSubtraction
    from neurochange.hypotheses.regions import region_convergence

    ids = sorted(pain.experiments["experiment_id"])
    a, b = pain.filter_experiments(pain.experiments["experiment_id"].isin(ids[:10]).to_numpy()), \
        pain.filter_experiments(pain.experiments["experiment_id"].isin(ids[10:]).to_numpy())
    settings = {"n_iters": 30, "n_subsamples": 20, "difference_iterations": 50, "seed": 6, "n_cores": 2}
    threads = BalancedSubtraction(**settings).fit(a, b)
    with using(cluster):
        dask = BalancedSubtraction(**settings).fit(a, b)
    for name in threads.maps:
        np.testing.assert_array_equal(threads.maps[name], dask.maps[name], err_msg=name)
    grid = ALE().fit(pain).grid
    masks = {"left": grid.mask & (np.indices(grid.shape)[0] < grid.shape[0] // 2),
             "right": grid.mask & (np.indices(grid.shape)[0] >= grid.shape[0] // 2)}
    local = region_convergence(pain, masks, grid, n_iters=250, seed=3, n_cores=2)
    with using(cluster):
        remote = region_convergence(pain, masks, grid, n_iters=250, seed=3, n_cores=2)
    np.testing.assert_array_equal(local["null"], remote["null"])
    np.testing.assert_array_equal(local["p"], remote["p"])


def test_jackknife_refits_run_as_tasks_with_the_same_outcome(pain, cluster):
    from neurochange.diagnostics.jackknife import jackknife
    from neurochange.inference.clusters import significant_clusters

    corrector = montecarlo.MonteCarloFWE(n_iters=200, seed=1, n_cores=2)
    result = corrector.correct(ALE().fit(pain))
    labels = significant_clusters(result, 0.05)[0]
    assert labels.max() >= 1
    local = jackknife(result, labels, corrector, n_iters=100, seed=5, n_cores=2)
    calls = []
    with using(cluster):
        remote = jackknife(result, labels, corrector, n_iters=100, seed=5, n_cores=2,
                           progress=lambda done, total: calls.append(done))
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a, b)
    assert calls == list(range(1, result.n_experiments + 1))


def test_a_chunk_that_kills_every_worker_is_one_line_and_nothing_written(pain_path, tmp_path, monkeypatch):
    def crash(chunk, engine, seed):  # a closure: Dask sends it by value, so the workers run this one
        os._exit(1)

    monkeypatch.setattr(montecarlo, "_null_chunk", crash)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["ale", pain_path.as_posix(), "--iters", "200", "--sample-size", "20", "--cores",
                                   "2", "--out", str(out), "--scheduler", "local"])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1
    assert "the chunk of iterations 0-99 could not finish: the Dask workers running it died each time" in res.output
    assert not out.exists()


def test_a_scheduler_without_workers_or_a_server_that_is_not_dask_is_one_line(pain_path, tmp_path, monkeypatch):
    import socket

    from distributed import LocalCluster

    args = ["ale", pain_path.as_posix(), "--iters", "100", "--sample-size", "20", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(executors, "WORKER_WAIT_S", 1)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        res = CliRunner().invoke(cli, [*args, "--scheduler", empty.scheduler_address])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "has no workers (waited 1 s): start some (dask worker" in res.output
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as server:  # accepts connections and never answers (a dashboard's port, say)
        server.bind(("127.0.0.1", 0))
        server.listen()
        res = CliRunner().invoke(cli, [*args, "--scheduler", f"tcp://127.0.0.1:{server.getsockname()[1]}"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "cannot reach the Dask scheduler" in res.output
    assert not (tmp_path / "out").exists()
