"""The hand-labelled titles (tests/data/tagging/labels.tsv) and the tagger's answers on them.

``labels()`` reads the labels; ``predict(mirror)`` tags the same studies from their titles and
NeuroQuery's abstract and keyword counts, read straight from the database mirror (the rows
of the 300 studies only); ``scores(mirror, split)`` gives precision and recall per tag value
and stratum (``neurochange.tageval.score``).
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

DATA = Path(__file__).parent / "data" / "tagging"
LABELS = DATA / "labels.tsv"
FLOORS = DATA / "heldout_floors.tsv"
NQ = DATABASE_FILES["neuroquery"]
#: The tags scored: the five tags and ``treatment`` (is the study about a treatment at all).
TAGS = ("treatment", "modality", "subtype", "disorder", "design", "imaging")


def with_treatment(tags: pd.DataFrame) -> pd.DataFrame:
    """Add ``treatment``: ``yes`` when a treatment was studied (modality not ``none``), else ``no``."""
    return tags.assign(treatment=np.where(tags["modality"] == "none", "no", "yes"))


def labels() -> pd.DataFrame:
    return with_treatment(pd.read_csv(LABELS, sep="\t", dtype=str, keep_default_na=False))


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


def predict(mirror: Path, rules=None) -> pd.DataFrame:
    """The tagger's tags for every labelled study (same inputs as in a corpus built from the mirror)."""
    lab = labels()
    terms, indexed = _terms(Path(mirror), tuple(lab["study_id"]))
    tags, _ = classify_table(rules, lab[["study_id", "title"]], terms, set(indexed))
    return with_treatment(tags)


def scores(mirror: Path, split: str, rules=None) -> pd.DataFrame:
    lab = labels()
    lab = lab[lab["split"] == split]
    return score(lab, predict(mirror, rules), tags=TAGS)
