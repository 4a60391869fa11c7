"""GANPaint (Bau et al., "GAN Dissection", ICLR 2019, §4.3): paint with concepts on a generated face.

`jaxvis ganpaint dcgan_faces` dissects a layer of the generator on its cached sample set, picks
each concept's top-k units by IoU, and serves a page on 127.0.0.1: a face, a brush, a concept
menu, add or remove, undo, a new face, and a PNG download. The page keeps the strokes; each
request sends the face's seed and the whole stroke list (each stroke: concept, add/remove, a
mask at the image's size). The server folds the strokes into one affine edit of the layer
(`jaxvis.pieces.edits.AffineEdit`: removal sets the units to 0 inside the stroke, insertion to their
top-quantile level) and draws the face with one compiled program per layer and image size --
no new compile per stroke, per concept or per number of strokes.

    painter = Painter.for_generator(jaxvis.load("dcgan_faces"))
    server = serve(painter, port=0)        # prints nothing; server.server_address has the port
"""

from __future__ import annotations

import base64
import html
import io
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxvis.analysis.gan.dissect import concept_units, dissect
from jaxvis.analysis.gan.samples import BATCH, latents, require_generator, sample_concepts
from jaxvis.core.errors import JaxvisError
from jaxvis.core.programs import Program
from jaxvis.models.model import Model
from jaxvis.pieces.edits import AffineEdit, EditError, UnitEdit, checked_region, unit_mask

LAYER = "main.8"
UNITS = 8  # top units per concept
SAMPLES = 256  # faces dissected to choose them


class PortInUseError(JaxvisError, OSError):
    """The port asked for is taken."""


def paint(generator: Model, edit: AffineEdit, z: jax.Array) -> jax.Array:
    return generator(z, edit=edit.for_model())


PAINT = Program(paint, "ganpaint stroke")


@dataclass
class Painter:
    """A generator, the layer painted on, and each concept's units and insertion levels."""

    generator: Model
    layer: str
    concepts: dict[str, list[int]]  # concept -> units (best first)
    levels: np.ndarray  # (C,) each unit's insertion value (its dissection threshold)

    @classmethod
    def for_generator(cls, generator: Model, layer: str = LAYER, k: int = UNITS, samples: int = SAMPLES,
                      progress: bool = True) -> "Painter":
        """Dissect `layer` on `samples` faces and keep every face part's and colour's top-`k` units."""
        require_generator(generator, "GANPaint")
        data = sample_concepts(generator, samples, batch_size=BATCH, progress=progress)
        found = dissect(generator, layer, data=data, progress=progress)
        named = [name for name in found.concepts.names[1:] if name != "background"]
        return cls(generator, layer, {name: concept_units(found, name, k) for name in named},
                   np.asarray(found.thresholds, np.float32))

    @property
    def size(self) -> int:
        return self.generator.input_size

    def face(self, seed: int, strokes: list[dict]) -> np.ndarray:
        """The face of `seed` with `strokes` applied in order, (H, W, 3) in [0, 1]."""
        shape = self.generator.layer_shapes()[self.layer]
        width = shape[-1]
        edits = [self.stroke_edit(stroke, width) for stroke in strokes]
        affine = AffineEdit.composed(self.layer, edits, shape[1], shape[2], width)
        z = latents(seed + 1, self.generator.arch.latent_size, 0, first=seed)
        return np.asarray(PAINT(self.generator, affine, jnp.asarray(z)))[0]

    def stroke_edit(self, stroke: dict, width: int) -> UnitEdit:
        concept, action = stroke.get("concept"), stroke.get("action")
        if concept not in self.concepts:
            raise EditError(f"unknown concept {concept!r}; known: {', '.join(self.concepts)}.")
        if action not in ("add", "remove"):
            raise EditError(f"a stroke's action is 'add' or 'remove', not {action!r}.")
        mask = np.frombuffer(base64.b64decode(stroke.get("mask", "")), np.uint8)
        if mask.size != self.size * self.size:
            raise EditError(f"a stroke's mask has {mask.size} pixels; the image has {self.size}x{self.size} = "
                            f"{self.size * self.size}.")
        region = checked_region(mask.reshape(self.size, self.size).astype(np.float32) / 255)
        values = self.levels if action == "add" else np.zeros(width, np.float32)
        return UnitEdit(unit_mask(self.concepts[concept], width), values, region, self.layer)


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """`PortInUseError` now, before anything slow, if `port` cannot be served on (0 always can)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PortInUseError(f"cannot serve on {host}:{port}: {err.strerror or err}; choose another --port, "
                                 "or 0 for a free one") from None


def serve(painter: Painter, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving the page in a background thread; `PortInUseError` if `port` is taken (0: a free one)."""
    lock = threading.Lock()  # one stroke at a time through the compiled program

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", page(painter).encode())
            elif self.path == "/api/info":
                self._json(200, {"concepts": list(painter.concepts), "size": painter.size, "layer": painter.layer,
                                 "units": painter.concepts, "generator": painter.generator.name})
            else:
                self._json(404, {"error": f"no such page: {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/api/face":
                self._json(404, {"error": f"no such endpoint: {self.path}"})
                return
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                seed = int(request.get("seed", 0))
                if seed < 0:
                    raise EditError(f"seed must be 0 or more, got {seed}")
                start = time.perf_counter()
                with lock:
                    image = painter.face(seed, list(request.get("strokes", [])))
                self._json(200, {"image": png_data_url(image), "ms": 1000 * (time.perf_counter() - start)})
            except (EditError, ValueError, TypeError) as err:
                self._json(400, {"error": str(err)})

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, "application/json", json.dumps(payload).encode())

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:  # quiet
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as err:
        raise PortInUseError(f"cannot serve on {host}:{port}: {err.strerror or err}; choose another --port, or 0 "
                             "for a free one") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def page(painter: Painter) -> str:
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in painter.concepts)
    return PAGE.replace("{{TITLE}}", html.escape(f"GANPaint: {painter.generator.name}, {painter.layer}")) \
        .replace("{{OPTIONS}}", options).replace("{{SIZE}}", str(painter.size))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title><link rel="icon" href="data:,">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
#stage{position:relative;width:384px;height:384px;border:1px solid #ccc;touch-action:none;cursor:crosshair}
#stage img,#stage canvas{position:absolute;left:0;top:0;width:384px;height:384px}
#face{image-rendering:auto}
.controls{margin:.8em 0;display:flex;gap:.8em;align-items:center;flex-wrap:wrap}
#status{color:#555;font-size:.9em}
</style></head><body>
<h1>{{TITLE}}</h1>
<p>Choose a concept, add or remove, and paint on the face: the units of the generator that draw that concept
are switched off (remove) or on (add) under your stroke.</p>
<div class="controls">
<label>concept <select id="concept">{{OPTIONS}}</select></label>
<label><input type="radio" name="action" value="remove" checked> remove</label>
<label><input type="radio" name="action" value="add"> add</label>
<label>brush <input id="brush" type="range" min="1" max="12" value="4"></label>
<button id="undo">undo</button><button id="new">new face</button><a id="download" download="ganpaint.png" href="#">download PNG</a>
</div>
<div id="stage"><img id="face" alt="generated face"><canvas id="overlay" width="384" height="384"></canvas></div>
<p id="status">loading...</p>
<script>
const SIZE = {{SIZE}}, VIEW = 384;
let seed = 0, strokes = [], drawing = false, mask = null;
const face = document.getElementById('face'), overlay = document.getElementById('overlay');
const paintCtx = overlay.getContext('2d'), status = document.getElementById('status');
const maskCanvas = document.createElement('canvas'); maskCanvas.width = SIZE; maskCanvas.height = SIZE;
const maskCtx = maskCanvas.getContext('2d');
function action() { return document.querySelector('input[name=action]:checked').value; }
async function render(startedAt) {
  status.textContent = 'drawing...';
  const reply = await fetch('/api/face', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: JSON.stringify({seed, strokes})});
  const body = await reply.json();
  if (!reply.ok) { status.textContent = 'error: ' + body.error; return; }
  await new Promise(done => { face.onload = done; face.src = body.image; });
  document.getElementById('download').href = body.image;
  document.getElementById('download').download = 'ganpaint-seed' + seed + '.png';
  paintCtx.clearRect(0, 0, VIEW, VIEW);
  const total = startedAt ? performance.now() - startedAt : null;
  window.lastStrokeMs = total;
  face.dataset.renders = String(Number(face.dataset.renders || 0) + 1);
  status.textContent = 'face ' + seed + ', ' + strokes.length + ' stroke(s); server ' + body.ms.toFixed(0) + ' ms' +
    (total ? ', stroke to image ' + total.toFixed(0) + ' ms' : '');
}
function at(event) {
  const box = overlay.getBoundingClientRect();
  return [(event.clientX - box.left) / box.width, (event.clientY - box.top) / box.height];
}
function dab(event) {
  const [x, y] = at(event), r = Number(document.getElementById('brush').value);
  maskCtx.fillStyle = '#fff'; maskCtx.beginPath(); maskCtx.arc(x * SIZE, y * SIZE, r, 0, 2 * Math.PI); maskCtx.fill();
  paintCtx.fillStyle = action() === 'add' ? 'rgba(40,200,60,.45)' : 'rgba(220,40,40,.45)';
  paintCtx.beginPath(); paintCtx.arc(x * VIEW, y * VIEW, r * VIEW / SIZE, 0, 2 * Math.PI); paintCtx.fill();
}
overlay.addEventListener('pointerdown', e => {
  drawing = true; maskCtx.fillStyle = '#000'; maskCtx.fillRect(0, 0, SIZE, SIZE); dab(e);
});
overlay.addEventListener('pointermove', e => { if (drawing) dab(e); });
overlay.addEventListener('pointerup', e => {
  if (!drawing) return;
  drawing = false;
  const pixels = maskCtx.getImageData(0, 0, SIZE, SIZE).data, bytes = new Uint8Array(SIZE * SIZE);
  for (let i = 0; i < bytes.length; i++) bytes[i] = pixels[4 * i];
  let text = ''; bytes.forEach(b => { text += String.fromCharCode(b); });
  strokes.push({concept: document.getElementById('concept').value, action: action(), mask: btoa(text)});
  render(performance.now());
});
document.getElementById('undo').onclick = () => { strokes.pop(); render(null); };
document.getElementById('new').onclick = () => { seed += 1; strokes = []; render(null); };
render(null);
</script>
</body></html>
"""
