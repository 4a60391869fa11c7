"""`jaxvis invert | dream | reconstruct | style`: the methods of `jaxvis.methods` on the command line.

Each command checks its request, loads the model, runs with progress bars on
stderr, saves every finished stage under --out/stages/, and writes PNGs, a
contact sheet, an `index.html` gallery and a `run.json` record to --out.
Defaults are read from each method's `DEFAULTS` recipe, the same ones the
library and the benchmarks use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.cli.common import (DEFAULT_OUT, add_common, add_parser, class_probabilities, finish, load_model,
                               plain, record, stage_saver)
from jaxvis.errors import JaxvisError, UnknownLayerError


COMMANDS = ("invert", "dream", "reconstruct", "style")


def add_commands(commands: Any) -> None:
    from jaxvis.methods import INVERSIONS
    from jaxvis.methods.deepdream import DEFAULTS as DREAM
    from jaxvis.methods.deepinversion import DEFAULTS as DI
    from jaxvis.methods.feature_inversion import STEPS as RECONSTRUCT_STEPS
    from jaxvis.methods.logit import DEFAULTS as LOGIT
    from jaxvis.methods.pii import DEFAULTS as PII
    from jaxvis.methods.style import ADAM_STEPS, LBFGS_STEPS, STYLE_WEIGHT

    invert = add_parser(commands, "invert", "class images by Plug-In Inversion, DeepInversion or logit maximization",
                        "  jaxvis invert mobilenet_v2 --classes goldfish,volcano          Plug-In Inversion, the "
                        "reference budget\n"
                        "  jaxvis invert mobilenet_v2 --classes 1,207 --size 128 --ensemble 8 --steps 100\n"
                        "  jaxvis invert mobilenet_v2 --classes 1,207 --method deepinversion --steps 600")
    invert.add_argument("name", help="architecture, e.g. mobilenet_v2")
    invert.add_argument("--classes", required=True, help="indices or ImageNet names: 1,207,980 or 'goldfish,volcano'")
    invert.add_argument("--method", default="pii", choices=list(INVERSIONS),
                        help="pii (Plug-In Inversion, any classifier), deepinversion (BatchNorm networks) or logit "
                             "(Lucid's logit maximization, the baseline)")
    invert.add_argument("--ensemble", type=int, help=f"pii: ColorShift views per step (default {PII.ensemble})")
    invert.add_argument("--size", type=int, help="final image size (default: the model's input size)")
    invert.add_argument("--steps", type=int,
                        help=f"pii: steps per zoom stage (default {PII.steps}); deepinversion: total steps, split "
                             f"{'/'.join(str(n) for _, n in DI.resolutions)} over its resolutions (default "
                             f"{DI.steps}); logit: steps (default {LOGIT.steps})")
    add_common(invert, "invert-METHOD-MODEL")
    invert.set_defaults(run=run_invert)

    dream = add_parser(commands, "dream", "DeepDream a photo on one or more layers",
                       "  jaxvis dream sample:astronaut --layer features.10 --size 384\n"
                       "  jaxvis dream photo.jpg --model mobilenet_v2 --layer features.6,features.10 --octaves 3")
    dream.add_argument("image", help="image file or sample:NAME (scikit-image's photos: astronaut, chelsea, ...)")
    dream.add_argument("--model", default="mobilenet_v2", help="architecture")
    dream.add_argument("--layer", required=True, help="layer name(s), comma-separated")
    dream.add_argument("--octaves", type=int, default=DREAM.octaves, help="image scales, smallest first")
    dream.add_argument("--octave-scale", type=float, default=DREAM.octave_scale, help="size ratio between octaves")
    dream.add_argument("--steps", type=int, default=DREAM.steps, help="steps per octave")
    dream.add_argument("--size", type=int, help="resize the longer side to this many pixels first")
    dream.add_argument("--tile-size", type=int, default=DREAM.tile_size,
                       help="larger images go through the network in tiles of this size")
    add_common(dream, "dream-MODEL")
    dream.set_defaults(run=run_dream)

    rec = add_parser(commands, "reconstruct", "feature inversion: images from a layer's activations",
                     "  jaxvis reconstruct sample:coffee sample:chelsea --layer features.6 --size 160")
    rec.add_argument("images", nargs="+", help="image files or sample:NAME (reconstructed in parallel)")
    rec.add_argument("--model", default="mobilenet_v2", help="architecture")
    rec.add_argument("--layer", required=True, help="the layer whose activations are matched")
    rec.add_argument("--size", type=int, help="square size (default: the model's input size)")
    rec.add_argument("--steps", type=int, default=RECONSTRUCT_STEPS, help="Adam steps")
    add_common(rec, "reconstruct-MODEL")
    rec.set_defaults(run=run_reconstruct)

    style = add_parser(commands, "style", "neural style transfer (Gatys et al.)",
                       "  jaxvis style sample:chelsea sample:brick --size 160 --param pixel --steps 150\n"
                       "  jaxvis style photo.jpg painting.jpg --model vgg19 --weights vgg19.pth")
    style.add_argument("content", help="content image file or sample:NAME")
    style.add_argument("style", help="style image file or sample:NAME")
    style.add_argument("--model", default="mobilenet_v2", help="architecture")
    style.add_argument("--style-layers", help="comma-separated layer names (default: per model)")
    style.add_argument("--content-layer", help="layer name (default: per model)")
    style.add_argument("--param", default="auto", choices=["auto", "pixel", "fourier"],
                       help="pixel (Gatys, from the content image), fourier (decorrelated, under Lucid's transforms) "
                            "or auto (pixel for VGG, fourier otherwise)")
    style.add_argument("--optimizer", default="auto", choices=["auto", "lbfgs", "adam"],
                       help="auto: L-BFGS for pixels, Adam for Fourier")
    style.add_argument("--size", type=int, default=224, help="square size of the result")
    style.add_argument("--steps", type=int, help=f"default {LBFGS_STEPS} (L-BFGS) or {ADAM_STEPS} (Adam)")
    style.add_argument("--pyramid", type=int, default=1, help="levels of an image pyramid (pixel only)")
    style.add_argument("--style-weight", type=float,
                       help=f"default {STYLE_WEIGHT['pixel']:g} for pixel, {STYLE_WEIGHT['fourier']:g} for fourier")
    add_common(style, "style-MODEL")
    style.set_defaults(run=run_style)


def run_invert(args: argparse.Namespace) -> None:
    from jaxvis.gallery import check_output, prepare_output
    from jaxvis.imagenet import class_indices, class_names, require_classifier
    from jaxvis.load import architecture
    from jaxvis.methods import inversion_method, invert

    inversion_method(args.method)
    arch = architecture(args.name)
    require_classifier(arch.name, arch.num_classes, f"jaxvis invert --method {args.method} (class inversion)")
    classes = class_indices([c.strip() for c in args.classes.split(",") if c.strip()], arch.num_classes)
    if not len(classes):
        raise JaxvisError("--classes names no class; e.g. --classes goldfish,207")
    if args.ensemble and args.method != "pii":
        raise JaxvisError(f"--ensemble is a Plug-In Inversion setting; --method {args.method} has no ensemble")
    options: dict[str, Any] = {"size": args.size, "seed": args.seed, "steps": args.steps,
                               "ensemble": args.ensemble}
    options = {k: v for k, v in options.items() if v is not None}
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"invert-{args.method}-{arch.name}")
    model = load_model(args.name, args.weights)
    out = prepare_output(out)
    labels = [f"{k:02d}-{c:04d}-{class_names()[c].replace(' ', '_')}" for k, c in enumerate(classes)]
    print(f"{args.method}: {len(classes)} classes of {model.name}", file=sys.stderr)
    start = time.perf_counter()
    result = invert(model, classes, method=args.method, on_stage=stage_saver(out, labels), **options)
    images = result.images[:, 0]
    probabilities = class_probabilities(model, images, model.input_size)
    values = [float(p[c]) for p, c in zip(probabilities, classes)]
    run_record = record(model, "invert", {"method": args.method, "classes": classes.tolist(), **plain(options)},
                        result, start)
    run_record["classes"] = {label: {"probability": value, "top1": class_names()[int(np.argmax(p))]}
                             for label, value, p in zip(labels, values, probabilities)}
    curves = [result.history[:, k] for k in range(result.history.shape[1])] if result.history.shape[1] == len(classes) \
        else None
    finish(out, f"{model.name}: {args.method} inversion", images, labels, values, run_record, stem="class",
           value_name="p(target)", curves=curves)


def run_dream(args: argparse.Namespace) -> None:
    from jaxvis.gallery import check_output, prepare_output
    from jaxvis.io import read_image, resize
    from jaxvis.load import architecture
    from jaxvis.methods import dream

    arch = architecture(args.model)
    layers = [layer.strip() for layer in args.layer.split(",") if layer.strip()]
    check_layers(arch, layers)
    image = read_image(args.image)
    if args.size:
        scale = args.size / max(image.shape[:2])
        image = resize(image, round(image.shape[0] * scale), round(image.shape[1] * scale))
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"dream-{arch.name}")
    model = load_model(args.model, args.weights)
    out = prepare_output(out)
    start = time.perf_counter()
    result = dream(model, image, layers, octaves=args.octaves, octave_scale=args.octave_scale, steps=args.steps,
                   tile_size=args.tile_size, seed=args.seed, on_stage=stage_saver(out, ["dream"]))
    options = {"image": args.image, "layers": layers, "octaves": args.octaves, "octave_scale": args.octave_scale,
               "steps": args.steps, "tile_size": args.tile_size}
    run_record = record(model, "dream", options, result, start)
    finish(out, f"{model.name}: DeepDream on {', '.join(layers)}", np.stack([image, result.images[0, 0]]),
           ["input", "dream"], [float("nan"), float(result.objective[0])], run_record, stem="image",
           curves=[None, result.history[:, 0]])


def run_reconstruct(args: argparse.Namespace) -> None:
    from jaxvis.gallery import check_output, prepare_output
    from jaxvis.io import read_photo
    from jaxvis.load import architecture
    from jaxvis.methods import reconstruct

    arch = architecture(args.model)
    check_layers(arch, [args.layer])
    size = args.size or arch.input_size
    originals = np.stack([read_photo(source, size, arch.min_size, arch.name) for source in args.images])
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"reconstruct-{arch.name}")
    model = load_model(args.model, args.weights)
    out = prepare_output(out)
    start = time.perf_counter()
    result = reconstruct(model, originals, args.layer, steps=args.steps, seed=args.seed)
    images, labels, values, curves = [], [], [], []
    for k, (original, rebuilt, value) in enumerate(zip(originals, result.images[:, 0], result.objective)):
        images += [original, rebuilt]
        labels += [f"{k}-original", f"{k}-{args.layer}"]
        values += [float("nan"), float(value)]
        curves += [None, result.history[:, k]]
    run_record = record(model, "reconstruct", {"images": args.images, "layer": args.layer, "size": size,
                                               "steps": args.steps}, result, start)
    finish(out, f"{model.name}: reconstructions from {args.layer}", np.stack(images), labels, values, run_record,
           stem="image", curves=curves)


def run_style(args: argparse.Namespace) -> None:
    from jaxvis.gallery import check_output, prepare_output
    from jaxvis.io import read_photo
    from jaxvis.load import architecture
    from jaxvis.methods import style_losses, transfer_style

    arch = architecture(args.model)
    layers = [name.strip() for name in args.style_layers.split(",")] if args.style_layers else None
    check_layers(arch, (layers or []) + ([args.content_layer] if args.content_layer else []))
    content = read_photo(args.content, args.size, arch.min_size, arch.name)
    style = read_photo(args.style, args.size, arch.min_size, arch.name)
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"style-{arch.name}")
    model = load_model(args.model, args.weights)
    out = prepare_output(out)
    options = {"style_layers": layers, "content_layer": args.content_layer, "param": args.param,
               "optimizer": args.optimizer, "steps": args.steps, "pyramid": args.pyramid,
               "style_weight": args.style_weight}
    start = time.perf_counter()
    result = transfer_style(model, content, style, seed=args.seed, on_stage=stage_saver(out, ["x", "content", "style"]),
                            **options)
    image = result.images[0, 0]
    losses = style_losses(model, image, content, style, layers, args.content_layer)
    run_record = record(model, "style", {"content": args.content, "style": args.style, "size": args.size,
                                         **options}, result, start)
    run_record["losses"] = {"result": losses, "content_image": style_losses(model, content, content, style, layers,
                                                                            args.content_layer)}
    finish(out, f"{model.name}: style transfer", np.stack([content, style, image]), ["content", "style", "result"],
           [float("nan"), float("nan"), losses["style"]], run_record, stem="image", value_name="style loss",
           curves=[None, None, result.history[:, 0]])


def check_layers(arch: Any, layers: list[str]) -> None:
    """Unknown layer names fail before the model loads, with the nearest valid names."""
    from jaxvis.models.model import layer_shapes

    valid = list(layer_shapes(arch, arch.input_size))
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        raise UnknownLayerError(unknown, arch.name, valid)
