"""`jaxvis invert | dream | reconstruct | style`: the methods of `jaxvis.methods` on the command line.

Each command loads the model, runs with progress bars on stderr, and writes PNGs,
a contact sheet, an `index.html` gallery and a `run.json` record to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.errors import JaxvisError

DEFAULT_OUT = Path("jaxvis-out")


def add_commands(commands: Any) -> None:
    invert = commands.add_parser("invert", help="class images: Plug-In Inversion, DeepInversion or logit maximization")
    invert.add_argument("name", help="architecture, e.g. mobilenet_v2")
    invert.add_argument("--classes", required=True, help="indices or ImageNet names: 1,207,980 or 'goldfish,volcano'")
    invert.add_argument("--method", default="pii", help="pii (default), deepinversion or logit")
    invert.add_argument("--ensemble", type=int, help="PII: ColorShift views per step (default 48)")
    invert.add_argument("--size", type=int, help="final image size (default: the model's input size)")
    invert.add_argument("--steps", type=int,
                        help="PII: steps per stage (401); deepinversion: total steps, 2/3 at half resolution (3000); "
                             "logit: steps (512)")
    add_common(invert)
    invert.set_defaults(run=run_invert)

    dream = commands.add_parser("dream", help="DeepDream a photo on one or more layers")
    dream.add_argument("image", help="image file or sample:NAME")
    dream.add_argument("--model", default="mobilenet_v2")
    dream.add_argument("--layer", required=True, help="layer name(s), comma-separated")
    dream.add_argument("--octaves", type=int, default=4)
    dream.add_argument("--octave-scale", type=float, default=1.4)
    dream.add_argument("--steps", type=int, default=10, help="steps per octave")
    dream.add_argument("--size", type=int, help="resize the longer side to this many pixels first")
    dream.add_argument("--tile-size", type=int, default=512, help="larger images are processed in tiles of this size")
    add_common(dream)
    dream.set_defaults(run=run_dream)

    rec = commands.add_parser("reconstruct", help="feature inversion: images from a layer's activations")
    rec.add_argument("images", nargs="+", help="image files or sample:NAME (reconstructed in parallel)")
    rec.add_argument("--model", default="mobilenet_v2")
    rec.add_argument("--layer", required=True)
    rec.add_argument("--size", type=int, help="square size (default: the model's input size)")
    rec.add_argument("--steps", type=int, default=400)
    add_common(rec)
    rec.set_defaults(run=run_reconstruct)

    style = commands.add_parser("style", help="neural style transfer (Gatys et al.)")
    style.add_argument("content", help="content image file or sample:NAME")
    style.add_argument("style", help="style image file or sample:NAME")
    style.add_argument("--model", default="mobilenet_v2")
    style.add_argument("--style-layers", help="comma-separated layer names (default: per model)")
    style.add_argument("--content-layer", help="layer name (default: per model)")
    style.add_argument("--param", default="auto", help="pixel, fourier or auto (pixel for VGG, fourier otherwise)")
    style.add_argument("--optimizer", default="auto", help="lbfgs, adam or auto")
    style.add_argument("--size", type=int, default=224)
    style.add_argument("--steps", type=int, help="default 300 (L-BFGS) or 512 (Adam)")
    style.add_argument("--pyramid", type=int, default=1, help="levels of an image pyramid (pixel only)")
    style.add_argument("--style-weight", type=float, help="default 1e6 for pixel, 1e3 for fourier")
    add_common(style)
    style.set_defaults(run=run_style)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    parser.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/COMMAND-MODEL)")


def run_invert(args: argparse.Namespace) -> None:
    from jaxvis.imagenet import class_indices, class_names
    from jaxvis.methods import inversion_method, invert
    from jaxvis.methods.deepinversion import MULTI_RESOLUTION

    inversion_method(args.method)  # an unknown method fails before the model loads
    classes = class_indices([c.strip() for c in args.classes.split(",") if c.strip()])
    options: dict[str, Any] = {"size": args.size, "seed": args.seed}
    if args.method == "pii":
        options.update({"ensemble": args.ensemble} if args.ensemble else {})
        options.update({"steps_per_stage": args.steps} if args.steps else {})
    elif args.method == "deepinversion" and args.steps:
        low = round(args.steps * MULTI_RESOLUTION[0][1] / sum(steps for _, steps in MULTI_RESOLUTION))
        options["resolutions"] = ((2, low), (1, args.steps - low))
    elif args.method == "logit" and args.steps:
        options["steps"] = args.steps
    if args.ensemble and args.method != "pii":
        raise JaxvisError(f"--ensemble is a Plug-In Inversion setting; --method {args.method} has no ensemble")
    model, out = _setup(args.name, args.weights, args.out, f"invert-{args.method}")
    labels = [f"{k:02d}-{c:04d}-{class_names()[c].replace(' ', '_')}" for k, c in enumerate(classes)]

    def save_stage(size: int, images: np.ndarray) -> None:  # finished stages are never lost
        from jaxvis.io import save_image

        for image, label in zip(images, labels):
            save_image(image, out / "stages" / f"{label}_{size}px.png")

    if args.method == "pii":
        options["on_stage"] = save_stage
    print(f"{args.method}: {len(classes)} classes of {model.name}", file=sys.stderr)
    start = time.perf_counter()
    result = invert(model, classes, method=args.method, **{k: v for k, v in options.items() if v is not None})
    images = result.images[:, 0]
    probabilities = _softmax(model, images)
    values = [float(p[c]) for p, c in zip(probabilities, classes)]
    record = _record(model, "invert", {"method": args.method, "classes": classes.tolist(), **_plain(options)},
                     result, start)
    record["classes"] = {label: {"probability": value, "top1": class_names()[int(np.argmax(p))]}
                         for label, value, p in zip(labels, values, probabilities)}
    _finish(out, f"{model.name}: {args.method} inversion", images, labels, values, record, stem="class",
            value_name="p(target)")


def run_dream(args: argparse.Namespace) -> None:
    from jaxvis.io import read_image, resize
    from jaxvis.methods import dream

    image = read_image(args.image)
    if args.size:
        scale = args.size / max(image.shape[:2])
        image = resize(image, round(image.shape[0] * scale), round(image.shape[1] * scale))
    layers = [layer.strip() for layer in args.layer.split(",") if layer.strip()]
    model, out = _setup(args.model, args.weights, args.out, "dream")
    start = time.perf_counter()
    result = dream(model, image, layers, octaves=args.octaves, octave_scale=args.octave_scale, steps=args.steps,
                   tile_size=args.tile_size, seed=args.seed)
    options = {"image": args.image, "layers": layers, "octaves": args.octaves, "octave_scale": args.octave_scale,
               "steps": args.steps, "tile_size": args.tile_size}
    record = _record(model, "dream", options, result, start)
    _finish(out, f"{model.name}: DeepDream on {', '.join(layers)}", np.stack([image, result.images[0, 0]]),
            ["input", "dream"], [float("nan"), float(result.objective[0])], record, stem="image")


def run_reconstruct(args: argparse.Namespace) -> None:
    from jaxvis.io import read_photo
    from jaxvis.load import architecture
    from jaxvis.methods import reconstruct

    arch = architecture(args.model)
    size = args.size or arch.input_size
    originals = np.stack([read_photo(source, size, arch.min_size, arch.name) for source in args.images])
    model, out = _setup(args.model, args.weights, args.out, "reconstruct")
    start = time.perf_counter()
    result = reconstruct(model, originals, args.layer, steps=args.steps, seed=args.seed)
    images, labels, values = [], [], []
    for k, (original, rebuilt, value) in enumerate(zip(originals, result.images[:, 0], result.objective)):
        images += [original, rebuilt]
        labels += [f"{k}-original", f"{k}-{args.layer}"]
        values += [float("nan"), float(value)]
    record = _record(model, "reconstruct", {"images": args.images, "layer": args.layer, "size": size,
                                            "steps": args.steps}, result, start)
    _finish(out, f"{model.name}: reconstructions from {args.layer}", np.stack(images), labels, values, record,
            stem="image")


def run_style(args: argparse.Namespace) -> None:
    from jaxvis.io import read_photo
    from jaxvis.load import architecture
    from jaxvis.methods import style_losses, transfer_style

    arch = architecture(args.model)
    content = read_photo(args.content, args.size, arch.min_size, arch.name)
    style = read_photo(args.style, args.size, arch.min_size, arch.name)
    model, out = _setup(args.model, args.weights, args.out, "style")
    layers = [name.strip() for name in args.style_layers.split(",")] if args.style_layers else None
    options = {"style_layers": layers, "content_layer": args.content_layer, "param": args.param,
               "optimizer": args.optimizer, "steps": args.steps, "pyramid": args.pyramid,
               "style_weight": args.style_weight}
    start = time.perf_counter()
    result = transfer_style(model, content, style, seed=args.seed, **options)
    image = result.images[0, 0]
    losses = style_losses(model, image, content, style, layers, args.content_layer)
    record = _record(model, "style", {"content": args.content, "style": args.style, "size": args.size, **options},
                     result, start)
    record["losses"] = {"result": losses, "content_image": style_losses(model, content, content, style, layers,
                                                                        args.content_layer)}
    _finish(out, f"{model.name}: style transfer", np.stack([content, style, image]), ["content", "style", "result"],
            [float("nan"), float("nan"), losses["style"]], record, stem="image", value_name="style loss")


def _setup(name: str, weights: str | None, out: str | None, command: str):
    import jaxvis
    from jaxvis.gallery import prepare_output
    from jaxvis.load import PRETRAINED, architecture

    arch = architecture(name)
    directory = prepare_output(out or DEFAULT_OUT / f"{command}-{arch.name}")
    return jaxvis.load(name, weights=weights or PRETRAINED), directory


def _softmax(model, images: np.ndarray) -> np.ndarray:
    import jax

    from jaxvis.transforms import resize_images

    batch = resize_images(images, model.input_size)
    return np.asarray(jax.nn.softmax(jax.jit(lambda m, x: m(x))(model, batch), axis=-1))


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if not callable(v)}


def _record(model, command: str, config: dict[str, Any], result, start: float) -> dict[str, Any]:
    from jaxvis.gallery import environment

    return {"config": {"command": command, "model": model.name, **_plain(config)}, "environment": environment(),
            "steps": result.steps, "timings": result.timings, "total_s": time.perf_counter() - start,
            "final_objective": result.objective.tolist()}


def _finish(out: Path, title: str, images: np.ndarray, labels: list[str], values: list[float],
            record: dict[str, Any], stem: str, value_name: str = "objective") -> None:
    from jaxvis.gallery import write_gallery

    paths = write_gallery(out, title, images, labels, values, record, stem=stem, value_name=value_name)
    print(f"{len(images)} images in {out}  (contact sheet: {paths['sheet']}, gallery: {paths['index']})")
