"""Term annotations of studies, from NeuroQuery's per-study term counts.

A study is labelled with a term when its annotation value reaches the threshold (Neurosynth's
rule, ``frequency_threshold`` in NiMARE's decoders). How counts become values (``annotation``):

- ``tfidf`` (default): TF-IDF of the counts, as Neurosynth's features are (scikit-learn's
  ``TfidfTransformer`` defaults: smoothed idf, each study's vector scaled to unit length);
  threshold 0.001;
- ``frequency``: a term's count over all counted terms of the study (the same vocabulary and
  fields);
- ``count``: the raw count (threshold 1: the term occurs).

The counts are NeuroQuery's, of its abstracts by default (``fields``), over its model's 7,547-term
vocabulary (``vocabulary="core"``) or all 156,521 terms (``"full"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from neurochange.errors import InputError

ANNOTATIONS = ("tfidf", "frequency", "count")
FIELDS = ("abstract", "title", "keywords")
VOCABULARIES = ("core", "full")
#: Neurosynth's and NiMARE's threshold on TF-IDF and frequencies; a raw count needs 1.
DEFAULT_THRESHOLDS = {"tfidf": 0.001, "frequency": 0.001, "count": 1.0}


@dataclass(frozen=True)
class TermMatrix:
    """Per-study term values: ``values[i, j]`` of study ``study_ids[i]`` and term ``terms[j]`` (CSR, float64)."""

    study_ids: np.ndarray  # (n_studies,) str, sorted
    terms: np.ndarray  # (n_terms,) str, sorted
    values: sparse.csr_matrix  # (n_studies, n_terms)

    @classmethod
    def from_long(cls, table: pd.DataFrame, study_ids=None) -> "TermMatrix":
        """From rows of ``study_id``, ``term``, ``count``; ``study_ids``: the studies to hold (sorted; a
        study without counts gets an empty row)."""
        ids = np.array(sorted(set(table["study_id"]) if study_ids is None else set(study_ids)), dtype=object)
        terms = np.array(sorted(set(table["term"])), dtype=object)
        rows = pd.Index(ids).get_indexer(table["study_id"])
        keep = rows >= 0
        cols = pd.Index(terms).get_indexer(table["term"][keep])
        values = sparse.csr_matrix((table["count"].to_numpy(np.float64)[keep], (rows[keep], cols)),
                                   shape=(len(ids), len(terms)))
        return cls(ids, terms, values)

    def labels(self, threshold: float) -> sparse.csr_matrix:
        """Boolean (n_studies, n_terms): value >= ``threshold`` (> 0)."""
        if not threshold > 0:
            raise InputError(f"the annotation threshold must be above 0, got {threshold}", field="threshold")
        return (self.values >= threshold).tocsr()


def annotate(counts: TermMatrix, annotation: str = "tfidf") -> TermMatrix:
    """The annotation values (:data:`ANNOTATIONS`) of a matrix of counts."""
    if annotation not in ANNOTATIONS:
        raise InputError(f"annotation must be one of {', '.join(ANNOTATIONS)}, not {annotation!r}",
                         field="annotation")
    values = counts.values.astype(np.float64)
    if annotation == "tfidf":
        from sklearn.feature_extraction.text import TfidfTransformer

        values = TfidfTransformer().fit_transform(values)
    elif annotation == "frequency":
        totals = np.asarray(values.sum(axis=1)).ravel()
        values = sparse.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)) @ values
    return TermMatrix(counts.study_ids, counts.terms, sparse.csr_matrix(values))


def check_choices(vocabulary: str, fields) -> tuple[str, ...]:
    """``fields`` as a tuple, each checked, and ``vocabulary`` checked; one InputError otherwise."""
    if vocabulary not in VOCABULARIES:
        raise InputError(f"vocabulary must be one of {', '.join(VOCABULARIES)} (NeuroQuery's 7,547-term model "
                         f"vocabulary or all 156,521 terms), not {vocabulary!r}", field="vocabulary")
    fields = tuple(fields)
    unknown = [f for f in fields if f not in FIELDS]
    if unknown or not fields:
        raise InputError(f"fields must be among {', '.join(FIELDS)}, not {', '.join(unknown) or 'none'}",
                         field="fields")
    return fields


__all__ = ["ANNOTATIONS", "DEFAULT_THRESHOLDS", "FIELDS", "VOCABULARIES", "TermMatrix", "annotate", "check_choices"]
