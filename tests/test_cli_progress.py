"""What every command prints around its work: progress that says when and why it stopped early, counts
with their noun's right form, no line twice."""

from __future__ import annotations

from click.testing import CliRunner

from neurochange.cli import cli
from neurochange.cli._common import TaskProgress, stop_reason, with_progress


def test_a_task_that_stops_early_says_so_once(capsys):
    with TaskProgress(lambda: stop_reason(0.1)) as bar:
        for done in (1000, 2000, 3000):
            bar("group a", done, 10000)
        bar("group b", 0, 500)  # the next task: group a has ended, at 3,000 of 10,000
        bar("group b", 500, 500)
        bar("group c", 0, 100)  # started, never reported progress: not an early stop
        bar.log("next step")
        bar("group d", 50, 100)
        bar.log("last step")  # a new step: group d ended before it, early
    out = capsys.readouterr().out.splitlines()
    assert out == ["group a: stopped at 3,000 of 10,000: FWE thresholds known within ±10 %", "next step",
                   "group d: stopped at 50 of 100: FWE thresholds known within ±10 %", "last step"]


def test_one_run_under_a_bar_that_stops_early(capsys):
    def run(progress):
        progress(1000, 5000)
        progress(2000, 5000)
        return "done"

    assert with_progress("Monte Carlo FWE", 5000, run, precision=0.05) == "done"
    assert capsys.readouterr().out == "Monte Carlo FWE: stopped at 2,000 of 5,000: FWE thresholds known within ±5 %\n"
    assert with_progress("permutations", 10, lambda progress: progress(10, 10)) is None
    assert capsys.readouterr().out == ""  # a run that ran all its iterations prints nothing


def test_counts_take_the_singular_for_one(tmp_path):
    source = tmp_path / "one.txt"
    source.write_text("// Reference=MNI\n// Study 1: contrast\n// Subjects=12\n-40\t30\t30\n")
    result = CliRunner().invoke(cli, ["convert", str(source), str(tmp_path / "one.json")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith(": 1 experiment, 1 focus")
    lines = result.stdout.splitlines()
    assert len(lines) == len(set(lines))
