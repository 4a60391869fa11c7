"""GANPaint in a real headless browser (Debian's Chromium driven by Playwright): a stroke with "remove eye"
over the face's eyes changes the image inside the stroke and little far from it; undo, new face, download.

Skipped, saying why, where no Chromium, DCGAN weights or face segmenter are installed (the README's set-up
and `.ci/run` install them).
"""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import converters
import jaxvis
from test_gallery_browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or importlib.util.find_spec("dlib") is None
    or converters.find_local(jaxvis.architecture("dcgan_faces").pretrained) is None,
    reason="needs Chromium (apt-get install chromium), the DCGAN weights and dlib (the README's set-up)")
VIEW = 384  # the page's canvas size in CSS pixels


@pytest.fixture(scope="module")
def painter():
    from jaxvis.app.ganpaint import Painter

    return Painter.for_generator(jaxvis.load("dcgan_faces"), samples=64, progress=False)


@pytest.fixture(scope="module")
def server(painter):
    from jaxvis.app.ganpaint import serve

    running = serve(painter, port=0)
    yield running
    running.shutdown()


def decoded(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"), np.float32) / 255


def stroke_mask(start: np.ndarray, end: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Pixels within `radius` of the segment start-end (image pixels): where the brush went."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    points = np.stack([xx, yy], -1)
    direction = end - start
    t = np.clip(((points - start) @ direction) / (direction @ direction), 0, 1)
    return np.linalg.norm(points - (start + t[..., None] * direction), axis=-1) <= radius


def test_a_remove_eye_stroke_changes_the_face_under_it(painter, server):
    from jaxvis.analysis.gan.faces import segment

    playwright = pytest.importorskip("playwright.sync_api")
    eyes = segment(painter.face(0, [])).points  # the landmarks of face 0: where its eyes are
    left, right = eyes[36:42].mean(axis=0), eyes[42:48].mean(axis=0)
    errors: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        renders = lambda n: page.wait_for_function(f"document.getElementById('face').dataset.renders === '{n}'")  # noqa: E731
        renders(1)
        original = decoded(page.get_attribute("#face", "src"))
        page.select_option("#concept", "eye")
        page.check("input[value=remove]")
        box = page.locator("#overlay").bounding_box()
        scale = VIEW / painter.size
        page.mouse.move(box["x"] + left[0] * scale, box["y"] + left[1] * scale)
        page.mouse.down()
        for t in np.linspace(0, 1, 12):
            x, y = left + t * (right - left)
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.up()
        renders(2)
        edited = decoded(page.get_attribute("#face", "src"))
        assert page.evaluate("window.lastStrokeMs") > 0
        assert page.get_attribute("#download", "href") == page.get_attribute("#face", "src")
        page.click("#undo")
        renders(3)
        np.testing.assert_array_equal(decoded(page.get_attribute("#face", "src")), original)
        page.click("#new")
        renders(4)
        assert np.abs(decoded(page.get_attribute("#face", "src")) - original).mean() > 0.02
        browser.close()
    change = np.abs(edited - original).mean(axis=-1)
    brush = stroke_mask(left, right, 4 + 1, painter.size)  # the page's default brush radius, 4 px
    far = ~stroke_mask(left, right, 4 + 14, painter.size)
    assert change[brush].mean() > 4 * change[far].mean(), (change[brush].mean(), change[far].mean())
    assert not errors, errors


def test_strokes_are_checked_and_a_taken_port_is_refused(painter, server):
    from jaxvis.app.ganpaint import PortInUseError, check_port, serve
    from jaxvis.pieces.edits import EditError

    with pytest.raises(PortInUseError, match="choose another --port"):
        check_port(server.server_address[1])
    with pytest.raises(PortInUseError):
        serve(painter, server.server_address[1])
    empty = base64.b64encode(bytes(64 * 64)).decode()
    with pytest.raises(EditError, match="empty"):
        painter.face(0, [{"concept": "eye", "action": "remove", "mask": empty}])
    with pytest.raises(EditError, match="known: mouth"):
        painter.face(0, [{"concept": "eyes", "action": "remove", "mask": empty}])
    with pytest.raises(EditError, match="4096"):
        painter.face(0, [{"concept": "eye", "action": "remove", "mask": base64.b64encode(bytes(10)).decode()}])


def test_many_strokes_run_the_one_compiled_program(painter):
    from jaxvis.app.ganpaint import PAINT

    full = base64.b64encode(bytes([255]) * 64 * 64).decode()
    painter.face(1, [{"concept": "eye", "action": "remove", "mask": full}])
    before = PAINT.compilations
    for count in (0, 2, 5):
        painter.face(count, [{"concept": c, "action": a, "mask": full}
                             for c, a in zip(["mouth", "nose", "eye", "lips", "red"] * 2, ["add", "remove"] * 5)][:count])
    assert PAINT.compilations == before
