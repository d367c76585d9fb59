"""The default review's screening: every study its selection finds, labelled by hand.

A systematic review screens the candidates its search finds; the default review does the same
with the studies its selection query finds in a corpus tagged by the current rules. Two steps::

    python tests/data/tagging/screening/screening.py sheet CORPUS.duckdb   # to_label.tsv, candidates.tsv
    python tests/data/tagging/screening/screening.py build                 # the review's curation table

``sheet`` lists the candidates (the selection of ``resources/reviews/default.toml`` in a corpus
built from the mirror and tagged by the packaged rules) that samples 2 and 3 did not label, in the
form the annotators of those samples saw (``to_label.tsv``: title, journal, year, abstract
terms). Two annotators label them independently under ``docs/tagging_guide.md``
(``labels_a.tsv``, ``labels_b.tsv``); a third reading settles their disagreements
(``labels.tsv``). ``build`` writes ``src/neurochange/resources/reviews/default_screening.tsv``:
one row per candidate with its hand labels (from samples 2 and 3, or from this screening), and
one per review positive of samples 2 and 3 that the rules did not select; the default review
applies it as its curation table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(HERE.parent / "v2"))
from sample import informative_terms  # noqa: E402

from neurochange.vocabulary import expand  # noqa: E402

OUT = ROOT / "src" / "neurochange" / "resources" / "reviews" / "default_screening.tsv"
SAMPLES = (HERE.parent / "v2" / "labels.tsv", HERE.parent / "v3" / "labels.tsv", HERE / "labels.tsv")
MODALITIES = ("psychotherapy", "brain_stimulation", "pharmacotherapy")
DESIGNS = ("pre_post", "randomized_comparison")
#: The tagging rules whose selection was screened (a new version needs a new screening).
RULES_VERSION = "2.1"
FIELDS = ("modality", "subtype", "disorder", "design", "imaging")


def candidates(con) -> pd.DataFrame:
    """The default selection's studies: the three modalities, pre/post or randomised, a psychiatric disorder."""
    df = con.execute("""SELECT s.study_id, s.title, s.journal, s.year, t.modality, t.subtype, t.disorder, t.design,
                        t.imaging FROM studies s JOIN study_tags t USING (study_id) ORDER BY s.study_id""").df()
    keep = (df["modality"].isin(MODALITIES) & df["design"].isin(DESIGNS)
            & df["disorder"].isin(expand("disorder", "psychiatric")))
    return df[keep].reset_index(drop=True)


def sheet(path: str) -> None:
    con = duckdb.connect(path, read_only=True)
    cand = candidates(con)
    labelled = set().union(*(set(pd.read_csv(f, sep="\t", dtype=str)["study_id"]) for f in SAMPLES[:2]))
    todo = cand[~cand["study_id"].isin(labelled)]
    cand[["study_id", *FIELDS]].to_csv(HERE / "candidates.tsv", sep="\t", index=False, lineterminator="\n")
    terms = informative_terms(con, todo["study_id"].tolist())
    pd.DataFrame({"study_id": todo["study_id"], "title": todo["title"].map(lambda t: " ".join(t.split())),
                  "journal": todo["journal"], "year": todo["year"],
                  "abstract_terms": todo["study_id"].map(terms).fillna("(not in NeuroQuery)")}
                 ).to_csv(HERE / "to_label.tsv", sep="\t", index=False, lineterminator="\n")
    print(f"{len(cand)} candidates, {len(todo)} to label", file=sys.stderr)


def table() -> pd.DataFrame:
    """The curation table: hand labels of every candidate and of the positives the rules missed."""
    cand = pd.read_csv(HERE / "candidates.tsv", sep="\t", dtype=str, keep_default_na=False)
    rows = []
    for path in SAMPLES:
        lab = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        how = lab["labelled_by"] if "labelled_by" in lab else "both annotators"
        rows.append(lab[["study_id", *FIELDS]].assign(
            note=f"screened: {path.parent.name if path.parent != HERE else 'screening'} labels, " + how))
    labels = pd.concat(rows).drop_duplicates("study_id").set_index("study_id")
    missing = sorted(set(cand["study_id"]) - set(labels.index))
    if missing:
        sys.exit(f"unlabelled candidates: {', '.join(missing)}")
    # the candidates, and the review positives the rules missed (labelled in samples 2 and 3)
    psychiatric = set(expand("disorder", "psychiatric"))
    missed = labels[labels["modality"].isin(MODALITIES) & labels["design"].isin(DESIGNS)
                    & labels["disorder"].isin(psychiatric) & ~labels.index.isin(cand["study_id"])]
    return labels.loc[[*cand["study_id"], *missed.index]].reset_index()


def build() -> None:
    out = table()
    out.to_csv(OUT, sep="\t", index=False, lineterminator="\n")
    print(f"{len(out)} studies screened -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    {"sheet": lambda: sheet(sys.argv[2]), "build": build}[sys.argv[1]]()
