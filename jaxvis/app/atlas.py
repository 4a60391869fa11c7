"""The unit atlas: one static site that puts what jaxvis knows about each unit of a layer side by side.

    index.html            the layer: every unit's feature visualization, concept and IoU, top images
    units/unit-N.html     one unit: adds the classes its removal changes most, the runner-up concepts,
                          its dataset examples at full size, and the random-direction comparison
    directions.html       the same layer's random directions' top images (Szegedy et al. 2013, §3)
    atlas.json            every number shown

Each part comes from the piece that computes it: `jaxvis.visualize` (the engine,
Lucid's defaults unless told otherwise), `survey` (top images), `dissect` (when a
concept-segmentation set is given) and `ablate.ablation_counts` (every unit removed
alone, in one sweep).  The pages are plain HTML with relative links and no
script or network access: they open from the file system.

For a generator (`data`: its sampled concept set, `jaxvis.analysis.gan.samples`) the site shows
the same for its units, with two changes: a unit's picture is its top sample drawn
with and without the unit (removed alone, GAN Dissection's intervention) instead of a
feature visualization, and the data set is dissected with GAN Dissection's defaults;
no class is affected, so there is no ablation table.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.analysis.units import ablate
from jaxvis.analysis.units.dissect import Dissection
from jaxvis.analysis.units.examples import example_strip, needed_images
from jaxvis.analysis.units.survey import Survey, survey
from jaxvis.app.gallery import environment
from jaxvis.core.files import write_files
from jaxvis.data.io import png_bytes
from jaxvis.models.model import Model

CLASSES_SHOWN = 5  # classes listed per unit under "removing it changes"
REMOVAL = "removal"  # the atlas of a generator: its units' removal is shown on their top samples
THUMBS = 3  # top images on the layer page


@dataclass(frozen=True)
class UnitPage:
    unit: int
    visualization: str  # file names relative to the site root
    examples: str
    thumbs: tuple[str, ...]
    concept: tuple[str, str, float, bool] | None  # concept, category, IoU, detector
    runners_up: tuple[tuple[str, str, float], ...]
    changes: tuple[tuple[str, float, float, int], ...]  # class, before, after, images
    peak: float


def build_atlas(model: Model, layer: str, data: Any, out: str | os.PathLike, *, units: Sequence[int],
                concepts: Any = None, directions: int = 8, top: int = 6, steps: int = 512, fv_size: int = 128,
                size: int | None = None, batch_size: int = 32, seed: int = 0, progress: bool = True) -> Path:
    """Compute every part for `units` of `layer` and write the site under `out` (module docstring)."""
    from jaxvis.analysis.units.dissect import dissect
    from jaxvis.methods.feature_visualization import visualize

    out = Path(out)
    units = [int(u) for u in units]
    found = survey(model, layer, data, k=top, directions=directions, seed=seed, size=size, batch_size=batch_size,
                   progress=progress)
    if model.arch.is_generator:
        from jaxvis.analysis.gan.dissect import dissect as gan_dissect

        dissection = gan_dissect(model, layer, data=data, batch_size=batch_size, progress=progress)
        pictures = removal_pictures(model, layer, found, units, data.latents)
        changes: list[tuple] = [() for _ in units]
        metric = REMOVAL
    else:
        dissection = None
        if concepts is not None:
            dissection = dissect(model, layer, concepts, size=size, batch_size=batch_size, progress=progress)
        width = found.top.values.shape[0]
        keep = np.stack([np.ones(width, np.float32)] + [ablate.removing([u], width) for u in units])
        counts, metric = ablate.ablation_counts(model, layer, ablate.ablation_images(data), keep, size=size,
                                                batch_size=batch_size, progress=progress)
        accuracy, totals = counts.accuracy(), np.asarray(counts.total)
        changes = [tuple(ablate.Effect((unit,), "", accuracy[0], accuracy[row + 1], totals).changed(CLASSES_SHOWN))
                   for row, unit in enumerate(units)]
        spec = f"{layer}:{','.join(str(u) for u in units)}"
        pictures = visualize(model, spec, steps=steps, size=fv_size, seed=seed, progress=progress)
    pages = write_images(out, found, dissection, units, pictures, changes, top, directions)
    write_site(out, model.name, layer, pages, found, dissection, metric, directions, steps)
    return out


def removal_pictures(generator: Model, layer: str, found: Survey, units: list[int], latents: np.ndarray) -> np.ndarray:
    """Per unit, its top sample drawn as it is and with the unit removed, side by side (H, 2W + 2, 3)."""
    from jaxvis.analysis.gan.effect import drawn
    from jaxvis.pieces.edits import UnitEdit

    width = found.top.values.shape[0]
    samples = [int(found.top.images[unit, 0]) for unit in units]
    z = np.asarray(latents)[samples]
    before = drawn(generator, None, z)
    after = np.stack([drawn(generator, UnitEdit.removing(layer, [unit], width), z[row:row + 1])[0]
                      for row, unit in enumerate(units)])
    gap = np.ones((len(units), before.shape[1], 2, 3), np.float32)
    return np.concatenate([before, gap, after], axis=2)


def write_images(out: Path, found: Survey, dissection: Dissection | None, units: list[int], pictures: np.ndarray,
                 changes: list[tuple], top: int, directions: int) -> list[UnitPage]:
    shown = found.read(needed_images(found, units, list(range(directions)), top))
    files: dict[Path, bytes] = {}
    pages = []
    for row, unit in enumerate(units):
        visualization, strip = Path("images") / f"fv-{unit}.png", Path("images") / f"examples-{unit}.png"
        files[out / visualization] = png_bytes(pictures[row])
        files[out / strip] = png_bytes(example_strip(found, unit, shown, count=top))
        thumbs = []
        for slot, i in enumerate(np.asarray(found.top.images[unit, :THUMBS])):
            if i >= 0:
                thumbs.append(Path("images") / f"top-{unit}-{slot}.png")
                files[out / thumbs[-1]] = png_bytes(shown[int(i)])
        label = dissection.units[unit] if dissection is not None else None
        pages.append(UnitPage(
            unit, str(visualization), str(strip), tuple(str(thumb) for thumb in thumbs),
            None if label is None else (label.concept, label.category, label.iou, label.detector),
            () if label is None else label.runners_up, changes[row], float(found.top.values[unit, 0])))
    for direction in range(directions):
        files[out / "images" / f"direction-{direction}.png"] = png_bytes(
            example_strip(found, direction, shown, directions=True, count=top))
    write_files(files)
    return pages


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
a{color:#1f5fbf} nav{margin-bottom:1em}
#units{display:flex;flex-wrap:wrap;gap:10px}
.unit{border:1px solid #ddd;border-radius:6px;padding:6px;width:200px}
.unit img.fv{width:200px;height:200px;object-fit:contain;image-rendering:auto}
.thumbs img{width:64px;height:64px;object-fit:cover;image-rendering:auto}
.concept{font-size:.9em} .weak{color:#888}
img.strip{max-width:100%;image-rendering:auto}
table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
"""


def _page(title: str, body: str, root: str = "") -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body>\n<nav><a href="{root}index.html">layer</a> &middot; '
            f'<a href="{root}directions.html">random directions</a> &middot; <a href="{root}atlas.json">numbers</a>'
            f'</nav>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n')


def _picture(metric: str) -> str:
    return "top sample without and with the removal" if metric == REMOVAL else "feature visualization"


def _concept_text(page: UnitPage) -> str:
    if page.concept is None:
        return '<span class="weak">no concept data</span>'
    concept, category, iou, detector = page.concept
    text = f"{html.escape(concept)} ({html.escape(category)}) IoU {iou:.3f}"
    return text if detector else f'<span class="weak">{text}, below threshold</span>'


def write_site(out: Path, model: str, layer: str, pages: list[UnitPage], found: Survey,
               dissection: Dissection | None, metric: str, directions: int, steps: int) -> None:
    cards = []
    for page in pages:
        thumbs = "".join(f'<img src="{t}" alt="top image {i + 1} of unit {page.unit}">' for i, t in enumerate(page.thumbs))
        cards.append(f'<div class="unit" id="unit-{page.unit}"><a href="units/unit-{page.unit}.html">'
                     f'<img class="fv" src="{page.visualization}" alt="{_picture(metric)} of unit {page.unit}">'
                     f'</a><div><a href="units/unit-{page.unit}.html">unit {page.unit}</a></div>'
                     f'<div class="concept">{_concept_text(page)}</div><div class="thumbs">{thumbs}</div></div>')
    summary = ""
    if dissection is not None:
        counts = ", ".join(f"{html.escape(k)} {v}" for k, v in dissection.summary().items())
        summary = (f"<p>Network dissection over {dissection.images} images: detectors (IoU &ge; "
                   f"{dissection.iou_threshold}) per category: {counts}.</p>")
    if metric == REMOVAL:
        intro = (f"<p>{len(pages)} units of the generator's {html.escape(layer)}: each unit's top sample as drawn "
                 f"(left) and with the unit removed (right), its top samples of {len(found.paths)} with its region "
                 f"highlighted.</p>{summary}")
    else:
        intro = (f"<p>{len(pages)} units of {html.escape(layer)}: feature visualizations ({steps} steps), "
                 f"top images of {len(found.paths)}, ablation effects as {html.escape(metric)}.</p>{summary}")
    files = {out / "index.html": _page(f"{model} {layer}", intro + '<div id="units">' + "".join(cards) + "</div>")}
    for page in pages:
        files[out / "units" / f"unit-{page.unit}.html"] = unit_page(model, layer, page, pages, metric, directions)
    strips = "".join(f'<h2 id="direction-{d}">direction {d}</h2><img class="strip" src="images/direction-{d}.png" '
                     f'alt="top images of random direction {d}">' for d in range(directions))
    files[out / "directions.html"] = _page(
        f"{model} {layer}: random directions", "<p>Top images of random unit-norm directions of the layer's "
        "channel space, for comparison with its units (Szegedy et al. 2013, §3).</p>" + strips)
    record = {"model": model, "layer": layer, "metric": metric, "environment": environment(),
              "units": [page.__dict__ for page in pages],
              "top_images": {page.unit: [str(found.paths[i]) for i in np.asarray(found.top.images[page.unit]) if i >= 0]
                             for page in pages}}
    files[out / "atlas.json"] = json.dumps(record, indent=1, default=str)
    write_files({path: text.encode() for path, text in files.items()})


def unit_page(model: str, layer: str, page: UnitPage, pages: list[UnitPage], metric: str, directions: int) -> str:
    position = [p.unit for p in pages].index(page.unit)
    neighbours = []
    if position > 0:
        neighbours.append(f'<a href="unit-{pages[position - 1].unit}.html">&larr; unit {pages[position - 1].unit}</a>')
    if position + 1 < len(pages):
        neighbours.append(f'<a href="unit-{pages[position + 1].unit}.html">unit {pages[position + 1].unit} &rarr;</a>')
    runners = "".join(f"<li>{html.escape(c)} ({html.escape(k)}) {s:.3f}</li>" for c, k, s in page.runners_up)
    changes = "".join(f"<tr><td>{html.escape(name)}</td><td>{before:.2f}</td><td>{after:.2f}</td><td>{n}</td></tr>"
                      for name, before, after, n in page.changes)
    direction_links = " ".join(f'<a href="../directions.html#direction-{d}">{d}</a>' for d in range(directions))
    removal = ("<h2>Removing this unit</h2><p>Its top sample as drawn (left, above) and with the unit removed "
               "(right).</p>" if metric == REMOVAL else
               f"<h2>Removing this unit</h2><p>{html.escape(metric)} of the classes it changes most:</p>"
               f"<table><tr><th>class</th><th>before</th><th>after</th><th>images</th></tr>{changes}</table>")
    body = (f"<p>{' &middot; '.join(neighbours)}</p>"
            f'<img class="fv" src="../{page.visualization}" alt="{_picture(metric)} of unit {page.unit}" width="256">'
            f"<h2>Concept</h2><p>{_concept_text(page)}</p>"
            + (f"<p>Runners-up:</p><ul>{runners}</ul>" if runners else "")
            + f"<h2>Dataset examples</h2><p>Peak activation {page.peak:.3g}.</p>"
            f'<img class="strip" src="../{page.examples}" alt="top images of unit {page.unit}">' + removal
            + f"<h2>Random directions</h2><p>Top images of random directions of the same layer: {direction_links}</p>")
    return _page(f"{model} {layer} unit {page.unit}", body, root="../")

