"""Debian's Chromium, headless, for the report tests: a missing browser is a failure, not a skip."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile folder ``profile``."""
    if not CHROMIUM.is_file():
        pytest.fail("chromium is not installed: apt-get install -y chromium (Debian)")
    cmd = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


def chromium_images(report: Path, tmp: Path) -> tuple[int, int]:
    """Open ``report`` from disk; return (images in the page, images decoded), as the page's script counts them."""
    dom = chromium(["--virtual-time-budget=5000", "--dump-dom", report.resolve().as_uri()], tmp / "profile").stdout
    n_images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    decoded = int(re.search(r'data-images-decoded="(\d+)"', dom).group(1))
    return n_images, decoded
