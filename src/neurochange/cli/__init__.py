"""The command line: parse, build typed settings, call a workflow, print. No statistics or file formats live here.

A user mistake (any ``NeurochangeError``) prints one line and exits 2. Commands live by
stage: :mod:`neurochange.cli.data` (data, convert, corpus, select),
:mod:`neurochange.cli.analysis` (ale, mkda, kda, chi2, contrast, conjunction, diagnose),
:mod:`neurochange.cli.review` (review, models, atlases), :mod:`neurochange.cli.decode` (decode, macm, site), :mod:`neurochange.cli.genes` (genes),
:mod:`neurochange.cli.serve` (serve).
"""

from __future__ import annotations

import gc
import sys

from neurochange.cli import analysis, data, decode, genes, review, serve  # noqa: F401  (each registers its commands)
from neurochange.cli._common import cli

__all__ = ["cli", "main"]


def main(argv=None) -> None:
    """Entry point of the ``neurochange`` script."""
    # The objects made by importing live until exit: keep the collector off them (nilearn's
    # plotting calls gc.collect() for every image it reads, ~0.2 s each over the whole heap).
    gc.freeze()
    cli.main(args=argv, prog_name="neurochange", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
