"""Decoding a whole map by correlation with term maps: neurochange vs NiMARE 0.22.1's CorrelationDecoder, one JSON line.

    .venv/bin/python benchmarks/decode_map_vs_nimare.py [--db corpus.duckdb] [--map z.nii.gz] [--nimare-terms 3]

Input: the corpus (built from the offline mirror when ``--db`` is not given), NeuroQuery's studies,
foci and abstract TF-IDF labels; a map to decode (default: a 12 mm sphere at the left amygdala
smoothed by 8 mm FWHM). neurochange: the term maps of every term labelling at least 100 studies,
built once into a fresh ``NEUROCHANGE_HOME`` (``build_seconds``), then ``decode_map`` with the
maps cached (``decode_seconds``, the median of 3). NiMARE: ``CorrelationDecoder`` (MKDAChi2,
``z_desc-association``) fitted on the same Dataset for ``--nimare-terms`` of the same terms (its
fit runs one MKDAChi2 per term; ``nimare_fit_seconds_per_term`` times all terms is the
extrapolated fit, said as such), then ``transform``. The r of the terms both computed are compared
(neurochange's cached maps are float16: within about 1e-3). Not a test: compare numbers from one
run only.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import numpy as np
from _region_corpus import corpus_path, region_parser


def main() -> None:
    parser = region_parser(__doc__)
    parser.add_argument("--map", default=None, help="a NIfTI map on the MNI152 2 mm grid [default: a smoothed blob]")
    parser.add_argument("--nimare-terms", type=int, default=3, help="terms NiMARE fits (its fit is per term)")
    args = parser.parse_args()

    import nibabel as nib
    import pandas as pd
    from nilearn.image import smooth_img

    from neurochange.corpus.store import Corpus
    from neurochange.decode.regions import sphere
    from neurochange.sources.io.databases import NEUROQUERY
    from neurochange.space import mni_2mm
    from neurochange.workflows.decode import decode_map, term_labels
    from neurochange.workflows.settings import DecodeSettings

    if args.map:
        img = nib.load(args.map)
    else:
        blob = sphere(args.centre, 12.0).image(mni_2mm())
        img = smooth_img(nib.Nifti1Image(np.asarray(blob.dataobj, dtype=np.float32), blob.affine), 8.0)
    settings = DecodeSettings()
    with corpus_path(args) as db, tempfile.TemporaryDirectory(prefix="termmaps-") as home:
        os.environ["NEUROCHANGE_HOME"] = home
        with Corpus(db, read_only=True) as corpus:
            start = time.perf_counter()
            built = decode_map(corpus, img, "map", settings)
            build_seconds = time.perf_counter() - start
            times = []
            for _ in range(3):
                start = time.perf_counter()
                ours = decode_map(corpus, img, "map", settings)
                times.append(time.perf_counter() - start)
            assert built.built and not ours.built
            studyset = corpus.query(f"source={NEUROQUERY}", source=NEUROQUERY)
            values = term_labels(corpus, studyset.experiments["study_id"].unique(), settings)
    table = ours.table.set_index("term")
    picked = list(table.index[np.linspace(0, len(table) - 1, args.nimare_terms).astype(int)])

    from nimare.decode.continuous import CorrelationDecoder

    warnings.simplefilter("ignore")
    dataset = studyset.to_nimare_dataset()
    annotations = dataset.annotations[["id", "study_id", "contrast_id"]].copy()
    rows = pd.Index(values.study_ids).get_indexer(annotations["study_id"])
    dense = values.values[rows][:, pd.Index(values.terms).get_indexer(picked)].toarray()
    for j, term in enumerate(picked):
        annotations[f"nq__{term}"] = dense[:, j]
    dataset.annotations = annotations
    decoder = CorrelationDecoder(features=[f"nq__{t}" for t in picked], frequency_threshold=settings.label_threshold)
    start = time.perf_counter()
    decoder.fit(dataset)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    theirs = decoder.transform(img)["r"]
    transform = time.perf_counter() - start
    theirs.index = [t.split("__", 1)[1] for t in theirs.index]
    per_term = fit / len(picked)
    print(json.dumps({
        "benchmark": "decode_map_vs_nimare", "studies": ours.n_studies, "terms": int(len(table)),
        "neurochange": {"build_seconds": round(build_seconds, 1), "decode_seconds": round(float(np.median(times)), 3)},
        "nimare": {"terms_fitted": len(picked), "fit_seconds_per_term": round(per_term, 2),
                   "fit_seconds_all_terms_extrapolated": round(per_term * len(table)),
                   "transform_seconds": round(transform, 3)},
        "ratio_build_vs_nimare_fit_extrapolated": round(per_term * len(table) / build_seconds, 1),
        "max_abs_r_difference": float(np.abs(table.loc[theirs.index, "r"] - theirs.astype(float)).max()),
        "top_terms": [[t, round(float(r), 3)] for t, r in zip(ours.table["term"][:5], ours.table["r"][:5])],
    }))


if __name__ == "__main__":
    main()
