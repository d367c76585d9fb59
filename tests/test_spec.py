"""The review spec: the built-in one loads; every kind of mistake is one InputError naming file, line, field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from neurochange.errors import InputError
from neurochange.workflows.spec import default_spec, load_spec

GOOD = """\
title = "t"
selection = "modality=psychotherapy"

[analysis]
fwhm = 10.0
n_iters = 100

[[groups]]
name = "cbt"
query = "subtype=cbt"

[[groups]]
name = "other"
query = "subtype!=cbt"

[[comparisons]]
kind = "contrast"
a = "cbt"
b = "other"
"""


def write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_default_spec_loads():
    spec, path = default_spec()
    assert path.name == "default.toml"
    names = [g.name for g in spec.groups]
    assert {"psychotherapy", "brain_stimulation", "pharmacotherapy"} <= set(names)
    assert spec.analysis.n_iters == 10000
    # the databases carry no sample sizes: the default states the kernel
    assert spec.analysis.sample_size is not None or spec.analysis.fwhm is not None
    for c in spec.comparisons:
        assert c.a in names and c.b in names and c.a != c.b
    for h in spec.hypotheses:
        assert h.group in names


def test_good_spec(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert [g.name for g in spec.groups] == ["cbt", "other"]
    assert spec.analysis.fwhm == 10.0 and spec.analysis.cluster_forming_p == 0.001


@pytest.mark.parametrize(
    "old, new, line, field, words",
    [
        ('b = "other"', 'b = "nope"', 19, "comparisons[0].b", "unknown group 'nope'"),
        ('b = "other"', 'b = "cbt"', 19, "comparisons[0].b", "two different groups"),
        ('name = "other"', 'name = "cbt"', 13, "groups[1].name", "defined twice"),
        ('name = "other"', 'name = "Other Group"', 13, "groups[1].name", "snake_case"),
        ('query = "subtype!=cbt"', 'query = "subtype=dog"', 14, "groups[1].query", "dog"),
        ("n_iters = 100", "n_itres = 100", 6, "analysis.n_itres", "unknown field"),
        ("fwhm = 10.0", "fwhm = -3", 5, "analysis.fwhm", "greater than 0"),
        ('kind = "contrast"', 'kind = "subtraction"', 17, "comparisons[0].kind", "contrast"),
        ("fwhm = 10.0", "sample_size = 20\nfwhm = 10.0", 5, "analysis", "not both"),
    ],
)
def test_mistakes_name_file_line_field(tmp_path, old, new, line, field, words):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        load_spec(path)
    e = err.value
    assert e.file == str(path) and e.field == field and words in e.message, str(e)
    if line is not None and field != "analysis":
        assert e.line == line, str(e)


def test_missing_field_and_no_groups(tmp_path):
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, GOOD.replace('name = "cbt"\n', "", 1)))
    assert err.value.field == "groups[0].name" and err.value.message == "missing field"
    assert err.value.line == 8
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, 'title = "x"\n[analysis]\nfwhm = 9.0\n'))
    assert err.value.field == "groups"


def test_kernel_required_for_databases(tmp_path):
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, GOOD.replace("fwhm = 10.0\n", "")))
    assert err.value.field == "analysis.fwhm" and "sample sizes" in err.value.message


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, GOOD.replace('title = "t"', 'title = "t')))
    assert err.value.line == 1 and "not valid TOML" in err.value.message
    with pytest.raises(InputError) as err:
        load_spec(tmp_path / "absent.toml")
    assert "cannot read" in err.value.message
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, GOOD.replace("[analysis]", '[corpus]\nfile = "none.txt"\n\n[analysis]')))
    assert err.value.field == "corpus.file" and "no such file" in err.value.message


def test_diagnostics_settings(tmp_path):
    spec = load_spec(write(tmp_path, GOOD.replace("n_iters = 100", "n_iters = 100\ndiagnostics = true\n"
                                                  'moderators = ["sessions", "year"]')))
    assert spec.analysis.diagnostics and spec.analysis.moderators == ["sessions", "year"]
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, GOOD.replace("n_iters = 100", 'n_iters = 100\ndiagnostics = true\nmoderators = ["dose"]')))
    assert err.value.field == "analysis.moderators" and "unknown moderator 'dose'" in err.value.message
    assert err.value.line == 8
    with pytest.raises(InputError) as err:
        load_spec(write(tmp_path, GOOD.replace("n_iters = 100", "n_iters = 100\nfailsafe = true")))
    assert "diagnostics = true" in err.value.message


def test_jale_convention_preset_checks(tmp_path):
    """``convention = "jale"`` needs the experiments' own n and runs groups and conjunctions only."""
    import shutil

    from neurochange.workflows.review import review_settings

    examples = Path(__file__).resolve().parents[1] / "examples"
    shutil.copy(examples / "simulated_treatments.tsv", tmp_path)
    base = (examples / "simulated_review.toml").read_text().replace("n_iters = 2000", 'n_iters = 2000\nconvention = "jale"')
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(base)
    with pytest.raises(InputError, match="contrasts use the nimare convention") as err:
        load_spec(spec_path)
    assert err.value.field.startswith("comparisons[")
    groups_only = base.split("[[comparisons]]")[0]
    spec_path.write_text(groups_only)
    settings = review_settings(load_spec(spec_path), None, 1)
    assert settings.kernel.convention == "jale" and settings.keep_contrasts
    assert settings.to_dict()["space"].startswith("JALE 0.2.10's grey-matter prior")
    spec_path.write_text(groups_only.replace('convention = "jale"', 'convention = "jale"\nsample_size = 20'))
    with pytest.raises(InputError, match="no fwhm or sample_size"):
        load_spec(spec_path)
