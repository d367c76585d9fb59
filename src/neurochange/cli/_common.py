"""What every command shares: the group, its error handling, common options, progress, settings from options.

A user mistake (any ``NeurochangeError``) prints one line and exits 2.
"""

from __future__ import annotations

import gc
import sys
import time

import click

from neurochange import __version__
from neurochange.errors import NeurochangeError


class _Group(click.Group):
    """A click group that turns user errors into one line and exit code 2, Ctrl-C into exit code 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NeurochangeError as exc:
            click.echo(f"neurochange: error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left
            click.echo("neurochange: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurochange")
def cli():
    """neurochange: what changes in the brain after psychotherapy, TMS or medication."""


def out_options(func):
    """``--out DIR`` and ``--overwrite``, shared by every command that writes a results folder."""
    func = click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")(func)
    func = click.option("--out", "out", required=True, type=click.Path(), help="Results folder to write.")(func)
    return func


def _enter_scheduler(ctx: click.Context, param, value):
    """Run the command's nulls on the Dask cluster ``value`` (or NEUROCHANGE_SCHEDULER) for as long as it runs."""
    from neurochange.inference.executors import scheduler

    ctx.with_resource(scheduler(value, ctx.params.get("cores")))


def scheduler_option(func):
    """``--scheduler``: where Monte Carlo and permutation chunks run (after ``--cores``, which it reads)."""
    return click.option(
        "--scheduler", default=None, metavar="local|tcp://HOST:PORT", expose_value=False, callback=_enter_scheduler,
        help="Run the Monte Carlo and permutation chunks on a Dask cluster: 'local' starts one with --cores "
             "worker processes, tcp://HOST:PORT joins a running scheduler [default: NEUROCHANGE_SCHEDULER, else "
             "threads in this process]. Same seed, same results.")(func)


def compute_options(func):
    """``--seed``, ``--cores``, ``--iters`` and ``--scheduler``, shared by every command that computes."""
    func = scheduler_option(func)
    func = click.option("--iters", type=click.IntRange(min=1), default=10000, show_default=True,
                        help="Monte Carlo iterations.")(func)
    func = click.option("--cores", type=click.IntRange(min=1), default=None, is_eager=True,
                        help="Worker threads [default: all cores].")(func)
    func = click.option("--seed", type=click.IntRange(min=0), default=None,
                        help="Random seed [default: drawn, printed and recorded].")(func)
    return func


def mask_option(func):
    """``--mask``: the analysis mask, shared by every estimator command."""
    return click.option("--mask", type=click.Path(dir_okay=False), default=None,
                        help="Analysis mask NIfTI [default: NiMARE's MNI152 2 mm ALE brain mask].")(func)


def keep_contrasts_option(func):
    """``--keep-contrasts``: NiMARE's behaviour instead of pooling a study's contrasts."""
    return click.option("--keep-contrasts", is_flag=True,
                        help="Keep several contrasts of one study apart (NiMARE) "
                             "[default: pool them, Turkeltaub 2012].")(func)


def cluster_options(func):
    """``--cluster-forming-p`` and ``--cluster-p``, shared by the Monte Carlo FWE commands."""
    func = click.option("--cluster-p", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
                        show_default=True, help="FWE p a cluster must pass to be reported.")(func)
    func = click.option("--cluster-forming-p", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                        default=0.001, show_default=True, help="Uncorrected p that defines clusters.")(func)
    return func


def chi2_options(func):
    """``--cluster-forming-p`` and ``--fdr-only``, shared by the MKDA chi-square commands (``chi2``, ``macm``)."""
    func = click.option("--fdr-only", is_flag=True,
                        help="Skip FWE by label permutation (uncorrected and FDR maps only).")(func)
    func = click.option("--cluster-forming-p", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                        default=0.001, show_default=True,
                        help="Uncorrected p that defines clusters for cluster-level FWE.")(func)
    return func


def db_option(func):
    """``--db``: the corpus file, shared by the commands that read the corpus."""
    return click.option("--db", type=click.Path(dir_okay=False), default=None,
                        help="Corpus file [default: NEUROCHANGE_HOME/corpus.duckdb].")(func)


def threshold_options(func):
    """``--fdr`` and ``--uncorrected-p``: voxel thresholds written beside the FWE results."""
    func = click.option("--uncorrected-p", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                        help="Also write the z map and clusters at this uncorrected voxel p (exploratory; "
                             "z_level-voxel_corr-none_thresh-*, clusters_corr-none.tsv).")(func)
    func = click.option("--fdr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
                        help="Also write the z map and clusters at this voxel-level FDR q (Benjamini-Hochberg, "
                             "NiMARE's FDRCorrector(method='indep'); z_corr-FDR_method-indep_thresh-*, "
                             "clusters_corr-FDR.tsv).")(func)
    return func


def stop_reason(precision: float | None) -> str:
    """Why a Monte Carlo run or permutation test stops before its last iteration (early stopping)."""
    from neurochange.report.numbers import percent

    return f"FWE thresholds known within {percent(precision)}" if precision else "stopped early"


class TaskProgress:
    """Progress of named tasks, one after another, as ``progress(task, done, total)`` reports it.

    The bar of the running task shows on terminals only (stderr) and goes when the next task starts
    or the work ends, so no line is printed twice. A task that ends with ``0 < done < total`` (early
    stopping) leaves one line, on terminals or not: ``rtms_depression: stopped at 3,000 of 10,000:
    FWE thresholds known within ±10 %``. ``reason()`` says why, asked only when a task stops early.
    ``log(message)`` prints a line above the bar; it starts a new step, so it ends the tasks before it.
    With ``NEUROCHANGE_PROGRESS=lines`` and no terminal (a run started by ``neurochange serve``), progress
    is also printed as plain lines (``pain: 2,000 of 10,000``), at most one a second.
    """

    def __init__(self, reason=lambda: stop_reason(None)):
        import os

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.reason = reason
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), transient=True, disable=not sys.stderr.isatty())
        self.tasks: dict[str, list] = {}  # name -> [rich task id, done, total]
        self.lines = not sys.stderr.isatty() and os.environ.get("NEUROCHANGE_PROGRESS") == "lines"
        self._printed = 0.0

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for name in list(self.tasks):
                self._finish(name)
        return self.bar.__exit__(exc_type, exc, tb)

    def __call__(self, task: str, done: int, total: int) -> None:
        if task not in self.tasks:
            for name in [n for n in self.tasks if n != task]:  # tasks run one after another
                self._finish(name)
            self.tasks[task] = [self.bar.add_task(task, total=total), done, total]
        entry = self.tasks[task]
        entry[1:] = [done, total]
        self.bar.update(entry[0], completed=done, total=total)
        if self.lines and (time.monotonic() - self._printed >= 1.0 or done == total):
            from neurochange.report.numbers import integer

            self._printed = time.monotonic()
            self._print(f"{task}: {integer(done)} of {integer(total)}")

    def log(self, message: str) -> None:
        """Print a line; a line says a new step begins, so the tasks before it have ended."""
        for name in list(self.tasks):
            self._finish(name)
        self._print(message)

    def _print(self, message: str) -> None:
        self.bar.console.print(message, markup=False, highlight=False)

    def _finish(self, name: str) -> None:
        from neurochange.report.numbers import integer

        task_id, done, total = self.tasks.pop(name)
        self.bar.remove_task(task_id)
        if 0 < done < total:
            self._print(f"{name}: stopped at {integer(done)} of {integer(total)}: {self.reason()}")


def with_progress(label: str, total: int, run, *args, precision: float | None = None, **kwargs):
    """Call ``run(*args, progress=callback, **kwargs)`` under a progress bar (:class:`TaskProgress`);
    ``precision``: the early stopping the run may use (said when it stops early)."""
    with TaskProgress(lambda: stop_reason(precision)) as bar:
        bar(label, 0, total)
        return run(*args, progress=lambda done, of: bar(label, done, of), **kwargs)


def run_and_write(label: str, total: int, out, overwrite: bool, run, *args, precision: float | None = None,
                  page: bool = True, **kwargs):
    """Check ``out`` first, compute ``run(*args, progress=..., **kwargs)`` under a progress bar, then write
    its output with its ``report.html`` and ``figure.png`` unless not ``page`` (all of it or nothing); returns
    the run and the cluster tables written."""
    from neurochange.results.outdir import check_out
    from neurochange.results.write import write_output

    check_out(out, overwrite)  # fail before any computing
    result = with_progress(label, total, run, *args, precision=precision, **kwargs)
    finish = None
    if page:
        from neurochange.report.analysis_page import write_analysis_page as finish
        from neurochange.report.figures import preload

        preload()
    gc.freeze()  # see neurochange.cli.main: what exists now lives until exit
    return result, write_output(result.output, out, overwrite, finish=finish)


def early_stop_note(early_stop: bool, iters: int) -> None:
    """Say so when --early-stop cannot apply: it is checked every 1,000 iterations."""
    if early_stop and iters < 1000:
        click.echo(f"note: early stopping is checked every 1,000 iterations; with --iters {iters} all run", err=True)


def inference_settings(iters, cluster_forming_p=0.001, cluster_p=0.05, null_mask="brain", vfwe_only=False,
                       early_stop=False, precision=0.1, fdr=None, uncorrected_p=None, device="cpu"):
    """:class:`InferenceSettings` from the command's options."""
    from neurochange.workflows.settings import InferenceSettings

    return InferenceSettings(n_iters=iters, cluster_forming_p=cluster_forming_p, cluster_p=cluster_p,
                             null_mask=null_mask, vfwe_only=vfwe_only, early_stop=precision if early_stop else None,
                             fdr=fdr, uncorrected_p=uncorrected_p, device=device)


def run_settings(seed, cores, mask=None, keep_contrasts=False, overwrite=False):
    """:class:`RunSettings` from the command's options (the seed drawn here when not given)."""
    from neurochange.workflows.settings import RunSettings

    return RunSettings.resolve(seed, n_cores=cores, mask=mask, keep_contrasts=keep_contrasts, overwrite=overwrite)
