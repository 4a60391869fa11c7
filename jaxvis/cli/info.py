"""`jaxvis models | layers | classify | convert`: what is here, what it is called, what it sees."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import converters
from jaxvis.cli.common import VIEW, add_parser, check_counts, class_probabilities, load_model, print_table
from jaxvis.core.errors import JaxvisError


COMMANDS = ("models", "layers", "classify", "convert")


def add_commands(commands: Any) -> None:
    models = add_parser(commands, "models", "list the architectures and whether their weights are on this machine",
                        "  jaxvis models")
    models.set_defaults(run=run_models)

    layers = add_parser(commands, "layers", "list a model's capturable layer names and activation shapes",
                        "  jaxvis layers mobilenet_v2\n  jaxvis layers resnet50 --size 160")
    layers.add_argument("name", help="architecture, e.g. mobilenet_v2 (`jaxvis models` lists them)")
    layers.add_argument("--size", type=int, help="input size in pixels (default: the model's)")
    layers.set_defaults(run=run_layers)

    classify = add_parser(commands, "classify", "print the top ImageNet classes of images",
                          "  jaxvis classify mobilenet_v2 sample:chelsea sample:coffee\n"
                          "  jaxvis classify efficientnet_lite0 photo.jpg --top 3")
    classify.add_argument("name", help="architecture, e.g. mobilenet_v2")
    classify.add_argument("images", nargs="+", help="image files, or sample:NAME for scikit-image's photos")
    classify.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    classify.add_argument("--top", type=int, default=5, help="how many classes to print per image")
    classify.set_defaults(run=run_classify)

    convert = add_parser(commands, "convert", "convert PyTorch weights to a Flax (orbax) checkpoint",
                         "  jaxvis convert efficientnet_lite0\n"
                         "  jaxvis convert resnet50 --weights resnet50.pth --out checkpoints/")
    convert.add_argument("name", help="architecture, e.g. efficientnet_lite0")
    convert.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    convert.add_argument("--out", help="write the checkpoint here (default: the jaxvis cache)")
    convert.set_defaults(run=run_convert)


def run_models(args: argparse.Namespace) -> None:
    from jaxvis.models import ARCHITECTURES
    from jaxvis.models.model import layer_shapes

    rows = [("name", "family", "naming", "input", "layers", "pretrained weights on this machine")]
    for arch in ARCHITECTURES.values():
        found = converters.find_local(arch.pretrained) if arch.pretrained else None
        where = f"yes: {found.origin} ({found.path})" if found else "no (downloads where internet exists)"
        size = f"{arch.input_size}" + ("" if arch.fixed_size else f" (>= {arch.min_size})")
        size = f"z ({arch.latent_size})" if arch.is_generator else size
        rows.append((arch.name, arch.family, arch.source, size, str(len(layer_shapes(arch, arch.input_size))), where))
    print_table(rows)


def run_layers(args: argparse.Namespace) -> None:
    from jaxvis.models.load import architecture
    from jaxvis.models.model import check_image_shape, layer_shapes

    arch = architecture(args.name)
    size = args.size or arch.input_size
    if not arch.is_generator:
        check_image_shape((1, size, size, 3), "float32", arch)
    shapes = layer_shapes(arch, size)
    print_table([("layer", "activation shape (one image)")] + [(name, str(shape[1:])) for name, shape in shapes.items()])
    where = f"from a latent z of {arch.latent_size}" if arch.is_generator else f"at {size}x{size}"
    print(f"{len(shapes)} layers of {arch.name} {where}")


def run_classify(args: argparse.Namespace) -> None:
    import numpy as np

    from jaxvis.data.imagenet import class_names
    from jaxvis.data.io import read_photo
    from jaxvis.models.load import architecture

    arch = architecture(args.name)
    check_counts(top=args.top)
    batch = np.stack([read_photo(source, arch.input_size, arch.min_size, arch.name) for source in args.images])
    model = load_model(args.name, args.weights)
    probabilities = class_probabilities(model, batch)
    names = class_names()
    for source, probs in zip(args.images, probabilities):
        print(f"{source}  ({model.name}, {VIEW})")
        for index in np.argsort(probs)[::-1][: args.top]:
            print(f"  {probs[index]:6.1%}  {index:4d}  {names[index]}")


def run_convert(args: argparse.Namespace) -> None:
    import jax

    from jaxvis.models.load import architecture, cache_location, load_file, save_checkpoint

    arch = architecture(args.name)
    resolved = converters.find_weights(arch.pretrained, args.weights)
    print(f"source: {resolved.path} ({resolved.origin}, sha256 {resolved.sha256[:16]}...)")
    variables = load_file(arch, resolved)
    count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables))
    if args.out:
        location = Path(args.out).resolve() / arch.name
        if not save_checkpoint(location, variables):
            raise JaxvisError(f"could not write the checkpoint to {location}")
        print(f"{arch.name}: {count:,} numbers; Flax (orbax) checkpoint at {location}")
        print(f"restore with: orbax.checkpoint.StandardCheckpointer().restore({str(location)!r})")
    else:
        print(f"{arch.name}: {count:,} numbers; converted weights cached at {cache_location(arch, resolved.sha256)} "
              f"(jaxvis.load({arch.name!r}) reads them; --out DIR writes a Flax (orbax) checkpoint)")
    if resolved.source is not None and resolved.source.normalization is not None:
        mean, std = resolved.source.normalization
        print(f"these weights expect inputs normalized with mean {tuple(round(m, 4) for m in mean)}, "
              f"std {tuple(round(s, 4) for s in std)} (jaxvis.load applies it)")
