"""The unit atlas, opened from the file system in a real headless browser (Debian's Chromium via Playwright).

Every page of the site is visited by following its links: every image must load, every link
must resolve to a file of the site, and no page may log a console error.  Skipped, saying why,
where no Chromium is installed; `.ci/run` installs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from jaxvis.analysis.units.concept_set import build_concept_set
from jaxvis.app.atlas import build_atlas
from test_gallery_browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium here: apt-get install chromium (the CI script does)")


@pytest.fixture(scope="module")
def atlas(tiny_cnn, tmp_path_factory):
    """A CNN's atlas, on the tiny CNN: the pages and their links are what is tested, not the network."""
    concepts = build_concept_set(tmp_path_factory.mktemp("atlas-concepts"), photos=["sample:coffee",
                                 "sample:astronaut"], crops_per_photo=2, collages=2, size=96)
    return build_atlas(tiny_cnn, "features.5", concepts, tmp_path_factory.mktemp("atlas"), units=[3, 5, 7],
                       concepts=concepts, directions=2, top=3, steps=4, fv_size=64, size=96, batch_size=4,
                       progress=False)


def test_every_page_loads_its_images_and_links_without_console_errors(atlas):
    playwright = pytest.importorskip("playwright.sync_api")
    errors, visited, queue = [], set(), [(atlas / "index.html").resolve()]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        while queue:
            path = queue.pop()
            if path in visited:
                continue
            visited.add(path)
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
            assert images and all(width > 0 for _, width in images), (path.name, images)
            for link in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                target = Path(urlparse(link).path)
                assert target.exists(), f"{path.name} links to missing {target}"
                assert atlas.resolve() in target.parents, f"{path.name} links outside the site: {target}"
                if target.suffix == ".html":
                    queue.append(target)
        browser.close()
    assert errors == []
    names = sorted(p.name for p in visited)
    assert names == ["directions.html", "index.html", "unit-3.html", "unit-5.html", "unit-7.html"]


def test_the_pages_show_what_the_record_holds(atlas):
    record = json.loads((atlas / "atlas.json").read_text())
    assert [u["unit"] for u in record["units"]] == [3, 5, 7]
    index = (atlas / "index.html").read_text()
    unit = (atlas / "units" / "unit-5.html").read_text()
    five = record["units"][1]
    concept, category, iou, _ = five["concept"]
    assert f"{concept} ({category}) IoU {iou:.3f}" in index and f"{concept} ({category}) IoU {iou:.3f}" in unit
    assert all(name in unit for name, *_ in five["changes"])  # the ablation table lists the changed classes
    assert "unit-3.html" in unit and "unit-7.html" in unit  # neighbours linked


@pytest.fixture(scope="module")
def generator_atlas(tmp_path_factory):
    import importlib.util

    import converters
    import jaxvis

    if importlib.util.find_spec("dlib") is None or \
            converters.find_local(jaxvis.architecture("dcgan_faces").pretrained) is None:
        pytest.skip("the DCGAN weights and dlib are installed by the README's set-up")
    from jaxvis.analysis.gan.samples import sample_concepts

    generator = jaxvis.load("dcgan_faces")
    data = sample_concepts(generator, 24, root=tmp_path_factory.mktemp("faces"), progress=False)
    return build_atlas(generator, "main.8", data, tmp_path_factory.mktemp("gan-atlas"), units=[20, 108],
                       directions=1, top=3, batch_size=8, progress=False), data


def test_a_generator_atlas_shows_its_units_top_samples_and_removal(generator_atlas):
    """The generator's units get the same site: concept and IoU from GAN dissection, top samples, and the
    top sample drawn without and with the unit. Every image loads in Chromium."""
    site, data = generator_atlas
    playwright = pytest.importorskip("playwright.sync_api")
    record = json.loads((site / "atlas.json").read_text())
    assert [u["unit"] for u in record["units"]] == [20, 108] and record["metric"] == "removal"
    assert all(str(data.root) in path for paths in record["top_images"].values() for path in paths)
    page_text = (site / "units" / "unit-20.html").read_text()
    assert "with the unit removed" in page_text and "<table>" not in page_text
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        for name in ("index.html", "units/unit-20.html"):
            page.goto((site / name).resolve().as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert widths and all(width > 0 for width in widths), (name, widths)
        browser.close()
    from PIL import Image

    pair = Image.open(site / record["units"][0]["visualization"])
    assert pair.size == (130, 64)  # the 64 px sample, a 2 px gap, the sample without the unit
