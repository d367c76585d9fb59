"""The tagging rules: a versioned, documented TOML file read into plain frozen records.

The default file is ``resources/tagging_rules.toml`` (its header documents the format);
``load_rules(path)`` reads a researcher's own copy. Everything is checked on loading: tag
values against the vocabulary, regular expressions compile, conditions name earlier tags.
Mistakes are ``InputError``\\ s naming the file and the rule (``modality.rules[12].title``).
Whether each term is in NeuroQuery's vocabulary is checked by the tests (it needs the data).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from re import _constants as _sre
from re import _parser as _sre_parse

from neurochange.errors import InputError
from neurochange.vocabulary import allowed, vocabulary

#: Tags the rules decide, in the only order allowed (a rule's conditions look at earlier tags).
TAGS = ("modality", "disorder", "imaging", "design")
DEFAULT_FILE = "resources/tagging_rules.toml"


@dataclass(frozen=True)
class Condition:
    """Holds when every ``when`` tag has one of its values and no ``unless`` tag has one of its."""

    when: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unless: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def holds(self, decided: dict[str, str]) -> bool:
        return all(decided.get(t) in v for t, v in self.when) and not any(decided.get(t) in v for t, v in self.unless)

    def __str__(self) -> str:
        parts = [f"{t}={','.join(v)}" for t, v in self.when] + [f"{t}!={','.join(v)}" for t, v in self.unless]
        return " and ".join(parts)


@dataclass(frozen=True)
class Rule:
    """Evidence for ``tag = value`` (and ``subtype``): title patterns and NeuroQuery terms, times ``weight``.

    ``hints``: per title pattern, lower-case strings one of which any title it matches
    contains (None: no hint); see :meth:`Rules.active`.
    """

    tag: str
    value: str
    subtype: str | None
    title: tuple[re.Pattern, ...]
    terms: tuple[str, ...]
    weight: float
    condition: Condition
    name: str
    hints: tuple = ()


@dataclass(frozen=True)
class Mask:
    """Title phrases blanked out before the rules run, optionally counted as evidence for ``tag = value``."""

    patterns: tuple[re.Pattern, ...]
    tag: str | None
    value: str | None
    why: str
    tags: tuple[str, ...] = TAGS
    hints: tuple[tuple[str, ...] | None, ...] = ()


@dataclass(frozen=True)
class Fallback:
    """A value given when ``condition`` holds (``fixed``: whatever the rules say; ``default``: when none wins)."""

    value: str
    condition: Condition
    why: str


@dataclass(frozen=True)
class Thresholds:
    """Thresholds used instead of the tag's own when ``condition`` holds."""

    threshold: float
    threshold_without_title: float
    condition: Condition


@dataclass(frozen=True)
class TagRules:
    """How one tag is decided (see the rules file's header)."""

    name: str
    threshold: float
    threshold_without_title: float
    title_first: bool
    thresholds: tuple[Thresholds, ...]
    tiers: dict
    refine_threshold: float | None
    order: tuple[str, ...]
    beats: dict
    rules: tuple[Rule, ...]
    fixed: tuple[Fallback, ...]
    defaults: tuple[Fallback, ...]


@dataclass(frozen=True)
class Rules:
    """A whole rules file: version, scoring weights, masks and one :class:`TagRules` per tag."""

    version: str
    sha256: str
    file: str
    points: dict  # title, keywords, abstract (points per match) and abstract_cap (count cap)
    subtype_threshold: float
    masks: tuple[Mask, ...]
    tags: dict  # tag name -> TagRules, in TAGS order
    frequency: tuple[re.Pattern, ...] = ()  # stimulation frequency in Hz: the first group of the first match
    frequency_when: Condition = Condition()
    hint_index: dict = None  # hint -> keys of the patterns it enables
    unhinted: frozenset = frozenset()  # keys of patterns always searched
    term_index: dict = None  # NeuroQuery term -> (tag, rule index) of the rules that count it

    def active(self, title: str) -> set:
        """Keys ``(tag or "mask", rule index, pattern index)`` of the patterns worth searching in ``title``.

        A pattern is skipped only when the title lacks every literal its matches must contain.
        """
        low = title.lower()
        keys = set(self.unhinted)
        by_start = self._by_start
        for gram in {low[k:k + 2] for k in range(len(low) - 1)}.intersection(by_start):
            for hint, enabled in by_start[gram]:
                if hint in low:
                    keys |= enabled
        return keys

    @property
    def _by_start(self) -> dict:
        """Hints grouped by their first two characters (built once)."""
        cached = self.__dict__.get("_by_start_cache")
        if cached is None:
            cached = {}
            for hint, enabled in self.hint_index.items():
                cached.setdefault(hint[:2], []).append((hint, enabled))
            object.__setattr__(self, "_by_start_cache", cached)
        return cached

    def terms(self) -> set[str]:
        """Every NeuroQuery term any rule looks for."""
        return {term for spec in self.tags.values() for rule in spec.rules for term in rule.terms}

    @property
    def label(self) -> str:
        """``"rules <version>"``, as ``tagged_by`` records it."""
        return f"rules {self.version}"


# ----------------------------------------------------------------------------- fast pre-checks
def _literal_sets(items, ignore_case: bool) -> set | None:
    """Lower-case strings one of which every match of a parsed regex sequence contains, or None."""
    candidates, run = [], []

    def close():
        if run:
            candidates.append({"".join(run).lower()})
            run.clear()

    for op, av in items:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        close()
        sub = None
        if op is _sre.SUBPATTERN:
            sub = _literal_sets(av[-1], ignore_case)
        elif op is _sre.BRANCH:
            alternatives = [_literal_sets(a, ignore_case) for a in av[1]]
            sub = set().union(*alternatives) if all(alternatives) else None
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            sub = _literal_sets(av[2], ignore_case)
        if sub:
            candidates.append(sub)
    close()
    good = [c for c in candidates if min(map(len, c)) >= 2]
    return max(good, key=lambda c: (min(map(len, c)), -len(c))) if good else None


def hints(patterns: tuple[re.Pattern, ...]) -> tuple[str, ...] | None:
    """Strings one of which (lower-cased) any text matched by one of ``patterns`` contains; None if unknown.

    Used only to skip regular-expression searches that cannot match: a title that contains
    none of the hints is not searched. Derived from the parsed patterns, so always safe.
    """
    out: set = set()
    for pattern in patterns:
        try:
            found = _literal_sets(_sre_parse.parse(pattern.pattern, pattern.flags).data, True)
        except Exception:  # a construct the walker does not know: no hint, always search
            found = None
        if not found:
            return None
        out |= found
    return tuple(sorted(out))


# ----------------------------------------------------------------------------- loading
def _compile(patterns, file, where: str, combine: bool = False) -> tuple[re.Pattern, ...]:
    """Each pattern compiled (case-insensitive); with ``combine``, one alternation of them all (faster)."""
    if isinstance(patterns, str):
        patterns = [patterns]
    out = []
    for i, p in enumerate(patterns):
        if not isinstance(p, str) or not p:
            raise InputError(f"a pattern must be non-empty text, got {p!r}", file=file, field=f"{where}[{i}]")
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as exc:
            raise InputError(f"bad regular expression {p!r}: {exc}", file=file, field=f"{where}[{i}]") from None
    if combine and len(out) > 1:
        return (re.compile("|".join(f"(?:{p.pattern})" for p in out), re.IGNORECASE),)
    return tuple(out)


def _check(tag: str, value, file, where: str) -> str:
    values = allowed(tag)
    if value not in values:
        raise InputError(f"{value!r} is not a valid {tag}; valid values: {', '.join(values)}", file=file, field=where)
    return value


def _condition(spec: dict, tag: str, file, where: str) -> Condition:
    earlier = TAGS[: TAGS.index(tag)]
    parts = {}
    for key in ("when", "unless"):
        items = []
        for other, values in (spec.get(key) or {}).items():
            if other not in earlier:
                raise InputError(f"{key} may only name tags decided before {tag} ({', '.join(earlier) or 'none'}), "
                                 f"not {other!r}", file=file, field=f"{where}.{key}")
            values = [values] if isinstance(values, str) else values
            items.append((other, tuple(_check(other, v, file, f"{where}.{key}.{other}") for v in values)))
        parts[key] = tuple(items)
    return Condition(**parts)


def _number(spec: dict, key: str, default, file, where: str) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{key} must be a number, got {value!r}", file=file, field=f"{where}.{key}")
    return float(value)


def _rule(spec: dict, tag: str, index: int, file) -> Rule:
    where = f"{tag}.rules[{index}]"
    known = {"value", "subtype", "title", "terms", "weight", "when", "unless", "why"}
    extra = set(spec) - known
    if extra:
        raise InputError(f"unknown key {sorted(extra)[0]!r}; a rule has {', '.join(sorted(known))}",
                         file=file, field=where)
    value = _check(tag, spec.get("value"), file, f"{where}.value")
    subtype = spec.get("subtype")
    if subtype is not None:
        if tag != "modality" or subtype not in vocabulary()["subtype"].get(value, []):
            valid = ", ".join(vocabulary()["subtype"].get(value, [])) or "none"
            raise InputError(f"{subtype!r} is not a subtype of {tag} {value!r}; valid: {valid}",
                             file=file, field=f"{where}.subtype")
    terms = spec.get("terms", [])
    if not all(isinstance(t, str) and t == " ".join(t.lower().split()) and t for t in terms):
        raise InputError("terms must be lower-case NeuroQuery terms, words separated by one space",
                         file=file, field=f"{where}.terms")
    title = _compile(spec.get("title", []), file, f"{where}.title")
    if not title and not terms:
        raise InputError("a rule needs title patterns or terms", file=file, field=where)
    name = spec.get("why") or f"{tag}={value}" + (f"/{subtype}" if subtype else "")
    return Rule(tag, value, subtype, title, tuple(terms), _number(spec, "weight", 1.0, file, where),
                _condition(spec, tag, file, where), name, tuple(hints((p,)) for p in title))


def _fallbacks(items, tag: str, key: str, file) -> tuple[Fallback, ...]:
    out = []
    for i, spec in enumerate(items or []):
        where = f"{tag}.{key}[{i}]"
        out.append(Fallback(_check(tag, spec.get("value"), file, f"{where}.value"),
                            _condition(spec, tag, file, where), spec.get("why", "")))
    return tuple(out)


def _tag(spec: dict, tag: str, file) -> TagRules:
    for key in ("tiers", "beats"):
        for value in spec.get(key, {}):
            _check(tag, value, file, f"{tag}.{key}")
    beats = {v: tuple(_check(tag, b, file, f"{tag}.beats.{v}") for b in losers)
             for v, losers in spec.get("beats", {}).items()}
    order = tuple(_check(tag, v, file, f"{tag}.order") for v in spec.get("order", []))
    threshold = _number(spec, "threshold", 4.0, file, tag)
    without = _number(spec, "threshold_without_title", threshold, file, tag)
    thresholds = []
    for i, t in enumerate(spec.get("thresholds", [])):
        where = f"{tag}.thresholds[{i}]"
        first = _number(t, "threshold", threshold, file, where)
        second = _number(t, "threshold_without_title", first if "threshold" in t else without, file, where)
        thresholds.append(Thresholds(first, second, _condition(t, tag, file, where)))
    title_first = spec.get("title_first", True)
    if not isinstance(title_first, bool):
        raise InputError(f"title_first must be true or false, got {title_first!r}", file=file,
                         field=f"{tag}.title_first")
    return TagRules(
        name=tag, threshold=threshold, threshold_without_title=without, title_first=title_first,
        thresholds=tuple(thresholds),
        tiers=dict(spec.get("tiers", {})), order=order, beats=beats,
        refine_threshold=_number(spec, "refine_threshold", 0, file, tag) if "refine_threshold" in spec else None,
        rules=tuple(_rule(r, tag, i, file) for i, r in enumerate(spec.get("rules", []))),
        fixed=_fallbacks(spec.get("fixed"), tag, "fixed", file),
        defaults=_fallbacks(spec.get("default"), tag, "default", file),
    )


def parse_rules(text: str, file: str = DEFAULT_FILE) -> Rules:
    """Rules from the text of a rules file (``file`` names it in errors and provenance)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not a valid TOML file: {exc}", file=file) from None
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise InputError("the rules file needs a version string, e.g. version = \"1\"", file=file, field="version")
    scoring = data.get("scoring", {})
    points = {k: _number(scoring, k, d, file, "scoring")
              for k, d in (("title", 4.0), ("keywords", 2.0), ("abstract", 1.0), ("abstract_cap", 3.0))}
    masks = []
    for i, spec in enumerate(data.get("mask", [])):
        where = f"mask[{i}]"
        tag, value = spec.get("tag"), spec.get("value")
        if (tag is None) != (value is None) or (tag is not None and tag not in TAGS):
            raise InputError(f"a mask credits a tag ({', '.join(TAGS)}) and a value, or neither", file=file,
                             field=where)
        if tag is not None:
            _check(tag, value, file, f"{where}.value")
        scope = tuple(spec.get("tags", TAGS))
        if not scope or any(t not in TAGS for t in scope):
            raise InputError(f"a mask's tags must be some of {', '.join(TAGS)}", file=file, field=f"{where}.tags")
        patterns = _compile(spec.get("patterns", []), file, f"{where}.patterns")
        masks.append(Mask(patterns, tag, value, spec.get("why", ""), scope, tuple(hints((p,)) for p in patterns)))
    missing = [t for t in TAGS if t not in data]
    if missing:
        raise InputError(f"the rules file has no [{missing[0]}] section", file=file, field=missing[0])
    tags = {t: _tag(data[t], t, file) for t in TAGS}
    index: dict = {}
    unhinted = set()
    owners = [("mask", i, m.hints) for i, m in enumerate(masks)]
    owners += [(t, i, r.hints) for t, spec in tags.items() for i, r in enumerate(spec.rules)]
    for owner, i, pattern_hints in owners:
        for j, found in enumerate(pattern_hints):
            if found is None:
                unhinted.add((owner, i, j))
            for hint in found or ():
                index.setdefault(hint, set()).add((owner, i, j))
    frequency = data.get("frequency", {})
    frequency_patterns = _compile(frequency.get("patterns", []), file, "frequency.patterns")
    if any(p.groups < 1 for p in frequency_patterns):
        raise InputError("a frequency pattern needs a group around the number", file=file, field="frequency.patterns")
    frequency_when = _condition(frequency, "design", file, "frequency") if frequency else Condition()
    term_index: dict = {}
    for t, spec in tags.items():
        for i, rule in enumerate(spec.rules):
            for term in rule.terms:
                term_index.setdefault(term, set()).add((t, i))
    return Rules(
        version=version, sha256=hashlib.sha256(text.encode()).hexdigest(), file=str(file), points=points,
        subtype_threshold=_number(data.get("subtype", {}), "threshold", 1.0, file, "subtype"),
        masks=tuple(masks), tags=tags, hint_index={h: frozenset(k) for h, k in sorted(index.items())},
        unhinted=frozenset(unhinted), term_index={k: frozenset(v) for k, v in sorted(term_index.items())},
        frequency=frequency_patterns, frequency_when=frequency_when,
    )


def load_rules(path: str | Path | None = None) -> Rules:
    """The rules in ``path``, or the packaged default rules when ``path`` is None."""
    if path is None:
        return default_rules()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read rules file: {exc.strerror or exc}", file=path) from None
    return parse_rules(text, str(path))


@lru_cache(maxsize=1)
def default_rules() -> Rules:
    """The packaged ``resources/tagging_rules.toml``."""
    text = resources.files("neurochange").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return parse_rules(text, DEFAULT_FILE)
