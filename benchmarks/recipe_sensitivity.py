"""Plug-In Inversion's claim, measured: one fixed recipe, or weights tuned per model?

Ghiasi et al. (2022) say PII's recipe serves CNNs, ViTs and MLPs unchanged, while regularized class inversion
"is highly sensitive to regularization weights and must be tuned per model".  Here each recipe's
hyperparameters span a grid, every grid runs as one sweep (`jaxvis.engine.sweeps`: one compiled program per stage),
and we count the share of the grid that works:

- PII (`jaxvis.methods.pii`): learning rate x ColorShift spread x jitter.
- Lucid (`jaxvis.visualize`: Fourier parameterization, decorrelated colour, standard transforms, Adam):
  learning rate x total-variation weight x L2 weight x jitter x scale spread.

On MobileNetV2 and EfficientNet-Lite0 (real ImageNet weights) each recipe inverts CLASSES; a cell works for a
class when the *other* classifier, the judge, puts the class first (top-1; top-5 is reported too) on the
image resized to 224 px.  On DINOv2 ViT-S/14 (no classifier head) each recipe maximizes CLS-token channels
of block 10 (`@cls`); a cell works for a channel when the channel's value on its image (no augmentation)
gets at least X = 50% of the way from a typical photo's value (median over scikit-image's photos) to the
best value any cell of either recipe reached.

A reduced budget, stated: classifiers at 128 px (the network sees 128 px), Lucid 128 steps, PII 128 steps
per zoom stage (7 stages) with 4 views (at 32 steps a stage PII did not converge: its own classifier
accepted 7% and 23% of its images); the ViT at 112 px (8 x 8 patches), Lucid 96 steps, PII 16 steps per
stage with 2 views.  The reference budget (224 px, 512 steps; PII 401 steps x 7 stages x 48 views) takes
~30 minutes a class here.  Each (model, recipe, class) part is kept in benchmarks/out as it finishes, so an
interrupted run continues.  Writes docs/recipe-sensitivity.png (the heat maps),
benchmarks/recipe_sensitivity.json and the `recipe_sensitivity` section of benchmarks/RESULTS.md.

    python benchmarks/recipe_sensitivity.py            # ~70 min on a 2-core CPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from common import machine, markdown_table, sample_photos, write_section
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "recipe_sensitivity"  # finished parts, kept between runs (git-ignored)
FIGURE = HERE.parent / "docs" / "recipe-sensitivity.png"

CLASSIFIERS = {"mobilenet_v2": "efficientnet_lite0", "efficientnet_lite0": "mobilenet_v2"}  # model -> judge
CLASSES = (1, 130, 980)  # goldfish, flamingo, volcano
VIT, VIT_SPEC = "dinov2_vits14_focus", "backbone.encoder.layer.10:0-1@cls"
REACH = 0.5  # X: the share of the way from a typical photo to the best image that counts as working
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "brick", "grass", "gravel",
          "colorwheel", "camera")

BUDGET = {  # per model kind: image size, Lucid steps, PII steps per stage, PII views
    "classifier": dict(size=128, lucid_steps=128, pii_steps=128, pii_views=4),
    "vit": dict(size=112, lucid_steps=96, pii_steps=16, pii_views=2),
}
GRIDS = {  # the swept hyperparameters; the recipe's own default is in every axis
    "PII": dict(learning_rate=[0.003, 0.01, 0.03], color_shift=[(0.5, 0.5), (1.0, 1.0), (1.5, 1.5)],
                jitter=[4, 16, 32]),
    "Lucid": dict(lr=[0.01, 0.05, 0.2], tv=[0.0, 3e-4, 3e-3], l2=[0.0, 3.0, 30.0], jitter=[8, 16],
                  scale=[0.1, 0.3]),
}
VIT_GRIDS = {  # the ViT costs ~10x a classifier's step: two values an axis, the extremes of the above
    "PII": dict(learning_rate=[0.003, 0.03], color_shift=[(0.5, 0.5), (1.5, 1.5)], jitter=[4, 32]),
    "Lucid": dict(lr=[0.01, 0.2], tv=[0.0, 3e-3], l2=[0.0, 30.0], jitter=[8, 16], scale=[0.1, 0.3]),
}


def cells(grid: dict[str, list]) -> list[dict]:
    """The grid's cells, row-major (the last axis fastest), as `jaxvis.engine.sweeps.Grid` orders them."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def invert(model, recipe: str, grid: dict[str, list], target: int | str, budget: dict) -> np.ndarray:
    """One sweep: (cells, units, S, S, 3) float32 images; target: a class (one unit) or a unit spec (the ViT)."""
    import jaxvis
    from jaxvis.methods import pii

    size, spec = budget["size"], target if isinstance(target, str) else None
    if recipe == "PII":
        sweep, options = replace(pii.DEFAULTS, **grid), dict(size=size, steps=budget["pii_steps"],
                                                             ensemble=budget["pii_views"], progress=False)
        if spec:
            images = pii.visualize_units(model, spec, recipe=sweep, **options)
        else:
            result = pii.plug_in_inversion(model, [target], recipe=sweep, **options)
            images = result.with_grid_axes(result.images[:, 0].astype(np.float32))
    else:
        images = jaxvis.visualize(model, spec or f"logits:{target}", objective="channel" if spec else "logit",
                                  size=size, model_size=size, steps=budget["lucid_steps"], progress=False, **grid)
    return images.reshape(len(cells(grid)), -1, size, size, 3)


def part_name(model: str, recipe: str, target: int | str, budget: dict, grid: dict) -> str:
    """The name a part is kept under: its model, recipe and target, and a digest of its budget and grid (a
    changed budget or grid makes new parts instead of reusing the old)."""
    import hashlib

    used = {k: v for k, v in budget.items() if k == "size" or k.startswith(recipe.lower())}  # its own steps only
    digest = hashlib.sha256(repr((sorted(used.items()), sorted(grid.items()))).encode()).hexdigest()[:8]
    return f"{model}-{recipe}-{target}-{digest}"


def run_part(name: str, make) -> np.ndarray:
    """The part's images from benchmarks/out if a finished run kept them, else made now and kept."""
    path = OUT / f"{name}.npz"
    if path.exists():
        return np.load(path)["images"]
    start = time.perf_counter()
    images = make()
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=np.asarray(images, np.float32), seconds=time.perf_counter() - start)
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    return images


def part_seconds(name: str) -> float:
    return float(np.load(OUT / f"{name}.npz")["seconds"])


def judged(judge, images: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image: is `target` the judge's top-1, and among its top 5 (images resized to its 224 px)."""
    from jaxvis.pieces.transforms import resize_images

    logits = np.concatenate([np.asarray(judge(np.asarray(resize_images(images[i : i + 16], 224))))
                             for i in range(0, len(images), 16)])
    rank = (logits > logits[:, [target]]).sum(axis=1)
    return rank == 0, rank < 5


def classifier_study(parts: list[str]) -> list[dict]:
    import jaxvis

    rows = []
    for name, judge_name in CLASSIFIERS.items():
        model, judge = jaxvis.load(name), jaxvis.load(judge_name)
        for recipe, grid in GRIDS.items():
            top1, top5, own, seconds = [], [], [], 0.0
            for target in CLASSES:
                part = part_name(name, recipe, target, BUDGET["classifier"], grid)
                images = run_part(part, lambda: invert(model, recipe, grid, target, BUDGET["classifier"]))[:, 0]
                seconds += part_seconds(part)
                first, five = judged(judge, images, target)
                top1.append(first)
                top5.append(five)
                own.append(judged(model, images, target)[0])
                parts.append(part)
            rows.append(summary(name, recipe, grid, np.stack(top1, 1), np.stack(top5, 1), seconds,
                                f"judge {judge_name}, top-1", own_top1=float(np.mean(own))))
    return rows


def vit_study(parts: list[str]) -> list[dict]:
    import jaxvis
    from vit_recipes import unit_scores

    vit = jaxvis.load(VIT)
    size = BUDGET["vit"]["size"]
    photos = sample_photos(PHOTOS, size)
    typical = np.median(unit_scores(vit, VIT_SPEC, photos), axis=1)  # (units,)
    values, seconds = {}, {}
    for recipe, grid in VIT_GRIDS.items():
        part = part_name(VIT, recipe, "cls", BUDGET["vit"], grid)
        images = run_part(part, lambda: invert(vit, recipe, grid, VIT_SPEC, BUDGET["vit"]))  # (cells, units, ...)
        seconds[recipe] = part_seconds(part)
        parts.append(part)
        scores = np.stack([unit_scores(vit, VIT_SPEC, images[:, u])[u] for u in range(images.shape[1])], 1)
        values[recipe] = scores  # (cells, units)
    best = np.max([v.max(axis=0) for v in values.values()], axis=0)  # (units,)
    rows = []
    for recipe, grid in VIT_GRIDS.items():
        works = values[recipe] - typical >= REACH * (best - typical)
        rows.append(summary(VIT, recipe, grid, works, works, seconds[recipe], f"CLS channels, reach >= {REACH:.0%}",
                            values=values[recipe].tolist()))
    return rows


def summary(model: str, recipe: str, grid: dict, top1: np.ndarray, top5: np.ndarray, seconds: float,
            criterion: str, **extra) -> dict:
    """A row: per cell, the share of classes (or units) that worked; the grid's share overall; the default
    cell's and the best cell's."""
    per_cell = top1.mean(axis=1)
    default = default_cell(recipe, grid)
    return {"model": model, "recipe": recipe, "criterion": criterion, "axes": {k: list(v) for k, v in grid.items()},
            "per_cell": per_cell.tolist(), "per_cell_top5": top5.mean(axis=1).tolist(),
            "share": float(top1.mean()), "share_top5": float(top5.mean()),
            "default_cell": default, "default_share": None if default is None else float(per_cell[default]),
            "best_share": float(per_cell.max()), "cells_all_working": int((per_cell == 1).sum()),
            "cells": len(per_cell), "seconds": seconds, **extra}


def default_cell(recipe: str, grid: dict) -> int | None:
    """The index of the cell holding the recipe's own defaults, if the grid has it."""
    from jaxvis.methods import pii

    defaults = ({f: getattr(pii.DEFAULTS, f) for f in grid} if recipe == "PII" else
                {"lr": 0.05, "tv": 0.0, "l2": 0.0, "jitter": 8, "scale": 0.1})
    wanted = {k: defaults[k] for k in grid}
    return next((i for i, cell in enumerate(cells(grid)) if cell == wanted), None)


def heat_map(row: dict, cell_px: int = 14) -> Image.Image:
    """One recipe on one model: rows = the first axis, columns = the other axes' combinations (the last
    fastest); each cell's colour its share of targets that worked (white 0, dark green 1)."""
    axes = list(row["axes"])
    shape = [len(v) for v in row["axes"].values()]
    shares = np.asarray(row["per_cell"]).reshape(shape[0], -1)
    texts = [f"{row['model']} - {row['recipe']}: {row['share']:.0%} of the grid works",
             f"columns: {' x '.join(axes[1:])} (the last fastest)", f"{row['criterion']}; red: the recipe's default"]
    row_labels = [f"{axes[0]} {value:g}" for value in row["axes"][axes[0]]]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max(measure.textlength(text) for text in row_labels)) + 8
    label_h, bottom = 34, 22
    width = max(left + shares.shape[1] * cell_px, *(int(measure.textlength(text)) for text in texts)) + 6
    picture = Image.new("RGB", (width, label_h + shares.shape[0] * cell_px + bottom), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((2, 2), texts[0], fill="black")
    draw.text((2, 16), texts[1], fill=(90, 90, 90))
    for r, values in enumerate(shares):
        draw.text((2, label_h + r * cell_px + 1), row_labels[r], fill="black")
        for c, share in enumerate(values):
            shade = tuple(int(255 - share * (255 - dark)) for dark in (20, 110, 50))
            x, y = left + c * cell_px, label_h + r * cell_px
            draw.rectangle([x, y, x + cell_px - 2, y + cell_px - 2], fill=shade, outline=(200, 200, 200))
            if row["default_cell"] is not None and r * shares.shape[1] + c == row["default_cell"]:
                draw.rectangle([x, y, x + cell_px - 2, y + cell_px - 2], outline=(200, 0, 0), width=2)
    draw.text((2, label_h + shares.shape[0] * cell_px + 6), texts[2], fill=(90, 90, 90))
    return picture


def figure(rows: list[dict]) -> Image.Image:
    maps = [heat_map(row) for row in rows]
    width = max(m.width for m in maps[0::2]) + max(m.width for m in maps[1::2]) + 10
    height = sum(max(a.height, b.height) for a, b in zip(maps[0::2], maps[1::2]))
    sheet, y = Image.new("RGB", (width, height), "white"), 0
    for pii_map, lucid_map in zip(maps[0::2], maps[1::2]):
        sheet.paste(pii_map, (0, y))
        sheet.paste(lucid_map, (pii_map.width + 10, y))
        y += max(pii_map.height, lucid_map.height)
    return sheet


def table(rows: list[dict]) -> str:
    header = ["model", "recipe", "grid", "works (share of cells × targets)", "top-5", "the model itself: top-1",
              "default cell", "best cell", "cells where every target works", "compute"]
    body = [[r["model"], r["recipe"], " × ".join(str(len(v)) for v in r["axes"].values()), f"{r['share']:.0%}",
             f"{r['share_top5']:.0%}", f"{r['own_top1']:.0%}" if "own_top1" in r else "—",
             "—" if r["default_share"] is None else f"{r['default_share']:.0%}",
             f"{r['best_share']:.0%}", f"{r['cells_all_working']} of {r['cells']}", f"{r['seconds'] / 60:.1f} min"]
            for r in rows]
    return markdown_table(header, body)


def axis_shares(rows: list[dict]) -> str:
    """Per model and recipe, the share that works at each value of each axis (over the rest of the grid): which
    hyperparameter the result depends on."""
    body = []
    for r in rows:
        shares = np.asarray(r["per_cell"]).reshape([len(v) for v in r["axes"].values()])
        for axis, (name, values) in enumerate(r["axes"].items()):
            means = shares.mean(axis=tuple(a for a in range(shares.ndim) if a != axis))
            body.append([r["model"], r["recipe"], name,
                         ", ".join(f"{value}: {mean:.0%}" for value, mean in zip(values, means))])
    return markdown_table(["model", "recipe", "axis", "works at each value"], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["classifiers", "vit"], help="run one half of the study")
    parser.add_argument("--pii-steps", type=int, help="PII's steps per zoom stage on the classifiers (default "
                        f"{BUDGET['classifier']['pii_steps']}; parts of another budget are kept apart)")
    parser.add_argument("--no-write", action="store_true", help="print, but leave RESULTS.md and docs alone")
    args = parser.parse_args()
    if args.pii_steps:
        BUDGET["classifier"]["pii_steps"] = args.pii_steps
    parts: list[str] = []
    start = time.perf_counter()
    rows = ([] if args.only == "vit" else classifier_study(parts)) + ([] if args.only == "classifiers" else
                                                                      vit_study(parts))
    markdown = table(rows) + "\n\nBy axis:\n\n" + axis_shares(rows)
    print(markdown)
    if args.no_write or args.only:
        return
    figure(rows).save(FIGURE)
    (HERE / "recipe_sensitivity.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    compute = sum(r["seconds"] for r in rows)
    write_section("recipe_sensitivity", "## One recipe or tuned weights: PII and Lucid over grids "
                  "(`benchmarks/recipe_sensitivity.py`)\n\n"
                  f"Machine: {machine()}. {compute / 60:.0f} min of optimization in all, each part timed as it ran "
                  "(other jobs shared the cores for part of it); the budget, the grids and the criteria are in the "
                  "script's docstring. Works: the share of grid cells × targets the judge (the other classifier, "
                  "top-1) accepts; for the ViT, CLS channels reaching 50% of the way from a typical photo to the "
                  "best image. The model itself: the inverted network's own top-1 on the same images. Heat maps: "
                  f"docs/recipe-sensitivity.png.\n\n{markdown}\n")


if __name__ == "__main__":
    main()
