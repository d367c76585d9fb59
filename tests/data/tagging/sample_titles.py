"""Draw the hand-labelling sample of study titles from a full corpus (run once; kept for the record).

Two strata, drawn with one fixed seed from the corpus's ``studies`` view (19,148 studies when
built from Neurosynth v7 and NeuroQuery v1):

- ``random``: 150 studies drawn uniformly from all studies;
- ``enriched``: 150 studies drawn uniformly from the studies whose title matches
  :data:`POOL_PATTERN` (treatment words), leaving out those already drawn as random.

Each stratum is split at random into 75 ``dev`` (the rules were tuned on these) and 75
``heldout`` (measured once, at the end). Usage::

    python tests/data/tagging/sample_titles.py CORPUS.duckdb > sample.tsv
"""

from __future__ import annotations

import re
import sys

import duckdb
import numpy as np

SEED = 20240505
PER_STRATUM = 150
#: Treatment words that define the enriched pool (not the tagging rules).
POOL_PATTERN = re.compile(
    r"\b(therap\w*|psychotherap\w*|treat(ed|ment|ments|ing)?|medicat\w*|pharmacolog\w*|drugs?|placebo\w*|"
    r"stimulation|r?TMS|tDCS|ECT|DBS|electroconvulsive|antidepress\w*|antipsychotic\w*|neuroleptic\w*|"
    r"SSRIs?|\w+oxetine|\w*citalopram|sertraline|venlafaxine|duloxetine|\w*ketamine|lithium|clozapine|"
    r"risperidone|olanzapine|haloperidol|aripiprazole|quetiapine|benzodiazepines?|lorazepam|diazepam|"
    r"alprazolam|intervention\w*|trials?|randomi[sz]ed|CBT|cognitive[- ]behavio\w*|mindfulness|meditation|"
    r"exposure|neurofeedback|exercise|administration|doses?|infusion|response to)\b",
    re.IGNORECASE,
)


def draw(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
    """``(study_id, title, stratum, split)`` rows, random stratum first."""
    rows = con.execute("SELECT study_id, title FROM studies WHERE title IS NOT NULL ORDER BY study_id").fetchall()
    rng = np.random.default_rng(SEED)
    random_idx = rng.choice(len(rows), PER_STRATUM, replace=False)
    taken = set(random_idx.tolist())
    pool = [i for i, (_, title) in enumerate(rows) if POOL_PATTERN.search(title) and i not in taken]
    enriched_idx = rng.choice(pool, PER_STRATUM, replace=False)
    out = []
    for stratum, idx in (("random", random_idx), ("enriched", enriched_idx)):
        split = np.array(["dev"] * (PER_STRATUM // 2) + ["heldout"] * (PER_STRATUM - PER_STRATUM // 2))
        rng.shuffle(split)
        out += [(rows[i][0], " ".join(rows[i][1].split()), stratum, s) for i, s in zip(idx, split)]
    return out


def main(path: str) -> None:
    con = duckdb.connect(path, read_only=True)
    print("study_id\ttitle\tstratum\tsplit")
    for row in draw(con):
        print("\t".join(row))
    n_pool = sum(bool(POOL_PATTERN.search(t or "")) for (t,) in con.execute("SELECT title FROM studies").fetchall())
    print(f"pool: {n_pool} titles match the enrichment pattern", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
