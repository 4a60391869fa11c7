"""The gallery page in a real headless browser (Debian's Chromium driven by Playwright).

Skipped, saying why, where no Chromium is installed; `.ci/run` installs it.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxvis.app.gallery import write_gallery

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium here: apt-get install chromium (the CI script does)")


@pytest.fixture()
def page_url(tmp_path):
    """A gallery of three 64 px images with objective curves, served over HTTP on localhost."""
    rng = np.random.default_rng(0)
    images = rng.random((3, 64, 64, 3)).astype(np.float32)
    values = [0.5, 2.5, -1.0]
    curves = [np.linspace(0, v, 50) for v in values]
    write_gallery(tmp_path, "test gallery", images, ["0003", "0007", "0011"], values,
                  {"config": {"model": "test"}}, curves=curves)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


@pytest.fixture()
def browser_page(page_url):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_load_state("networkidle")
        yield page
        browser.close()


def card_labels(page) -> list[str]:
    return page.eval_on_selector_all("#cards figure img", "els => els.map(e => e.alt)")


def test_images_load_smoothly_scaled_with_their_objective_curves(browser_page):
    page = browser_page
    widths = page.eval_on_selector_all("#cards img", "els => els.map(e => e.naturalWidth)")
    assert widths == [64, 64, 64]  # every PNG was found and decoded
    rendering = page.eval_on_selector("#cards img", "e => getComputedStyle(e).imageRendering")
    assert rendering == "auto"  # shown at 160 px without pixelated upscaling
    assert page.eval_on_selector("#cards img", "e => e.getBoundingClientRect().width") == 160
    points = page.eval_on_selector_all("svg.curve polyline", "els => els.map(e => e.points.numberOfItems)")
    assert points == [50, 50, 50]


def test_sorting_by_final_value_and_back(browser_page):
    page = browser_page
    assert card_labels(page) == ["0003", "0007", "0011"]
    page.click("text=objective, highest first")
    assert card_labels(page) == ["0007", "0003", "0011"]
    page.click("text=objective, lowest first")
    assert card_labels(page) == ["0011", "0003", "0007"]
    page.click("text=as run")
    assert card_labels(page) == ["0003", "0007", "0011"]


def test_clicking_an_image_shows_it_full_size_and_escape_closes_it(browser_page):
    page = browser_page
    assert not page.is_visible("#viewer")
    page.click("#cards img[alt='0007']")
    assert page.is_visible("#viewer")
    shown = page.eval_on_selector("#viewer img", "e => [e.src.split('/').pop(), e.getBoundingClientRect().width]")
    assert shown[0] == "unit_0007.png" and shown[1] >= 512  # large, not the 160 px thumbnail
    page.keyboard.press("Escape")
    assert not page.is_visible("#viewer")


def test_a_sweeps_grid_page_shows_each_unit_over_the_grid_with_its_objectives(tmp_path):
    """Two units over lr (2 values, the rows) x diversity (3 values, the columns): each table cell the image of
    its own grid cell, and the objective under it; the gallery links to the grid."""
    from jaxvis.app.gallery import grid_page

    playwright = pytest.importorskip("playwright.sync_api")
    axes, values = ("lr", "diversity"), [[0.02, 0.2], [0, 1, 3]]
    cells = [(lr, d) for lr in values[0] for d in values[1]]
    rng = np.random.default_rng(0)
    labels = [f"{unit:04d}-lr{lr:g}-diversity{d:g}" for unit in (2, 5) for lr, d in cells]
    objectives = np.arange(12, dtype=float).reshape(2, 6)
    write_gallery(tmp_path, "sweep", rng.random((12, 64, 64, 3)).astype(np.float32), labels, list(objectives.flat),
                  {"config": {}}, links=[("grid.html", "the sweep's grid")])
    files = [[f"unit_{label}.png" for label in labels[6 * u : 6 * u + 6]] for u in range(2)]
    (tmp_path / "grid.html").write_text(grid_page("sweep", axes, values, ["2", "5"], files, objectives.tolist()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors = []
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.on("console", lambda message: errors.append(message.text)  # the server has no favicon
                    if message.type == "error" and "favicon" not in message.location.get("url", "") else None)
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            page.click("text=the sweep's grid")
            page.wait_for_load_state("networkidle")
            tables = page.eval_on_selector_all("table.grid", "ts => ts.map(t => Array.from(t.rows).map(r => "
                                               "Array.from(r.cells).map(c => [c.textContent.trim(), "
                                               "c.querySelector('img') ? c.querySelector('img').naturalWidth : 0, "
                                               "c.querySelector('img') ? c.querySelector('img').src.split('/').pop() "
                                               ": ''])))")
            browser.close()
    finally:
        server.shutdown()
    assert errors == []
    assert len(tables) == 2
    for unit, table in zip((2, 5), tables):
        assert [cell[0] for cell in table[0]] == ["", "diversity 0", "diversity 1", "diversity 3"]
        assert [row[0][0] for row in table[1:]] == ["lr 0.02", "lr 0.2"]
        for r, lr in enumerate(values[0]):
            for c, d in enumerate(values[1]):
                text, width, source = table[1 + r][1 + c]
                assert width == 64 and source == f"unit_{unit:04d}-lr{lr:g}-diversity{d:g}.png"
                assert text == f"objective {objectives[(0, 1)[unit == 5], 3 * r + c]:.4g}"


def test_a_robustness_curve_page_draws_each_eps_and_links_to_its_gallery(tmp_path):
    """Three eps: a point per eps at the height of the share that resisted, a table row each, and clicking a
    row's link opens that eps's own gallery."""
    from jaxvis.app.gallery import robustness_page

    playwright = pytest.importorskip("playwright.sync_api")
    rows = [{"eps": e / 255, "folder": f"eps-{e}_255", "held": held, "images": 4, "fooled": 4 - held,
             "mean_norm": e / 255} for e, held in ((1, 4), (2, 2), (4, 0))]
    rng = np.random.default_rng(0)
    for row in rows:
        (tmp_path / row["folder"]).mkdir()
        write_gallery(tmp_path / row["folder"], f"at {row['eps']:.4f}", rng.random((1, 32, 32, 3)).astype(np.float32),
                      ["0"], [0.0], {"config": {}})
    (tmp_path / "index.html").write_text(robustness_page("curve", rows, "linf"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            heights = page.eval_on_selector_all("#curve circle", "cs => cs.map(c => c.getBoundingClientRect().y)")
            table = page.eval_on_selector_all("table.curve tr", "rs => rs.map(r => r.cells[1].textContent)")
            page.click("table.curve tr:nth-child(3) a")
            page.wait_for_load_state("networkidle")
            title = page.title()
            browser.close()
    finally:
        server.shutdown()
    assert len(heights) == 3 and heights[0] < heights[1] < heights[2]  # 100%, 50%, 0%: lower on the page
    assert table[1:] == ["4/4 (100%)", "2/4 (50%)", "0/4 (0%)"]
    assert title == f"at {2 / 255:.4f}"
