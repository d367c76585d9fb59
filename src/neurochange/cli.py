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


def main(argv=None) -> None:
    """Entry point of the ``neurochange`` script."""
    cli.main(args=argv, prog_name="neurochange", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
