"""neurochange atlases | models: licences, citations, model regions, model-file errors."""

from click.testing import CliRunner

from neurochange.cli import cli


def test_atlases_prints_every_licence_and_citation():
    result = CliRunner().invoke(cli, ["atlases"])
    assert result.exit_code == 0
    for name in ("harvard_oxford", "aal", "juelich", "talairach_ba"):
        assert f"{name}: " in result.output
    assert result.output.count("licence: ") == 4
    assert "Desikan et al., 2006" in result.output and "Rolls et al., 2015" in result.output


def test_models_lists_builtin_regions_and_reports_bad_files_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0
    assert "rtms_dlpfc_sgacc: " in result.output
    assert "  subgenual_cingulate (decrease): harvard_oxford: Left_Subcallosal_Cortex" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    result = CliRunner().invoke(cli, ["models", str(bad)])
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "missing required key 'title'" in result.output
    assert "Traceback" not in result.output
