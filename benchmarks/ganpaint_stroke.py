"""GANPaint's stroke-to-image time on this machine: the server alone, over HTTP, and in a real browser.

After the page has drawn its first face (the stroke program compiled), `--strokes` strokes of
"add mouth" / "remove eye" are sent:

- *server*: the edit folded and the face drawn (`Painter.face`), in the process;
- *HTTP*: a POST of the whole stroke list to /api/face and its PNG reply, from urllib;
- *browser*: Chromium (Playwright, Debian's `chromium`) from the stroke's pointer-up to the new face
  decoded in the page (`window.lastStrokeMs`), the stroke drawn with the mouse.

Writes the `ganpaint` section of benchmarks/RESULTS.md.

    python benchmarks/ganpaint_stroke.py [--strokes 20]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from common import machine, markdown_table, median, write_section

import jaxvis
from jaxvis.app.ganpaint import Painter, serve

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def strokes(count: int) -> list[dict]:
    mask = np.zeros((64, 64), np.uint8)
    mask[40:48, 20:44] = 255
    text = base64.b64encode(mask.tobytes()).decode()
    return [{"concept": ("mouth", "eye")[i % 2], "action": ("add", "remove")[i % 2], "mask": text}
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strokes", type=int, default=20)
    args = parser.parse_args()
    painter = Painter.for_generator(jaxvis.load("dcgan_faces"), progress=False)
    server = serve(painter, 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    painter.face(0, [])
    in_process, over_http = [], []
    for i in range(args.strokes):
        stack = strokes(i % 5 + 1)
        start = time.perf_counter()
        painter.face(i % 7, stack)
        in_process.append(time.perf_counter() - start)
        request = urllib.request.Request(f"{url}/api/face", json.dumps({"seed": i % 7, "strokes": stack}).encode(),
                                         {"Content-Type": "application/json"})
        start = time.perf_counter()
        json.loads(urllib.request.urlopen(request).read())
        over_http.append(time.perf_counter() - start)
    from playwright.sync_api import sync_playwright

    browser_ms = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('face').dataset.renders === '1'")
        box = page.locator("#overlay").bounding_box()
        for i in range(args.strokes):
            page.select_option("#concept", ("mouth", "eye")[i % 2])
            y = box["y"] + 120 + 8 * (i % 20)
            page.mouse.move(box["x"] + 120, y)
            page.mouse.down()
            page.mouse.move(box["x"] + 260, y, steps=8)
            page.mouse.up()
            page.wait_for_function(f"document.getElementById('face').dataset.renders === '{i + 2}'")
            browser_ms.append(page.evaluate("window.lastStrokeMs"))
        browser.close()
    server.shutdown()
    row = [f"{1000 * median(in_process):.0f}", f"{1000 * median(over_http):.0f}", f"{median(browser_ms):.0f}",
           f"{1000 * max(in_process):.0f} / {1000 * max(over_http):.0f} / {max(browser_ms):.0f}", str(args.strokes)]
    write_section("ganpaint", f"""## GANPaint stroke to image (`benchmarks/ganpaint_stroke.py`)

{machine()}. `dcgan_faces`, layer `main.8`, the 8 units per concept; after the first face (program compiled),
{args.strokes} strokes each way, stacks of 1-5 strokes (all folded into one edit: one program). Medians in
milliseconds; *browser* is Chromium's pointer-up to the new face decoded in the page.

{markdown_table(["server ms", "HTTP ms", "browser ms", "worst: server / HTTP / browser ms", "strokes"], [row])}
""")
    print(" | ".join(row))


if __name__ == "__main__":
    main()
