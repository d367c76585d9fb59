"""The bibliography: every citation neurochange ships (methods, neural models, atlases).

``resources/references.bib`` is the one source; this module reads it (a small BibTeX
reader for the subset the file uses: ``@type{key, field = {value}, ...}``) and formats
in-text citations (``cite``) and full references with their DOI (``reference``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from neurochange.errors import InputError

BIB_NAME = "references.bib"
_ENTRY_START = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,")
_FIELD_NAME = re.compile(r"\s*([A-Za-z_][\w-]*)\s*=\s*")
_LATEX_ACCENT = re.compile(r"\{\\['`^\"~=.uvHc]\s*\{?(\w)\}?\}|\\['`^\"~=.]\{?(\w)\}?")
_ACCENTS = {("'", "e"): "é", ("'", "i"): "í", ("'", "a"): "á", ("'", "o"): "ó", ("'", "u"): "ú"}


def _read_braced(text: str, start: int) -> tuple[str, int]:
    """The content of the ``{...}`` group opening at ``text[start]`` and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    raise ValueError("unbalanced braces")


def _plain(value: str) -> str:
    """LaTeX accents and grouping braces out, whitespace collapsed."""
    def accent(match):
        whole = match.group(0)
        mark = re.search(r"\\(.)", whole).group(1)
        letter = match.group(1) or match.group(2)
        return _ACCENTS.get((mark, letter), letter)

    value = _LATEX_ACCENT.sub(accent, value)
    return " ".join(value.replace("{", "").replace("}", "").split())


def parse_bib(text: str, *, file=None) -> dict[str, dict]:
    """BibTeX text -> ``{key: {"type": ..., field: plain text}}``; InputError on malformed entries."""
    entries: dict[str, dict] = {}
    for match in _ENTRY_START.finditer(text):
        kind, key = match.group(1).lower(), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if key in entries:
            raise InputError(f"duplicate bibliography key {key!r}", file=file, line=line, field=key)
        fields = {"type": kind}
        pos = match.end()
        while True:
            name = _FIELD_NAME.match(text, pos)
            if name is None:
                break
            pos = name.end()
            if pos >= len(text) or text[pos] != "{":
                raise InputError("field values must be in braces", file=file, line=line, field=name.group(1))
            try:
                value, pos = _read_braced(text, pos)
            except ValueError:
                raise InputError("unbalanced braces", file=file, line=line, field=name.group(1)) from None
            fields[name.group(1).lower()] = _plain(value)
            pos = re.compile(r"\s*,?").match(text, pos).end()
        entries[key] = fields
    return entries


@lru_cache(maxsize=1)
def _bundled() -> dict[str, dict]:
    path = resources.files("neurochange").joinpath("resources", BIB_NAME)
    return parse_bib(path.read_text(encoding="utf-8"), file=f"resources/{BIB_NAME}")


def load_bib() -> dict[str, dict]:
    """The bundled bibliography: ``{key: {"type", "author", "title", "journal", "year", "doi", ...}}``."""
    return {key: dict(fields) for key, fields in _bundled().items()}


def _entry(key: str) -> dict:
    bib = _bundled()
    if key not in bib:
        raise InputError(f"unknown reference {key!r}; the bibliography has {len(bib)} entries "
                         f"(resources/{BIB_NAME})", field="references")
    return bib[key]


def _surnames(authors: str) -> list[str]:
    """Family names from a BibTeX author list (``Last, First and ...`` or ``First Last and ...``)."""
    names = []
    for person in authors.split(" and "):
        person = person.strip()
        names.append(person.split(",")[0].strip() if "," in person else person.split()[-1])
    return names


def cite(key: str) -> str:
    """In-text citation: ``"Eickhoff et al., 2012"``, ``"Milad & Quirk, 2012"``, ``"Holm, 1979"``."""
    entry = _entry(key)
    names = _surnames(entry.get("author", "Anonymous"))
    if len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} & {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.get('year', 'n.d.')}"


def _initials(person: str) -> str:
    person = person.strip()
    if "," in person:
        last, first = (part.strip() for part in person.split(",", 1))
    else:
        *first_parts, last = person.split()
        first = " ".join(first_parts)
    initials = "".join(f"{p[0]}." for p in re.split(r"[\s.-]+", first) if p)
    return f"{last}, {initials}" if initials else last


def reference(key: str) -> str:
    """Full reference: ``Authors (year). Title. Journal, volume(number), pages. https://doi.org/...``."""
    entry = _entry(key)
    people = [_initials(p) for p in entry.get("author", "").split(" and ") if p.strip()]
    authors = ", ".join(people[:-1]) + (", & " if len(people) > 1 else "") + people[-1] if people else ""
    text = f"{authors} ({entry.get('year', 'n.d.')}). {entry.get('title', '').rstrip('.')}."
    journal = entry.get("journal")
    if journal:
        text += f" {journal}"
        if entry.get("volume"):
            text += f", {entry['volume']}"
            if entry.get("number"):
                text += f"({entry['number']})"
        if entry.get("pages"):
            text += f", {entry['pages'].replace('--', '–')}"
        text += "."
    if entry.get("doi"):
        text += f" https://doi.org/{entry['doi']}"
    elif entry.get("url"):
        text += f" {entry['url']}"
    return text
