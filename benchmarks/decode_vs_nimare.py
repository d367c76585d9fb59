"""Decoding one region against NeuroQuery: neurochange vs NiMARE 0.22.1's Neurosynth decoder, one JSON line.

    .venv/bin/python benchmarks/decode_vs_nimare.py [--db corpus.duckdb] [--centre -24 -4 -20] [--radius 10]

Input: the corpus (built from the offline mirror when ``--db`` is not given, in a temporary
NEUROCHANGE_HOME), its NeuroQuery studies, foci and abstract term counts. neurochange:
``decode_region`` (reading the counts from the corpus, TF-IDF, the studies in the sphere, the
tests), with the 7,547-term vocabulary and with all 156,521 terms. NiMARE: the same TF-IDF values
as a dense annotations DataFrame (NiMARE's format) and the same foci, then
``Dataset.get_studies_by_coordinate``'s rule and ``neurosynth_decode``; building its DataFrame is
timed apart (``nimare_build_seconds``), and only the core vocabulary fits in memory there
(156,521 dense columns x 13,459 studies would take 17 GB). The tables are compared
(largest relative difference).

Two timings each: one region from nothing (``neurochange_seconds``: reading the corpus, TF-IDF, the
tests; NiMARE: building its DataFrame, then decoding), and one more region once the data are in
memory (``per_region``: a :class:`RegionDecoder` built once, the median over ``--repeats`` spheres
around the centre; NiMARE: ``neurosynth_decode`` on its DataFrame, the same spheres), as a review's
clusters or a series of sites use them. Not a test: the machine is shared; compare numbers from one
run only.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
from _region_corpus import corpus_path, region_parser


def main() -> None:
    parser = region_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="spheres timed one after another (per region)")
    args = parser.parse_args()

    import pandas as pd

    from neurochange.corpus.store import Corpus
    from neurochange.decode.regions import sphere
    from neurochange.sources.io.databases import NEUROQUERY
    from neurochange.workflows.decode import RegionDecoder, decode_region, term_labels
    from neurochange.workflows.settings import DecodeSettings

    with corpus_path(args) as db:
        region = sphere(args.centre, args.radius)
        with Corpus(db, read_only=True) as corpus:
            seconds = {}
            for vocabulary in ("core", "full"):
                start = time.perf_counter()
                ours = decode_region(corpus, region, DecodeSettings(vocabulary=vocabulary))
                seconds[vocabulary] = time.perf_counter() - start
                if vocabulary == "core":
                    core = ours
            spheres = [sphere(np.add(args.centre, [2.0 * i, 0.0, 0.0]), args.radius) for i in range(args.repeats)]
            per_region = {}
            for vocabulary in ("core", "full"):
                decoder = RegionDecoder(corpus, DecodeSettings(vocabulary=vocabulary))
                times = []
                for each in spheres:
                    start = time.perf_counter()
                    decoder.decode(each)
                    times.append(time.perf_counter() - start)
                per_region[vocabulary] = float(np.median(times))
            start = time.perf_counter()
            foci = corpus.source_foci(NEUROQUERY)
            values = term_labels(corpus, foci["study_id"].unique(), DecodeSettings())
            features = [f"neuroquery_tfidf__{t}" for t in values.terms]  # NiMARE's prefixed feature names
            annotations = pd.DataFrame(values.values.toarray(), columns=features)
            annotations.insert(0, "id", values.study_ids)
            coordinates = foci.rename(columns={"study_id": "id"})
            build = time.perf_counter() - start

    from nimare.decode.discrete import neurosynth_decode
    from scipy.spatial.distance import cdist

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    near = np.any(cdist(np.array([args.centre]), coordinates[["x", "y", "z"]].to_numpy()) <= args.radius, axis=0)
    ids = list(coordinates.loc[near, "id"].unique())
    theirs = neurosynth_decode(coordinates, annotations, ids=ids, features=features)
    nimare_seconds = time.perf_counter() - start
    times = []
    for each in spheres:
        start = time.perf_counter()
        near = np.any(cdist(np.array([each.centre]), coordinates[["x", "y", "z"]].to_numpy()) <= args.radius, axis=0)
        neurosynth_decode(coordinates, annotations, ids=list(coordinates.loc[near, "id"].unique()), features=features)
        times.append(time.perf_counter() - start)
    nimare_per_region = float(np.median(times))
    theirs.index = [t.split("__", 1)[1] for t in theirs.index]
    mine = core.table.set_index("term").loc[theirs.index]
    diff = max(float(np.nanmax(np.abs(mine[c] - theirs[c]) / np.maximum(np.abs(theirs[c]), 1e-300)))
               for c in theirs.columns)
    print(json.dumps({
        "benchmark": "decode_vs_nimare", "region": region.label, "studies_in_region": int(len(core.selected)),
        "studies": core.n_studies, "terms_core": int(len(core.table)),
        "neurochange_seconds": {"core": round(seconds["core"], 2), "full": round(seconds["full"], 2)},
        "nimare_seconds": round(nimare_seconds, 2), "nimare_build_seconds": round(build, 2),
        "ratio_core": round(nimare_seconds / seconds["core"], 1),
        "ratio_core_with_nimare_build": round((nimare_seconds + build) / seconds["core"], 1),
        "per_region_seconds": {"neurochange_core": round(per_region["core"], 4),
                               "neurochange_full": round(per_region["full"], 4),
                               "nimare_core": round(nimare_per_region, 4)},
        "per_region_ratio_core": round(nimare_per_region / per_region["core"], 1),
        "max_relative_difference": diff,
    }))


if __name__ == "__main__":
    main()
