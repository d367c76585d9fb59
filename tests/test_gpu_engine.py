"""The GPU null engines' array code (ALE, MKDA density, KDA), run with NumPy (CI has no GPU): equal to the CPU
engines on seeded draws (maximum statistic to relative 1e-12, largest cluster sizes exactly, masses to 1e-9),
through the corrector too; and --device gpu without CuPy or with an estimator that has no GPU engine: one line,
exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_ale import neurosynth_subset

from neurochange.cli import cli
from neurochange.errors import InputError
from neurochange.inference import montecarlo, null_masks
from neurochange.inference.engines import array_ale
from neurochange.inference.engines.array_ale import ArrayAleNullEngine, resolve_device
from neurochange.inference.engines.array_sphere import ArraySphereNullEngine
from neurochange.meta.ale import ALE
from neurochange.meta.jale import JaleALE
from neurochange.meta.mkda import KDA, MKDADensity
from neurochange.sources.io import read_studyset


def _engines(studyset, null_mask="brain", batch=8):
    result = ALE().fit(studyset)
    threshold = result.estimator.cluster_forming(result, 0.001)[1]
    null_voxels = null_masks.null_mask(result.grid, null_mask)
    cpu = result.estimator.null_engine(result, null_voxels, threshold, 1)
    arrays = ArrayAleNullEngine(result.inputs, result.estimator.experiment_kernels(result.inputs), null_voxels,
                                threshold, np, batch=batch)
    return cpu, arrays


def _assert_equal_iterations(cpu, arrays, seed: int, n_it: int) -> None:
    draws = montecarlo.chunk_draws(seed, 0, n_it, cpu.n_foci, cpu.n_null)
    (a_max, a_size, a_mass), (b_max, b_size, b_mass) = cpu.run(draws), arrays.run(draws)
    np.testing.assert_allclose(b_max, a_max, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(b_size, a_size)
    np.testing.assert_allclose(b_mass, a_mass, rtol=1e-9, atol=0)
    assert (a_size > 0).any()


@pytest.mark.parametrize("batch", [4, 64])
def test_numpy_path_equals_the_cpu_engine_on_the_pain_set(pain_path, batch):
    studyset = read_studyset(pain_path)  # its own sample sizes: several kernels
    cpu, arrays = _engines(studyset, batch=batch)
    assert arrays.n_foci == cpu.n_foci and arrays.n_null == cpu.n_null and len(arrays.kernels) > 1
    _assert_equal_iterations(cpu, arrays, seed=3, n_it=8)


def test_numpy_path_equals_the_cpu_engine_on_neurosynth_with_grey_matter_nulls(data_mirror):
    cpu, arrays = _engines(neurosynth_subset(data_mirror, 40, seed=7), null_mask="gm", batch=16)
    _assert_equal_iterations(cpu, arrays, seed=11, n_it=4)


@pytest.mark.parametrize("estimator", [MKDADensity(), KDA(), KDA(radius=8.0, value=0.5)])
@pytest.mark.parametrize("batch_foci", [30, 4096])
def test_numpy_path_of_the_sphere_engine_equals_the_cpu_engine(pain_path, estimator, batch_foci):
    result = estimator.fit(read_studyset(pain_path))
    threshold = estimator.cluster_forming(result, 0.001)[1]
    null_voxels = null_masks.null_mask(result.grid, "brain")
    cpu = estimator.null_engine(result, null_voxels, threshold)
    arrays = ArraySphereNullEngine(result.inputs, estimator.radius, estimator.value, estimator.sum_overlap,
                                   null_voxels, threshold, np, batch_foci=batch_foci)
    assert arrays.n_foci == cpu.n_foci and arrays.n_null == cpu.n_null
    assert len(arrays.bounds) > 2 if batch_foci == 30 else len(arrays.bounds) == 2
    _assert_equal_iterations(cpu, arrays, seed=5, n_it=6)


def test_numpy_path_of_the_sphere_engine_on_neurosynth_with_grey_matter_nulls(data_mirror):
    studyset = neurosynth_subset(data_mirror, 40, seed=7)
    for estimator in (MKDADensity(), KDA()):
        result = estimator.fit(studyset)
        threshold = estimator.cluster_forming(result, 0.001)[1]
        null_voxels = null_masks.null_mask(result.grid, "gm")
        cpu = estimator.null_engine(result, null_voxels, threshold)
        arrays = ArraySphereNullEngine(result.inputs, estimator.radius, estimator.value, estimator.sum_overlap,
                                       null_voxels, threshold, np, batch_foci=200)
        _assert_equal_iterations(cpu, arrays, seed=13, n_it=4)


def test_the_corrector_runs_the_array_engine_when_asked(pain_path, monkeypatch):
    studyset = read_studyset(pain_path)
    result = ALE().fit(studyset)
    cpu, _ = montecarlo.MonteCarloFWE(n_iters=120, seed=4, n_cores=2).null_distributions(result)
    monkeypatch.setattr("neurochange.meta.ale.gpu_namespace", lambda: np)  # NumPy standing in for CuPy
    monkeypatch.setattr(array_ale, "gpu_namespace", lambda: np)
    arrays, record = montecarlo.MonteCarloFWE(n_iters=120, seed=4, n_cores=2, device="gpu").null_distributions(result)
    assert record["device"] == "gpu (CuPy)" and record["n_cores"] == 1
    for key in cpu:
        np.testing.assert_allclose(arrays[key], cpu[key], rtol=1e-9, atol=0, err_msg=key)
    result = MKDADensity().fit(studyset)
    cpu, _ = montecarlo.MonteCarloFWE(n_iters=60, seed=4, n_cores=2).null_distributions(result)
    monkeypatch.setattr("neurochange.meta.mkda.gpu_namespace", lambda: np)
    arrays, record = montecarlo.MonteCarloFWE(n_iters=60, seed=4, n_cores=2, device="gpu").null_distributions(result)
    assert record["device"] == "gpu (CuPy)"
    for key in cpu:
        np.testing.assert_allclose(arrays[key], cpu[key], rtol=1e-9, atol=0, err_msg=key)


def test_device_choice(pain_path):
    with pytest.raises(InputError, match="needs CuPy and a CUDA GPU"):
        resolve_device("gpu", ALE(), 300)
    with pytest.raises(InputError, match="needs CuPy and a CUDA GPU"):
        resolve_device("gpu", MKDADensity(), 300)
    with pytest.raises(InputError, match="no GPU null engine for JaleALE"):
        resolve_device("gpu", JaleALE(), 300)
    with pytest.raises(InputError, match="with TFCE"):
        resolve_device("gpu", ALE(tfce=True), 300)
    assert resolve_device("auto", ALE(), 3000) == "cpu"  # no CuPy here
    assert resolve_device("auto", MKDADensity(), 3000) == "cpu"
    with pytest.raises(InputError, match="device must be one of cpu, gpu, auto"):
        resolve_device("tpu", ALE(), 3)


@pytest.mark.parametrize("args, words", [
    (["ale", "--sample-size", "20", "--device", "gpu"], "needs CuPy and a CUDA GPU"),
    (["mkda", "--device", "gpu"], "needs CuPy and a CUDA GPU"),
    (["kda", "--device", "gpu"], "needs CuPy and a CUDA GPU"),
    (["ale", "--tfce", "--sample-size", "20", "--device", "gpu"], "with TFCE"),
])
def test_cli_device_gpu_without_a_gpu_is_one_line(pain_path, tmp_path, args, words):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, [args[0], str(pain_path), "--out", str(out), "--iters", "20", *args[1:]])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and words in res.output
    assert not out.exists()


@pytest.mark.parametrize("estimator", ["ale", "kda", "subtraction"])
def test_the_gpu_benchmark_runs_with_numpy_standing_in_for_cupy(estimator, data_mirror, monkeypatch, capsys):
    # a GPU session is short: its one prepared script must not fail on anything but the GPU
    import importlib.util
    import sys
    import types
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_null.py"
    spec = importlib.util.spec_from_file_location("gpu_null", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pool = types.SimpleNamespace(total_bytes=lambda: 0)
    cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(synchronize=lambda: None),
                                 runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"NumPy"}))
    monkeypatch.setattr(np, "get_default_memory_pool", lambda: pool, raising=False)
    monkeypatch.setattr(np, "cuda", cuda, raising=False)
    monkeypatch.setattr(array_ale, "gpu_namespace", lambda: np)
    monkeypatch.setattr(sys, "argv", ["gpu_null.py", "--estimator", estimator, "--experiments", "12", "--iters", "4",
                                      "--mirror", str(data_mirror)])
    bench.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["set"] for line in lines] == ["pain", "neurosynth"]
    assert all(line["maxima_equal"] and line["estimator"] == estimator for line in lines)


# ---------------------------------------------------------------------------- the subtraction's permutations
def _subtraction_rows(studyset, estimator):
    """The pain set split in two (first 11 experiments by id, the rest) as the subtraction's sparse rows."""
    from neurochange.compare.subtraction import _group_values, _keep_difference, _sparse_ma

    ids = sorted(studyset.experiments["experiment_id"])
    r1, r2 = estimator.fit(studyset.filter_experiments(ids[:11])), estimator.fit(studyset.filter_experiments(ids[11:]))
    support, indptr, cols, ma = _sparse_ma([r1, r2])
    additive = estimator.summary_statistic == "sum"
    values = ma if additive else 1.0 - ma
    n1, n = r1.n_experiments, r1.n_experiments + r2.n_experiments
    total, observed = np.empty(len(support)), np.empty(len(support))
    _group_values(indptr, cols, values, np.arange(n), additive, total)
    _keep_difference(indptr, cols, values, np.arange(n), n1, total, np.empty(len(support)), observed, additive)
    return support, indptr, cols, values, total, observed, n1, n, additive


@pytest.mark.parametrize("estimator", [ALE(), MKDADensity(), KDA()])
@pytest.mark.parametrize("batch", [7, 100])
def test_numpy_path_of_the_subtraction_equals_the_cpu_permutations(pain_path, estimator, batch):
    from neurochange.compare.subtraction import _cluster_nulls, _largest, _permutation_tails
    from neurochange.inference.engines.array_subtraction import ArraySubtraction
    from neurochange.inference.unionfind import neighbour_table
    from neurochange.space import mni_2mm

    support, indptr, cols, values, total, observed, n1, n, additive = _subtraction_rows(read_studyset(pain_path),
                                                                                        estimator)
    rng = np.random.default_rng(2)
    perms = np.stack([rng.permutation(n) for _ in range(30)]).astype(np.int64)
    upper, lower = np.zeros(len(support), dtype=np.int64), np.zeros(len(support), dtype=np.int64)
    abs_max, diffs = np.zeros(len(perms)), np.zeros((len(perms), len(support)), dtype=np.float32)
    _permutation_tails(indptr, cols, values, perms, n1, total, observed, upper, lower, abs_max, diffs, additive)
    engine = ArraySubtraction(indptr, cols, values, total, n1, additive, np, batch=batch)
    n_top = 5000
    got = engine.tails(perms, observed, n_top)
    # bit for bit: the same differences, so the same tails, maxima and kept values
    np.testing.assert_array_equal(got[0], upper)
    np.testing.assert_array_equal(got[1], lower)
    np.testing.assert_array_equal(got[2], abs_max)
    np.testing.assert_array_equal(np.sort(got[3]), np.sort(_largest(np.abs(diffs).ravel(), n_top)))
    assert (upper + lower > len(perms)).any()  # exact ties with the observed split, counted in both tails
    grid = mni_2mm()
    threshold = float(np.quantile(np.abs(diffs), 0.999))
    size, mass = np.zeros(len(perms), dtype=np.int64), np.zeros(len(perms))
    _cluster_nulls(indptr, cols, values, perms, n1, total, threshold, neighbour_table(support, grid.mask), size, mass,
                   additive)
    got_size, got_mass = engine.clusters(perms, threshold, np.argwhere(grid.mask)[support], grid.shape)
    np.testing.assert_array_equal(got_size, size)
    np.testing.assert_allclose(got_mass, mass, rtol=1e-9, atol=0)
    assert (size > 1).sum() >= 5  # clusters to compare in most permutations


def test_the_subtraction_runs_the_array_engine_when_asked(pain_path, monkeypatch):
    from neurochange.compare.subtraction import Subtraction

    studyset = read_studyset(pain_path)
    ids = sorted(studyset.experiments["experiment_id"])
    a, b = studyset.filter_experiments(ids[:11]), studyset.filter_experiments(ids[11:])
    cpu = Subtraction(n_iters=150, seed=6, n_cores=2, vfwe_only=False).fit(a, b)
    monkeypatch.setattr("neurochange.compare.subtraction.gpu_namespace", lambda: np)  # NumPy standing in for CuPy
    monkeypatch.setattr(array_ale, "gpu_namespace", lambda: np)
    gpu = Subtraction(n_iters=150, seed=6, n_cores=2, vfwe_only=False, device="gpu").fit(a, b)
    assert gpu.params["subtraction"]["device"] == "gpu (CuPy)" and "device" not in cpu.params["subtraction"]
    for key in cpu.nulls:
        rtol = 1e-9 if "mass" in key else 0
        np.testing.assert_allclose(gpu.nulls[key], cpu.nulls[key], rtol=rtol, atol=0, err_msg=key)
    for key in cpu.maps:
        np.testing.assert_array_equal(gpu.maps[key], cpu.maps[key], err_msg=key)
    with pytest.raises(ValueError, match="CPU only"):
        Subtraction(n_iters=10, ties="nimare", device="gpu").fit(a, b)


@pytest.mark.parametrize("extra, words", [([], "needs CuPy and a CUDA GPU"),
                                          (["--balanced"], "the balanced subtraction has no GPU engine")])
def test_contrast_device_gpu_without_a_gpu_is_one_line(nimare_test_data, tmp_path, extra, words):
    out = tmp_path / "out"
    a, b = nimare_test_data / "test_sleuth_file.txt", nimare_test_data / "test_sleuth_file2.txt"
    res = CliRunner().invoke(cli, ["contrast", str(a), str(b), "--out", str(out), "--iters", "20", "--device", "gpu",
                                   *extra])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and words in res.output, res.output
    assert not out.exists()
