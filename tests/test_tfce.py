"""TFCE in the NiMARE convention (``ALE(tfce=True)``, ``neurochange ale --tfce``): JALE's TFCE of NiMARE's z map,
with Monte Carlo FWE on the largest TFCE of each null map computed on the sparse engine."""

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from neurochange.cli import cli
from neurochange.inference import montecarlo, tfce
from neurochange.inference import stats as inference
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta import kernels
from neurochange.meta.ale import ALE
from neurochange.meta.result import NULL_APPROXIMATE, NULL_BINS, NULL_TFCE
from neurochange.sources.io import read_studyset


@pytest.fixture(scope="module")
def fitted(pain_path):
    return ALE(tfce=True).fit(read_studyset(pain_path))


def dense_null_tfce(result, foci_ijk: np.ndarray) -> float:
    """The largest TFCE of the null map with every focus at ``foci_ijk``, densely: MA maps, ALE, NiMARE's p and z,
    TFCE over the volume (:func:`neurochange.inference.tfce.tfce_map`)."""
    grid, inputs = result.grid, result.inputs
    keep = np.ones(grid.shape)
    for i, kernel in enumerate(result.estimator.experiment_kernels(inputs)):
        keep *= 1.0 - kernels.experiment_ma_numpy(kernel, foci_ijk[inputs.focus_experiment == i], grid.shape)
    stat = (1.0 - keep)[grid.mask]
    p = inference.hist_to_p(stat, result.nulls[NULL_APPROXIMATE], result.nulls[NULL_BINS])
    return float(tfce.tfce_map(grid.to_img(inference.p_to_z(p), np.float64).get_fdata()).max())


def test_observed_tfce_is_tfce_of_the_z_map(fitted):
    z = fitted.grid.to_img(fitted.maps["z"], np.float64).get_fdata()
    np.testing.assert_array_equal(fitted.maps["tfce"], tfce.tfce_map(z)[fitted.grid.mask])
    assert fitted.params["estimator"]["tfce"] is True


def test_null_tfce_equals_the_dense_computation(fitted):
    null_voxels = fitted.grid.mask
    engine = fitted.estimator.null_engine(fitted, null_voxels, 0.01, 1)
    draws = montecarlo.chunk_draws(3, 0, 6, engine.n_foci, engine.n_null)
    voxel, _, _, top_tfce = engine.run(draws)
    ijk = np.argwhere(null_voxels)
    for it in range(len(draws)):
        assert top_tfce[it] == pytest.approx(dense_null_tfce(fitted, ijk[draws[it]]), rel=1e-9)
    assert (top_tfce > 0).all() and (voxel > 0).all()


def test_monte_carlo_tfce_is_reproducible_and_used(fitted):
    runs = [MonteCarloFWE(n_iters=40, seed=11, n_cores=c).correct(fitted) for c in (1, 2)]
    np.testing.assert_array_equal(runs[0].nulls[NULL_TFCE], runs[1].nulls[NULL_TFCE])
    p = inference.null_to_p(fitted.maps["tfce"], runs[0].nulls[NULL_TFCE])
    np.testing.assert_array_equal(runs[0].maps["z_desc-tfce_level-voxel_corr-FWE_method-montecarlo"],
                                  inference.p_to_z(p))
    plain = MonteCarloFWE(n_iters=40, seed=11, n_cores=1).correct(ALE().fit_inputs(fitted.inputs))
    # TFCE adds its null; the other nulls of the same seed do not change
    np.testing.assert_array_equal(plain.nulls["values_level-voxel_corr-fwe_method-montecarlo"],
                                  runs[0].nulls["values_level-voxel_corr-fwe_method-montecarlo"])


def test_cli_tfce_in_the_nimare_convention(pain_path, tmp_path):
    res = CliRunner().invoke(cli, ["ale", str(pain_path), "--tfce", "--iters", "30", "--seed", "2",
                                   "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    names = {p.name for p in (tmp_path / "t").iterdir()}
    assert {"tfce.nii.gz", "z_desc-tfce_level-voxel_corr-FWE_method-montecarlo.nii.gz"} <= names
    assert json.loads((tmp_path / "t" / "provenance.json").read_text())["settings"]["tfce"] is True
    assert nib.load(tmp_path / "t" / "tfce.nii.gz").affine[0, 0] == 2.0  # RAS, as NiMARE's default grid
    res = CliRunner().invoke(cli, ["ale", str(pain_path), "--iters", "10", "--seed", "2", "--out", str(tmp_path / "n")])
    assert res.exit_code == 0 and "tfce.nii.gz" not in {p.name for p in (tmp_path / "n").iterdir()}
