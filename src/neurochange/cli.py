"""The command line: parse, call, print. No statistics or file formats live here.

A user mistake (any ``NeurochangeError``) prints one line and exits 2.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import NeurochangeError


class _Group(click.Group):
    """A click group that turns user errors into one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NeurochangeError as exc:
            click.echo(f"neurochange: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurochange")
def cli():
    """neurochange: what changes in the brain after psychotherapy, TMS or medication."""


def out_options(func):
    """``--out DIR`` and ``--overwrite``, shared by every command that writes a results folder."""
    func = click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")(func)
    func = click.option("--out", "out", required=True, type=click.Path(), help="Results folder to write.")(func)
    return func


def compute_options(func):
    """``--seed``, ``--cores``, ``--iters``, shared by every command that computes."""
    func = click.option("--iters", type=click.IntRange(min=1), default=10000, show_default=True,
                        help="Monte Carlo iterations.")(func)
    func = click.option("--cores", type=click.IntRange(min=1), default=None,
                        help="Worker threads [default: all cores].")(func)
    func = click.option("--seed", type=click.IntRange(min=0), default=None,
                        help="Random seed [default: drawn, printed and recorded].")(func)
    return func


# --- commands are registered below, one block per module -----------------------------------


# --- data (download.py): fetch, verify and locate the public databases ---

_DATASET_CHOICE = click.Choice(["neurosynth", "neuroquery", "all"])


@cli.group("data")
def data_group():
    """The public coordinate databases (Neurosynth v7, NeuroQuery v1): fetch, verify, locate."""


@data_group.command("fetch")
@click.argument("which", type=_DATASET_CHOICE, default="all")
def data_fetch(which):
    """Fetch and verify WHICH database (default: all) into the cache.

    From the cache if already verified, else from the mirror NEUROCHANGE_DATA_MIRROR if set,
    else from the files' public homes. Every file is checked against its SHA-256.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from . import download

    files = download.data_files(which)
    status = {"cache": "cached", "mirror": "from mirror", "download": "downloaded"}
    fetched = []
    failure = None
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task("", total=sum(f.size for f in files))
        before = 0

        def progress(relpath, done, total):
            bar.update(task, completed=before + done, description=relpath)

        for file in files:
            try:
                fetched.append(download.ensure(file, progress=progress))
            except download.DataUnavailableError as exc:
                failure = exc
                break
            before += file.size
    for got in fetched:
        check = "sha256 ok" + (" (stamp)" if got.check == "stamp" else "")
        click.echo(f"{status[got.source]:<12} {check:<17} {got.file.size:>11,} B  {got.file.relpath}")
    if failure is not None:
        raise failure
    where = download.mirror_dir()
    click.echo(f"{len(fetched)} files verified in {download.data_dir()}"
               + (f" (mirror: {where})" if where is not None else ""))


@data_group.command("path")
@click.argument("which", type=_DATASET_CHOICE, default="all")
def data_path(which):
    """Print the folder where fetched databases live (or one database's folder)."""
    from . import download

    folder = download.data_dir()
    click.echo(folder if which == "all" else folder / download.dataset(which).folder)


def main(argv=None) -> None:
    """Entry point of the ``neurochange`` script."""
    cli.main(args=argv, prog_name="neurochange", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
