"""Coactivation (MACM) of one region over NeuroQuery: neurochange vs NiMARE 0.22.1's MKDAChi2, one JSON line.

    .venv/bin/python benchmarks/macm_vs_nimare.py [--db corpus.duckdb] [--centre -24 -4 -20] [--radius 10]

Input: the corpus (built from the offline mirror when ``--db`` is not given), NeuroQuery's studies
split by whether they report a focus within ``--radius`` mm of ``--centre``. neurochange:
``run_macm`` with FDR, no permutations (splitting the corpus, fitting, FDR, the network table).
NiMARE: ``MKDAChi2`` fitted on the same two StudySets as NiMARE Datasets, then
``FDRCorrector(method="indep")``; building its Datasets is timed apart. The association z maps
are compared. Not a test: compare numbers from one run only.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
from _region_corpus import corpus_path, region_parser


def main() -> None:
    args = region_parser(__doc__).parse_args()

    from neurochange.corpus.store import Corpus
    from neurochange.decode.regions import sphere
    from neurochange.space import mask_img
    from neurochange.workflows.macm import region_split, run_macm
    from neurochange.workflows.settings import InferenceSettings, KernelSettings, RunSettings

    with corpus_path(args) as db:
        region = sphere(args.centre, args.radius)
        with Corpus(db, read_only=True) as corpus:
            start = time.perf_counter()
            done = run_macm(corpus, region, KernelSettings(estimator="mkda"), InferenceSettings(n_iters=1),
                            RunSettings(seed=1, n_cores=1), fwe=False)
            ours = time.perf_counter() - start
            selection, rest = region_split(corpus, region)

    import nimare.meta.cbma.mkda as nm
    from nimare.correct import FDRCorrector

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    datasets = selection.to_nimare_dataset(), rest.to_nimare_dataset()
    build = time.perf_counter() - start
    start = time.perf_counter()
    theirs = FDRCorrector(method="indep").transform(nm.MKDAChi2(mask=mask_img()).fit(*datasets))
    nimare_seconds = time.perf_counter() - start
    a = done.results[""].maps["z_desc-association"]
    b = np.asarray(theirs.maps["z_desc-association"], dtype=np.float64)
    print(json.dumps({
        "benchmark": "macm_vs_nimare", "region": region.label, "studies_in_region": len(selection.experiments),
        "studies_outside": len(rest.experiments), "neurochange_seconds": round(ours, 2),
        "nimare_seconds": round(nimare_seconds, 2), "nimare_build_seconds": round(build, 2),
        "ratio": round(nimare_seconds / ours, 1),
        "max_abs_difference_z_association": float(np.max(np.abs(a - b))),
    }))


if __name__ == "__main__":
    main()
