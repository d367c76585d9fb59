"""NiiVue from its npm tarball: extracted, verified and cached, then drawn by Debian's headless Chromium.

The page and its volumes are served by a local ``http.server`` (a file:// page may not fetch volumes);
every request that leaves that server is aborted and recorded, so the viewer must need nothing from
the internet. Chromium is driven by Playwright with Debian's ``/usr/bin/chromium`` (no browser
download); WebGL2 comes from ANGLE on SwiftShader, so no GPU is needed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import shutil
import threading

import nibabel as nib
import numpy as np
import pytest
from browser import CHROMIUM
from nilearn.datasets import load_mni152_template
from PIL import Image

from neurochange.errors import DataUnavailableError
from neurochange.sources import niivue
from neurochange.sources.download import fetch_package_file

SHA256 = "47b896b77ec4a5be3ef1949c33ad393b6f45629921f326c279000bcf51bdb4af"  # package/dist/niivue.umd.js
#: WebGL2 on the CPU: ANGLE's SwiftShader backend, which Chromium allows only when asked.
FLAGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]

PAGE = """<!doctype html>
<html><body style="margin:0; background:#000">
<canvas id="gl" width="400" height="300"></canvas>
<script src="niivue.umd.js"></script>
<script>
const nv = new niivue.Niivue({backColor: [0, 0, 0, 1], isResizeCanvas: false, crosshairWidth: 0,
                              show3Dcrosshair: false});
nv.attachTo("gl")
  .then(() => nv.loadVolumes([{url: "mni.nii.gz"},
                              {url: "blob.nii.gz", colormap: "red", cal_min: 1, cal_max: 5}]))
  .then(() => { nv.drawScene(); requestAnimationFrame(() => { document.body.dataset.drawn = nv.volumes.length; }); })
  .catch((e) => { document.body.dataset.error = String(e); });
</script>
</body></html>
"""


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty NEUROCHANGE_HOME whose mirror is the user's cache (holding the verified tarball): no network."""
    tarball = fetch_package_file(niivue.TARBALL)
    monkeypatch.setenv("NEUROCHANGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEUROCHANGE_DATA_MIRROR", str(tarball.parents[1]))
    monkeypatch.delenv("NEUROCHANGE_DOWNLOAD_BASE", raising=False)
    return tmp_path / "home"


def test_niivue_js_is_verified_and_cached(isolated, monkeypatch):
    path = niivue.niivue_js()
    assert path == isolated / "data" / "niivue-0.69.0" / "niivue.umd.js"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256
    mtime = path.stat().st_mtime_ns

    def no_fetch(name):
        raise AssertionError(f"{name} fetched again")

    monkeypatch.setattr(niivue, "fetch_package_file", no_fetch)
    assert niivue.niivue_js() == path
    assert path.stat().st_mtime_ns == mtime


def test_damaged_copy_is_replaced_and_bad_member_refused(isolated, monkeypatch):
    path = niivue.niivue_js()
    path.write_text("damaged")
    assert hashlib.sha256(niivue.niivue_js().read_bytes()).hexdigest() == SHA256
    path.unlink()
    packages = niivue.package_manifest()
    wrong = dataclasses.replace(packages["niivue"], members=((niivue.MEMBER, "0" * 64),))
    monkeypatch.setattr(niivue, "package_manifest", lambda: {**packages, "niivue": wrong})
    with pytest.raises(DataUnavailableError, match="niivue.umd.js in .* has SHA-256 47b896b7"):
        niivue.niivue_js()
    assert not path.exists()


def test_licence_names_niivue():
    text = niivue.licence_text()
    assert text.startswith("BSD 2-Clause License") and "Copyright (c) 2021, Niivue" in text


def test_headless_chromium_draws_a_nifti(tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail("chromium is not installed: apt-get install -y chromium (Debian)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install playwright (never run `playwright install`)")
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(niivue.niivue_js(), site / "niivue.umd.js")
    (site / "index.html").write_text(PAGE)
    mni = load_mni152_template(resolution=2)
    nib.save(mni, site / "mni.nii.gz")
    blob = np.zeros(mni.shape, np.float32)
    blob[40:50, 50:60, 40:50] = 5.0
    nib.save(nib.Nifti1Image(blob, mni.affine), site / "blob.nii.gz")

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_port}/"
    outside, errors = [], []

    def route(r):
        if r.request.url.startswith(local):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", route)
            page.goto(local + "index.html")
            page.wait_for_selector("body[data-drawn], body[data-error]", state="attached", timeout=15_000)
            assert page.evaluate("document.body.dataset.error") is None
            assert page.evaluate("document.body.dataset.drawn") == "2"
            png = page.locator("#gl").screenshot()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert not outside and not errors

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert rgb.shape == (300, 400, 3)
    drawn = int((rgb.sum(axis=-1) > 0).sum())  # anything but the black background
    red = int(((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())  # the blob overlay
    assert drawn > 20_000, drawn
    assert red > 200, red
