"""Precision and recall of the tagger on the labelled titles: the tables of docs/tagging.md and the test floors.

Run from the project root (needs the database mirror)::

    python tests/data/tagging/report.py ../shared/data > /tmp/tables.md

It prints the Markdown tables (held-out and development halves, per tag value and stratum)
and writes ``tests/data/tagging/heldout_floors.tsv``: every held-out precision and recall,
rounded down to two decimals, which ``tests/test_classify.py`` asserts are still reached.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tagging_helpers import FLOORS, TAGS, scores  # noqa: E402

from neurochange.corpus.tagging.rules import default_rules  # noqa: E402

STRATA = ("all", "enriched", "random")


def cell(row) -> str:
    if row is None:
        return "–"
    p = "–" if math.isnan(row.precision) else f"{row.precision:.2f}"
    r = "–" if math.isnan(row.recall) else f"{row.recall:.2f}"
    return f"{p} / {r} ({row.support})"


def table(heldout, dev, tag: str) -> str:
    lines = [f"**{tag}** (precision / recall (labelled n); `(all)`: share of studies tagged right)", "",
             "| value | held-out all | held-out enriched | held-out random | dev all |",
             "|---|---|---|---|---|"]
    values = sorted(set(heldout.loc[heldout["tag"] == tag, "value"]) | set(dev.loc[dev["tag"] == tag, "value"]),
                    key=lambda v: (v == "(all)", v))
    for value in values:
        cells = []
        for frame, stratum in ((heldout, "all"), (heldout, "enriched"), (heldout, "random"), (dev, "all")):
            hit = frame[(frame["tag"] == tag) & (frame["value"] == value) & (frame["stratum"] == stratum)]
            cells.append(cell(next(hit.itertuples(index=False), None)))
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(mirror: str) -> None:
    heldout, dev = scores(Path(mirror), "heldout"), scores(Path(mirror), "dev")
    print(f"Rules version {default_rules().version}.\n")
    for tag in TAGS:
        print(table(heldout, dev, tag) + "\n")
    floors = heldout.melt(id_vars=["stratum", "tag", "value", "support"], value_vars=["precision", "recall"],
                          var_name="measure", value_name="reported").dropna(subset=["reported"])
    floors["floor"] = (floors["reported"] * 100).map(math.floor) / 100
    floors = floors.sort_values(["tag", "value", "stratum", "measure"])
    floors[["stratum", "tag", "value", "measure", "support", "reported", "floor"]].to_csv(
        FLOORS, sep="\t", index=False, float_format="%.4f", lineterminator="\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
