"""`jaxvis concepts | dissect | ablate | examples`: what single units mean, from data.

    concepts   write the offline concept-segmentation set (colour names on real photos, texture collages)
    dissect    label every unit of a layer with the concept it segments best (network dissection)
    ablate     remove a class's most important units and watch its accuracy fall, against random units
    examples   the images that most excite each unit, and random directions of the same layer
    atlas      a static site: each unit's feature visualization, concept, top images and ablation effects
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.cli import distributed as across
from jaxvis.cli.common import DEFAULT_OUT, add_parser, check_counts, holding_output, load_model, weights_identity
from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import write_whole
from jaxvis.core.run_state import continue_or_start, save_request

COMMANDS = ("concepts", "dissect", "ablate", "examples", "atlas")
CONCEPTS_EXAMPLES = """  jaxvis concepts concepts/                     about 130 images: 28 photos x 3 crops, 48 collages
  jaxvis concepts concepts/ --collages 200 --seed 1"""
DISSECT_EXAMPLES = """  jaxvis concepts concepts/ && jaxvis dissect mobilenet_v2 features.7 --data concepts/
  jaxvis dissect mobilenet_v2 features.14 --data broden1_224/ --batch-size 64"""
ABLATE_EXAMPLES = """  jaxvis ablate mobilenet_v2 features.14 --class espresso --data photos/
  jaxvis ablate mobilenet_v2 features.16 --class 967 --data imagenet/val --top 16"""
ATLAS_EXAMPLES = """  jaxvis atlas mobilenet_v2 features.14 --data concepts/ --units 0-63
  jaxvis atlas mobilenet_v2 features.7 --data photos/ --concepts concepts/ --steps 256"""
EXAMPLES_EXAMPLES = """  jaxvis examples mobilenet_v2 features.14 --data photos/ --units 0-15 --directions 8
  jaxvis examples mobilenet_v2 features.7 --data concepts/images --top 6"""


def add_commands(commands: Any) -> None:
    concepts = add_parser(commands, "concepts", "write the offline concept-segmentation set for dissection",
                          CONCEPTS_EXAMPLES)
    concepts.add_argument("out", help="folder to write (the simple layout: images/, masks/, concepts.csv)")
    concepts.add_argument("--crops", type=int, default=3, help="square crops per photo")
    concepts.add_argument("--collages", type=int, default=48, help="texture collages")
    concepts.add_argument("--seed", type=int, default=0, help="the same seed writes the same set")
    concepts.set_defaults(run=run_concepts)

    dissect = add_parser(commands, "dissect", "label each unit of a layer with the concept it segments best "
                         "(network dissection)", DISSECT_EXAMPLES)
    _model_layer_data(dissect, "a concept-segmentation folder: Broden's layout or the simple one "
                      "(`jaxvis concepts` writes one)")
    dissect.add_argument("--quantile", type=float, default=0.005,
                         help="a unit is on in its top QUANTILE of activations (NetDissect's 0.005)")
    dissect.add_argument("--iou", type=float, default=0.04,
                         help="IoU at which a unit counts as a detector (NetDissect's 0.04)")
    dissect.add_argument("--seg-size", type=int, help="label maps are compared at this size (default: half the "
                         "input size, Broden's 112 at 224)")
    dissect.add_argument("--checkpoint-every", type=int, default=50,
                         help="batches between saved states of the two passes over the data (an interrupted "
                              "dissection continues with the same command)")
    dissect.add_argument("--fresh", action="store_true", help="start over, discarding an interrupted run's state")
    across.add_options(dissect)
    dissect.set_defaults(run=run_dissect)

    ablate = add_parser(commands, "ablate", "remove the units a class depends on most and watch its accuracy "
                        "fall, against random units (Bau et al. 2020)", ABLATE_EXAMPLES)
    _model_layer_data(ablate, "labelled images (class folders or NAME_LABEL.jpg: accuracy) or any folder of "
                      "images (agreement with the unablated model)")
    ablate.add_argument("--class", dest="target", required=True, help="an ImageNet class name or index")
    ablate.add_argument("--top", type=int, default=8, help="most important units listed")
    ablate.set_defaults(run=run_ablate)

    examples = add_parser(commands, "examples", "the images that most excite each unit, next to random "
                          "directions of the layer (Szegedy et al. 2013)", EXAMPLES_EXAMPLES)
    _model_layer_data(examples, "a folder of images (any depth) or a concept-segmentation folder")
    examples.add_argument("--units", default="0-15", help="units shown, e.g. 0-15 or 3,7,9")
    examples.add_argument("--directions", type=int, default=8, help="random unit-norm directions shown")
    examples.add_argument("--top", type=int, default=6, help="top images per unit")
    examples.add_argument("--seed", type=int, default=0, help="seeds the random directions")
    across.add_options(examples)
    examples.set_defaults(run=run_examples)

    atlas = add_parser(commands, "atlas", "a browsable site of a layer's units: feature visualization, concept, "
                       "top images, ablation effects", ATLAS_EXAMPLES)
    _model_layer_data(atlas, "images for the top examples and the ablation effects (a labelled folder gives "
                      "accuracy, any other agreement); a concept-segmentation folder is also dissected")
    atlas.add_argument("--units", default="0-15", help="units shown, e.g. 0-63")
    atlas.add_argument("--concepts", help="a concept-segmentation folder to dissect (default: --data if it is one)")
    atlas.add_argument("--steps", type=int, default=512, help="feature-visualization steps (Lucid's 512)")
    atlas.add_argument("--fv-size", type=int, default=128, help="feature-visualization image size (Lucid's 128)")
    atlas.add_argument("--directions", type=int, default=8, help="random directions shown for comparison")
    atlas.add_argument("--top", type=int, default=6, help="top images per unit")
    atlas.add_argument("--seed", type=int, default=0, help="seeds the visualizations and the random directions")
    atlas.set_defaults(run=run_atlas)


def _model_layer_data(parser: argparse.ArgumentParser, data_help: str) -> None:
    parser.add_argument("name", help="architecture, e.g. mobilenet_v2")
    parser.add_argument("layer", help="layer name, e.g. features.14 (`jaxvis layers NAME` lists them)")
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--size", type=int, help="input size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    parser.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/COMMAND-MODEL-LAYER)")


def _checked(args: argparse.Namespace, command: str) -> tuple[Any, Path]:
    """The model's card with the layer checked, and the output folder -- before anything loads."""
    from jaxvis.app.gallery import check_output
    from jaxvis.core.errors import UnknownLayerError
    from jaxvis.models.catalog import card
    from jaxvis.models.request import check_image_size

    arch = card(args.name)
    if args.layer not in arch.layers:
        raise UnknownLayerError([args.layer], arch.name, list(arch.layers))
    if not Path(args.data).is_dir():
        raise JaxvisError(f"--data {args.data} is not a folder")
    check_counts(batch_size=args.batch_size, size=args.size)
    if args.size:
        check_image_size(arch, args.size, args.size)
    return arch, check_output(Path(args.out) if args.out else DEFAULT_OUT / f"{command}-{arch.name}-{args.layer}")


def run_concepts(args: argparse.Namespace) -> None:
    from jaxvis.analysis.units.concept_set import build_concept_set

    if args.crops < 1 or args.collages < 0:
        raise JaxvisError("--crops must be at least 1 and --collages at least 0")
    start = time.perf_counter()
    root = build_concept_set(args.out, crops_per_photo=args.crops, collages=args.collages, seed=args.seed)
    count = len(list((root / "images").glob("*.png")))
    print(f"{count} images with colour and texture masks in {root} ({time.perf_counter() - start:.1f} s)")


def run_dissect(args: argparse.Namespace) -> None:
    from jaxvis.analysis.units.dissect import dissect
    from jaxvis.app.gallery import environment, prepare_output
    from jaxvis.data.segmentation import read_concepts

    arch, out = _checked(args, "dissect")
    check_counts(seg_size=args.seg_size, checkpoint_every=args.checkpoint_every)
    if not 0 < args.quantile < 1 or not 0 <= args.iou <= 1:
        raise JaxvisError(f"--quantile must lie strictly between 0 and 1 and --iou between 0 and 1; got "
                          f"{args.quantile} and {args.iou}")
    data = read_concepts(args.data)  # layout errors before the model loads
    across.check(args)
    state_dir = across.state_directory(args, out)
    request = {"model": arch.name, "layer": args.layer, "data": str(Path(args.data).resolve()),
               "quantile": args.quantile, "iou": args.iou, "size": args.size, "seg_size": args.seg_size,
               "batch_size": args.batch_size, "weights": weights_identity(args.weights)}
    across.join(args)
    with across.holding(out, state_dir) as writes:
        if writes:  # process 0 (the only one without --num-processes)
            continue_or_start(state_dir, request, args.fresh)
        model = load_model(args.name, args.weights)
        if writes:
            save_request(state_dir, request)
        result = dissect(model, args.layer, data, quantile=args.quantile, iou_threshold=args.iou, size=args.size,
                         seg_size=args.seg_size, batch_size=args.batch_size, checkpoint_dir=state_dir / "dissect",
                         every=args.checkpoint_every, progress=writes)
        if not writes:
            return
        out = prepare_output(out)
        record = {"command": "dissect", "data": str(args.data), **result.as_dict(), "environment": environment()}
        write_whole(out / "dissection.json", json.dumps(record, indent=1).encode())
        print(result.table())
        print(f"{result.images} images, {result.images_per_s['tally']:.1f} images/s in the tally; "
              f"{out / 'dissection.json'}")
    shutil.rmtree(state_dir, ignore_errors=True)  # complete and written: nothing to continue


def run_ablate(args: argparse.Namespace) -> None:
    from jaxvis.analysis.units import ablate
    from jaxvis.app.gallery import environment, prepare_output
    from jaxvis.data.imagenet import class_index, class_names, require_classifier

    arch, out = _checked(args, "ablate")
    require_classifier(arch.name, arch.num_classes, "jaxvis ablate (a class's accuracy)")
    target = class_index(args.target, arch.num_classes)
    check_counts(top=args.top)
    images = ablate.ablation_images(args.data)  # layout errors before the model loads
    with holding_output(out):
        model = load_model(args.name, args.weights)
        ranking = ablate.rank_units(model, args.layer, images, target, size=args.size, batch_size=args.batch_size)
        curve = ablate.curve(model, args.layer, images, ranking, size=args.size, batch_size=args.batch_size)
        out = prepare_output(out)
        name = class_names()[target]
        write_whole(out / "curve.svg", curve_svg(curve, name).encode())
        record = {"command": "ablate", "model": model.name, "layer": args.layer, "class": name, "metric": curve.metric,
                  "images_of_class": ranking.images, "baseline": ranking.baseline,
                  "top_units": [{"unit": u, "accuracy_drop": float(ranking.accuracy_drop[u]),
                                 "logit_drop": float(ranking.logit_drop[u])} for u in ranking.top(args.top)],
                  "curve": {"k": list(curve.ks), "class_top": curve.target_top.tolist(),
                            "class_random": curve.target_random.tolist(), "others_top": curve.others_top.tolist(),
                            "others_random": curve.others_random.tolist()},
                  "environment": environment()}
        write_whole(out / "ablation.json", json.dumps(record, indent=1).encode())
        print(f"{name}: {ranking.images} images; {curve.metric} {ranking.baseline:.2f} with every unit of {args.layer}")
        print(f"units whose removal alone hurts {name} most ({curve.metric}; ties by the class's mean logit):")
        print(f"{'unit':>5}  {'drop':>6}  {'logit drop':>10}")
        for unit in ranking.top(args.top):
            print(f"{unit:>5}  {ranking.accuracy_drop[unit]:>+6.2f}  {ranking.logit_drop[unit]:>+10.3f}")
        print(f"{'k':>5}  {name[:12]:>12} (top k)  (random k)  other classes (top k)  (random k)")
        for row in zip(curve.ks, curve.target_top, curve.target_random, curve.others_top, curve.others_random):
            print(f"{row[0]:>5}  {row[1]:>20.2f}  {row[2]:>10.2f}  {row[3]:>21.2f}  {row[4]:>10.2f}")
        print(f"curve: {out / 'curve.svg'}; record: {out / 'ablation.json'}")


def curve_svg(curve: Any, name: str, width: int = 460, height: int = 270) -> str:
    """The ablation curve as a standalone SVG: accuracy against k removed (log-spaced), four lines."""
    import html

    left, right, top, bottom = 40, 180, 30, 36
    xs = np.arange(len(curve.ks))
    scale_x = (width - left - right) / max(1, len(xs) - 1)

    def point(i: int, y: float) -> str:
        return f"{left + i * scale_x:.1f},{top + (1 - y) * (height - top - bottom):.1f}"

    lines = [(f"{name[:16]}, its top k", curve.target_top, "#c0392b", ""),
             (f"{name[:16]}, random k", curve.target_random, "#c0392b", "5,4"),
             ("other classes, top k", curve.others_top, "#2a6fd6", ""),
             ("other classes, random k", curve.others_random, "#2a6fd6", "5,4")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>']
    for y in (0, 0.5, 1):
        parts.append(f'<text x="{left - 6}" y="{top + (1 - y) * (height - top - bottom) + 4:.1f}" '
                     f'text-anchor="end">{y:.1f}</text>')
    for i, k in enumerate(curve.ks):
        parts.append(f'<text x="{left + i * scale_x:.1f}" y="{height - bottom + 14}" text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{left + (width - left - right) / 2:.0f}" y="{height - 6}" text-anchor="middle">'
                 f'units removed</text>')
    for row, (label, values, colour, dash) in enumerate(lines):
        shown = [(i, v) for i, v in enumerate(values) if np.isfinite(v)]
        if len(shown) > 1:
            points = " ".join(point(i, v) for i, v in shown)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" '
                         f'points="{points}"/>')
        parts.append(f'<line x1="{width - right + 8}" x2="{width - right + 28}" y1="{top + 14 * row + 6}" '
                     f'y2="{top + 14 * row + 6}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{width - right + 32}" y="{top + 14 * row + 10}">{html.escape(label)}</text>')
    parts.append(f'<text x="4" y="14">{html.escape(curve.metric)} of the class</text></svg>')
    return "".join(parts)


def _units(args: argparse.Namespace, arch: Any) -> list[int]:
    from jaxvis.models.request import parse_units

    units = parse_units(args.units, arch.layers[args.layer], f"for {args.layer} of {arch.name}").tolist()
    if args.directions < 0 or args.top < 1:
        raise JaxvisError("--directions must be at least 0 and --top at least 1")
    return units


def run_atlas(args: argparse.Namespace) -> None:
    from jaxvis.app.atlas import build_atlas
    from jaxvis.app.gallery import prepare_output
    from jaxvis.data.segmentation import read_concepts
    from jaxvis.models.request import check_request

    arch, out = _checked(args, "atlas")
    units = _units(args, arch)
    check_counts(steps=args.steps)
    check_request(arch, f"{args.layer}:{units[0]}", size=args.fv_size)  # the feature visualizations' size
    concepts = args.concepts
    if concepts is None and any((Path(args.data) / name).exists() for name in ("index.csv", "concepts.csv")):
        concepts = args.data
    concepts = None if concepts is None else read_concepts(concepts)  # layout errors before the model loads
    with holding_output(out):
        model = load_model(args.name, args.weights)
        start = time.perf_counter()
        site = build_atlas(model, args.layer, args.data, prepare_output(out), units=units, concepts=concepts,
                           directions=args.directions, top=args.top, steps=args.steps, fv_size=args.fv_size,
                           size=args.size, batch_size=args.batch_size, seed=args.seed)
        print(f"atlas of {len(units)} units of {args.layer} in {site} ({time.perf_counter() - start:.0f} s): open "
              f"{site / 'index.html'}", file=sys.stderr)


def run_examples(args: argparse.Namespace) -> None:
    from jaxvis.analysis.units.examples import example_strip, needed_images
    from jaxvis.analysis.units.survey import survey
    from jaxvis.app.gallery import prepare_output, write_gallery

    arch, out = _checked(args, "examples")
    units = _units(args, arch)
    across.check(args)
    across.join(args)
    with across.holding(out) as writes:
        model = load_model(args.name, args.weights)
        start = time.perf_counter()
        found = survey(model, args.layer, args.data, k=args.top, directions=args.directions, seed=args.seed,
                       size=args.size, batch_size=args.batch_size, progress=writes)
        if not writes:  # process 0 writes the gallery
            return
        shown = needed_images(found, units, list(range(args.directions)), args.top)
        images = found.read(shown)
        strips = [example_strip(found, u, images, count=args.top) for u in units]
        strips += [example_strip(found, d, images, directions=True, count=args.top) for d in range(args.directions)]
        labels = [f"unit {u}" for u in units] + [f"direction {d}" for d in range(args.directions)]
        values = [float(found.top.values[u, 0]) for u in units] + \
            [float(found.directions_top.values[d, 0]) for d in range(args.directions)]
        out = prepare_output(out)
        record = {"config": {"command": "examples", "model": model.name, "layer": args.layer, "units": units,
                             "directions": args.directions, "top": args.top, "seed": args.seed, "data": str(args.data)},
                  "images": len(found.paths), "images_per_s": found.images_per_s,
                  "total_s": time.perf_counter() - start,
                  "top_images": {label: [str(found.paths[i]) for i in np.asarray(top.images[index, :args.top])
                                         if i >= 0]
                                 for label, top, index in
                                 [(f"unit {u}", found.top, u) for u in units] +
                                 [(f"direction {d}", found.directions_top, d) for d in range(args.directions)]}}
        paths = write_gallery(out, f"{model.name} {args.layer}: dataset examples, units and random directions",
                              np.stack(strips), [label.replace(" ", "_") for label in labels], values, record,
                              stem="examples", value_name="peak activation", columns=1)
        print(f"{len(units)} units and {args.directions} random directions over {len(found.paths)} images "
              f"({found.images_per_s:.1f} images/s) in {out}  (gallery: {paths['index']})", file=sys.stderr)
