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

Every request is answered, in JSON: a malformed one (not JSON, wrong types at any level, a missing
or lying Content-Length, a body over `MAX_BODY`, more than `MAX_STROKES` strokes, a seed that is not
a whole number in [0, 2^31)) with a 4xx saying what is wrong, an unexpected failure with a 500; the
server goes on serving (`tests/test_ganpaint_requests.py` sends it generated requests).
"""

from __future__ import annotations

import base64
import html
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.analysis.gan.dissect import concept_units, dissect
from jaxvis.analysis.gan.samples import BATCH, latents, require_generator, sample_concepts
from jaxvis.core.errors import JaxvisError
from jaxvis.core.programs import Program
from jaxvis.data.io import png_bytes
from jaxvis.models.model import Model
from jaxvis.pieces.edits import AffineEdit, EditError, UnitEdit, checked_region, unit_mask

LAYER = "main.8"
UNITS = 8  # top units per concept
SAMPLES = 256  # faces dissected to choose them
MAX_STROKES = 256  # strokes in one request
MAX_BODY = 8 * 2**20  # bytes of a request's body: MAX_STROKES strokes of a 128 px mask fit
READ_TIMEOUT_S = 10.0  # a client that sends less than its Content-Length is answered 408 after this
SEEDS = 2**31  # seeds are 0 .. SEEDS - 1


class PortInUseError(JaxvisError, OSError):
    """The port asked for is taken."""


class BadRequest(JaxvisError, ValueError):
    """A request the server answers with `status` (4xx) and this message."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def body_length(content_length: str | None) -> int:
    """The body's length from its Content-Length header, or `BadRequest` (411 missing, 400 not a count, 413 over
    `MAX_BODY`) before any of it is read."""
    if content_length is None:
        raise BadRequest(411, "a POST needs a Content-Length header")
    if not content_length.strip().isdigit():
        raise BadRequest(400, f"Content-Length must be a whole number of bytes, not {content_length[:40]!r}")
    length = int(content_length)
    if length > MAX_BODY:
        raise BadRequest(413, f"the body is {length} bytes; at most {MAX_BODY} are read (fewer or smaller strokes)")
    return length


def face_request(body: bytes) -> tuple[int, list[dict[str, str]]]:
    """(seed, strokes) of a face request `{"seed": int, "strokes": [{"concept", "action", "mask"}, ...]}` (both
    optional), or `BadRequest` (400) saying what is wrong; the strokes' values are checked by `Painter.face`."""
    try:
        request = json.loads(body or b"{}")
    except ValueError as err:  # (UnicodeDecodeError included)
        raise BadRequest(400, f"the body is not JSON: {err}") from None
    except RecursionError:
        raise BadRequest(400, "the body's JSON is nested too deeply") from None
    if not isinstance(request, dict):
        raise BadRequest(400, f'the body must be a JSON object {{"seed": ..., "strokes": [...]}}, not a '
                              f"{type(request).__name__}")
    seed, strokes = request.get("seed", 0), request.get("strokes", [])
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEEDS:
        raise BadRequest(400, f"seed must be a whole number from 0 to {SEEDS - 1}, got {str(seed)[:40]}")
    if not isinstance(strokes, list):
        raise BadRequest(400, f"strokes must be a list, not a {type(strokes).__name__}")
    if len(strokes) > MAX_STROKES:
        raise BadRequest(400, f"{len(strokes)} strokes; at most {MAX_STROKES} in one request")
    for index, stroke in enumerate(strokes):
        if not isinstance(stroke, dict):
            raise BadRequest(400, f"stroke {index} must be an object with concept, action and mask, not a "
                                  f"{type(stroke).__name__}")
        wrong = [key for key in ("concept", "action", "mask") if not isinstance(stroke.get(key), str)]
        if wrong:
            raise BadRequest(400, f"stroke {index}'s {', '.join(wrong)} must be text (a mask: base64 bytes)")
    return seed, strokes


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
    """A float image in [0, 1] as a PNG data URL, 8-bit as the gallery's PNGs (`jaxvis.data.io.png_bytes`)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """`PortInUseError` now, before anything slow, if `port` cannot be served on (0 always can)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise PortInUseError(f"cannot serve on {host}:{port}: {err.strerror or err}; choose another --port, "
                                 "or 0 for a free one") from None


def serve(painter: Painter, port: int = 0, host: str = "127.0.0.1",
          read_timeout_s: float = READ_TIMEOUT_S) -> ThreadingHTTPServer:
    """Start serving the page in a background thread; `PortInUseError` if `port` is taken (0: a free one)."""
    lock = threading.Lock()  # one stroke at a time through the compiled program

    class Handler(BaseHTTPRequestHandler):
        timeout = read_timeout_s  # on the connection's socket: a stalled client is let go

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
                seed, strokes = face_request(self._body())
                start = time.perf_counter()
                with lock:
                    image = painter.face(seed, strokes)
                self._json(200, {"image": png_data_url(image), "ms": 1000 * (time.perf_counter() - start)})
            except BadRequest as err:
                self._json(err.status, {"error": str(err)})
            except (EditError, ValueError) as err:  # a stroke's values (`Painter.stroke_edit`)
                self._json(400, {"error": str(err)})
            except Exception as err:  # answered, never a dropped connection
                self._json(500, {"error": f"the server failed on this request ({type(err).__name__}: {err})"})

        def _body(self) -> bytes:
            length = body_length(self.headers.get("Content-Length"))
            body = b""
            while len(body) < length:
                try:
                    chunk = self.rfile.read1(length - len(body))
                except TimeoutError:  # the client stalled (`timeout`)
                    break
                if not chunk:  # the client closed its side
                    break
                body += chunk
            if len(body) < length:
                self.close_connection = True
                raise BadRequest(408, f"the body ended after {len(body)} of its {length} bytes (Content-Length)")
            return body

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
