"""The JALE convention against JALE 0.2.10 itself, on JALE's bundled example.

``tests/data/jale/reference.npz`` was written by JALE 0.2.10 in an environment of its own
(``tests/data/jale/make_reference.py`` says how to regenerate it): the experiments tagged
``high`` of JALE's ``experiment_info.xlsx`` (25 experiments, 591 foci, 4 experiments in
Talairach). The same file is read here from JALE's wheel (fetched from PyPI and cached, as the
grey-matter prior is). Deterministic steps must agree exactly (foci to voxels, kernels, ALE, the
histogram null, z) or to rounding (TFCE); Monte Carlo nulls, which JALE draws unseeded, must
agree in distribution (Kolmogorov-Smirnov at alpha = 0.001) and in their 95th percentile (inside
the 99.9 % order-statistic interval of JALE's).
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

from neurochange.inference import jale as histogram
from neurochange.inference import tfce
from neurochange.inference.montecarlo import MonteCarloFWE
from neurochange.meta import kernels
from neurochange.meta.inputs import analysis_inputs
from neurochange.meta.jale import NULL_TAIL, JaleALE
from neurochange.meta.result import NULL_SIZE, NULL_TFCE, NULL_VOXEL
from neurochange.sources.download import fetch_package_file
from neurochange.sources.io import read_studyset
from neurochange.sources.io.jale_excel import experiments_with_tags
from neurochange.sources.jale_prior import WHEEL, jale_grid
from neurochange.space import tal_to_mni

REFERENCE = Path(__file__).parent / "data" / "jale" / "reference.npz"
N_ITERS = 300


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """JALE's example experiment file, taken from its wheel."""
    out = tmp_path_factory.mktemp("jale") / "experiment_info.xlsx"
    with zipfile.ZipFile(fetch_package_file(WHEEL)) as wheel:
        out.write_bytes(wheel.read("jale/assets/examples/experiment_info.xlsx"))
    return out


@pytest.fixture(scope="module")
def inputs(example):
    studyset = read_studyset(example, space_transform="jale")
    return analysis_inputs(studyset.filter_experiments(experiments_with_tags(studyset, ["high"])), jale_grid())


@pytest.fixture(scope="module")
def fitted(inputs):
    return JaleALE().fit_inputs(inputs)


def test_example_reads_as_jale_does(example):
    studyset = read_studyset(example, space_transform="jale")
    assert len(studyset.experiments) == 57 and len(studyset.foci) == 1152
    assert len(experiments_with_tags(studyset, ["high"])) == 25
    assert len(experiments_with_tags(studyset, ["inhibition"], ["high"])) == 32


def test_grid_and_talairach_rules():
    grid = jale_grid()
    assert grid.shape == (91, 109, 91) and grid.n_voxels == 211_590 and grid.affine[0, 0] == -2
    # rounded up, kept on the last voxel beyond the upper edge, the first beyond the lower
    assert grid.mm_to_vox(np.array([[-47.0, 10, 10], [-93, 141, 90], [92, -128, -73]])).tolist() == [
        [69, 68, 41], [90, 108, 81], [0, 0, 0]]
    converted = tal_to_mni(np.array([[49.0, 3, 4], [-40, 11, 4]]), "jale")
    assert np.array_equal(converted, np.round(tal_to_mni(np.array([[49.0, 3, 4], [-40, 11, 4]]), "icbm_spm")))


def test_foci_and_kernels_equal_jale(inputs, reference):
    for j, article in enumerate(reference["articles"]):
        i = next(k for k, e in enumerate(inputs.experiment_ids) if e.split("-")[0] == article)
        theirs = sorted(map(tuple, reference["ijk"][reference["focus_experiment"] == j]))
        assert sorted(map(tuple, inputs.experiment_foci(i))) == theirs, article
    for key in reference.files:
        if key.startswith("kernel_"):
            cube = kernels.jale_kernel(kernels.fwhm_from_sample_size(int(key.split("_")[1]))).array()
            theirs = reference[key]
            pad = (theirs.shape[0] - cube.shape[0]) // 2
            # numpy 1.26 (JALE's pin) and numpy 2 compute exp to within one unit in the last place
            np.testing.assert_allclose(np.pad(cube, pad), theirs, rtol=1e-14, atol=1e-17, err_msg=key)


def test_ale_histogram_and_z_equal_jale(fitted, reference):
    assert np.array_equal(fitted.maps["stat"], reference["ale"])
    assert np.array_equal(fitted.nulls[NULL_TAIL], reference["hx_conv"])
    assert np.array_equal(fitted.maps["z"], reference["z"])
    np.testing.assert_allclose(fitted.maps["tfce"], reference["tfce"], rtol=1e-12, atol=1e-10)


def test_max_tfce_equals_the_full_map_maximum():
    rng = np.random.default_rng(4)
    for _ in range(5):
        z = np.clip(ndimage.gaussian_filter(rng.normal(size=(30, 40, 30)), 2) * 8, 0, None)
        flat = np.flatnonzero(z > 0)
        hs, step = tfce.levels(z.max())
        n = z.size
        top = tfce.max_tfce(flat, z.ravel()[flat], z.shape, hs, step, -np.ones(n, np.int64), np.zeros(n),
                            np.zeros(n), np.zeros(n, np.int64))
        assert top == pytest.approx(tfce.tfce_map(z).max(), rel=1e-12)


def test_histogram_p_matches_its_definition():
    # one experiment: the null is its own histogram's upper tail
    counts = np.zeros(10)
    counts[[0, 3, 7]] = [90, 8, 2]
    tail = histogram.convolve(counts[None, :], np.arange(10) / histogram.STEP)
    assert tail.tolist() == pytest.approx([1.0, 0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02])
    p, z = histogram.p_and_z(np.array([0.0, 0.0003, 0.00071]), tail)
    assert p.tolist() == pytest.approx([1.0, 0.1, 0.02]) and z[0] == 0 and z[2] == pytest.approx(stats.norm.ppf(0.98))


def _order_interval(sample: np.ndarray, q: float = 0.95, confidence: float = 0.999) -> tuple[float, float]:
    """Distribution-free confidence interval of the q-quantile from order statistics."""
    n = len(sample)
    lo, hi = stats.binom.ppf([(1 - confidence) / 2, (1 + confidence) / 2], n, q).astype(int)
    ordered = np.sort(sample)
    return ordered[max(lo - 1, 0)], ordered[min(hi, n - 1)]


@pytest.mark.parametrize("rule", ["per_null", "observed"])
def test_monte_carlo_nulls_match_jale(inputs, reference, rule):
    result = JaleALE(null_histogram=rule).fit_inputs(inputs)
    nulls, run = MonteCarloFWE(n_iters=N_ITERS, seed=8, n_cores=2).null_distributions(result)
    theirs_rule = "jale" if rule == "per_null" else "pyale"
    for key, name in ((NULL_VOXEL, "ale"), (NULL_SIZE, "cluster"), (NULL_TFCE, "tfce")):
        ours, theirs = nulls[key], reference[f"null_{theirs_rule}_{name}"]
        assert stats.ks_2samp(ours, theirs).pvalue > 0.001, name
        lo, hi = _order_interval(theirs)
        assert lo <= np.percentile(ours, 95) <= hi, name
    assert run["cutoff_rule"] == "percentile" and run["cluster_forming_map"] == "z"


def test_same_seed_same_nulls_whatever_the_cores(fitted):
    runs = [MonteCarloFWE(n_iters=120, seed=2, n_cores=c).null_distributions(fitted)[0] for c in (1, 2)]
    for key in runs[0]:
        assert np.array_equal(runs[0][key], runs[1][key]), key


def test_cli_jale_convention_end_to_end(example, tmp_path):
    from click.testing import CliRunner

    from neurochange.cli import cli

    out = tmp_path / "out"
    done = CliRunner().invoke(cli, ["ale", str(example), "--convention", "jale", "--iters", "100", "--seed", "1",
                                    "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "pooled" not in done.output and "57 experiments, 1,152 foci" in done.output
    record = json.loads((out / "provenance.json").read_text())
    assert record["settings"]["convention"] == "jale" and record["pooled"] == "contrasts kept apart (JALE convention)"
    params = json.loads((out / "params.json").read_text())
    cutoff = params["montecarlo"]["cutoffs_95"][NULL_SIZE]
    index = np.asarray(__import__("nibabel").load(out / "clusters_index.nii.gz").dataobj)
    sizes = np.bincount(index.ravel())[1:]
    assert (sizes > cutoff).all()
    assert (out / "tfce.nii.gz").is_file()
    assert (out / "z_desc-tfce_level-voxel_corr-FWE_method-montecarlo.nii.gz").is_file()
    wrong = CliRunner().invoke(cli, ["ale", str(example), "--convention", "jale", "--fwhm", "10", "--out",
                                     str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "--fwhm" in wrong.output


def test_review_preset_runs_the_jale_convention(tmp_path):
    """A review spec with ``convention = "jale"`` gives each group what ``neurochange ale --convention jale``
    gives on the same experiments (same maps, same seed)."""
    import shutil

    import nibabel as nib
    from click.testing import CliRunner

    from neurochange.cli import cli
    from neurochange.workflows.review import run_review

    examples = Path(__file__).resolve().parents[1] / "examples"
    shutil.copy(examples / "simulated_treatments.tsv", tmp_path)
    spec = (examples / "simulated_review.toml").read_text().split("[[groups]]")[0]
    spec = spec.replace("n_iters = 2000", 'n_iters = 30\nconvention = "jale"\nsigned = "no"')
    spec = spec.replace("diagnostics = true", "diagnostics = false")
    spec += '[[groups]]\nname = "rtms"\nlabel = "rTMS"\nquery = "modality=brain_stimulation disorder=mdd"\n'
    (tmp_path / "spec.toml").write_text(spec)
    run_review(tmp_path / "spec.toml", tmp_path / "review", seed=5, report=False)
    group = tmp_path / "review" / "rtms_est-ale"
    params = json.loads((group / "params.json").read_text())
    assert params["estimator"]["name"] == "JaleALE" and params["montecarlo"]["cutoff_rule"] == "percentile"
    res = CliRunner().invoke(cli, ["ale", str(group / "studyset.tsv"), "--convention", "jale", "--iters", "30",
                                   "--seed", str(params["montecarlo"]["seed"]), "--out", str(tmp_path / "ale")])
    assert res.exit_code == 0, res.output
    for name in ("stat", "z", "tfce", "logp_desc-size_level-cluster_corr-FWE_method-montecarlo"):
        a, b = (np.asarray(nib.load(f / f"{name}.nii.gz").dataobj) for f in (group, tmp_path / "ale"))
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_predicted_thresholds_are_reported_beside_the_monte_carlo(example, tmp_path):
    """--predicted-thresholds: JALE's predictions for the analysed experiments, labelled, with the Monte Carlo
    cut-offs of the same run; significance still comes from the Monte Carlo."""
    from click.testing import CliRunner

    from neurochange.cli import cli
    from neurochange.inference.predicted import predict_thresholds

    runs = {}
    for name, extra in (("with", ["--predicted-thresholds"]), ("without", [])):
        res = CliRunner().invoke(cli, ["ale", str(example), "--convention", "jale", "--iters", "20", "--seed", "4",
                                       "--no-tfce", "--out", str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
        runs[name] = res.output
    record = json.loads((tmp_path / "with" / "provenance.json").read_text())["params"]["predicted_thresholds"]
    experiments = np.genfromtxt(tmp_path / "with" / "experiments.tsv", delimiter="\t", names=True, dtype=None,
                                encoding="utf-8")
    expected = predict_thresholds(experiments["n"], experiments["n_foci"])
    assert (record["vfwe_ale"], record["cfwe_voxels"], record["tfce"]) == (expected.vfwe_ale, expected.cfwe_voxels,
                                                                          expected.tfce)
    assert record["method"].startswith("predicted") and "Frahm" in record["models"]
    assert "predicted thresholds" in runs["with"] and "not used for significance" in runs["with"]
    same = (tmp_path / "with" / "clusters.tsv").read_bytes() == (tmp_path / "without" / "clusters.tsv").read_bytes()
    assert same  # the prediction changes no result
