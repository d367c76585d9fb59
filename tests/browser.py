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


#: Measures, once the page has loaded, every element that scrolls sideways: the page itself and each
#: table with its ancestors (scrollWidth beyond clientWidth). Writes JSON into ``data-overflow``.
OVERFLOW_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var found = [], root = document.documentElement, tables = document.querySelectorAll("table");
  if (root.scrollWidth > root.clientWidth) { found.push("page " + root.scrollWidth + " > " + root.clientWidth); }
  tables.forEach(function (t, i) {
    for (var el = t; el && el !== document.body; el = el.parentElement) {
      if (el.scrollWidth > el.clientWidth) {
        found.push("table " + i + " (" + t.className + ") " + el.tagName + "." + el.className + " " +
                   el.scrollWidth + " > " + el.clientWidth);
      }
    }
  });
  document.body.setAttribute("data-cluster-tables", String(document.querySelectorAll("table.clusters").length));
  document.body.setAttribute("data-viewport", String(window.innerWidth));
  document.body.setAttribute("data-overflow", JSON.stringify(found));
});
</script>
"""


def horizontal_overflow(report: Path, tmp: Path, width: int = 1280) -> dict:
    """Open a copy of ``report`` at ``width`` px with :data:`OVERFLOW_SCRIPT` added; return the viewport width,
    the number of cluster tables and what scrolls sideways, the page or any table (a list of descriptions, empty
    when nothing does)."""
    import html
    import json

    page = tmp / "measured.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", OVERFLOW_SCRIPT + "</body>"),
                    encoding="utf-8")
    dom = chromium([f"--window-size={width},1000", "--hide-scrollbars", "--virtual-time-budget=5000", "--dump-dom",
                    page.resolve().as_uri()], tmp / "profile-overflow").stdout
    found = re.search(r'data-overflow="([^"]*)"', dom)
    return {"viewport": int(re.search(r'data-viewport="(\d+)"', dom).group(1)),
            "cluster_tables": int(re.search(r'data-cluster-tables="(\d+)"', dom).group(1)),
            "overflow": json.loads(html.unescape(found.group(1)))}
