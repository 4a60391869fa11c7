"""Lucid's recipe against Plug-In Inversion's on the trained DINOv2 ViT-S/14, with no change of code.

Two measurements, both at 112 px (an 8 x 8 patch grid: the CPU budget of this machine):

1. Feature visualization: the same units under `jaxvis.visualize` (Lucid: Fourier
   parameterization, decorrelated colour, jitter/scale/rotate, Adam 0.05, 512 steps) and
   `jaxvis.methods.pii.visualize_units` (PII: zoom + centering over 7 stages, jitter, ColorShift,
   an ensemble of 4 views, its Adam). Score: the unit's objective on the final image (no
   augmentation), against its values on scikit-image's photos: (value - median) / (max - median)
   -- "how much of the target activation each recipe reaches" (1.0 = as high as the best photo).
2. Feature inversion (Mahendran & Vedaldi) of three scikit-image photos from the tokens of
   blocks 0, 2, 5, 8 and 11, under three recipes: M&V's own (pixels, the α-norm and TV prior,
   `jaxvis.reconstruct`), Lucid's and PII's (the normalized feature loss alone, each with its
   parameterization and augmentations). Scores from outside the ViT: the cosine similarity of
   MobileNetV2's `features.14` maps of the reconstruction and the photo (at 224 px), and the
   pixel correlation with the photo.

Writes docs/vit-recipes-dinov2.jpg (the units under both recipes) and
docs/vit-inversion-dinov2.jpg (reconstructions per depth), benchmarks/vit_recipes.json and the
`vit_recipes` section of benchmarks/RESULTS.md.

    python benchmarks/vit_recipes.py            # ~30 min on a 2-core CPU; finished parts are kept
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax.numpy as jnp
import numpy as np
from common import machine, markdown_table, sample_photos, write_section
from PIL import Image

import jaxvis
from jaxvis.app.gallery import contact_sheet
from jaxvis.engine.optimize import optimize
from jaxvis.methods import pii
from jaxvis.methods.feature_inversion import reconstruct
from jaxvis.methods.feature_visualization import objective_maker
from jaxvis.models.catalog import card_of
from jaxvis.models.request import parse_spec
from jaxvis.pieces.objectives import feature_match
from jaxvis.pieces.optimizers import adam
from jaxvis.pieces.param import fourier
from jaxvis.pieces.transforms import lucid_standard, resize_images

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "..", "docs")
OUT = os.path.join(HERE, "out")  # finished parts, kept between runs (git-ignored)
SIZE = 112
SPECS = ("backbone.encoder.layer.6.mlp.activation:0-3@patches", "backbone.encoder.layer.10:0-3@cls")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "brick", "grass", "gravel",
          "colorwheel", "camera")
INVERTED = ("coffee", "chelsea", "astronaut")
DEPTHS = (0, 2, 5, 8, 11)
LUCID_STEPS, PII_STEPS, PII_ENSEMBLE = 512, 128, 4  # PII: per stage (7 stages at 112 px)
INVERSION_STEPS = {"M&V": 400, "Lucid": 512, "PII": 64, "PII-aligned": 64}  # PII: per stage
# PII-aligned: PII's zoom, centering, ensemble and Adam without its jitter and ColorShift -- the ablation that
# shows which part of the recipe a position- and colour-exact objective cannot bear.
PII_RECIPES = {"PII": pii.DEFAULTS, "PII-aligned": pii.Recipe(jitter=0, color_shift=(0.0, 0.0))}


def photos(names) -> np.ndarray:
    return sample_photos(names, SIZE)


def unit_scores(vit, spec: str, images: np.ndarray) -> np.ndarray:
    """(units, len(images)) each unit's objective on each image alone, as the recipes maximize it."""
    unit_spec = parse_spec(card_of(vit.arch), spec)
    make = objective_maker(unit_spec, "channel")
    acts = vit(images, capture=[unit_spec.layer])
    return np.array([[float(make(unit_spec.layer, int(u))({k: v[i : i + 1] for k, v in acts.items()}))
                      for i in range(len(images))] for u in unit_spec.units])


def short_name(spec: str) -> str:
    """'backbone.encoder.layer.6.mlp.activation:0-3@patches' -> 'L6 mlp', '...layer.10:0-3@cls' -> 'L10 cls'
    (a label that fits under a tile)."""
    layer, token = spec.split(":")[0], spec.split("@")[1]
    parts = layer.removeprefix("backbone.encoder.layer.").split(".")
    return f"L{parts[0]} {parts[1] if len(parts) > 1 else token}"


def reached(values: np.ndarray, on_photos: np.ndarray) -> np.ndarray:
    """How far above a typical photo each unit got, in units of the best photo's lead over a typical one:
    (value - median over photos) / (max over photos - median over photos); 1 = as high as the best photo."""
    typical = np.median(on_photos, axis=1)
    return (values - typical) / (on_photos.max(axis=1) - typical)


def feature_visualization(vit, reference: np.ndarray) -> tuple[list[dict], list[np.ndarray], list[str]]:
    rows, pictures, labels = [], [], []
    for spec in SPECS:
        on_photos = unit_scores(vit, spec, reference)
        for recipe in ("Lucid", "PII"):
            start = time.perf_counter()
            images = (jaxvis.visualize(vit, spec, size=SIZE, steps=LUCID_STEPS) if recipe == "Lucid" else
                      pii.visualize_units(vit, spec, size=SIZE, steps=PII_STEPS, ensemble=PII_ENSEMBLE))
            seconds = time.perf_counter() - start
            values = np.diag(unit_scores(vit, spec, images))
            score = reached(values, on_photos)
            rows.append({"spec": spec, "recipe": recipe, "seconds": seconds, "values": values.tolist(),
                         "photos_max": on_photos.max(axis=1).tolist(),
                         "photos_median": np.median(on_photos, axis=1).tolist(), "reached": score.tolist()})
            pictures.extend(images)
            labels.extend(f"{recipe} {short_name(spec)}:{u} {r:.1f}"
                          for u, r in zip(parse_spec(card_of(vit.arch), spec).units, score))
            print(spec, recipe, f"{seconds:.0f} s", np.round(values, 3), np.round(score, 2), flush=True)
    return rows, pictures, labels


def invert(vit, recipe: str, layer: str, images: np.ndarray) -> np.ndarray:
    targets = vit(images, capture=[layer])[layer]
    steps = INVERSION_STEPS[recipe]
    if recipe == "M&V":
        return reconstruct(vit, images, layer, steps=steps).images[:, 0]
    match = lambda index: feature_match(layer, jnp.take(targets, index, axis=0))
    units = np.arange(len(images))
    if recipe in PII_RECIPES:
        return pii.plug_in(vit, match, units, size=SIZE, steps=steps, ensemble=PII_ENSEMBLE, recipe=PII_RECIPES[recipe],
                           label=f"{recipe} invert {layer}", model_size=SIZE).images[:, 0]
    return optimize(vit, match, units=units, param=fourier(SIZE), transform=lucid_standard(SIZE),
                    optimizer=adam(0.05), steps=steps).images[:, 0]


def inversion_scores(judge, images: np.ndarray, originals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: cosine similarity of MobileNetV2 features.14 at 224 px, and pixel correlation."""
    feats = lambda x: np.asarray(judge(np.asarray(resize_images(x, 224)), capture=["features.14"])["features.14"])
    a, b = feats(images).reshape(len(images), -1), feats(originals).reshape(len(images), -1)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    pixels = np.array([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(images, originals)])
    return cosine, pixels


def feature_inversion(vit) -> tuple[list[dict], list[np.ndarray], list[str]]:
    judge, originals = jaxvis.load("mobilenet_v2"), photos(INVERTED)
    rows, pictures, labels = [], [], []
    for depth in DEPTHS:
        layer = f"backbone.encoder.layer.{depth}"
        for recipe in INVERSION_STEPS:
            start = time.perf_counter()
            images = np.asarray(invert(vit, recipe, layer, originals), np.float32)
            seconds = time.perf_counter() - start
            cosine, pixels = inversion_scores(judge, images, originals)
            rows.append({"layer": layer, "recipe": recipe, "seconds": seconds, "mobilenet_cosine": cosine.tolist(),
                         "pixel_correlation": pixels.tolist()})
            pictures.append(images[0])
            labels.append(f"{recipe} b{depth} {cosine[0]:.2f}")
            print(layer, recipe, f"{seconds:.0f} s", np.round(cosine, 2), np.round(pixels, 2), flush=True)
    return rows, pictures, labels


def sheet(pictures: list[np.ndarray], labels: list[str], columns: int, name: str) -> str:
    path = os.path.join(DOCS, name)
    Image.fromarray(contact_sheet(np.asarray(resize_images(np.stack(pictures), 160)), labels,
                                  columns=columns)).save(path, quality=90)
    return path


def report(visualization: list[dict], inversion: list[dict]) -> str:
    fv = [[f"`{r['spec']}`", r["recipe"], f"{r['seconds']:.0f}", " ".join(f"{x:.1f}" for x in r["reached"]),
           f"{np.median(r['reached']):.1f}"] for r in visualization]
    inv = [[f"`{r['layer']}`", r["recipe"], f"{r['seconds']:.0f}",
            f"{np.mean(r['mobilenet_cosine']):.3f}", f"{np.mean(r['pixel_correlation']):.3f}"] for r in inversion]
    return f"""## Lucid's recipe vs Plug-In Inversion's on the DINOv2 ViT (`benchmarks/vit_recipes.py`)

{machine()}. 112 px (8 x 8 patches). Lucid: {LUCID_STEPS} steps; PII: 7 stages x {PII_STEPS} steps, ensemble
{PII_ENSEMBLE}. *Reached*: each unit's objective on the final image, (value − median) / (max − median) of
its values on {len(PHOTOS)} scikit-image photos (1.0 = as high as the best photo). Pictures: `docs/vit-recipes-dinov2.jpg`.

{markdown_table(["units", "recipe", "s", "reached per unit", "median"], fv)}

Feature inversion of {", ".join(INVERTED)} from a block's tokens (M&V: {INVERSION_STEPS["M&V"]} steps; Lucid:
{INVERSION_STEPS["Lucid"]}; PII: 7 x {INVERSION_STEPS["PII"]}, ensemble {PII_ENSEMBLE}; PII-aligned: the same
without jitter and ColorShift); scored by MobileNetV2
(`features.14` cosine similarity at 224 px) and by pixel correlation, means over the photos.
Pictures (coffee): `docs/vit-inversion-dinov2.jpg`.

{markdown_table(["tokens of", "recipe", "s", "MobileNetV2 cosine", "pixel correlation"], inv)}
"""


def run_part(name: str, compute) -> tuple[list[dict], list[np.ndarray], list[str]]:
    """Run one part, or read it back from benchmarks/out/ where it already finished (`--again` reruns it):
    a failure in one part never costs the other's minutes."""
    path = os.path.join(OUT, f"vit_recipes_{name}.npz")
    if os.path.exists(path) and name not in ARGS.again:
        with np.load(path) as kept:
            return json.loads(str(kept["rows"])), list(kept["pictures"]), list(kept["labels"])
    rows, pictures, labels = compute()
    os.makedirs(OUT, exist_ok=True)
    np.savez(path, rows=json.dumps(rows), pictures=np.stack(pictures), labels=np.array(labels))
    return rows, pictures, labels


def main() -> None:
    vit = jaxvis.load("dinov2_vits14_focus")
    visualization, fv_pictures, fv_labels = run_part("visualization",
                                                     lambda: feature_visualization(vit, photos(PHOTOS)))
    inversion, inv_pictures, inv_labels = run_part("inversion", lambda: feature_inversion(vit))
    print(sheet(fv_pictures, fv_labels, 8, "vit-recipes-dinov2.jpg"),
          sheet(inv_pictures, inv_labels, len(INVERSION_STEPS), "vit-inversion-dinov2.jpg"))
    with open(os.path.join(HERE, "vit_recipes.json"), "w") as f:
        json.dump({"machine": machine(), "visualization": visualization, "inversion": inversion}, f, indent=1)
    write_section("vit_recipes", report(visualization, inversion))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--again", default="", help="parts to rerun though kept: visualization,inversion")
    ARGS = parser.parse_args()
    main()
