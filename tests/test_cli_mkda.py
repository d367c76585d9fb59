"""CLI: neurochange mkda | kda | chi2 write results folders with NiMARE's map names; user errors exit 2."""

import pytest

from neurochange.sources.io import read_studyset


@pytest.fixture(scope="module")
def pain(nimare_test_data):
    return read_studyset(nimare_test_data / "test_pain_dataset.json"), None


def test_cli_mkda_kda_chi2(pain, tmp_path, nimare_test_data):
    from click.testing import CliRunner

    from neurochange.cli import cli
    from neurochange.sources.io import write_studyset

    path = nimare_test_data / "test_pain_dataset.json"
    runner = CliRunner()
    for kind in ("mkda", "kda"):
        out = tmp_path / kind
        res = runner.invoke(cli, [kind, str(path), "--out", str(out), "--iters", "20", "--seed", "2"])
        assert res.exit_code == 0, res.output
        assert (out / "z_desc-size_level-cluster_corr-FWE_method-montecarlo.nii.gz").exists()
        assert (out / "clusters.tsv").exists() and (out / "provenance.json").exists()
    studyset, _ = pain
    ids = sorted(studyset.studies["study_id"])
    write_studyset(studyset.filter_studies(ids[:8]), tmp_path / "sel.json")
    write_studyset(studyset.filter_studies(ids[8:]), tmp_path / "rest.json")
    out = tmp_path / "chi2"
    res = runner.invoke(cli, ["chi2", str(tmp_path / "sel.json"), "--against", str(tmp_path / "rest.json"),
                              "--out", str(out), "--iters", "10", "--seed", "1"])
    assert res.exit_code == 0, res.output
    for name in ("z_desc-association", "z_desc-uniformity_level-voxel_corr-FDR_method-indep",
                 "z_desc-associationSize_level-cluster_corr-FWE_method-montecarlo"):
        assert (out / f"{name}.nii.gz").exists()
    res = runner.invoke(cli, ["chi2", str(tmp_path / "sel.json"), "--against", str(tmp_path / "missing.json"),
                              "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
