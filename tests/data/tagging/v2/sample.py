"""Draw the second hand-labelling sample (rules version 2; run once, kept for the record).

Drawn with one fixed seed from a corpus built from Neurosynth v7 and NeuroQuery v1 and tagged
by rules 1.1 (19,148 studies), leaving out the 300 studies of the first sample (the rules were
tuned on them). Five strata, so that treatment studies are many without the sample being only
what the old rules found:

- ``selected``: studies the default review selected under rules 1.1 (modality psychotherapy,
  brain stimulation or pharmacotherapy; design pre_post or randomized_comparison; disorder not
  healthy);
- ``treatment_other``: other studies rules 1.1 tagged as treatment studies (modality not none);
- ``title_word``: tagged ``none`` but the title has a treatment word (the first sample's
  :data:`POOL_PATTERN`);
- ``abstract_terms``: tagged ``none``, no title word, but NeuroQuery counts treatment terms
  in the abstract (:data:`ABSTRACT_TERMS`, 2 occurrences or more in all);
- ``random``: every other study.

Each stratum is split at random into halves: ``dev`` (rules are tuned on it) and ``heldout``
(measured once, at the end). The stratum sizes in the corpus are written beside the sample, so
that corpus-wide figures can weight each stratum by its sampling fraction. Usage::

    python tests/data/tagging/v2/sample.py CORPUS.duckdb            # sample 2 (this folder)
    python tests/data/tagging/v2/sample.py CORPUS.duckdb --third    # sample 3 (folder v3)

Sample 3 (120 studies, 60 ``selected``, 30 ``treatment_other``, 10 each of the others; all
held out) was drawn the same way, leaving out samples 1 and 2, after rules 2.0 had been run on
sample 2's held-out half: it is the held-out set of rules 2.1. Each writes ``sample.tsv`` (study, stratum, split, the modality rules 1.1 gave it), ``strata.tsv`` (stratum sizes) and
``to_label.tsv`` (what an annotator sees, in a shuffled order with no stratum: title, journal,
year and the abstract's rare and imaging-method terms with their counts; ``keywords:`` and
``title:`` mark terms counted there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from sample_titles import POOL_PATTERN  # noqa: E402

SEED = 20261206
SIZES = {"selected": 140, "treatment_other": 100, "title_word": 60, "abstract_terms": 40, "random": 40}
THIRD_SEED = 20261207
THIRD_SIZES = {"selected": 60, "treatment_other": 30, "title_word": 10, "abstract_terms": 10, "random": 10}
#: NeuroQuery terms that mark a treatment study in an abstract.
ABSTRACT_TERMS = ("treatment", "therapy", "psychotherapy", "antidepressant", "antidepressants", "medication",
                  "placebo", "stimulation", "rtms", "tms", "tdcs", "ect", "intervention", "administration",
                  "pharmacotherapy", "cbt", "trial", "randomized", "dose", "drug")
#: Imaging-method terms shown to annotators whatever their frequency.
METHOD_TERMS = ("fmri", "functional magnetic resonance", "resting state", "pet", "positron emission tomography",
                "spect", "voxel based morphometry", "vbm", "cortical thickness", "gray matter volume",
                "grey matter volume", "dti", "diffusion tensor", "fractional anisotropy", "tractography",
                "eeg", "meg", "arterial spin labeling", "functional connectivity", "bold")
INFORMATIVE_DF = 0.03


def strata(con) -> pd.DataFrame:
    """One row per study: id, title, journal, year and its stratum."""
    df = con.execute("""
        SELECT s.study_id, s.title, s.journal, s.year, t.modality, t.design, t.disorder
        FROM studies s JOIN study_tags t USING (study_id) WHERE s.title IS NOT NULL ORDER BY s.study_id
    """).df()
    abstract = con.execute(f"""
        SELECT c.study_id, SUM(c.count) AS n FROM term_counts c JOIN terms USING (term_id)
        WHERE c.field = 'abstract' AND term IN {ABSTRACT_TERMS} GROUP BY 1
    """).df().set_index("study_id")["n"]
    n_abstract = df["study_id"].map(abstract).fillna(0)
    treated = df["modality"] != "none"
    selected = (df["modality"].isin(["psychotherapy", "brain_stimulation", "pharmacotherapy"])
                & df["design"].isin(["pre_post", "randomized_comparison"]) & (df["disorder"] != "healthy"))
    title_word = df["title"].map(lambda t: bool(POOL_PATTERN.search(t)))
    df["stratum"] = np.select(
        [selected, treated, title_word, n_abstract >= 2],
        ["selected", "treatment_other", "title_word", "abstract_terms"], "random")
    return df


def informative_terms(con, ids: list[str]) -> dict[str, str]:
    """Per study: its rare (document frequency < 3%) and imaging-method terms, ``term (count)``."""
    n_docs = con.execute("SELECT COUNT(*) FROM term_documents").fetchone()[0]
    rows = con.execute(f"""
        WITH df AS (SELECT term_id, COUNT(DISTINCT study_id) AS df FROM term_counts GROUP BY 1)
        SELECT c.study_id, c.field, t.term, c.count FROM term_counts c JOIN terms t USING (term_id) JOIN df USING (term_id)
        WHERE c.study_id IN (SELECT UNNEST(?)) AND (df.df < {INFORMATIVE_DF} * {n_docs} OR t.term IN {METHOD_TERMS})
        ORDER BY c.study_id, c.field, c.count DESC, t.term
    """, [ids]).fetchall()
    out: dict[str, list[str]] = {}
    for sid, field, term, count in rows:
        if not term.replace(" ", "").isdigit():
            out.setdefault(sid, []).append(f"{'' if field == 'abstract' else field + ':'}{term} ({count})")
    return {sid: ", ".join(terms) for sid, terms in out.items()}


def main(path: str, third: bool = False) -> None:
    con = duckdb.connect(path, read_only=True)
    earlier = [HERE.parent / "labels.tsv"] + ([HERE / "labels.tsv"] if third else [])
    done = set().union(*(set(pd.read_csv(f, sep="\t", dtype=str)["study_id"]) for f in earlier))
    df = strata(con)
    df = df[~df["study_id"].isin(done)].reset_index(drop=True)
    seed, sizes_wanted, out = (THIRD_SEED, THIRD_SIZES, HERE.parent / "v3") if third else (SEED, SIZES, HERE)
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    parts = []
    for stratum, size in sizes_wanted.items():
        pool = df[df["stratum"] == stratum]
        picked = pool.iloc[np.sort(rng.choice(len(pool), size, replace=False))].copy()
        split = np.array(["heldout"] * size if third else ["dev"] * (size // 2) + ["heldout"] * (size - size // 2))
        rng.shuffle(split)
        parts.append(picked.assign(split=split))
    sample = pd.concat(parts, ignore_index=True)
    sample = sample.rename(columns={"modality": "rules_1_1_modality"})
    sample[["study_id", "stratum", "split", "rules_1_1_modality"]].to_csv(out / "sample.tsv", sep="\t", index=False, lineterminator="\n")
    sizes = df["stratum"].value_counts().rename_axis("stratum").rename("studies").reset_index()
    sizes["sampled"] = sizes["stratum"].map(sizes_wanted)
    sizes.to_csv(out / "strata.tsv", sep="\t", index=False, lineterminator="\n")
    terms = informative_terms(con, sample["study_id"].tolist())
    shown = sample.iloc[rng.permutation(len(sample))]
    shown = pd.DataFrame({"study_id": shown["study_id"], "title": shown["title"].map(lambda t: " ".join(t.split())),
                          "journal": shown["journal"], "year": shown["year"],
                          "abstract_terms": shown["study_id"].map(terms).fillna("(not in NeuroQuery)")})
    shown.to_csv(out / "to_label.tsv", sep="\t", index=False, lineterminator="\n")
    print(sizes.to_string(index=False), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], third="--third" in sys.argv[2:])
