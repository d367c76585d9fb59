"""Time a full corpus build (Neurosynth v7 + NeuroQuery v1) and term queries; print one JSON line.

    NEUROCHANGE_DATA_MIRROR=../shared/data python benchmarks/corpus_build.py [--repeats 5]

Steps, each in a fresh temporary NEUROCHANGE_HOME: ``fetch_s`` (copy from the mirror and
verify SHA-256, what a first ``corpus build`` does once), ``build_s`` (read, convert, flag
and ingest both databases into a new corpus: the figure to keep under a minute),
``rebuild_s`` (a second build: checksums only, nothing changes), then per query the median
over ``--repeats`` runs of ``Corpus.query`` (SQL, foci fetch and StudySet construction)
on a read-only corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUERIES = {
    "term_query_s": "term:psychotherapy>=2",
    "term_title_query_s": 'term.title:depression year>=2010',
    "word_query_s": "title:depress* journal:psychiatry",
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not os.environ.get("NEUROCHANGE_DATA_MIRROR"):
        mirror = Path(__file__).resolve().parents[2] / "shared" / "data"
        os.environ["NEUROCHANGE_DATA_MIRROR"] = str(mirror)
    with tempfile.TemporaryDirectory() as home:
        os.environ["NEUROCHANGE_HOME"] = home
        from neurochange.corpus.store import DATABASES, Corpus, build
        from neurochange.sources import download

        out: dict = {"benchmark": "corpus_build", "cores": os.cpu_count()}
        t = time.perf_counter()
        files = {name: download.fetch_dataset(name) for name in DATABASES}
        out["fetch_s"] = round(time.perf_counter() - t, 3)

        db = Path(home) / "corpus.duckdb"
        t = time.perf_counter()
        with Corpus(db) as corpus:
            reports = [corpus.ingest_database(name, files[name]) for name in DATABASES]
        out["build_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        with Corpus(db) as corpus:
            again = build(corpus)
            info = corpus.info()
        out["rebuild_s"] = round(time.perf_counter() - t, 3)
        assert [r["status"] for r in reports] == ["ingested", "ingested"]
        assert [r["status"] for r in again] == ["unchanged", "unchanged"]
        out.update(studies=info["studies"], in_both=info["studies_in_both_databases"], foci=info["foci"],
                   term_counts=info["term_counts"], db_mb=round(db.stat().st_size / 1e6, 1))

        with Corpus(db, read_only=True) as corpus:
            for key, text in QUERIES.items():
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    result = corpus.query(text)
                    times.append(time.perf_counter() - t)
                out[key] = round(statistics.median(times), 4)
                out[key.removesuffix("_s") + "_experiments"] = len(result.experiments)
            t = time.perf_counter()
            everything = corpus.query("")
            out["all_query_s"] = round(time.perf_counter() - t, 3)
            out["all_query_foci"] = len(everything.foci)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
