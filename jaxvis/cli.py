"""The `jaxvis` command line.

    jaxvis models                              # architectures, weights available here, sizes, layer counts
    jaxvis layers mobilenet_v2 [--size 160]    # capturable layer names and activation shapes
    jaxvis classify mobilenet_v2 sample:chelsea photo.jpg
    jaxvis convert efficientnet_lite0 [--weights FILE] [--out DIR]
    jaxvis visualize mobilenet_v2 [features.14] [--channels 0-15] [--size 128] [--steps 512] [--out DIR]
    jaxvis invert mobilenet_v2 --classes 1,207,volcano [--method pii|deepinversion|logit] [--ensemble B] [--size S]
    jaxvis dream sample:chelsea --model mobilenet_v2 --layer features.10 [--octaves 4]
    jaxvis reconstruct sample:coffee --model mobilenet_v2 --layer features.6
    jaxvis style sample:chelsea sample:brick --model mobilenet_v2 [--style-layers ...] [--content-layer ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import converters
from jaxvis.cli_methods import add_commands as add_method_commands
from jaxvis.compilation_cache import enable_compilation_cache
from jaxvis.errors import JaxvisError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    enable_compilation_cache()  # a second run with the same shapes skips XLA compilation
    try:
        return args.run(args) or 0
    except (JaxvisError, converters.ConversionError) as err:
        print(f"jaxvis: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxvis", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(metavar="COMMAND")

    models = commands.add_parser("models", help="list architectures and whether their weights are here")
    models.set_defaults(run=run_models)

    layers = commands.add_parser("layers", help="capturable layer names and activation shapes of a model")
    layers.add_argument("name", help="architecture, e.g. mobilenet_v2")
    layers.add_argument("--size", type=int, help="input size in pixels (default: the model's)")
    layers.set_defaults(run=run_layers)

    classify = commands.add_parser("classify", help="top-5 ImageNet classes of images")
    classify.add_argument("name", help="architecture, e.g. mobilenet_v2")
    classify.add_argument("images", nargs="+", help="image files, or sample:NAME for scikit-image's photos")
    classify.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    classify.add_argument("--top", type=int, default=5)
    classify.set_defaults(run=run_classify)

    convert = commands.add_parser("convert", help="convert PyTorch weights to a Flax (orbax) checkpoint")
    convert.add_argument("name", help="architecture, e.g. efficientnet_lite0")
    convert.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    convert.add_argument("--out", help="write the checkpoint here (default: the jaxvis cache)")
    convert.set_defaults(run=run_convert)

    vis = commands.add_parser("visualize", help="feature visualization of units of a layer (Lucid's defaults)")
    vis.add_argument("name", help="architecture, e.g. mobilenet_v2")
    vis.add_argument("layer", nargs="?", help="layer name (default: a middle layer of the model)")
    vis.add_argument("--channels", default="0-15", help="units: 7, 0-63 or 3,7,9 (default 0-15)")
    vis.add_argument("--objective", default="channel", help="channel, neuron, logit, log_prob or deepdream")
    vis.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    vis.add_argument("--steps", type=int, default=512)
    vis.add_argument("--param", default="fourier", help="fourier, pixel or maco")
    vis.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    vis.add_argument("--batch-size", type=int, default=32, help="units optimized together in one vectorized run")
    vis.add_argument("--ensemble", type=int, default=1, help="transformed views per step (averaged)")
    vis.add_argument("--diversity", type=float, default=0.0, help="weight of the diversity term (with --images > 1)")
    vis.add_argument("--images", type=int, default=1, help="images per unit")
    vis.add_argument("--seed", type=int, default=0)
    vis.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    vis.add_argument("--out", help="output directory (default: jaxvis-out/NAME-LAYER)")
    vis.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    vis.add_argument("--checkpoint-every", type=int, default=64, help="steps between saved optimization states")
    vis.set_defaults(run=run_visualize)
    add_method_commands(commands)
    return parser


def run_models(args: argparse.Namespace) -> None:
    from jaxvis.models import ARCHITECTURES
    from jaxvis.models.model import layer_shapes

    rows = [("name", "family", "naming", "input", "layers", "pretrained weights on this machine")]
    for arch in ARCHITECTURES.values():
        found = converters.find_local(arch.pretrained) if arch.pretrained else None
        where = f"yes: {found.origin} ({found.path})" if found else "no (downloads where internet exists)"
        size = f"{arch.input_size}" + ("" if arch.fixed_size else f" (>= {arch.min_size})")
        rows.append((arch.name, arch.family, arch.source, size, str(len(layer_shapes(arch, arch.input_size))), where))
    print_table(rows)


def run_layers(args: argparse.Namespace) -> None:
    from jaxvis.load import architecture
    from jaxvis.models.model import check_image_shape, layer_shapes

    arch = architecture(args.name)
    size = args.size or arch.input_size
    check_image_shape((1, size, size, 3), "float32", arch)
    shapes = layer_shapes(arch, size)
    print_table([("layer", "activation shape (one image)")] + [(name, str(shape[1:])) for name, shape in shapes.items()])
    print(f"{len(shapes)} layers of {arch.name} at {size}x{size}")


def run_classify(args: argparse.Namespace) -> None:
    import jax
    import numpy as np

    import jaxvis
    from jaxvis.imagenet import class_names
    from jaxvis.io import center_crop_resize, read_image
    from jaxvis.load import PRETRAINED

    images = [read_image(source) for source in args.images]  # fail on a bad path before loading a model
    model = jaxvis.load(args.name, weights=args.weights or PRETRAINED)
    batch = np.stack([center_crop_resize(image, model.input_size) for image in images])
    probabilities = np.asarray(jax.nn.softmax(jax.jit(lambda m, x: m(x))(model, batch), axis=-1))
    names = class_names()
    for source, probs in zip(args.images, probabilities):
        print(f"{source}  ({model.name})")
        for index in np.argsort(probs)[::-1][: args.top]:
            print(f"  {probs[index]:6.1%}  {index:4d}  {names[index]}")


def run_convert(args: argparse.Namespace) -> None:
    import jax

    from jaxvis.load import architecture, cache_location, load_file, save_checkpoint

    arch = architecture(args.name)
    resolved = converters.find_weights(arch.pretrained, args.weights)
    print(f"source: {resolved.path} ({resolved.origin}, sha256 {resolved.sha256[:16]}...)")
    variables = load_file(arch, resolved)
    location = cache_location(arch, resolved.sha256)
    if args.out:
        location = Path(args.out).resolve() / arch.name
        if not save_checkpoint(location, variables):
            raise JaxvisError(f"could not write the checkpoint to {location}")
    count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables))
    print(f"{arch.name}: {count:,} numbers; Flax (orbax) checkpoint at {location}")
    print(f"restore with: orbax.checkpoint.StandardCheckpointer().restore({str(location)!r})")
    if resolved.source is not None and resolved.source.normalization is not None:
        mean, std = resolved.source.normalization
        print(f"these weights expect inputs normalized with mean {tuple(round(m, 4) for m in mean)}, "
              f"std {tuple(round(s, 4) for s in std)} (jaxvis.load applies it)")


def run_visualize(args: argparse.Namespace) -> None:
    import time

    import numpy as np

    import jaxvis
    from jaxvis.gallery import environment, prepare_output, write_gallery
    from jaxvis.load import PRETRAINED, architecture
    from jaxvis.optimize import OptimizationDiverged
    from jaxvis.visualize import parse_units, run_visualization

    arch = architecture(args.name)
    layer = args.layer or arch.default_layer
    units = parse_units(args.channels)
    out = prepare_output(args.out or Path("jaxvis-out") / f"{arch.name}-{layer}")
    model = jaxvis.load(args.name, weights=args.weights or PRETRAINED)
    options = dict(objective=args.objective, size=args.size, steps=args.steps, seed=args.seed, param=args.param,
                   lr=args.lr, batch=args.images, ensemble=args.ensemble, diversity=args.diversity)
    record = {"config": {"model": arch.name, "layer": layer, "units": units.tolist(), **options},
              "environment": environment(), "units": {}, "timings": []}
    groups = [units[i : i + args.batch_size] for i in range(0, len(units), args.batch_size)]
    images, labels, values = [], [], []
    start = time.perf_counter()
    for number, group in enumerate(groups, 1):
        spec = f"{layer}:{','.join(str(u) for u in group)}"
        print(f"[{number}/{len(groups)}] {arch.name} {spec}", file=sys.stderr)
        try:
            _, result = run_visualization(model, spec, checkpoint_dir=out / "checkpoints" / f"group_{number}",
                                          checkpoint_every=args.checkpoint_every, resume=args.resume, **options)
        except OptimizationDiverged as err:
            result = err.result
            print(f"jaxvis: {err}", file=sys.stderr)
        for unit, unit_images, value in zip(result.units, result.images, result.objective):
            for k, image in enumerate(unit_images):
                images.append(image)
                labels.append(f"{int(unit):04d}" + (f"-{k}" if len(unit_images) > 1 else ""))
                values.append(float(value))
            record["units"][str(int(unit))] = {"objective": float(value)}
        record["timings"].append({"units": len(group), **result.timings})
        record["total_s"] = time.perf_counter() - start
        paths = write_gallery(out, f"{arch.name} {layer} ({args.objective})", np.stack(images), labels, values, record)
        if result.steps < args.steps:
            raise JaxvisError(f"stopped at step {result.steps}; finished images are in {out}")
    print(f"{len(images)} images in {out}  (contact sheet: {paths['sheet']}, gallery: {paths['index']})")


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


if __name__ == "__main__":
    sys.exit(main())
