"""What a results folder records about how it was made: versions, settings, seed, inputs.

``provenance.json`` must be identical across runs with the same input and seed, so it
holds no times and no paths that change between runs; timings go to ``timings.json``.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from neurochange.sources.download import sha256_file  # noqa: F401  (one checksum function for the package)

PACKAGES = ("neurochange", "numpy", "scipy", "pandas", "nibabel", "numba", "duckdb", "nilearn")


def versions() -> dict[str, str]:
    """Installed versions of neurochange and the libraries its numbers depend on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for identical content)."""
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
