"""The GPU null engine's array code, run with NumPy (CI has no GPU): equal to the CPU engine on seeded draws
(maximum ALE to relative 1e-12, largest cluster sizes exactly, masses to 1e-9), through the corrector too; and
--device gpu without CuPy or with an estimator that has no GPU engine: one line, exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from test_ale import neurosynth_subset

from neurochange.cli import cli
from neurochange.errors import InputError
from neurochange.inference import montecarlo, null_masks
from neurochange.inference.engines import array_ale
from neurochange.inference.engines.array_ale import ArrayAleNullEngine, resolve_device
from neurochange.meta.ale import ALE
from neurochange.meta.mkda import MKDADensity
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
    assert arrays.n_foci == cpu.n_foci and arrays.n_null == cpu.n_null and len(arrays.groups) > 1
    _assert_equal_iterations(cpu, arrays, seed=3, n_it=8)


def test_numpy_path_equals_the_cpu_engine_on_neurosynth_with_grey_matter_nulls(data_mirror):
    cpu, arrays = _engines(neurosynth_subset(data_mirror, 40, seed=7), null_mask="gm", batch=16)
    _assert_equal_iterations(cpu, arrays, seed=11, n_it=4)


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


def test_device_choice(pain_path):
    with pytest.raises(InputError, match="needs CuPy and a CUDA GPU"):
        resolve_device("gpu", ALE(), 300)
    with pytest.raises(InputError, match="no GPU null engine for MKDADensity"):
        resolve_device("gpu", MKDADensity(), 300)
    with pytest.raises(InputError, match="with TFCE"):
        resolve_device("gpu", ALE(tfce=True), 300)
    assert resolve_device("auto", ALE(), 3000) == "cpu"  # no CuPy here
    assert resolve_device("auto", MKDADensity(), 3000) == "cpu"
    with pytest.raises(InputError, match="device must be one of cpu, gpu, auto"):
        resolve_device("tpu", ALE(), 3)


@pytest.mark.parametrize("args, words", [
    (["ale", "--sample-size", "20", "--device", "gpu"], "needs CuPy and a CUDA GPU"),
    (["mkda", "--device", "gpu"], "no GPU null engine for MKDADensity"),
])
def test_cli_device_gpu_without_a_gpu_is_one_line(pain_path, tmp_path, args, words):
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, [args[0], str(pain_path), "--out", str(out), "--iters", "20", *args[1:]])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and words in res.output
    assert not out.exists()
