"""What the decoding benchmarks share: their options (a corpus, a sphere) and the corpus they read."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path


def region_parser(doc: str) -> argparse.ArgumentParser:
    """``--db``, ``--centre X Y Z``, ``--radius`` and ``--mirror``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=None, help="a built corpus [default: NeuroQuery ingested from --mirror]")
    parser.add_argument("--centre", type=float, nargs=3, default=[-24.0, -4.0, -20.0])
    parser.add_argument("--radius", type=float, default=10.0)
    parser.add_argument("--mirror", default=os.environ.get(
        "NEUROCHANGE_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    return parser


@contextlib.contextmanager
def corpus_path(args):
    """``args.db``, or a corpus of NeuroQuery built from ``args.mirror`` in a temporary NEUROCHANGE_HOME."""
    if args.db is not None:
        yield Path(args.db)
        return
    from neurochange.corpus.store import Corpus
    from neurochange.sources import download
    from neurochange.sources.io.databases import NEUROQUERY

    with tempfile.TemporaryDirectory(prefix="region-bench-") as tmp:
        os.environ["NEUROCHANGE_DATA_MIRROR"] = args.mirror
        os.environ["NEUROCHANGE_HOME"] = tmp
        path = Path(tmp) / "corpus.duckdb"
        with Corpus(path) as corpus:
            corpus.ingest_database(NEUROQUERY, download.fetch_dataset(NEUROQUERY))
        yield path
