"""Decoding a region against the corpus (``neurochange decode``): which terms its studies are labelled with.

The studies under analysis are NeuroQuery's (the source of the term counts), each with the foci
NeuroQuery reports; the region selects those with a focus in it (:mod:`neurochange.decode.regions`);
:func:`neurochange.decode.discrete.decode_studies` compares them with the rest, term by term.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurochange import __version__
from neurochange.corpus.store import Corpus
from neurochange.decode.discrete import decode_studies
from neurochange.decode.regions import Region
from neurochange.decode.terms import TermMatrix, annotate, check_choices
from neurochange.results.write import Output
from neurochange.sources.io.databases import NEUROQUERY
from neurochange.space import Grid
from neurochange.workflows.settings import DecodeSettings


@dataclass(frozen=True)
class Decoding:
    """A region's decoding: ``table`` (one row per term, strongest association first), the studies in the
    region (``selected``) and under analysis (``n_studies``), and how it was run."""

    region: Region
    table: pd.DataFrame
    selected: np.ndarray
    n_studies: int
    settings: DecodeSettings
    seconds: float

    def top(self, n: int = 10, alpha: float = 0.05) -> pd.DataFrame:
        """The ``n`` terms most associated with the region: positive association with (corrected) p < ``alpha``,
        strongest first."""
        return self.table[(self.table["zReverse"] > 0) & (self.table["pReverse"] < alpha)].head(n)


def term_labels(corpus: Corpus, study_ids, settings: DecodeSettings) -> TermMatrix:
    """The studies' annotation values (rows in ``study_ids``' sorted order) by ``settings``."""
    fields = check_choices(settings.vocabulary, settings.fields)
    counts = corpus.term_counts(fields, core_only=settings.vocabulary == "core")
    return annotate(TermMatrix.from_long(counts, study_ids), settings.annotation)


def decode_region(corpus: Corpus, region: Region, settings: DecodeSettings = DecodeSettings()) -> Decoding:
    """Decode ``region`` against the corpus's NeuroQuery studies."""
    start = time.perf_counter()
    foci = corpus.source_foci(NEUROQUERY)
    values = term_labels(corpus, foci["study_id"].unique(), settings)
    selected_ids = region.studies(foci)
    selected = np.isin(values.study_ids, selected_ids)
    table = decode_studies(values.labels(settings.label_threshold), values.terms, selected, prior=settings.prior,
                           correction=settings.correction, min_studies=settings.min_studies)
    table = table.sort_values(["zReverse", "term"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return Decoding(region, table, selected_ids, len(values.study_ids), settings, time.perf_counter() - start)


def decoding_output(decoding: Decoding, grid: Grid) -> Output:
    """``decoding.tsv``, ``region.nii.gz`` (on ``grid``), ``studies.tsv`` (the studies in the region) and
    ``provenance.json``."""
    record = {
        "neurochange": __version__,
        "region": decoding.region.label,
        "studies_in_region": int(len(decoding.selected)),
        "studies_analysed": decoding.n_studies,
        "source": f"{NEUROQUERY}: its studies, their foci and the term counts of their "
                  f"{', '.join(decoding.settings.fields)}",
        "decoder": "Neurosynth's (Yarkoni et al. 2011), as NiMARE 0.22.1's NeurosynthDecoder",
        "settings": decoding.settings.to_dict(),
        "terms_tested": int(len(decoding.table)),
    }
    return Output(tables={"decoding.tsv": decoding.table, "studies.tsv": pd.DataFrame({"study_id": decoding.selected})},
                  images={"region.nii.gz": decoding.region.image(grid)}, records={"provenance.json": record},
                  timings={"decode": decoding.seconds})


__all__ = ["Decoding", "decode_region", "decoding_output", "term_labels"]
