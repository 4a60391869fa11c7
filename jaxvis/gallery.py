"""Pictures a person would rather look at than read: contact sheets, an HTML gallery, a JSON run record."""

from __future__ import annotations

import html
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

from jaxvis.errors import JaxvisError
from jaxvis.io import save_image, to_uint8


class OutputDirectoryError(JaxvisError, OSError):
    pass


def prepare_output(directory: str | Path) -> Path:
    """Create `directory` and check it is writable, before any long computation."""
    directory = Path(directory)
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


def write_gallery(directory: Path, title: str, images: np.ndarray, labels: Sequence[str],
                  values: Sequence[float], record: dict[str, Any], stem: str = "unit",
                  value_name: str = "objective") -> dict[str, Path]:
    """One PNG per image, a contact sheet, an index.html and run.json under `directory`."""
    files = [f"{stem}_{label}.png" for label in labels]
    for image, name in zip(images, files):
        save_image(image, directory / name)
    sheet = directory / "contact_sheet.png"
    Image.fromarray(contact_sheet(images, list(labels))).save(sheet)
    cells = "\n".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(label)}"><figcaption>{html.escape(label)}'
        + ("" if math.isnan(value) else f"<br><small>{html.escape(value_name)} {value:.4g}</small>")
        + "</figcaption></figure>"
        for name, label, value in zip(files, labels, values)
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} figure{{display:inline-block;margin:6px;text-align:center}}
img{{width:160px;height:160px;image-rendering:pixelated;border:1px solid #ccc}} pre{{background:#f6f6f6;padding:1em}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p><a href="contact_sheet.png">contact sheet</a> &middot; <a href="run.json">run record</a></p>
{cells}
<h2>Configuration</h2><pre>{html.escape(json.dumps(record.get("config", {}), indent=1))}</pre>
</body></html>
"""
    (directory / "index.html").write_text(page, encoding="utf-8")
    (directory / "run.json").write_text(json.dumps(record, indent=1, default=_jsonable), encoding="utf-8")
    return {"sheet": sheet, "index": directory / "index.html", "record": directory / "run.json"}


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
