"""The web app's pages in Debian's Chromium, headless (Playwright driving /usr/bin/chromium): the results page draws
the map, a cluster row moves the crosshair to its peak, a key press in screening writes the curation table, and a
run started from the Runs page finishes with its folder. No request may leave 127.0.0.1."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import CHROMIUM
from PIL import Image
from serve_helpers import Server, small_corpus, wait_for

from neurochange.cli import main
from neurochange.corpus.curation import read_curation

FLAGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
#: Set to a folder (docs/images) to keep each page's screenshot for docs/curation.md.
SHOTS = os.environ.get("NEUROCHANGE_SCREENSHOTS")
STUDY = "18550030"


@pytest.fixture(scope="module")
def site(data_mirror, tmp_path_factory, pain_path):
    """A project with an ALE results folder and a small spec, served over a small corpus."""
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (Debian)")
    folder = tmp_path_factory.mktemp("serve")
    db = small_corpus(data_mirror, folder)
    project = folder / "project"
    project.mkdir()
    shutil.copyfile(pain_path, project / "pain.json")
    with pytest.raises(SystemExit) as done:
        main(["ale", str(project / "pain.json"), "--out", str(project / "results" / "pain"), "--iters", "200",
              "--seed", "1", "--sample-size", "20", "--cores", "1"])
    assert done.value.code == 0
    (project / "quick.toml").write_text('[corpus]\nfile = "pain.json"\n[analysis]\nn_iters = 20\nsample_size = 20\n'
                                        'min_experiments = 2\n[[groups]]\nname = "pain"\n')
    server = Server(project, db)
    yield server, project
    server.stop()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install playwright (never run `playwright install`)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    server, _ = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, outside = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.url)
               else (outside.append(r.request.url), r.abort()))
    yield page
    page.close()
    assert not errors and not outside, (errors, outside)


def _wait(page, predicate):
    return wait_for(predicate, timeout=15, sleep=lambda s: page.wait_for_timeout(s * 1000))


def _shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"serve-{name}.png"))


def _open(page, site, path):
    server, _ = site
    page.goto(server.url + path)
    page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
    assert page.evaluate("document.querySelector('#message').hidden"), page.inner_text("#message")


def test_results_page_draws_the_map_and_rows_move_the_crosshair(page, site):
    _open(page, site, "/results?folder=results/pain")
    assert page.evaluate("document.body.dataset.drawn") == "2"
    png = page.locator("#gl").screenshot()
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    drawn = int((rgb.sum(axis=-1) > 30).sum())
    warm = int(((rgb[..., 0] > 180) & (rgb[..., 2] < 100)).sum())  # the "warm" overlay of the z map
    assert drawn > 0.2 * rgb.shape[0] * rgb.shape[1], drawn
    assert warm > 100, warm
    clusters = pd.read_csv(site[1] / "results" / "pain" / "clusters.tsv", sep="\t")
    rows = page.locator("table[data-table='results/pain/clusters.tsv'] tr.cluster")
    assert rows.count() == len(clusters) >= 2
    for i in (1, 0):
        rows.nth(i).click()
        mm = page.evaluate("Array.from(viewer.frac2mm(viewer.scene.crosshairPos)).slice(0, 3)")
        peak = clusters.loc[i, ["peak_x", "peak_y", "peak_z"]].to_numpy(dtype=float)
        assert np.abs(np.array(mm) - peak).max() <= 1.0, (mm, peak)  # within half a 2 mm voxel
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "results")


def test_screening_keys_write_the_curation_table(page, site):
    _, project = site
    _open(page, site, f"/screening?query=study%3D{STUDY}")
    assert page.locator("#candidates tbody tr").count() == 1
    page.keyboard.press("i")
    _wait(page, lambda: (project / "curation.tsv").exists())
    cur = read_curation(project / "curation.tsv")
    assert cur.rows[["id", "field", "value"]].values.tolist() == [[STUDY, "include", "yes"]]
    page.wait_for_selector("#candidates td.decision.yes", timeout=10_000)
    page.select_option("#reason", "wrong_population")
    page.locator("#candidates tbody tr").first.click()
    page.keyboard.press("x")
    _wait(page, lambda: dict(zip(*read_curation(project / "curation.tsv").rows[["field", "value"]].T.values)) ==
          {"include": "no", "reason": "wrong_population"})
    page.wait_for_function("document.querySelector('#prisma').dataset.included === '0'", timeout=10_000)
    _shot(page, "screening")
    page.keyboard.press("u")
    _wait(page, lambda: len(read_curation(project / "curation.tsv").rows) == 0)


def test_extraction_writes_a_tables_decisions_and_focus_flags(page, site):
    _, project = site
    _open(page, site, f"/extraction?study={STUDY}")
    card = page.locator("article.table").first
    table = card.get_attribute("data-experiment")
    card.locator("select[name=include]").select_option("yes")
    card.locator("select[name=direction]").select_option("decrease")
    card.locator("input[name=n]").fill("16")
    card.locator("input[name=n]").press("Tab")
    card.locator("details summary").click()
    card.locator("tr[data-focus='2'] select[name=flag]").select_option("wrong_sign")
    _wait(page, lambda: len(read_curation(project / "curation.tsv").foci) == 1)
    cur = read_curation(project / "curation.tsv")
    values = dict(zip(cur.rows.loc[cur.rows["id"] == table, "field"], cur.rows.loc[cur.rows["id"] == table, "value"]))
    assert values == {"include": "yes", "direction": "decrease", "n": 16}
    assert cur.foci[["experiment_id", "focus", "flag"]].values.tolist() == [[table, 2, "wrong_sign"]]
    assert card.locator("svg.glass circle.wrong_sign").count() == 3  # one dot in each view
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "extraction")


def test_a_run_started_from_the_page_finishes_with_its_folder(page, site):
    _, project = site
    _open(page, site, "/runs")
    page.select_option("#spec", "quick.toml")
    page.fill("#run-name", "from_page")
    page.fill("#seed", "3")
    page.click("#run button[type=submit]")
    page.wait_for_selector("#jobs tr[data-state=done]", timeout=300_000)
    assert (project / "results" / "from_page" / "report.html").exists()
    assert page.locator("#jobs tr[data-state=done] a").get_attribute("href") == "/results?folder=results%2Ffrom_page"
    _shot(page, "runs")
