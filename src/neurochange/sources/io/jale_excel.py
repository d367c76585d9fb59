"""JALE's experiment file (``experiment_info.xlsx``, or .csv), read into a StudySet.

Layout, by position (line 1 is a header whose names are not read): article, subjects, x, y, z,
space (``MNI``/``TAL``), then any number of tag columns. Either every line is filled, or the
article, subjects, space and tags are given on the first line of each experiment only (JALE
reads both). An experiment is an article with one set of tags (JALE's ``pool_experiments =
False``): study id = article, experiment id = ``<article>-<tags joined by '+'>`` (``-1`` without
tags); its tags (lower case, as JALE compares them) go into the experiment's ``name``.
:func:`experiments_with_tags` keeps the experiments a JALE analysis line (``+tag``, ``-tag``)
names.
"""

from __future__ import annotations

from neurochange import space as _space
from neurochange.errors import InputError
from neurochange.sources.io._common import assemble, check_file, check_xyz, parse_number, parse_whole
from neurochange.sources.io.tables import table_rows
from neurochange.studyset import StudySet


def is_jale_header(cells: list[str]) -> bool:
    """Whether a table's header line is JALE's: first cell ``Article(s)``, no study column."""
    names = [c.strip().lower() for c in cells]
    return bool(names) and names[0] in ("article", "articles") and not {"study", "study_id", "id"} & set(names)


def read_jale_excel(path, *, space_transform: str = "jale") -> StudySet:
    """Read JALE's experiment file; Talairach foci converted with ``space_transform`` (JALE's by default)."""
    file = check_file(path)
    notes: list[str] = []
    rows = table_rows(file, notes)
    next(rows, None)  # the header: JALE reads the columns by position
    return jale_studyset(rows, file, notes, space_transform)


def jale_studyset(rows, file, notes: list[str], space_transform: str = "jale") -> StudySet:
    """A StudySet from the (line, cells) rows of a JALE experiment file after its header."""
    experiments: dict[str, dict] = {}
    foci: dict[str, list] = {k: [] for k in ("experiment_id", "x", "y", "z", "space", "line")}
    current = None
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        cells = cells + [""] * max(0, 6 - len(cells))
        article = cells[0].strip()
        if article:
            tags = tuple(c.strip().lower() for c in cells[6:] if c.strip())
            eid = f"{article}-{'+'.join(tags) or '1'}"
            n = parse_whole(cells[1], file=file, line=line, field="subjects")
            space = _space.normalize_space(cells[5].strip(), file=file, line=line)
            record = experiments.setdefault(eid, {"study_id": article, "contrast_id": eid[len(article) + 1:], "n": n,
                                                  "name": ", ".join(tags) or None, "line": line})
            if record["n"] != n:
                raise InputError(f"experiment {eid!r} has {record['n']} subjects on line {record['line']} and {n} here",
                                 file=file, line=line, field="subjects")
            current = (eid, space)
        elif current is None:
            raise InputError("the first experiment line must name its article", file=file, line=line, field="article")
        xyz = tuple(parse_number(cells[i], file=file, line=line, field=a) for i, a in zip((2, 3, 4), "xyz"))
        check_xyz(xyz, file=file, line=line)
        foci["experiment_id"].append(current[0])
        for axis, value in zip("xyz", xyz):
            foci[axis].append(value)
        foci["space"].append(current[1])
        foci["line"].append(line)
    if not experiments:
        raise InputError("no experiments: JALE's layout is article, subjects, x, y, z, space, tags...", file=file)
    studies = {e["study_id"]: {} for e in experiments.values()}
    records = [{k: v for k, v in e.items() if k != "line"} for e in experiments.values()]
    return assemble(studies, records, foci, file=file, fmt="jale", notes=notes, space_transform=space_transform)


def experiments_with_tags(studyset: StudySet, include: list[str], exclude: list[str] = ()) -> list[str]:
    """Ids of the experiments whose tags include every ``include`` tag and no ``exclude`` tag."""
    out = []
    for eid, name in zip(studyset.experiments["experiment_id"], studyset.experiments["name"]):
        tags = set(str(name).split(", ")) if isinstance(name, str) else set()
        if set(include) <= tags and not tags & set(exclude):
            out.append(str(eid))
    return out


__all__ = ["experiments_with_tags", "is_jale_header", "jale_studyset", "read_jale_excel"]
