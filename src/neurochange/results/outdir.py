"""Results folders that appear whole or not at all.

Work is written into a hidden temporary folder beside ``--out`` and renamed into
place at the end, so an interrupted or failed run leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from neurochange.errors import OutputExistsError


def check_out(out: str | Path, overwrite: bool = False) -> Path:
    """Raise OutputExistsError if ``out`` exists and is not an empty folder (unless ``overwrite``), or
    if it cannot be written: checked before any computing, so no run is lost at the end."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"--out {out} exists and is not empty; pass --overwrite or choose another folder")
    _check_writable(out)
    return out


def _check_writable(out: Path) -> None:
    """The nearest existing folder above ``out`` must take a new folder (probed, then removed)."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputExistsError(f"--out {out} cannot be created: {parent} is a file, not a folder")
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as exc:
        raise OutputExistsError(f"--out {out} cannot be written ({exc.strerror or exc} in {parent}); "
                                "choose a folder you can write to") from None


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False):
    """Yield a temporary folder; on success it replaces ``out``, on error it is removed."""
    out = check_out(out, overwrite).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs):
    """Open a temporary file beside ``path``; it is renamed onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
