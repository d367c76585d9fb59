"""``neurochange convert IN OUT``: any format to any format; bad input is one line and exit code 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from io_helpers import assert_same_studyset

from neurochange.cli import cli
from neurochange.sources.io import read_studyset


def run(*args):
    return CliRunner().invoke(cli, ["convert", *map(str, args)])


def test_chain_of_conversions_keeps_the_studyset(tmp_path, nimare_test_data):
    source = nimare_test_data / "test_sleuth_file2.txt"
    chain = [source] + [tmp_path / f"step{i}.{ext}" for i, ext in enumerate(["json", "tsv", "xlsx", "csv", "txt"])]
    for src, dst in zip(chain, chain[1:]):
        result = run(src, dst)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1] == f"wrote {dst} ({read_format(dst)}): 2 experiments, 4 foci"
    assert_same_studyset(read_studyset(chain[-1]), read_studyset(source), atol=1e-12)  # xlsx: 16 digits
    first = run(source, tmp_path / "again.json")
    assert "note: 4 Talairach foci converted to MNI" in first.stdout


def read_format(path):
    return {"json": "nimare_json", "txt": "sleuth"}.get(path.suffix[1:], path.suffix[1:])


def test_prints_what_it_left_out(tmp_path, nimare_test_data):
    result = run(nimare_test_data / "test_pain_dataset.json", tmp_path / "pain.txt")
    assert result.exit_code == 0
    assert "left out 2 experiments without foci (sleuth cannot hold them)" in result.stdout
    assert result.stdout.splitlines()[-1].endswith(": 19 experiments, 243 foci")


@pytest.mark.parametrize(
    "make_input,target,message",
    [
        (lambda p: p / "missing.txt", "out.json", "missing.txt: file not found"),
        (lambda p: write(p / "bad.txt", "// Reference=MNI\n// A 2010: b\n// Subjects=5\n1 2 4O\n"), "out.json",
         "bad.txt, line 4, field z: z='4O' is not a number"),
        (lambda p: write(p / "bad.tsv", "study\tx\ty\n"), "out.json", "missing column 'z'"),
        (lambda p: write(p / "in.doc", "hello"), "out.json", "unknown file format '.doc'"),
        (lambda p: write(p / "ok.tsv", "study\tx\ty\tz\ns\t1\t2\t3\n"), "out.pdf", "unknown file format '.pdf'"),
        (lambda p: write(p / "ok.tsv", "study\tx\ty\tz\ns\t1\t2\t3\n"), "out.txt", "Sleuth needs a sample size"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make_input, target, message):
    result = run(make_input(tmp_path), tmp_path / target)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurochange: error: ") and message in lines[0]
    assert not (tmp_path / target).exists()


def test_unwritable_output_is_one_line(tmp_path):
    source = write(tmp_path / "in.tsv", "study\tx\ty\tz\tn\ns\t1\t2\t3\t9\n")
    (tmp_path / "folder.json").mkdir()
    result = run(source, tmp_path / "folder.json", "--overwrite")
    assert result.exit_code == 2 and "cannot write file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.json", "in.tsv"]  # no temporary file left


def test_existing_output_needs_overwrite(tmp_path):
    source = write(tmp_path / "in.tsv", "study\tx\ty\tz\tn\ns\t1\t2\t3\t9\n")
    (tmp_path / "out.json").write_text("keep me")
    result = run(source, tmp_path / "out.json")
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.stderr
    assert (tmp_path / "out.json").read_text() == "keep me"
    result = CliRunner().invoke(cli, ["convert", str(source), str(tmp_path / "out.json"), "--overwrite"])
    assert result.exit_code == 0 and read_studyset(tmp_path / "out.json").ids == ["s-1"]


def test_talairach_transform_option(tmp_path):
    source = write(tmp_path / "tal.txt", "// Reference=Talairach\n// A 2010: b\n// Subjects=5\n10 20 30\n")
    for method in ("icbm_other", "icbm_spm"):
        result = CliRunner().invoke(cli, ["convert", str(source), str(tmp_path / f"{method}.json"), "--tal-transform", method])
        assert result.exit_code == 0 and method in result.stdout
    other, spm = (read_studyset(tmp_path / f"{m}.json").foci[["x", "y", "z"]].to_numpy() for m in ("icbm_other", "icbm_spm"))
    assert 0.5 < abs(other - spm).max() < 3  # the two Lancaster transforms differ by about 1-2 mm


def write(path, text):
    path.write_text(text)
    return path
