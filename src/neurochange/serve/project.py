"""A curation project: the folder ``neurochange serve`` works in, and the only place it reads or writes.

::

    PROJECT/
      curation.tsv        the curation table every edit goes to (created on the first edit)
      *.toml              review specs (run from the Runs page)
      results/<name>/     results folders written by runs (and any folder holding provenance.json)
      uploads/            coordinate files uploaded from the pages, once their reader accepted them

Every path a request names is resolved inside the project; anything else (``..``, absolute
paths, links out of it) is an ``InputError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from neurochange.errors import InputError

CURATION = "curation.tsv"
RESULTS = "results"
UPLOADS = "uploads"
#: A name a page may give to an upload or a run: letters, digits, ``._-``, no leading dot.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Project:
    """The project folder ``root`` (resolved) and where its parts live."""

    root: Path

    @classmethod
    def open(cls, folder: str | Path) -> "Project":
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise InputError("not a folder: give an existing project folder", file=root)
        return cls(root)

    @property
    def curation(self) -> Path:
        return self.root / CURATION

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def uploads(self) -> Path:
        return self.root / UPLOADS

    def resolve(self, relpath: str) -> Path:
        """``relpath`` inside the project (links followed), or an InputError."""
        if not isinstance(relpath, str) or not relpath or "\x00" in relpath or Path(relpath).is_absolute():
            raise InputError("give a path relative to the project folder", field="path")
        path = (self.root / relpath).resolve()
        if path != self.root and self.root not in path.parents:
            raise InputError(f"{relpath!r} lies outside the project folder", field="path")
        return path

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def specs(self) -> list[str]:
        """Review specs: the project's ``*.toml`` files."""
        return sorted(p.name for p in self.root.glob("*.toml") if p.is_file())

    def results_folders(self) -> list[str]:
        """Results folders (those holding ``provenance.json``) under the project, newest first."""
        found = [p.parent for p in self.root.glob("**/provenance.json")
                 if not any(part.startswith(".") for part in p.relative_to(self.root).parts)]
        found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [self.relative(p) for p in found]


def safe_name(name: str, what: str) -> str:
    """``name`` if it is a plain file name (see :data:`SAFE_NAME`), else an InputError."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise InputError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' (at most 100, no leading dot)",
                         field=what)
    return name


__all__ = ["Project", "safe_name", "CURATION", "RESULTS", "UPLOADS"]
