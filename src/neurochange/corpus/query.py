"""The one ``field=value`` query grammar, shared by ``corpus query`` and ``select``.

A query is whitespace-separated clauses, all of which must hold (AND)::

    year>=2010 journal:"biological psychiatry" title:depress* source=neurosynth term:psychotherapy>=2

A clause is ``field OPERATOR values``:

- operators: ``=``, ``!=``, ``>=``, ``<=``, ``>``, ``<`` and, for text, ``:`` (contains the
  words) and ``!:`` (does not contain them);
- values: a bare token or a double-quoted string (``\\"`` for a quote inside); a comma
  list means any of them (OR): ``disorder=mdd,gad``, ``title:anxiety,fear``;
- ``=``/``!=`` on text are exact but case-insensitive; ``:`` matches whole words, in order,
  case-insensitively (``title:"working memory"``); a final ``*`` matches any word ending
  (``title:depress*`` finds depression and depressive);
- a missing value (a NeuroQuery-only study has no year) fails ``=``, ``>=``... and passes
  ``!=``/``!:``; a missing tag reads ``unknown`` (a missing ``subtype`` stays missing).

Term counts (NeuroQuery's per-study counts, any term of its 156,521-term vocabulary):
``term:<term>[OP N]`` compares the count of ``<term>`` in the study's abstract with N
(default ``>=1``): ``term:psychotherapy>=2``, ``term:"major depression"``,
``term:anxiety=0``. ``term.title:``, ``term.keywords:`` count in titles and keywords
instead (``term.abstract:`` is ``term:``). Terms are lower-cased; a comma list of terms
means any of them. A term clause only ever matches studies NeuroQuery counted (studies
only in Neurosynth have no counts). The corpus checks terms and source names against
what it holds and suggests close terms.

Fields: see :data:`FIELDS` (``study``, ``experiment``, ``source``, ``year``, ``n``,
``title``, ``journal``, ``authors``, ``doi``, tags ``modality``, ``subtype``, ``disorder``,
``design``, ``imaging``, ``direction`` checked against the vocabulary, and the term fields).

:func:`parse` gives a small AST (:class:`Query` of :class:`Clause`); :func:`to_sql`
compiles it to one parameterized SQL statement over the corpus view ``catalog`` (one row
per experiment, with its study's fields). Values never enter the SQL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from neurochange.errors import InputError
from neurochange.vocabulary import allowed, expand, groups

EQUALITY = ("=", "!=")
ORDER = (">=", "<=", ">", "<")
WORDS = (":", "!:")
#: Longest first, so ``>=`` is not read as ``>``.
OPERATORS = ("!=", ">=", "<=", "!:", "=", ">", "<", ":")

#: Text fields for term counts (NeuroQuery's three matrices).
TERM_FIELDS = {"term": "abstract", "term.title": "title", "term.keywords": "keywords"}


@dataclass(frozen=True)
class FieldSpec:
    """A queryable field: its kind, its column in the ``catalog`` view, the operators it takes."""

    kind: str  # "id", "ci" (case-insensitive id), "source", "int", "text", "tag", "term"
    column: str
    ops: tuple[str, ...]
    help: str


FIELDS: dict[str, FieldSpec] = {
    "study": FieldSpec("id", "study_id", EQUALITY, "study id (PMID for the databases)"),
    "experiment": FieldSpec("id", "experiment_id", EQUALITY, "experiment id, <study>-<contrast>"),
    "source": FieldSpec("source", "source", EQUALITY, "neurosynth, neuroquery or an imported file's name"),
    "year": FieldSpec("int", "year", EQUALITY + ORDER, "publication year"),
    "n": FieldSpec("int", "n", EQUALITY + ORDER, "sample size of the experiment"),
    "title": FieldSpec("text", "title", EQUALITY + WORDS, "study title"),
    "journal": FieldSpec("text", "journal", EQUALITY + WORDS, "journal name as the source spells it"),
    "authors": FieldSpec("text", "authors", EQUALITY + WORDS, "author list"),
    "doi": FieldSpec("ci", "doi", EQUALITY, "DOI"),
    **{tag: FieldSpec("tag", tag, EQUALITY, f"{tag} tag (vocabulary)")
       for tag in ("modality", "subtype", "disorder", "design", "imaging", "direction")},
    **{name: FieldSpec("term", "study_id", EQUALITY + ORDER, f"NeuroQuery count of a term in the {where}")
       for name, where in TERM_FIELDS.items()},
}
ALIASES = {"pmid": "study", "term.abstract": "term"}


@dataclass(frozen=True)
class Clause:
    """One ``field OP values`` test. Term clauses hold their terms in ``terms`` and the count in ``values``."""

    field: str
    op: str
    values: tuple
    terms: tuple[str, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class Query:
    """Clauses that must all hold, and the text they came from."""

    clauses: tuple[Clause, ...] = ()
    text: str = ""

    def terms(self) -> set[str]:
        """Every term named by a term clause."""
        return {t for c in self.clauses for t in c.terms}

    def values(self, name: str) -> list:
        """Every value given for field ``name``."""
        return [v for c in self.clauses if c.field == name for v in c.values]

    def __str__(self) -> str:
        return " ".join(c.text for c in self.clauses)


# ----------------------------------------------------------------------------- parsing
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_SPACE = " \t\r\n"


def _error(message: str, clause: str | None, name: str | None = None) -> InputError:
    where = f"in {clause!r}: " if clause else ""
    return InputError(f"query {where}{message}", field=name)


def field_help() -> str:
    """``name: help`` for every field, one a line (for --help)."""
    return "\n".join(f"{name}: {spec.help}" for name, spec in FIELDS.items())


def _read_values(text: str, i: int, stop: str, clause_start: int) -> tuple[list[str], int]:
    """Comma-separated values from position ``i``: bare tokens (up to a ``stop`` character) or quoted."""
    values = []
    while True:
        if i < len(text) and text[i] == '"':
            j, chars = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                chars.append(text[j])
                j += 1
            if j >= len(text):
                raise _error(f"unclosed quote at position {i + 1}", text[clause_start:].split()[0])
            values.append("".join(chars))
            i = j + 1
        else:
            j = i
            while j < len(text) and text[j] not in stop and text[j] != ",":
                j += 1
            if j == i:
                raise _error(f"a value is missing at position {i + 1}", text[clause_start:j] or None)
            values.append(text[i:j])
            i = j
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        return values, i


def _match_operator(text: str, i: int, ops=OPERATORS) -> str | None:
    for op in ops:
        if text.startswith(op, i):
            return op
    return None


def parse(text: str) -> Query:
    """Parse a query into a :class:`Query`; any mistake -> one ``InputError`` saying what is valid."""
    clauses = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n:
            break
        start = i
        m = _FIELD_RE.match(text, i)
        if not m:
            raise _error(f"expected a field name at position {i + 1}, got {text[i:].split()[0]!r}; "
                         f"valid fields: {', '.join(FIELDS)}", text[i:].split()[0])
        name = m.group().lower()
        i = m.end()
        op = _match_operator(text, i)
        if op is None:
            raise _error(f"expected an operator after {name!r} (one of {' '.join(OPERATORS)})",
                         text[start:].split()[0], name)
        i += len(op)
        canonical = ALIASES.get(name, name)
        spec = FIELDS.get(canonical)
        if spec is None:
            raise _error(f"unknown field {name!r}; valid fields: {', '.join(FIELDS)}", text[start:i], name)
        if spec.kind == "term":
            if op != ":":
                raise _error(f"write term clauses as {canonical}:<term>[>=N], e.g. term:psychotherapy>=2",
                             text[start:].split()[0], canonical)
            terms, i = _read_values(text, i, _SPACE + "<>=!", start)
            count_op = _match_operator(text, i, EQUALITY + ORDER)
            if count_op:
                i += len(count_op)
                counts, i = _read_values(text, i, _SPACE, start)
            else:
                count_op, counts = ">=", ["1"]
            raw = text[start:i]
            clause = _term_clause(canonical, terms, count_op, counts, raw)
        else:
            values, i = _read_values(text, i, _SPACE, start)
            raw = text[start:i]
            clause = _clause(canonical, spec, op, values, raw)
        if i < n and text[i] not in _SPACE:
            raise _error(f"unexpected {text[i]!r} at position {i + 1}; separate clauses with spaces "
                         "and quote values that hold spaces or commas", text[start:].split()[0], canonical)
        clauses.append(clause)
    return Query(tuple(clauses), text)


def _int(value: str, raw: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _error(f"{value!r} is not a whole number", raw, name) from None


def _clause(name: str, spec: FieldSpec, op: str, values: list[str], raw: str) -> Clause:
    if op not in spec.ops:
        raise _error(f"{name} takes the operators {' '.join(spec.ops)}, not {op}", raw, name)
    if op in ORDER and len(values) != 1:
        raise _error(f"{op} compares with one value, got {len(values)}", raw, name)
    if spec.kind == "int":
        return Clause(name, op, tuple(_int(v, raw, name) for v in values), text=raw)
    if spec.kind == "tag":
        checked: list[str] = []
        named = groups(name)
        for v in values:
            v = v.strip().lower()
            if v not in allowed(name) and v not in named:
                valid = ", ".join(allowed(name)) + (f"; groups: {', '.join(named)}" if named else "")
                raise _error(f"{v!r} is not a valid {name}; valid values: {valid}", raw, name)
            checked += [x for x in expand(name, v) if x not in checked]
        return Clause(name, op, tuple(checked), text=raw)
    if spec.kind in ("text", "ci", "source") and op not in WORDS:
        values = [v.lower() for v in values]
    if any(not v.strip() for v in values):
        raise _error("empty value", raw, name)
    return Clause(name, op, tuple(values), text=raw)


def _term_clause(name: str, terms: list[str], op: str, counts: list[str], raw: str) -> Clause:
    if len(counts) != 1:
        raise _error(f"a term count is compared with one number, got {len(counts)}", raw, name)
    count = _int(counts[0], raw, name)
    if count < 0:
        raise _error(f"a term count cannot be negative ({count})", raw, name)
    terms = [" ".join(t.lower().split()) for t in terms]
    if any(not t for t in terms):
        raise _error("empty term", raw, name)
    return Clause(name, op, (count,), terms=tuple(terms), text=raw)


# ----------------------------------------------------------------------------- SQL
_RE2_SPECIAL = set("\\.^$|?*+()[]{}")


def _re_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in text)


def word_pattern(phrase: str) -> str:
    """Case-insensitive RE2 pattern matching ``phrase`` as whole words (final ``*``: any ending).

    Word characters are Unicode letters, digits and ``_`` (so ``Über`` is one word).
    """
    prefix = phrase.endswith("*")
    words = phrase.rstrip("*").split()
    body = r"\s+".join(_re_escape(w) for w in words)
    return r"(?i)(^|[^\pL\pN_])" + body + (r"[\pL\pN_]*" if prefix else r"([^\pL\pN_]|$)")


def _placeholders(values) -> str:
    return ", ".join("?" for _ in values)


def _clause_sql(c: Clause) -> tuple[str, list]:
    spec = FIELDS[c.field]
    col = spec.column
    values = list(c.values)
    if spec.kind == "term":
        text_field = TERM_FIELDS[c.field]
        parts, params = [], []
        for term in c.terms:
            parts.append(
                "study_id IN (SELECT d.study_id FROM term_documents d LEFT JOIN term_counts t "
                "ON t.study_id = d.study_id AND t.field = ? AND t.term_id = "
                "(SELECT term_id FROM terms WHERE term = ?) "
                f"WHERE coalesce(t.count, 0) {c.op} ?)"
            )
            params += [text_field, term, values[0]]
        return " OR ".join(parts), params
    if c.op in WORDS:
        match = " OR ".join(f"regexp_matches({col}, ?)" for _ in values)
        sql = f"coalesce({match}, FALSE)"
        return (sql if c.op == ":" else f"NOT {sql}"), [word_pattern(v) for v in values]
    expr = f"lower({col})" if spec.kind in ("text", "ci", "source") else col
    if c.op == "=":
        return f"{expr} IN ({_placeholders(values)})", values
    if c.op == "!=":
        return f"coalesce({expr} NOT IN ({_placeholders(values)}), TRUE)", values
    return f"{expr} {c.op} ?", values


def where_sql(query: Query) -> tuple[str, list]:
    """The query as one SQL boolean expression over ``catalog`` columns, and its parameters."""
    parts, params = [], []
    for clause in query.clauses:
        sql, p = _clause_sql(clause)
        parts.append(f"({sql})")
        params += p
    return (" AND ".join(parts) or "TRUE"), params


def to_sql(query: Query | str, view: str = "catalog") -> tuple[str, list]:
    """``SELECT * FROM catalog WHERE ...`` for a query (parsed first if given as text), and its parameters."""
    if isinstance(query, str):
        query = parse(query)
    where, params = where_sql(query)
    return f"SELECT * FROM {view} WHERE {where}", params
