"""Treatment, disorder, design and imaging tags for studies, from their titles and NeuroQuery terms.

The rules are data (:mod:`neurochange.corpus.tagging.rules`, ``resources/tagging_rules.toml``); this
module applies them. Per study and tag, every rule whose condition holds scores its value:
``title`` points when one of its patterns matches the title (after masks blank out phrases
such as "medication-naive"), ``abstract`` points per occurrence of one of its terms in the
abstract (capped), ``keywords`` points when a term is a keyword; all times the rule's weight.
Then, among values reaching the threshold (a higher one without title evidence): beaten
values drop out, the highest tier stays, values with title evidence win over those
without, then the highest score, the earliest in the title, the first in ``order``.
No winner gives the tag's default; a ``fixed`` value overrides the rules. Every decision
keeps its evidence: the words that matched, where, how often, and the points they gave.

:func:`classify` tags one study; :func:`tag_corpus` tags every study of a corpus in one
transaction and stores the tags (``study_tags``) and evidence (``tag_evidence``). Study
tags given in an imported file win over the rules.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from neurochange.corpus.tagging.rules import TAGS, Rules, TagRules, default_rules
from neurochange.vocabulary import vocabulary

TAG_OUTPUT = ("modality", "subtype", "disorder", "design", "imaging")
EVIDENCE_COLUMNS = ("study_id", "tag", "value", "subtype", "chosen", "found_in", "text", "count", "points")


@dataclass(frozen=True)
class Evidence:
    """One reason for a tag value: ``found_in`` title, abstract, keywords, default, fixed, file or curation."""

    tag: str
    value: str
    found_in: str
    text: str
    count: int = 1
    points: float = 0.0
    subtype: str | None = None
    chosen: bool = False


_DASHES = {**dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212"), "-"), ord("\u00ad"): None}


def normalize_title(title: str | None) -> str:
    """One space between words, Unicode hyphens and dashes read as ``-``."""
    return " ".join((title or "").translate(_DASHES).split())


@dataclass
class _Score:
    points: float = 0.0
    title: bool = False
    first: float = math.inf


def _mask_title(rules: Rules, title: str, active: set) -> tuple[dict, list[tuple]]:
    """Per tag, the title with its masked phrases blanked (positions kept); (tag, value, text, start) per credit."""
    masked = dict.fromkeys(TAGS, title)
    hits = []
    blank = lambda m: " " * len(m.group(0))  # noqa: E731
    for i, mask in enumerate(rules.masks):
        for j, pattern in enumerate(mask.patterns):
            if ("mask", i, j) not in active:
                continue
            if mask.tag is not None:
                hits += [(mask.tag, mask.value, m.group(0), m.start()) for m in pattern.finditer(masked[mask.tag])]
            for tag in mask.tags:
                masked[tag] = pattern.sub(blank, masked[tag])
    return masked, hits


def _score_rules(spec_rules, tag, decided, title, abstract, keywords, points, by, active) -> tuple[dict, list]:
    """Scores per key (``by(rule)``) and the evidence, over the rules whose condition holds."""
    scores: dict = defaultdict(_Score)
    evidence = []
    cap = points["abstract_cap"]
    for i in sorted(active.get(tag, ())):
        rule = spec_rules[i]
        key = by(rule)
        if key is None or ((rule.condition.when or rule.condition.unless) and not rule.condition.holds(decided)):
            continue
        score = scores[key]
        for j, pattern in enumerate(rule.title):
            if (tag, i, j) not in active["patterns"]:
                continue
            m = pattern.search(title)
            if m:
                gained = points["title"] * rule.weight
                score.points += gained
                if gained > 0:
                    score.title = True
                    score.first = min(score.first, m.start())
                evidence.append(Evidence(tag, rule.value, "title", m.group(0).strip(), 1, gained, rule.subtype))
                break
        for term in rule.terms if (abstract or keywords) else ():
            count = abstract.get(term, 0)
            if count:
                gained = min(count, cap) * points["abstract"] * rule.weight
                score.points += gained
                evidence.append(Evidence(tag, rule.value, "abstract", term, int(count), gained, rule.subtype))
            if keywords.get(term, 0):
                gained = points["keywords"] * rule.weight
                score.points += gained
                evidence.append(Evidence(tag, rule.value, "keywords", term, int(keywords[term]), gained, rule.subtype))
    return scores, evidence


def _winner(scores: dict, threshold: float, without_title: float, tiers: dict, order: tuple, beats: dict,
            refine: float | None = None, title_first: bool = True):
    """The winning key among ``scores`` (see the module docstring), or None."""
    cands = [k for k, s in scores.items() if s.points >= (threshold if s.title else without_title)]
    cands = [k for k in cands if not any(k in beats.get(other, ()) for other in cands if other != k)]
    if not cands:
        return None
    top = max(tiers.get(k, 1) for k in cands)
    if refine is not None:
        finer = [k for k, s in scores.items() if tiers.get(k, 1) > top and s.points >= refine]
        if finer:
            cands, top = finer, max(tiers.get(k, 1) for k in finer)
    cands = [k for k in cands if tiers.get(k, 1) == top]
    if title_first and any(scores[k].title for k in cands):
        cands = [k for k in cands if scores[k].title]
    rank = {v: i for i, v in enumerate(order)}
    return min(cands, key=lambda k: (-scores[k].points, scores[k].first, rank.get(k, len(rank)), k))


def _decide_tag(spec: TagRules, decided: dict, title: str, abstract: dict, keywords: dict, points: dict,
                mask_hits: list, active: set) -> tuple[str, list]:
    scores, evidence = _score_rules(spec.rules, spec.name, decided, title, abstract, keywords, points,
                                    lambda r: r.value, active)
    for tag, value, text, start in mask_hits:
        if tag == spec.name:
            score = scores[value]
            score.points += points["title"]
            score.title, score.first = True, min(score.first, start)
            evidence.append(Evidence(tag, value, "title", text.strip(), 1, points["title"]))
    for fixed in spec.fixed:
        if fixed.condition.holds(decided):
            why = fixed.why or str(fixed.condition)
            return fixed.value, evidence + [Evidence(spec.name, fixed.value, "fixed", why)]
    threshold, without_title = spec.threshold, spec.threshold_without_title
    for t in spec.thresholds:
        if t.condition.holds(decided):
            threshold, without_title = t.threshold, t.threshold_without_title
            break
    value = _winner(scores, threshold, without_title, spec.tiers, spec.order, spec.beats, spec.refine_threshold,
                    spec.title_first)
    if value is not None:
        return value, evidence
    for default in spec.defaults:
        if default.condition.holds(decided):
            return default.value, evidence + [Evidence(spec.name, default.value, "default", default.why)]
    return "unknown", evidence + [Evidence(spec.name, "unknown", "default", "no rule reached the threshold")]


def _decide_subtype(rules: Rules, modality: str, decided: dict, title: str, abstract: dict, keywords: dict,
                    active: set):
    spec = rules.tags["modality"]
    scores, _ = _score_rules(spec.rules, "modality", decided, title, abstract, keywords, rules.points,
                             lambda r: r.subtype if r.value == modality else None, active)
    order = tuple(vocabulary()["subtype"].get(modality, []))
    t = rules.subtype_threshold
    return _winner(scores, t, t, {}, order, {})


def classify(rules: Rules | None, title: str | None, abstract: dict | None = None,
             keywords: dict | None = None) -> tuple[dict, list[Evidence]]:
    """Tags of one study and their evidence.

    ``abstract``/``keywords``: NeuroQuery term -> count (None when NeuroQuery did not index
    the study). Returns ``{modality, subtype, disorder, design, imaging}`` (subtype may be
    None) and every :class:`Evidence` found, those of the chosen values flagged ``chosen``;
    a stimulation frequency stated in the title comes as evidence of tag ``frequency_hz``.
    """
    rules = rules or default_rules()
    title = normalize_title(title)
    abstract, keywords = abstract or {}, keywords or {}
    patterns = rules.active(title)
    active: dict = {"patterns": patterns}  # tag -> indices of the rules with something to look at
    for owner, i, _ in patterns:
        active.setdefault(owner, set()).add(i)
    for term in set(abstract) | set(keywords):
        for tag, i in rules.term_index.get(term, ()):
            active.setdefault(tag, set()).add(i)
    masked, mask_hits = _mask_title(rules, title, patterns)
    decided: dict = {}
    evidence: list[Evidence] = []
    for tag in TAGS:
        value, found = _decide_tag(rules.tags[tag], decided, masked[tag], abstract, keywords, rules.points, mask_hits,
                                   active)
        decided[tag] = value
        evidence += found
    decided["subtype"] = _decide_subtype(rules, decided["modality"], decided, masked["modality"], abstract, keywords,
                                         active)
    if rules.frequency and rules.frequency_when.holds(decided):
        for pattern in rules.frequency:
            m = pattern.search(title)
            if m:
                hz = float(m.group(1))
                evidence.append(Evidence("frequency_hz", f"{hz:g}", "title", m.group(0).strip(), 1, 0.0, None, True))
                break
    chosen = []
    for e in evidence:
        if e.tag not in decided:  # a dose read from the title (frequency_hz)
            chosen.append(e)
            continue
        hit = e.value == decided[e.tag]
        counts = e.points > 0 or e.found_in in ("default", "fixed")
        chosen.append(Evidence(**{**e.__dict__, "chosen": hit and counts}))
    return {t: decided[t] for t in TAG_OUTPUT}, chosen


# ----------------------------------------------------------------------------- many studies
def classify_table(rules: Rules | None, studies: pd.DataFrame, terms: pd.DataFrame,
                   indexed: set | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tags (one row per study) and evidence (one row per piece) for ``studies`` (``study_id``, ``title``).

    ``terms``: ``study_id``, ``field`` (abstract/keywords), ``term``, ``count``. ``indexed``: the
    studies NeuroQuery counted terms in (the others are tagged from their titles alone).
    """
    rules = rules or default_rules()
    by_study: dict = defaultdict(lambda: {"abstract": {}, "keywords": {}})
    for sid, field, term, count in terms[["study_id", "field", "term", "count"]].itertuples(index=False):
        if field in ("abstract", "keywords"):
            by_study[sid][field][term] = int(count)
    rows, found = [], []
    for sid, title in studies[["study_id", "title"]].itertuples(index=False):
        text = by_study.get(sid, {"abstract": {}, "keywords": {}})
        tags, evidence = classify(rules, None if pd.isna(title) else str(title), text["abstract"], text["keywords"])
        rows.append({"study_id": sid, **tags})
        for e in evidence:
            text_ = e.text
            if e.found_in == "default" and indexed is not None and sid not in indexed:
                text_ = f"{text_} (title only: NeuroQuery has no terms for this study)"
            found.append((sid, e.tag, e.value, e.subtype, e.chosen, e.found_in, text_, e.count, e.points))
    tags = pd.DataFrame(rows, columns=["study_id", *TAG_OUTPUT])
    return tags, pd.DataFrame(found, columns=list(EVIDENCE_COLUMNS))


def describe(evidence: pd.DataFrame, tag: str | None = None, subtype: str | None = None) -> str:
    """The chosen evidence as one line: ``modality=psychotherapy: title 'CBT'; abstract 'cbt' x3``.

    ``tag`` keeps one tag; ``subtype`` keeps the modality evidence naming that subtype.
    """
    ev = evidence[evidence["chosen"].astype(bool)]
    if tag is not None:
        ev = ev[ev["tag"] == tag]
    if subtype is not None:
        ev = ev[ev["subtype"] == subtype]
    order = {"title": 0, "keywords": 1, "abstract": 2}
    ev = ev.iloc[sorted(range(len(ev)), key=lambda i: order.get(ev["found_in"].iloc[i], 3))]
    parts = []
    for (t, value), group in ev.groupby(["tag", "value"], sort=False):
        items = []
        for r in group.itertuples(index=False):
            if r.found_in in ("title", "abstract", "keywords"):
                items.append(f"{r.found_in} '{r.text}'" + (f" x{r.count}" if r.count > 1 else ""))
            else:
                items.append(f"{r.found_in}: {r.text}")
        label = f"{t}={value}" + (f"/{subtype}" if subtype else "")
        parts.append(f"{label}: " + "; ".join(dict.fromkeys(items)))
    return " | ".join(parts)


# ----------------------------------------------------------------------------- the corpus
def _inputs(con, rules: Rules) -> tuple[pd.DataFrame, pd.DataFrame, set]:
    studies = con.execute("SELECT study_id, title FROM studies ORDER BY study_id").df()
    con.register("_rule_terms", pd.DataFrame({"term": sorted(rules.terms()) or [""]}))
    try:
        terms = con.execute(
            "SELECT c.study_id, c.field, t.term, c.count FROM term_counts c JOIN terms t USING (term_id) "
            "JOIN _rule_terms r USING (term) WHERE c.field IN ('abstract', 'keywords') "
            "ORDER BY c.study_id, c.field, t.term").df()
    finally:
        con.unregister("_rule_terms")
    indexed = {r[0] for r in con.execute("SELECT study_id FROM term_documents").fetchall()}
    return studies, terms, indexed


def _file_tags(con) -> pd.DataFrame:
    """Study tags that imported files give (first file by name wins), one row per study."""
    cols = ", ".join(f"arg_min(s.{t}, s.source) FILTER (WHERE s.{t} IS NOT NULL) AS {t}" for t in TAG_OUTPUT)
    return con.execute(
        f"SELECT s.study_id, min(s.source) AS source, {cols} FROM study_sources s "
        "JOIN (SELECT DISTINCT source FROM sources WHERE kind = 'file') f USING (source) "
        f"WHERE {' OR '.join(f's.{t} IS NOT NULL' for t in TAG_OUTPUT)} GROUP BY s.study_id").df()


def _apply_file_tags(tags: pd.DataFrame, evidence: pd.DataFrame, file_tags: pd.DataFrame, label: str):
    tags = tags.set_index("study_id")
    tags["tagged_by"] = label
    extra = []
    for row in file_tags.itertuples(index=False):
        for t in TAG_OUTPUT:
            value = getattr(row, t)
            if value is None or pd.isna(value):
                continue
            tags.loc[row.study_id, t] = value
            tags.loc[row.study_id, "tagged_by"] = f"{label}; file {row.source}"
            hit = (evidence["study_id"] == row.study_id) & (evidence["tag"] == t)
            evidence.loc[hit, "chosen"] = False
            extra.append((row.study_id, t, value, None, True, "file", row.source, 1, 0.0))
    if extra:
        evidence = pd.concat([evidence, pd.DataFrame(extra, columns=evidence.columns)], ignore_index=True)
    return tags.reset_index(), evidence


def _fingerprint(rules: Rules, studies: pd.DataFrame, terms: pd.DataFrame, file_tags: pd.DataFrame) -> str:
    digest = hashlib.sha256(rules.sha256.encode())
    for frame in (studies, terms, file_tags):
        digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def tagging_info(corpus) -> dict:
    """What tagged the corpus: rules version, file and SHA-256, number of studies (empty if untagged)."""
    rows = corpus.con.execute("SELECT key, value FROM corpus_info WHERE starts_with(key, 'tagging_')").fetchall()
    info = {k.removeprefix("tagging_"): v for k, v in rows}
    info.pop("fingerprint", None)
    if "studies" in info:
        info["studies"] = int(info["studies"])
    return info


def tag_corpus(corpus, rules: Rules | None = None, *, progress=None) -> dict:
    """Tag every study of ``corpus`` and store tags and evidence, in one transaction.

    Idempotent: with the same rules and the same studies, terms and file tags nothing is
    rewritten (``status`` ``unchanged``). Returns ``status``, ``studies``, the rules
    ``version``/``sha256``/``file`` and counts per modality.
    """
    rules = rules or default_rules()
    say = progress or (lambda message: None)
    con = corpus.con
    say("tagging: reading titles and terms")
    studies, terms, indexed = _inputs(con, rules)
    file_tags = _file_tags(con)
    fingerprint = _fingerprint(rules, studies, terms, file_tags)
    counts = lambda: dict(con.execute(  # noqa: E731
        "SELECT modality, count(*) FROM study_tags GROUP BY modality ORDER BY modality").fetchall())
    report = {"version": rules.version, "sha256": rules.sha256, "file": rules.file, "studies": len(studies)}
    old = con.execute("SELECT value FROM corpus_info WHERE key = 'tagging_fingerprint'").fetchone()
    if old and old[0] == fingerprint:
        return {"status": "unchanged", **report, "modality": counts()}
    say(f"tagging: {len(studies):,} studies with rules {rules.version}")
    tags, evidence = classify_table(rules, studies, terms, indexed)
    tags, evidence = _apply_file_tags(tags, evidence, file_tags, rules.label)
    info = {"tagging_rules_version": rules.version, "tagging_rules_sha256": rules.sha256,
            "tagging_rules_file": rules.file, "tagging_studies": str(len(tags)),
            "tagging_fingerprint": fingerprint, "tagging_file_tags": json.dumps(sorted(set(file_tags["source"])))}
    con.begin()
    try:
        con.execute("DELETE FROM study_tags")
        con.execute("DELETE FROM tag_evidence")
        corpus._insert("study_tags", tags)
        corpus._insert("tag_evidence", evidence)
        con.execute("DELETE FROM corpus_info WHERE starts_with(key, 'tagging_')")
        con.executemany("INSERT INTO corpus_info VALUES (?, ?)", list(info.items()))
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return {"status": "tagged" if not old else "retagged", **report, "modality": counts()}


__all__ = ["Evidence", "classify", "classify_table", "describe", "tag_corpus", "tagging_info", "TAG_OUTPUT"]
