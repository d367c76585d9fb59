"""Reading the corpus a page at a time, as screening and extraction do: candidates, then one study's tables.

Plain dicts and lists (JSON-ready), so the web app (:mod:`neurochange.serve`) and scripts read
the same thing. Queries use the ``corpus query`` grammar (:mod:`neurochange.corpus.query`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurochange.corpus.query import parse
from neurochange.corpus.schema import STUDY_FIELDS
from neurochange.corpus.store import NEUROSYNTH, Corpus, experiment_level
from neurochange.corpus.tagging import classify
from neurochange.errors import InputError

#: Most candidates one page may hold.
MAX_PAGE = 200


def _plain(value):
    """A JSON-ready scalar (pandas' missing values as None, numpy numbers as Python's)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if value is None or pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _evidence(corpus: Corpus, study_ids: list[str]) -> dict[str, dict[str, str]]:
    """Per study, per tag: the chosen evidence as one line (``classify.describe``)."""
    if not study_ids:
        return {}
    corpus.con.register("_page_ids", pd.DataFrame({"study_id": study_ids}))
    try:
        ev = corpus.con.execute("SELECT e.* FROM tag_evidence e JOIN _page_ids USING (study_id) WHERE e.chosen").df()
    finally:
        corpus.con.unregister("_page_ids")
    out: dict[str, dict[str, str]] = {}
    for sid, group in ev.groupby("study_id"):
        out[str(sid)] = {tag: classify.describe(group, tag) for tag in classify.TAG_OUTPUT if tag != "subtype"}
    return out


def candidates(corpus: Corpus, query: str = "", *, text: str = "", source: str = NEUROSYNTH, offset: int = 0,
               limit: int = 50) -> dict:
    """One page of the studies matching ``query`` (and whose title has the words of ``text``).

    Returns ``total`` (studies matching), ``offset``, ``limit`` and ``studies``: per study its id,
    title, authors, year, journal, doi, sources, tags (as queries see them) and ``evidence``
    (per tag, why the rules chose it), in corpus order.
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InputError(f"a page holds 1 to {MAX_PAGE} candidates from offset 0 or more", field="limit")
    words = " ".join(f'title:"{w}"' for w in text.replace('"', " ").split())
    parsed = parse(f"{query} {words}".strip())
    ids = corpus.select_ids(parsed, source)
    order = ids.drop_duplicates("study_id")["study_id"].tolist()
    page = order[offset:offset + limit]
    corpus.con.register("_page", pd.DataFrame({"study_id": page, "rank": range(len(page))}))
    try:
        studies = corpus.con.execute(
            f"SELECT s.study_id, {', '.join('s.' + f for f in STUDY_FIELDS)}, s.sources, "
            "g.modality, g.subtype, g.disorder, g.design, g.imaging, g.tagged_by "
            "FROM studies s JOIN _page p USING (study_id) LEFT JOIN study_tags g USING (study_id) ORDER BY p.rank").df()
    finally:
        corpus.con.unregister("_page")
    rows = _records(studies)
    evidence = _evidence(corpus, page)
    for row in rows:
        row["sources"] = row["sources"] or []
        row["evidence"] = evidence.get(row["study_id"], {})
    return {"query": str(parsed), "total": len(order), "offset": offset, "limit": limit, "studies": rows}


def study(corpus: Corpus, study_id: str, *, source: str = NEUROSYNTH, experiments: str = "table") -> dict:
    """One study: its fields, tags and evidence, and its experiments (of ``experiments`` level) with their foci.

    Each experiment: id, name, source, direction, n, and ``foci`` (``focus`` number, x, y, z in MNI
    mm, the reported space, flags), numbered as curation tables name them.
    """
    experiment_level(experiments)
    found = candidates(corpus, f'study="{study_id}"', source=source, limit=1)
    if not found["studies"]:
        raise InputError(f"study {study_id!r} is not in the corpus", field="study_id")
    chosen = corpus.select_ids(f'study="{study_id}"', source, experiments)
    studyset = corpus.studyset(chosen, source=source, experiments=experiments)
    out = found["studies"][0]
    out["experiments"] = []
    foci = studyset.foci
    for ex in _records(studyset.experiments[["experiment_id", "name", "direction", "n"]]):
        mine = foci[foci["experiment_id"] == ex["experiment_id"]]
        ex["source"] = str(mine["source"].iloc[0]) if len(mine) else None
        ex["foci"] = _records(mine[["focus", "x", "y", "z", "space", "table_id", "out_of_bounds", "duplicate"]])
        out["experiments"].append(ex)
    out["experiments_per"] = experiments
    return out


__all__ = ["MAX_PAGE", "candidates", "study"]
