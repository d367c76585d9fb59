"""Precision and recall of tags against hand labels, per tag value and per stratum.

``score(labels, predicted)`` compares two tables keyed by ``study_id`` holding the tag
columns (an empty subtype reads ``(none)``). For each tag and value: ``tp`` (labelled and
predicted), ``fp`` (predicted, labelled otherwise), ``fn`` (labelled, predicted otherwise),
``precision = tp / (tp + fp)`` and ``recall = tp / (tp + fn)`` (NaN when undefined),
``support = tp + fn``. Rows with ``value == "(all)"`` give the share of studies tagged right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TAGS = ("modality", "subtype", "disorder", "design", "imaging")
NONE = "(none)"


def _column(df: pd.DataFrame, tag: str) -> pd.Series:
    return df[tag].astype("string").fillna("").replace("", NONE)


def confusion(labels: pd.DataFrame, predicted: pd.DataFrame, tag: str) -> pd.DataFrame:
    """``study_id``, ``label``, ``predicted`` for one tag (studies present in both tables)."""
    both = labels[["study_id"]].assign(label=_column(labels, tag)).merge(
        predicted[["study_id"]].assign(predicted=_column(predicted, tag)), on="study_id")
    return both


def score_one(labels: pd.DataFrame, predicted: pd.DataFrame, tag: str) -> pd.DataFrame:
    """Precision and recall per value of ``tag``, plus the ``(all)`` accuracy row."""
    both = confusion(labels, predicted, tag)
    rows = []
    for value in sorted(set(both["label"]) | set(both["predicted"])):
        tp = int(((both["label"] == value) & (both["predicted"] == value)).sum())
        fp = int(((both["label"] != value) & (both["predicted"] == value)).sum())
        fn = int(((both["label"] == value) & (both["predicted"] != value)).sum())
        rows.append({"tag": tag, "value": value, "tp": tp, "fp": fp, "fn": fn, "support": tp + fn,
                     "precision": tp / (tp + fp) if tp + fp else np.nan,
                     "recall": tp / (tp + fn) if tp + fn else np.nan})
    right = int((both["label"] == both["predicted"]).sum())
    rows.append({"tag": tag, "value": "(all)", "tp": right, "fp": len(both) - right, "fn": len(both) - right,
                 "support": len(both), "precision": right / len(both) if len(both) else np.nan,
                 "recall": right / len(both) if len(both) else np.nan})
    return pd.DataFrame(rows)


def score(labels: pd.DataFrame, predicted: pd.DataFrame, by: str | None = "stratum",
          tags=TAGS) -> pd.DataFrame:
    """:func:`score_one` for every tag, for all labelled studies and per value of ``labels[by]``."""
    groups = [("all", labels)]
    if by is not None:
        groups += [(str(k), g) for k, g in labels.groupby(by, sort=True)]
    parts = [score_one(g, predicted, tag).assign(stratum=name) for name, g in groups for tag in tags]
    out = pd.concat(parts, ignore_index=True)
    return out[["stratum", "tag", "value", "support", "tp", "fp", "fn", "precision", "recall"]]
