"""One exception hierarchy for everything a user can get wrong.

The command line turns a ``NeurochangeError`` into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class NeurochangeError(Exception):
    """Base class of the errors a user can fix."""


class InputError(NeurochangeError):
    """Bad input: names the file, the line (1-based) and the field where known.

    ``str(err)`` reads ``file.txt, line 14, field z: z='4O' is not a number``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return (", ".join(where) + ": " if where else "") + self.message

    def at(self, *, file=None, line=None, field=None) -> "InputError":
        """Return a copy with missing location parts filled in."""
        return InputError(
            self.message,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            field=self.field if self.field is not None else field,
        )


class DataUnavailableError(NeurochangeError):
    """A data file cannot be had: offline without a mirror, bad checksum, broken download."""


class ClusterError(NeurochangeError):
    """The Dask cluster cannot finish the work: a chunk kills its worker every time, or the scheduler is lost."""


class OutputExistsError(NeurochangeError):
    """``--out`` exists and is not empty, and ``--overwrite`` was not given."""
