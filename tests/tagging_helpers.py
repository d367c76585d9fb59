"""The hand-labelled titles and the tagger's answers on them.

Two samples: ``v1`` (tests/data/tagging/labels.tsv, 300 studies, labelled under guide version 1
by the rules' author) and ``v2`` (tests/data/tagging/v2/labels.tsv, 380 studies, two independent
annotators under guide version 2, adjudicated; the one the rules 2 figures rest on).
``labels(sample)`` reads the labels; ``predict(mirror, rules, sample)`` tags the same studies from
their titles and NeuroQuery's abstract and keyword counts, read straight from the database mirror
(the rows of the sample's studies only); ``scores(mirror, split)`` gives precision and recall per
tag value and stratum (``tageval.score``); ``review_scores(mirror, split)`` the precision and
recall of the default review's selection per modality, in the sample and weighted to the corpus.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
from tageval import score

from neurochange.corpus.store import DATABASE_FILES
from neurochange.corpus.tagging.classify import classify_table
from neurochange.sources.io.databases import read_vocabulary
from neurochange.vocabulary import groups

DATA = Path(__file__).parent / "data" / "tagging"
SAMPLES = {"v1": DATA / "labels.tsv", "v2": DATA / "v2" / "labels.tsv", "v3": DATA / "v3" / "labels.tsv"}
FLOORS = DATA / "v3" / "heldout_floors.tsv"
#: The default review's modalities and designs (a review positive: one of these, a psychiatric disorder).
REVIEW_MODALITIES = ("psychotherapy", "brain_stimulation", "pharmacotherapy")
REVIEW_DESIGNS = ("pre_post", "randomized_comparison")
NQ = DATABASE_FILES["neuroquery"]
#: The tags scored: the five tags and ``treatment`` (is the study about a treatment at all).
TAGS = ("treatment", "modality", "subtype", "disorder", "design", "imaging")


def with_treatment(tags: pd.DataFrame) -> pd.DataFrame:
    """Add ``treatment``: ``yes`` when a treatment was studied (modality not ``none``), else ``no``."""
    return tags.assign(treatment=np.where(tags["modality"] == "none", "no", "yes"))


def labels(sample: str = "v3") -> pd.DataFrame:
    return with_treatment(pd.read_csv(SAMPLES[sample], sep="\t", dtype=str, keep_default_na=False))


@lru_cache(maxsize=2)
def _terms(mirror: Path, ids: tuple[str, ...]) -> tuple[pd.DataFrame, frozenset]:
    folder = mirror / "neuroquery-v1"
    meta = pd.read_csv(folder / NQ["metadata"], sep="\t", dtype=str, usecols=["id"])
    rows = {sid: i for i, sid in enumerate(meta["id"])}
    wanted = [sid for sid in ids if sid in rows]
    index = np.array([rows[sid] for sid in wanted], dtype=int)
    vocabulary = np.array(read_vocabulary(folder / NQ["vocabulary"]), dtype=object)
    parts = []
    for field in ("abstract", "keywords"):
        matrix = scipy.sparse.load_npz(folder / NQ[field]).tocsr()[index].tocoo()
        parts.append(pd.DataFrame({"study_id": np.array(wanted, dtype=object)[matrix.row], "field": field,
                                   "term": vocabulary[matrix.col], "count": matrix.data.astype(int)}))
    return pd.concat(parts, ignore_index=True), frozenset(wanted)


def predict(mirror: Path, rules=None, sample: str = "v3") -> pd.DataFrame:
    """The tagger's tags for every labelled study (same inputs as in a corpus built from the mirror)."""
    lab = labels(sample)
    terms, indexed = _terms(Path(mirror), tuple(lab["study_id"]))
    tags, _ = classify_table(rules, lab[["study_id", "title"]], terms, set(indexed))
    return with_treatment(tags)


def scores(mirror: Path, split: str | None, rules=None, sample: str = "v3") -> pd.DataFrame:
    lab = labels(sample)
    if split is not None:
        lab = lab[lab["split"] == split]
    return score(lab, predict(mirror, rules, sample), tags=TAGS)


def review_modality(tags: pd.DataFrame) -> pd.Series:
    """Per study, the review group it belongs to (a modality) or ``""``: the default review's selection."""
    psychiatric = groups("disorder")["psychiatric"]
    positive = tags["design"].isin(REVIEW_DESIGNS) & tags["disorder"].isin(psychiatric) & tags["modality"].isin(
        REVIEW_MODALITIES)
    return tags["modality"].where(positive, "")


def review_scores(mirror: Path, split: str | None, rules=None, sample: str = "v3") -> pd.DataFrame:
    """Precision and recall of the default review's selection per modality (:func:`selection_scores`)."""
    lab = labels(sample)
    if split is not None:
        lab = lab[lab["split"] == split]
    got = predict(mirror, rules, sample).set_index("study_id").loc[lab["study_id"]]
    return selection_scores(lab, review_modality(got.reset_index()).to_numpy(), sample)


def selection_scores(lab: pd.DataFrame, pred: np.ndarray, sample: str = "v3") -> pd.DataFrame:
    """Precision and recall per modality of a selection ``pred`` (per labelled study, its modality or ``""``)
    against the review positives of ``lab``: ``sample`` (the labelled studies as they are) and ``corpus``
    (each stratum weighted by its corpus size over its sample size)."""
    truth = review_modality(lab).to_numpy()
    sizes = pd.read_csv(SAMPLES[sample].parent / "strata.tsv", sep="\t").set_index("stratum")
    weight = (lab["stratum"].map(sizes["studies"]) / lab["stratum"].map(sizes["sampled"])).to_numpy()
    rows = []
    for modality in REVIEW_MODALITIES:
        tp, fp, fn = (truth == modality) & (pred == modality), (truth != modality) & (pred == modality), (
            truth == modality) & (pred != modality)
        for basis, w in (("sample", np.ones(len(lab))), ("corpus", weight)):
            rows.append({"modality": modality, "basis": basis, "labelled": int((truth == modality).sum()),
                         "selected": int((pred == modality).sum()),
                         "precision": w[tp].sum() / (w[tp].sum() + w[fp].sum()) if tp.any() or fp.any() else np.nan,
                         "recall": w[tp].sum() / (w[tp].sum() + w[fn].sum()) if tp.any() or fn.any() else np.nan})
    return pd.DataFrame(rows)
