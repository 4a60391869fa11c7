"""`jaxvis invert | dream | reconstruct | style`: the methods of `jaxvis.methods` on the command line.

Each command checks its request, loads the model, runs with progress bars on
stderr, saves every finished stage under --out/stages/, and writes PNGs, a
contact sheet, an `index.html` gallery and a `run.json` record to --out.
Defaults are read from each method's `DEFAULTS` recipe, the same ones the
library and the benchmarks use.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.cli.common import (DEFAULT_OUT, add_common, add_parser, cell_labels, check_counts, class_probabilities,
                               finish, holding_output, integer_list, load_model, number_list, plain, record,
                               run_directory, stage_saver, weights_identity, write_grid_page)
from jaxvis.core.errors import JaxvisError, UnknownLayerError
from jaxvis.core.run_state import continue_or_start, locked, save_request
from jaxvis.engine.run_config import RunConfig
from jaxvis.engine.sweeps import Grid


COMMANDS = ("invert", "dream", "reconstruct", "style")


def add_commands(commands: Any) -> None:
    from jaxvis.methods import INVERSIONS
    from jaxvis.methods.deepdream import DEFAULTS as DREAM
    from jaxvis.methods.deepinversion import DEFAULTS as DI
    from jaxvis.methods.feature_inversion import LAMBDA_ALPHA, LAMBDA_TV, LEARNING_RATE
    from jaxvis.methods.feature_inversion import STEPS as RECONSTRUCT_STEPS
    from jaxvis.methods.logit import DEFAULTS as LOGIT
    from jaxvis.methods.pii import DEFAULTS as PII
    from jaxvis.methods.style import ADAM_LEARNING_RATE, ADAM_STEPS, CONTENT_WEIGHT, LBFGS_STEPS, STYLE_WEIGHT

    invert = add_parser(commands, "invert", "class images by Plug-In Inversion, DeepInversion or logit maximization",
                        "  jaxvis invert mobilenet_v2 --classes goldfish,volcano          Plug-In Inversion, the "
                        "reference budget: ~30 min a class on 2 CPU cores\n"
                        "  jaxvis invert mobilenet_v2 --classes goldfish,volcano --method logit --size 128 --steps 128"
                        "   ~1 min\n"
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
    invert.add_argument("--lr", type=number_list, help=f"learning rate (default: pii {PII.learning_rate:g}, "
                        f"deepinversion {DI.learning_rate:g}, logit {LOGIT.learning_rate:g}); a comma list sweeps it: "
                        "every combination of the swept values runs in each stage's one program, grid.html shows them")
    invert.add_argument("--jitter", type=integer_list, help=f"pii and deepinversion: pixels of the random roll each "
                        f"step (default {PII.jitter} and {DI.jitter}); a comma list sweeps it")
    add_common(invert, "invert-METHOD-MODEL")
    invert.add_argument("--fresh", action="store_true",
                        help="start over, discarding an interrupted run's finished stages (the same command "
                             "otherwise continues it)")
    invert.set_defaults(run=run_invert)

    dream = add_parser(commands, "dream", "DeepDream a photo on one or more layers",
                       "  jaxvis dream mobilenet_v2 sample:astronaut --layer features.10 --size 384\n"
                       "  jaxvis dream mobilenet_v2 photo.jpg --layer features.6,features.10 --octaves 3")
    dream.add_argument("name", help="architecture, e.g. mobilenet_v2")
    dream.add_argument("image", nargs="?", help="image file or sample:NAME (scikit-image's photos: astronaut, "
                       "chelsea, ...)")
    add_old_model_option(dream)
    dream.add_argument("--layer", required=True, help="layer name(s), comma-separated")
    dream.add_argument("--octaves", type=int, default=DREAM.octaves, help="image scales, smallest first")
    dream.add_argument("--octave-scale", type=float, default=DREAM.octave_scale, help="size ratio between octaves")
    dream.add_argument("--steps", type=int, default=DREAM.steps, help="steps per octave")
    dream.add_argument("--size", type=int, help="resize the longer side to this many pixels first")
    dream.add_argument("--tile-size", type=int, default=DREAM.tile_size,
                       help="larger images go through the network in tiles of this size")
    dream.add_argument("--step-size", type=number_list, default=round(DREAM.step_size * 255, 6),
                       help="each step's size on the 0-255 scale (the notebook's); a comma list sweeps it: every "
                            "combination of the swept values dreams in one program, grid.html shows them")
    dream.add_argument("--jitter", type=integer_list, default=DREAM.jitter,
                       help="pixels of the random roll each step; a comma list sweeps it")
    add_common(dream, "dream-MODEL")
    dream.set_defaults(run=run_dream)

    rec = add_parser(commands, "reconstruct", "feature inversion: images from a layer's activations",
                     "  jaxvis reconstruct mobilenet_v2 sample:coffee sample:chelsea --layer features.6 --size 160")
    rec.add_argument("name", help="architecture, e.g. mobilenet_v2")
    rec.add_argument("images", nargs="*", help="image files or sample:NAME (reconstructed in parallel)")
    add_old_model_option(rec)
    rec.add_argument("--layer", required=True, help="the layer whose activations are matched")
    rec.add_argument("--size", type=int, help="square size (default: the model's input size)")
    rec.add_argument("--steps", type=int, default=RECONSTRUCT_STEPS, help="Adam steps")
    rec.add_argument("--lr", type=number_list, default=LEARNING_RATE, help="Adam learning rate; a comma list sweeps "
                     "it: every combination of the swept values runs in one program, grid.html shows them")
    rec.add_argument("--lambda-tv", type=number_list, default=LAMBDA_TV,
                     help="weight of the total-variation prior (λ_V); a comma list sweeps it")
    rec.add_argument("--lambda-alpha", type=number_list, default=LAMBDA_ALPHA,
                     help="weight of the α-norm prior (λ_α); a comma list sweeps it")
    add_common(rec, "reconstruct-MODEL")
    rec.set_defaults(run=run_reconstruct)

    style = add_parser(commands, "style", "neural style transfer (Gatys et al.)",
                       "  jaxvis style mobilenet_v2 sample:chelsea sample:brick --size 160 --param pixel --steps 150\n"
                       "  jaxvis style vgg19 photo.jpg painting.jpg --weights vgg19.pth")
    style.add_argument("name", help="architecture, e.g. mobilenet_v2")
    style.add_argument("content", help="content image file or sample:NAME")
    style.add_argument("style", nargs="?", help="style image file or sample:NAME")
    add_old_model_option(style)
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
    style.add_argument("--style-weight", type=number_list,
                       help=f"default {STYLE_WEIGHT['pixel']:g} for pixel, {STYLE_WEIGHT['fourier']:g} for fourier; a "
                            "comma list sweeps it: every combination of the swept values runs in one program, "
                            "grid.html shows them")
    style.add_argument("--content-weight", type=number_list, default=CONTENT_WEIGHT,
                       help="weight of the content loss; a comma list sweeps it")
    style.add_argument("--lr", type=number_list, help=f"Adam's learning rate (default {ADAM_LEARNING_RATE['pixel']:g} "
                       f"for pixel, {ADAM_LEARNING_RATE['fourier']:g} for fourier); a comma list sweeps it")
    add_common(style, "style-MODEL")
    style.set_defaults(run=run_style)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
OLD_FORM = "image first with --model"


def add_old_model_option(parser: argparse.ArgumentParser) -> None:
    """The image-first form's --model, accepted for one more release (hidden from --help)."""
    parser.add_argument("--model", help=argparse.SUPPRESS)


def looks_like_image(word: str) -> bool:
    return word.startswith("sample:") or Path(word).suffix.lower() in IMAGE_SUFFIXES or Path(word).is_file()


def model_first(args: argparse.Namespace, command: str, images: list[str | None], count: int | None) -> list[str]:
    """The model (set on args.name) and the images of a command that takes `MODEL IMAGE...`, also from the
    deprecated image-first form (`jaxvis dream IMAGE --model MODEL`), which prints a note on stderr.

    images: the positionals after the first; count: how many images the command takes (None: one or more)."""
    from jaxvis.models.catalog import names

    given = [word for word in images if word is not None]
    old = args.model is not None or (args.name not in names() and looks_like_image(args.name))
    if old:
        given, args.name = [args.name, *given], args.model or "mobilenet_v2"
        print(f"jaxvis: note: `jaxvis {command} IMAGE... --model MODEL` is deprecated and goes in the next release; "
              f"write `jaxvis {command} {args.name} {' '.join(given)} ...` (the model first, as in every command)",
              file=sys.stderr)
    if (count is not None and len(given) != count) or not given:
        what = "one image" if count == 1 else f"{count} images" if count else "at least one image"
        raise JaxvisError(f"jaxvis {command} takes the model and then {what}, e.g. jaxvis {command} mobilenet_v2 "
                          f"{' '.join(['sample:chelsea', 'sample:brick'][: count or 1])}; got {len(given)}")
    return given


def run_invert(args: argparse.Namespace) -> None:
    from jaxvis.app.gallery import check_output, prepare_output
    from jaxvis.data.imagenet import class_indices, class_names, require_classifier
    from jaxvis.methods import inversion_method, invert
    from jaxvis.models.load import architecture

    inversion_method(args.method)
    arch = architecture(args.name)
    require_classifier(arch.name, arch.num_classes, f"jaxvis invert --method {args.method} (class inversion)")
    classes = class_indices([c.strip() for c in args.classes.split(",") if c.strip()], arch.num_classes)
    if not len(classes):
        raise JaxvisError("--classes names no class; e.g. --classes goldfish,207")
    if args.ensemble and args.method != "pii":
        raise JaxvisError(f"--ensemble is a Plug-In Inversion setting; --method {args.method} has no ensemble")
    if args.jitter is not None and args.method == "logit":
        raise JaxvisError("--jitter sets the roll of pii and deepinversion; --method logit uses Lucid's transforms")
    check_counts(size=args.size, steps=args.steps, ensemble=args.ensemble)
    check_inversion_sizes(arch, args.method, args.size or arch.input_size)
    options: dict[str, Any] = {"size": args.size, "seed": args.seed, "steps": args.steps,
                               "ensemble": args.ensemble}
    options = {k: v for k, v in options.items() if v is not None}
    sweep = {k: v for k, v in {"learning_rate": args.lr, "jitter": args.jitter}.items() if v is not None}
    grid = Grid.of(**sweep)
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"invert-{args.method}-{arch.name}")
    state_dir = run_directory(out)
    request = {"model": arch.name, "method": args.method, "classes": classes.tolist(),
               "weights": weights_identity(args.weights), **options, **sweep}
    with holding_output(out), locked(state_dir):
        continuing = continue_or_start(state_dir, request, args.fresh)
        model = load_model(args.name, args.weights)
        out = prepare_output(out)
        save_request(state_dir, request)
        class_labels = [f"{k:02d}-{c:04d}-{class_names()[c].replace(' ', '_')}" for k, c in enumerate(classes)]
        labels = cell_labels(grid, class_labels)
        print(f"{args.method}: {len(classes)} classes of {model.name}"
              + ("; continuing the interrupted run (its finished stages are restored)" if continuing else ""),
              file=sys.stderr)
        start = time.perf_counter()
        with stages_said(out, continues=True):
            result = invert(model, classes, method=args.method, on_stage=stage_saver(out, labels),
                            config=RunConfig(checkpoint_dir=state_dir / "stages"), **options,
                            **inversion_sweep(args.method, sweep))
        images = result.images[:, 0]
        targets = np.tile(classes, len(grid.cells))
        probabilities = class_probabilities(model, images, model.input_size)
        values = [float(p[c]) for p, c in zip(probabilities, targets)]
        run_record = record(model, "invert", {"method": args.method, "classes": classes.tolist(), **plain(options),
                                              **sweep}, result, start)
        run_record["classes"] = {label: {"probability": value, "top1": class_names()[int(np.argmax(p))]}
                                 for label, value, p in zip(labels, values, probabilities)}
        curves = [result.history[:, k] for k in range(result.history.shape[1])] \
            if result.history.shape[1] == len(labels) else None
        title = f"{model.name}: {args.method} inversion"
        finish(out, title, images, labels, values, run_record, stem="class", value_name="p(target)", curves=curves)
        if grid.swept:
            per_class = np.asarray(values).reshape(-1, len(classes)).T.tolist()
            write_grid_page(out, title, grid, class_labels, "class", per_class, value_name="p(target)")
        for line in missed_targets(run_record["classes"], [class_names()[c] for c in targets]):
            print(line)
    shutil.rmtree(state_dir, ignore_errors=True)  # complete and written: nothing to continue


def inversion_sweep(method: str, sweep: dict[str, Any]) -> dict[str, Any]:
    """The keywords that give `method` the command's learning rate and jitter (values or lists): PII's are
    fields of its recipe, DeepInversion's overrides of its recipe, logit inversion's its learning_rate."""
    from jaxvis.methods.pii import DEFAULTS as PII

    if not sweep:
        return {}
    return {"recipe": replace(PII, **sweep)} if method == "pii" else dict(sweep)


def check_inversion_sizes(arch: Any, method: str, size: int) -> None:
    """The final size and the smallest one a method's stages use, checked against the architecture."""
    from jaxvis.methods.deepinversion import DEFAULTS as DI
    from jaxvis.methods.pii import check_stage_sizes
    from jaxvis.models.request import check_image_size

    check_image_size(arch, size, size)
    if method == "pii":
        check_stage_sizes(arch, size)
    elif method == "deepinversion":
        smallest = min(size // factor for factor, _ in DI.resolutions)
        check_image_size(arch, smallest, smallest)


def missed_targets(classes: dict[str, dict[str, Any]], targets: list[str]) -> list[str]:
    """A line for each class image whose top-1 class is not its target, with the target's probability and what
    the model sees instead."""
    return [f"{label}: missed its target: p({target}) = {entry['probability']:.2g}, the model's top-1 is "
            f"{entry['top1']}" for (label, entry), target in zip(classes.items(), targets) if entry["top1"] != target]


@contextmanager
def stages_said(out: Path, continues: bool = False) -> Iterator[None]:
    """On Ctrl-C, say where the finished stages' images are (and, if `continues`, that the same command
    again continues) before the interruption goes on."""
    try:
        yield
    except KeyboardInterrupt:
        stages = sorted((out / "stages").glob("*.png"))
        print(f"jaxvis: interrupted; {len(stages)} images of the finished stages are in {out / 'stages'}"
              if stages else "jaxvis: interrupted before the first stage finished; nothing was saved", file=sys.stderr)
        if continues:
            print("jaxvis: the same command again continues from the saved stages (--fresh starts over)",
                  file=sys.stderr)
        raise


def run_dream(args: argparse.Namespace) -> None:
    from jaxvis.app.gallery import check_output, prepare_output
    from jaxvis.data.io import read_image, resize
    from jaxvis.methods import dream
    from jaxvis.methods.deepdream import check_octaves
    from jaxvis.models.load import architecture

    [source] = model_first(args, "dream", [args.image], 1)
    arch = architecture(args.name)
    layers = [layer.strip() for layer in args.layer.split(",") if layer.strip()]
    check_layers(arch, layers)
    check_counts(steps=args.steps, octaves=args.octaves, size=args.size, tile_size=args.tile_size)
    image = read_image(source)
    if args.size:
        scale = args.size / max(image.shape[:2])
        image = resize(image, round(image.shape[0] * scale), round(image.shape[1] * scale))
    check_octaves(arch, image.shape[0], image.shape[1], args.octaves, args.octave_scale)
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"dream-{arch.name}")
    with holding_output(out):
        model = load_model(args.name, args.weights)
        out = prepare_output(out)
        grid = Grid.of(step_size=args.step_size, jitter=args.jitter)
        labels = cell_labels(grid, ["dream"])
        start = time.perf_counter()
        with stages_said(out):
            result = dream(model, image, layers, octaves=args.octaves, octave_scale=args.octave_scale, steps=args.steps,
                           tile_size=args.tile_size, step_size=divided(args.step_size, 255), jitter=args.jitter,
                           seed=args.seed, on_stage=stage_saver(out, labels))
        options = {"image": source, "layers": layers, "octaves": args.octaves, "octave_scale": args.octave_scale,
                   "steps": args.steps, "tile_size": args.tile_size, "step_size_0_255": args.step_size,
                   "jitter": args.jitter}
        run_record = record(model, "dream", options, result, start)
        title = f"{model.name}: DeepDream on {', '.join(layers)}"
        finish(out, title, np.concatenate([image[None], result.images[:, 0]]), ["input", *labels],
               [float("nan"), *map(float, result.objective)], run_record, stem="image",
               curves=[None, *(result.history[:, k] for k in range(len(labels)))])
        if grid.swept:
            write_grid_page(out, title, grid, ["dream"], "image", [list(map(float, result.objective))], heading="")


def run_reconstruct(args: argparse.Namespace) -> None:
    from jaxvis.app.gallery import check_output, prepare_output
    from jaxvis.data.io import read_photo
    from jaxvis.methods import reconstruct
    from jaxvis.models.load import architecture
    from jaxvis.models.request import check_image_size

    sources = model_first(args, "reconstruct", args.images, None)
    arch = architecture(args.name)
    check_layers(arch, [args.layer])
    check_counts(size=args.size, steps=args.steps)
    size = args.size or arch.input_size
    check_image_size(arch, size, size)
    originals = np.stack([read_photo(source, size, arch.min_size, arch.name) for source in sources])
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"reconstruct-{arch.name}")
    with holding_output(out):
        model = load_model(args.name, args.weights)
        out = prepare_output(out)
        sweep = {"learning_rate": args.lr, "lambda_tv": args.lambda_tv, "lambda_alpha": args.lambda_alpha}
        grid = Grid.of(**sweep)
        start = time.perf_counter()
        result = reconstruct(model, originals, args.layer, steps=args.steps, seed=args.seed, **sweep)
        rebuilt_labels = [f"{k}-{args.layer}" for k in range(len(originals))]
        labels = [f"{k}-original" for k in range(len(originals))] + cell_labels(grid, rebuilt_labels)
        values = [float("nan")] * len(originals) + list(map(float, result.objective))
        curves = [None] * len(originals) + [result.history[:, k] for k in range(len(result.objective))]
        run_record = record(model, "reconstruct", {"images": sources, "layer": args.layer, "size": size,
                                                   "steps": args.steps, **sweep}, result, start)
        title = f"{model.name}: reconstructions from {args.layer}"
        finish(out, title, np.concatenate([originals, result.images[:, 0]]), labels, values, run_record, stem="image",
               curves=curves)
        if grid.swept:
            by_cell = result.objective.reshape(-1, len(originals))
            write_grid_page(out, title, grid, rebuilt_labels, "image", by_cell.T.tolist(), heading="")


def run_style(args: argparse.Namespace) -> None:
    from jaxvis.app.gallery import check_output, prepare_output
    from jaxvis.data.io import read_photo
    from jaxvis.methods import style_losses, transfer_style
    from jaxvis.methods.style import resolved_param
    from jaxvis.models.load import architecture
    from jaxvis.models.request import check_image_size

    content_source, style_source = model_first(args, "style", [args.content, args.style], 2)
    arch = architecture(args.name)
    layers = [name.strip() for name in args.style_layers.split(",")] if args.style_layers else None
    check_layers(arch, (layers or []) + ([args.content_layer] if args.content_layer else []))
    check_counts(size=args.size, steps=args.steps, pyramid=args.pyramid)
    if args.pyramid > 1 and resolved_param(arch.name, args.param) != "pixel":
        raise JaxvisError("--pyramid needs --param pixel (a Fourier image has no coarse-to-fine start)")
    smallest = args.size // 2 ** (args.pyramid - 1)
    check_image_size(arch, smallest, smallest)
    content = read_photo(content_source, args.size, arch.min_size, arch.name)
    style = read_photo(style_source, args.size, arch.min_size, arch.name)
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"style-{arch.name}")
    with holding_output(out):
        model = load_model(args.name, args.weights)
        out = prepare_output(out)
        options = {"style_layers": layers, "content_layer": args.content_layer, "param": args.param,
                   "optimizer": args.optimizer, "steps": args.steps, "pyramid": args.pyramid,
                   "style_weight": args.style_weight, "content_weight": args.content_weight, "learning_rate": args.lr}
        grid = Grid.of(style_weight=args.style_weight, content_weight=args.content_weight, learning_rate=args.lr)
        labels = cell_labels(grid, ["result"])
        start = time.perf_counter()
        with stages_said(out):  # each stage's images: per cell, the image and the content and style it carries
            result = transfer_style(model, content, style, seed=args.seed, on_stage=stage_saver(out, [
                f"{name}{label.removeprefix('result')}" for label in labels for name in ("x", "content", "style")]),
                **options)
        losses = [style_losses(model, image, content, style, layers, args.content_layer)
                  for image in result.images[:, 0]]
        run_record = record(model, "style", {"content": content_source, "style": style_source, "size": args.size,
                                             **options}, result, start)
        run_record["losses"] = {"result": losses[0] if len(losses) == 1 else dict(zip(labels, losses)),
                                "content_image": style_losses(model, content, content, style, layers,
                                                              args.content_layer)}
        title = f"{model.name}: style transfer"
        finish(out, title, np.concatenate([np.stack([content, style]), result.images[:, 0]]),
               ["content", "style", *labels], [float("nan"), float("nan"), *(loss["style"] for loss in losses)],
               run_record, stem="image", value_name="style loss",
               curves=[None, None, *(result.history[:, k] for k in range(len(labels)))])
        if grid.swept:
            write_grid_page(out, title, grid, ["result"], "image", [[loss["style"] for loss in losses]],
                            value_name="style loss", heading="")


def divided(value: float | list[float], by: float) -> float | list[float]:
    """A flag's value (or each of its comma list) over `by`: a step size on the 0-255 scale in jaxvis's [0, 1]."""
    return [v / by for v in value] if isinstance(value, list) else value / by


def check_layers(arch: Any, layers: list[str]) -> None:
    """Unknown layer names fail before the model loads, with the nearest valid names."""
    from jaxvis.models.model import layer_shapes

    valid = list(layer_shapes(arch, arch.input_size))
    unknown = [layer for layer in layers if layer not in valid]
    if unknown:
        raise UnknownLayerError(unknown, arch.name, valid)
