"""Precision and recall of the tagger on the labelled titles: the tables of docs/tagging.md and the test floors.

Run from the project root (needs the database mirror; the rules-1.1 baseline needs no corpus:
a sample's ``selected`` stratum *is* rules 1.1's default selection)::

    python tests/data/tagging/report.py ../shared/data > /tmp/tables.md

It prints the annotators' agreement, the default review's precision and recall per modality,
and per tag value and stratum tables for sample 3 (held out for rules 2.1) and sample 2 (tuned
on), and writes ``tests/data/tagging/v3/heldout_floors.tsv``: every sample-3 precision and
recall, rounded down to two decimals, which ``tests/test_classify.py`` asserts are still reached.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tagging_helpers import (  # noqa: E402
    FLOORS,
    REVIEW_MODALITIES,
    SAMPLES,
    TAGS,
    labels,
    review_modality,
    review_scores,
    scores,
    selection_scores,
)

from neurochange.corpus.tagging.rules import default_rules  # noqa: E402

ANNOTATED = ("modality", "subtype", "disorder", "design", "imaging")


def kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa of two label columns."""
    values = sorted(set(a) | set(b))
    observed = float((a.to_numpy() == b.to_numpy()).mean())
    expected = sum(float((a == v).mean()) * float((b == v).mean()) for v in values)
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def agreement(sample: str) -> list[str]:
    folder = SAMPLES[sample].parent
    a = pd.read_csv(folder / "labels_a.tsv", sep="\t", dtype=str, keep_default_na=False)
    b = pd.read_csv(folder / "labels_b.tsv", sep="\t", dtype=str, keep_default_na=False).set_index("study_id")
    b = b.loc[a["study_id"]].reset_index()
    rows = [f"| {tag} | {(a[tag] == b[tag]).mean():.3f} | {kappa(a[tag], b[tag]):.3f} |" for tag in ANNOTATED]
    pos_a, pos_b = review_modality(a) != "", review_modality(b) != ""
    rows.append(f"| review positive | {(pos_a == pos_b).mean():.3f} | {kappa(pos_a, pos_b):.3f} |")
    return [f"Sample {sample[1]}: {len(a)} studies, {int((a['modality'] != 'none').sum())} and "
            f"{int((b['modality'] != 'none').sum())} treatment studies (annotator A, B), "
            f"{int(pos_a.sum())} and {int(pos_b.sum())} review positives.", "",
            "| tag | agreement | Cohen's kappa |", "|---|---|---|", *rows, ""]


def cell(row) -> str:
    if row is None:
        return "–"
    p = "–" if math.isnan(row.precision) else f"{row.precision:.2f}"
    r = "–" if math.isnan(row.recall) else f"{row.recall:.2f}"
    return f"{p} / {r} ({row.support})"


def table(held: pd.DataFrame, dev: pd.DataFrame, tag: str, strata: list[str]) -> str:
    heads = ["sample 3 all", *[f"sample 3 {s}" for s in strata], "sample 2 all"]
    lines = [f"**{tag}** (precision / recall (labelled n); `(all)`: share of studies tagged right)", "",
             "| value | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    values = sorted(set(held.loc[held["tag"] == tag, "value"]) | set(dev.loc[dev["tag"] == tag, "value"]),
                    key=lambda v: (v == "(all)", v))
    for value in values:
        cells = []
        for frame, stratum in [(held, "all"), *[(held, s) for s in strata], (dev, "all")]:
            hit = frame[(frame["tag"] == tag) & (frame["value"] == value) & (frame["stratum"] == stratum)]
            cells.append(cell(next(hit.itertuples(index=False), None)))
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(mirror: str) -> None:
    mirror = Path(mirror)
    print(f"Rules version {default_rules().version}.\n")
    for sample in ("v2", "v3"):
        print("\n".join(agreement(sample)))
    print("Default review selection, precision / recall per modality (corpus: strata weighted to the corpus)\n")
    print("| modality | rules 1.1, sample 3 | rules 2.1, sample 3 (held out) | rules 2.1, sample 3 weighted "
          "| rules 2.1, sample 2 (tuned on) |")
    print("|---|---|---|---|---|")
    held, tuned = review_scores(mirror, None, sample="v3"), review_scores(mirror, None, sample="v2")
    # rules 1.1's default selection is the `selected` stratum, with the modality 1.1 gave (sample.tsv)
    lab3 = labels("v3").merge(pd.read_csv(SAMPLES["v3"].parent / "sample.tsv", sep="\t", dtype=str)[
        ["study_id", "rules_1_1_modality"]], on="study_id")
    old = selection_scores(lab3, lab3["rules_1_1_modality"].where(lab3["stratum"] == "selected", "").to_numpy())
    for m in REVIEW_MODALITIES:
        def pr(frame, basis, counts=True):
            r = frame[(frame["modality"] == m) & (frame["basis"] == basis)].iloc[0]
            return f"{r.precision:.2f} / {r.recall:.2f}" + (
                f" ({r.labelled} labelled, {r.selected} selected)" if counts else "")
        print(f"| {m} | {pr(old, 'sample', counts=False)} | {pr(held, 'sample')} | {pr(held, 'corpus')} "
              f"| {pr(tuned, 'sample')} |")
    print()
    h, d = scores(mirror, None, sample="v3"), scores(mirror, None, sample="v2")
    strata = sorted(set(labels("v3")["stratum"]))
    for tag in TAGS:
        print(table(h, d, tag, strata) + "\n")
    floors = h.melt(id_vars=["stratum", "tag", "value", "support"], value_vars=["precision", "recall"],
                    var_name="measure", value_name="reported").dropna(subset=["reported"])
    floors["floor"] = (floors["reported"] * 100).map(math.floor) / 100
    floors = floors.sort_values(["tag", "value", "stratum", "measure"])
    floors[["stratum", "tag", "value", "measure", "support", "reported", "floor"]].to_csv(
        FLOORS, sep="\t", index=False, float_format="%.4f", lineterminator="\n")


if __name__ == "__main__":
    main(sys.argv[1])
