"""The causal effect of the DCGAN faces generator's units on face parts: named units against random ones.

For each sample seed: sample N faces (`jaxvis.analysis.gan.samples`), dissect `--layer` (GAN Dissection,
quantile 0.01), and for each concept measure, for the top-k units by IoU and for k random units of
the same layer (`--draws` random sets), the effects of `jaxvis.analysis.gan.effect`:

- removal *locality*: share of the pixel change inside the part over the part's share of the image;
- removal *presence*: relative change of the part's colour distance from the skin around it
  (< 0: the part fades into the skin);
- insertion *locality* and *presence* (units set to their top-1% level inside the part's region
  moved onto the skin; presence: how much more that region's colour looks like the part's).

Also the units ranked by optimized ablation coefficients (`rank_by_effect`, fitted on 64 faces of
another seed) against the IoU ranking, by removal presence and locality on the same faces.

Writes the `gan_effect` section of benchmarks/RESULTS.md (means over seeds ± their standard
deviation), benchmarks/gan_effect.json (every curve), docs/gan-effect-dcgan_faces.svg (the curves)
and docs/gan-edit-dcgan_faces.png (faces with the eye and mouth units removed).

    python benchmarks/gan_effect.py              # ~40 min on a 2-core CPU
    python benchmarks/gan_effect.py --samples 64 --seeds 0 1 --concepts eye   # a quick look
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from common import machine, markdown_table, write_section
from PIL import Image

import jaxvis
from jaxvis.analysis.gan.dissect import concept_units, dissect
from jaxvis.analysis.gan.effect import causal_effects, drawn, rank_by_effect
from jaxvis.analysis.gan.samples import latents, sample_concepts
from jaxvis.pieces.edits import UnitEdit

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "..", "docs")
RANKING_SEED = 100  # the faces the optimized ranking is fitted on (not among the evaluated seeds)
TABLE_KS = (1, 4, 8, 20)


def mean_spread(values: list[float]) -> str:
    return f"{np.mean(values):+.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:+.3f}"


def plot(curves: dict, path: str, concepts: list[str]) -> None:
    """Removal locality and presence against k per concept: named units (solid) and random (dashed, ± spread
    of the seeds' means), as one standalone SVG."""
    panel_w, panel_h, left, top = 250, 170, 48, 28
    measures = [("remove", "locality"), ("remove", "presence")]
    width, height = left + panel_w * len(concepts) + 20, top + (panel_h + 44) * len(measures)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11"><rect width="100%" height="100%" fill="white"/>']
    for row, (kind, measure) in enumerate(measures):
        for column, concept in enumerate(concepts):
            found = [c for c in curves[concept] if c["intervention"] == kind and c["measure"] == measure
                     and c["ranking"] == "iou"]
            if not found:
                continue
            ks = found[0]["ks"]
            named = np.array([c["named"] for c in found])
            chance = np.array([c["random"] for c in found])
            low, high = min(named.min(), chance.min()), max(named.max(), chance.max())
            low, high = (low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
            x0, y0 = left + column * panel_w, top + row * (panel_h + 44)
            w, h = panel_w - 30, panel_h - 20

            def point(i: int, v: float) -> str:
                return f"{x0 + i * w / max(1, len(ks) - 1):.1f},{y0 + (high - v) / (high - low) * h:.1f}"

            parts.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>')
            parts.append(f'<text x="{x0}" y="{y0 - 6}">{html.escape(concept)}: {kind} {measure}</text>')
            for value in (low, high):
                parts.append(f'<text x="{x0 - 4}" y="{y0 + (high - value) / (high - low) * h + 4:.1f}" '
                             f'text-anchor="end">{value:.2f}</text>')
            for i, k in enumerate(ks):
                parts.append(f'<text x="{x0 + i * w / max(1, len(ks) - 1):.1f}" y="{y0 + h + 13}" '
                             f'text-anchor="middle">{k}</text>')
            band = [point(i, v) for i, v in enumerate(chance.mean(0) + chance.std(0))] + \
                   [point(i, v) for i, v in reversed(list(enumerate(chance.mean(0) - chance.std(0))))]
            parts.append(f'<polygon points="{" ".join(band)}" fill="#2a6fd6" fill-opacity="0.15"/>')
            parts.append(f'<polyline fill="none" stroke="#2a6fd6" stroke-width="2" stroke-dasharray="5,4" '
                         f'points="{" ".join(point(i, v) for i, v in enumerate(chance.mean(0)))}"/>')
            parts.append(f'<polyline fill="none" stroke="#c0392b" stroke-width="2" '
                         f'points="{" ".join(point(i, v) for i, v in enumerate(named.mean(0)))}"/>')
    parts.append(f'<text x="{left}" y="{height - 8}">k units removed (x); red: the top-k units by IoU; blue dashed: '
                 f'k random units (band: ± the spread over seeds)</text></svg>')
    with open(path, "w") as file:
        file.write("".join(parts))


def edit_sheet(generator, found, path: str, count: int = 8) -> None:
    """Rows: faces; removing the 8 eye units; removing the 8 mouth units; removing 8 random units."""
    z = latents(count, generator.arch.latent_size, seed=7)
    width = found.iou.shape[0]
    rows = [drawn(generator, None, z)]
    for units in (concept_units(found, "eye", 8), concept_units(found, "mouth", 8),
                  list(np.random.default_rng(0).choice(width, 8, replace=False))):
        rows.append(drawn(generator, UnitEdit.removing(found.layer, units, width), z))
    sheet = np.concatenate([np.concatenate(list(row), axis=1) for row in rows])
    image = Image.fromarray(np.round(sheet * 255).astype(np.uint8))
    image.resize((image.width * 2, image.height * 2), Image.LANCZOS).save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layer", default="main.8")
    parser.add_argument("--concepts", nargs="+", default=["eye", "mouth", "lips", "nose"])
    parser.add_argument("--ranked", nargs="+", default=["eye", "mouth"], help="concepts also ranked by effect")
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()
    generator = jaxvis.load("dcgan_faces")
    start = time.perf_counter()
    rankings = {}
    fit = sample_concepts(generator, 64, seed=RANKING_SEED, progress=False)
    for concept in args.ranked:
        rankings[concept] = rank_by_effect(generator, args.layer, fit, concept)
        print(f"ranked {concept} by effect ({time.perf_counter() - start:.0f} s)", flush=True)
    curves: dict[str, list[dict]] = {concept: [] for concept in args.concepts}
    sizes: dict[str, list[int]] = {concept: [] for concept in args.concepts}
    found = None
    for seed in args.seeds:
        data = sample_concepts(generator, args.samples, seed=seed, progress=False)
        found = dissect(generator, args.layer, data=data, progress=False)
        for concept in args.concepts:
            results = causal_effects(generator, found, data, concept, draws=args.draws, seed=seed)
            if concept in rankings:
                results += causal_effects(generator, found, data, concept, draws=args.draws, seed=seed,
                                          ranking=rankings[concept], ranking_name="optimized",
                                          interventions=("remove",))
            curves[concept] += [dict(c.as_dict(), seed=seed) for c in results]
            sizes[concept].append(results[0].samples)
            print(f"seed {seed} {concept} done ({time.perf_counter() - start:.0f} s)", flush=True)
    with open(os.path.join(HERE, "gan_effect.json"), "w") as file:
        json.dump({"machine": machine(), "layer": args.layer, "samples": args.samples, "seeds": args.seeds,
                   "curves": curves}, file, indent=1)
    plot(curves, os.path.join(DOCS, "gan-effect-dcgan_faces.svg"), args.concepts)
    edit_sheet(generator, found, os.path.join(DOCS, "gan-edit-dcgan_faces.png"))
    rows = []
    for concept in args.concepts:
        kinds = sorted({(c["ranking"], c["intervention"], c["measure"]) for c in curves[concept]},
                       key=lambda t: (t[0] != "iou", t[1] != "remove", t[2]))
        for ranking, kind, measure in kinds:
            found_curves = [c for c in curves[concept] if (c["ranking"], c["intervention"], c["measure"]) ==
                            (ranking, kind, measure)]
            for k in TABLE_KS:
                i = found_curves[0]["ks"].index(k) if k in found_curves[0]["ks"] else None
                if i is None:
                    continue
                named = [c["named"][i] for c in found_curves]
                chance = [c["random"][i] for c in found_curves]
                rows.append([concept, ranking, kind, measure, str(k), mean_spread(named), mean_spread(chance),
                             f"{np.mean([c['random_spread'][i] for c in found_curves]):.3f}"])
    header = ["concept", "units by", "edit", "measure", "k", "named units", "random units",
              "spread of random draws"]
    samples = ", ".join(f"{c} {int(np.mean(n))}" for c, n in sizes.items())
    write_section("gan_effect", f"""## Causal effect of generator units on face parts (`benchmarks/gan_effect.py`)

{machine()}. DCGAN faces generator (`dcgan_faces`), layer `{args.layer}` dissected on {args.samples} sampled
faces per seed (seeds {', '.join(map(str, args.seeds))}; quantile 0.01). Per concept, the top-k units by IoU
(*iou*) or by optimized ablation coefficients fitted on 64 faces of seed {RANKING_SEED} (*optimized*), against
{args.draws} sets of k random units of the layer, over the faces that show the part (mean count per seed:
{samples}). Cells: mean over seeds ± standard deviation of the seeds' means; the last column is the mean
spread (standard deviation) between random draws within a seed. Measures (`jaxvis/analysis/gan/effect.py`):
*locality* = share of the pixel change inside the part's region over the region's share of the image (1 = spread
evenly); removal *presence* = relative change of the distance between the part's mean colour and the skin
around it (< 0: the part fades); insertion *presence* = relative decrease of the distance between the target
region's colour and the part's own (> 0: it looks more like the part). Curves: `docs/gan-effect-dcgan_faces.svg`.

{markdown_table(header, rows)}
""")
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
