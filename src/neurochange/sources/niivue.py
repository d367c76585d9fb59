"""NiiVue, the WebGL2 viewer of the local web app, taken from its npm tarball.

NiiVue 0.69.0 (BSD-2-Clause, github.com/niivue/niivue) ships ``package/dist/niivue.umd.js``: one
script that defines ``window.niivue`` (``new niivue.Niivue(...)``). It is read from the npm tarball,
fetched by :func:`neurochange.sources.download.fetch_package_file` (URL and SHA-256 in
``resources/packages.toml``), checked against its own SHA-256 and cached beside the tarball. Pages
load that copy, so nothing comes from the internet while a page runs; the script is never committed.
The tarball has no LICENSE file, so the licence text of NiiVue's repository ships as
``resources/web/NIIVUE_LICENSE.txt``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from neurochange.errors import DataUnavailableError
from neurochange.results.outdir import atomic_file
from neurochange.sources.download import (
    ENV_HOME,
    data_dir,
    fetch_package_file,
    package_manifest,
    read_member,
    sha256_file,
)

TARBALL = "niivue-0.69.0.tgz"
MEMBER = "package/dist/niivue.umd.js"
CITATION = "NiiVue 0.69.0 (github.com/niivue/niivue), BSD-2-Clause licence: niivue.umd.js"


def niivue_js() -> Path:
    """Path of a verified ``niivue.umd.js`` in the cache, extracted from the tarball on first use."""
    package = package_manifest()["niivue"]
    expected = package.member_sha256(MEMBER)
    target = data_dir() / package.folder / "niivue.umd.js"
    if target.is_file() and sha256_file(target) == expected:
        return target
    raw = read_member(fetch_package_file(TARBALL), MEMBER, expected)
    try:
        with atomic_file(target, "wb") as out:
            out.write(raw)
        os.chmod(target, 0o644)  # mkstemp makes 0600; a shared cache should be readable
    except OSError as exc:
        raise DataUnavailableError(f"cannot write {target}: {exc}; set {ENV_HOME} to a writable folder") from None
    return target


def licence_text() -> str:
    """NiiVue's BSD 2-Clause licence (``resources/web/NIIVUE_LICENSE.txt``)."""
    return resources.files("neurochange").joinpath("resources/web/NIIVUE_LICENSE.txt").read_text()


__all__ = ["CITATION", "licence_text", "niivue_js"]
