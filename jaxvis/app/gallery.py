"""Pictures a person would rather look at than read: contact sheets, an HTML gallery, a JSON run record.

The gallery (`index.html`) is one static page with a little plain JavaScript and
nothing fetched from elsewhere: a card per image with its caption, its final
value and the curve of its objective over the steps; click an image for it at
full size; sort the cards by unit or by final value.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import write_files
from jaxvis.data.io import png_bytes, to_uint8

CURVE_POINTS = 120  # objective curves are drawn through at most this many points


class OutputDirectoryError(JaxvisError, OSError):
    pass


def check_output(directory: str | Path) -> Path:
    """`OutputDirectoryError` unless `directory` exists writable or can be created; creates nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputDirectoryError(f"cannot write to output directory {directory}: it is a file")
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputDirectoryError(f"cannot write to output directory {directory}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirectoryError(f"cannot write to output directory {directory}: {existing} is not writable")
    return directory


def prepare_output(directory: str | Path) -> Path:
    """Create `directory` and check it is writable, just before the computation starts."""
    directory = check_output(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".jaxvis-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OutputDirectoryError(f"cannot write to output directory {directory}: {err.strerror or err}") from None
    return directory


def contact_sheet(images: np.ndarray, labels: Sequence[str] | None = None, columns: int | None = None,
                  gap: int = 4) -> np.ndarray:
    """A grid of (N, H, W, 3) float images with optional captions, as uint8 (rows, cols, 3)."""
    count, height, width = images.shape[:3]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    caption = 14 if labels else 0
    sheet = Image.new("RGB", (columns * (width + gap) + gap, rows * (height + gap + caption) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for index in range(count):
        row, col = divmod(index, columns)
        left, top = gap + col * (width + gap), gap + row * (height + gap + caption)
        sheet.paste(Image.fromarray(to_uint8(images[index])), (left, top))
        if labels:
            draw.text((left + 2, top + height + 1), labels[index][: max(4, width // 6)], fill="black")
    return np.asarray(sheet)


def curve_svg(values: Sequence[float], width: int = 160, height: int = 40) -> str:
    """An inline SVG line of `values` (NaNs skipped), scaled to the box; empty for fewer than two."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return ""
    picks = np.unique(np.linspace(0, len(values) - 1, min(CURVE_POINTS, len(values))).round().astype(int))
    ys = values[picks]
    low, high = float(ys.min()), float(ys.max())
    span = high - low or 1.0
    points = " ".join(f"{x:.1f},{height - 2 - (y - low) / span * (height - 4):.1f}"
                      for x, y in zip(np.linspace(1, width - 1, len(ys)), ys))
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="objective from {low:.3g} to {high:.3g} over {len(values)} steps">'
            f'<polyline fill="none" stroke="#2a6fd6" stroke-width="1.5" points="{points}"/></svg>')


PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
.controls{margin:.5em 0 1em} .controls button{margin-right:.4em}
#cards{display:flex;flex-wrap:wrap;gap:10px}
figure.card{margin:0;padding:6px;border:1px solid #ddd;border-radius:6px;text-align:center;width:172px}
figure.card img{width:160px;height:160px;object-fit:contain;image-rendering:auto;cursor:zoom-in;background:#f4f4f4}
figcaption{font-size:.85em;overflow-wrap:anywhere} .value{color:#555}
#viewer{position:fixed;inset:0;background:rgba(0,0,0,.85);display:none;align-items:center;justify-content:center;
  flex-direction:column;color:#fff;cursor:zoom-out}
#viewer.open{display:flex} #viewer img{max-width:92vw;max-height:85vh;min-width:min(512px,92vw);image-rendering:auto}
pre{background:#f6f6f6;padding:1em;overflow:auto}
"""

PAGE_SCRIPT = """
const cards = document.getElementById('cards');
function sortCards(key, descending) {
  const items = Array.from(cards.children);
  items.sort((a, b) => {
    const x = parseFloat(a.dataset[key]), y = parseFloat(b.dataset[key]);
    const nx = isNaN(x), ny = isNaN(y);
    if (nx || ny) return nx - ny;
    return descending ? y - x : x - y;
  });
  items.forEach(item => cards.appendChild(item));
}
document.querySelectorAll('button[data-sort]').forEach(button => button.addEventListener('click',
  () => sortCards(button.dataset.sort, button.dataset.order === 'desc')));
const viewer = document.getElementById('viewer'), large = viewer.querySelector('img'),
      caption = viewer.querySelector('p');
cards.addEventListener('click', event => {
  const image = event.target.closest('img');
  if (!image) return;
  large.src = image.src; large.alt = image.alt; caption.textContent = image.alt;
  viewer.classList.add('open');
});
viewer.addEventListener('click', () => viewer.classList.remove('open'));
document.addEventListener('keydown', event => { if (event.key === 'Escape') viewer.classList.remove('open'); });
"""


def gallery_page(title: str, files: Sequence[str], labels: Sequence[str], values: Sequence[float],
                 curves: Sequence[Sequence[float] | None], value_name: str, config: dict[str, Any],
                 links: Sequence[tuple[str, str]] = ()) -> str:
    cards = []
    for order, (name, label, value, curve) in enumerate(zip(files, labels, values, curves)):
        shown = "" if math.isnan(value) else f'<br><span class="value">{html.escape(value_name)} {value:.4g}</span>'
        cards.append(
            f'<figure class="card" data-order="{order}" data-value="{"nan" if math.isnan(value) else repr(float(value))}">'
            f'<img src="{html.escape(name)}" alt="{html.escape(label)}" loading="lazy">'
            f'<figcaption>{html.escape(label)}{shown}</figcaption>{curve_svg(curve) if curve is not None else ""}'
            "</figure>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{PAGE_STYLE}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><a href="contact_sheet.png">contact sheet</a> &middot; <a href="run.json">run record</a>{"".join(
    f' &middot; <a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in links)}</p>
<div class="controls">sort:
<button data-sort="order" data-order="asc">as run</button>
<button data-sort="value" data-order="desc">{html.escape(value_name)}, highest first</button>
<button data-sort="value" data-order="asc">{html.escape(value_name)}, lowest first</button></div>
<div id="cards">
{chr(10).join(cards)}
</div>
<div id="viewer" role="dialog" aria-label="full-size image"><img alt=""><p></p></div>
<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=1))}</pre>
<script>{PAGE_SCRIPT}</script>
</body></html>
"""


def write_gallery(directory: Path, title: str, images: np.ndarray, labels: Sequence[str],
                  values: Sequence[float], record: dict[str, Any], stem: str = "unit",
                  value_name: str = "objective", curves: Sequence[Sequence[float] | None] | None = None,
                  columns: int | None = None, links: Sequence[tuple[str, str]] = ()) -> dict[str, Path]:
    """One PNG per image, a contact sheet, an index.html and run.json under `directory`.

    curves: per image, its objective at every step (drawn under it), or None; columns: of the contact
    sheet (default: about square); links: (href, text) of other pages, shown at the top.
    """
    files = [f"{stem}_{label}.png" for label in labels]
    curves = list(curves) if curves is not None else [None] * len(files)
    page = gallery_page(title, files, labels, values, curves, value_name, record.get("config", {}), links)
    paths = {"sheet": directory / "contact_sheet.png", "index": directory / "index.html",
             "record": directory / "run.json"}
    write_files({**{directory / name: png_bytes(image) for image, name in zip(images, files)},
                 paths["sheet"]: png_bytes(contact_sheet(images, list(labels), columns)),
                 paths["index"]: page.encode(),
                 paths["record"]: json.dumps(record, indent=1, default=_jsonable).encode()})
    return paths


def grid_page(title: str, axes: Sequence[str], values: Sequence[Sequence[Any]], units: Sequence[str],
              files: Sequence[Sequence[str]], objectives: Sequence[Sequence[float]], value_name: str = "objective",
              heading: str = "unit") -> str:
    """A sweep's images, one table per unit: rows are the first axis's values, columns every combination of the
    others (a single axis: one row); `files[u][c]` and `objectives[u][c]` are unit u's in grid cell c (row-major,
    the last axis fastest), the value printed under each image; each table is headed `{heading} {unit}`."""
    column_axes = axes[1:] if len(axes) > 1 else axes
    rows = [f"{axes[0]} {value}" for value in values[0]] if len(axes) > 1 else [""]
    columns = list(itertools.product(*(values[1:] if len(axes) > 1 else values)))
    head = "".join(f"<th>{html.escape(', '.join(f'{a} {v}' for a, v in zip(column_axes, combo)))}</th>"
                   for combo in columns)
    tables = []
    for unit, unit_files, unit_values in zip(units, files, objectives):
        name = html.escape(f"{heading} {unit}".strip())
        body = []
        for r, row in enumerate(rows):
            cells = "".join(
                f'<td><img src="{html.escape(unit_files[r * len(columns) + c])}" alt="{name}" '
                f'loading="lazy"><br><span class="value">{html.escape(value_name)} '
                f'{unit_values[r * len(columns) + c]:.4g}</span></td>' for c in range(len(columns)))
            body.append(f"<tr><th>{html.escape(row)}</th>{cells}</tr>")
        tables.append(f"<h2>{name}</h2><table class=\"grid\"><tr><th></th>{head}</tr>"
                      + "".join(body) + "</table>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{PAGE_STYLE}
table.grid{{border-collapse:collapse}} table.grid td,table.grid th{{padding:4px;text-align:center;font-size:.85em}}
table.grid img{{width:160px;height:160px;object-fit:contain;background:#f4f4f4}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><a href="index.html">all images</a> &middot; <a href="run.json">run record</a></p>
{chr(10).join(tables)}
</body></html>
"""


def robustness_page(title: str, rows: Sequence[dict[str, Any]], norm: str) -> str:
    """An attack's robustness curve: per eps (`rows`: eps, folder, held, images, fooled, mean_norm) the share
    of images that resisted it, drawn and tabled, each row linking to that eps's gallery."""
    from jaxvis.methods.attacks.common import eps_text

    shares = [row["held"] / max(row["images"], 1) for row in rows]
    width, height, pad, right = 420, 200, 36, 30  # room for the axis labels, and for the last tick's
    xs = np.linspace(pad + 10, width - right, len(rows)) if len(rows) > 1 else np.asarray([width / 2])
    ys = [height - pad - share * (height - pad - 10) for share in shares]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    ticks = "".join(f'<text x="{x:.1f}" y="{height - pad + 16}" text-anchor="middle">{html.escape(eps_text(r["eps"]))}'
                    f"</text>" for x, r in zip(xs, rows))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{share:.0%}</title></circle>'
                   for x, y, share in zip(xs, ys, shares))
    chart = (f'<svg id="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="share of images that resisted the attack at each eps" font-size="11">'
             f'<line x1="{pad}" y1="10" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - right + 10}" y2="{height - pad}" stroke="#999"/>'
             f'<text x="{pad - 4}" y="14" text-anchor="end">100%</text>'
             f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end">0%</text>'
             f'<polyline fill="none" stroke="#2a6fd6" stroke-width="2" points="{points}"/>{dots}{ticks}'
             f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">eps ({html.escape(norm)})</text></svg>')
    body = "".join(
        f'<tr><td>{html.escape(eps_text(r["eps"]))}</td><td>{r["held"]}/{r["images"]} ({share:.0%})</td>'
        f'<td>{r["fooled"]}</td><td>{r["mean_norm"]:.4g}</td>'
        f'<td><a href="{html.escape(r["folder"])}/index.html">images</a></td></tr>' for r, share in zip(rows, shares))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{PAGE_STYLE}
table.curve{{border-collapse:collapse}} table.curve td,table.curve th{{padding:4px 10px;text-align:right}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>Per eps, the images whose saved 8-bit PNG the model still classifies as before the attack (for a targeted
attack: not as the target), every eps run in one compiled program. <a href="run.json">run record</a></p>
{chart}
<table class="curve"><tr><th>eps</th><th>resisted</th><th>fooled (float32)</th><th>mean {html.escape(norm)} norm</th>
<th></th></tr>{body}</table>
</body></html>
"""


def environment() -> dict[str, str]:
    """Versions and machine, for run records."""
    import jax

    versions = {}
    for package in ("jaxvis", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        **versions,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": str(jax.local_device_count()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
