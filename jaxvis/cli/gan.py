"""`jaxvis gan dissect | edit` and `jaxvis ganpaint`: the units of a generator (GAN Dissection, Bau et al. 2019).

    gan dissect   label every unit of a generator layer with the concept of the drawn images it matches
    gan edit      remove a concept's units from generated faces, or insert them inside a region
    ganpaint      paint with concepts on generated faces in the browser
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.cli.common import DEFAULT_OUT, HelpFormatter, check_counts, holding_output, load_model
from jaxvis.core.errors import JaxvisError, UnknownLayerError
from jaxvis.core.files import write_whole

COMMANDS = ("gan", "ganpaint")
DISSECT_EXAMPLES = """  jaxvis gan dissect dcgan_faces main.8                     512 sampled faces (segmented once, cached)
  jaxvis gan dissect dcgan_faces main.5 --samples 1024 --seed 1"""
EDIT_EXAMPLES = """  jaxvis gan edit dcgan_faces --seed 3 --remove eye          the 8 units of main.8 that match eyes, zeroed
  jaxvis gan edit dcgan_faces --remove mouth --units 11,80,70 --count 8
  jaxvis gan edit dcgan_faces --add mouth --region stroke.png --k 16"""
PAINT_EXAMPLES = """  jaxvis ganpaint dcgan_faces                      prints the address of the page (127.0.0.1, a free port)
  jaxvis ganpaint dcgan_faces --port 8765 --layer main.5 --k 12"""
SAMPLES_HELP = "faces sampled and segmented for the dissection (cached under $JAXVIS_CACHE/gan)"


def add_commands(commands: Any) -> None:
    gan = commands.add_parser("gan", help="dissect and edit the units of a generator (GAN Dissection)",
                              description="Dissect and edit the units of a generator (GAN Dissection, Bau et al. "
                              "2019). Face parts come from dlib's 68 landmarks: pip install dlib-bin "
                              "face_recognition_models (the README's set-up does).", formatter_class=HelpFormatter)
    actions = gan.add_subparsers(metavar="ACTION")
    dissect = actions.add_parser("dissect", help="label every unit of a generator layer with a concept",
                                 description="Label every unit of a generator layer with the concept of the drawn "
                                 "images its top activations match (IoU).", formatter_class=HelpFormatter,
                                 epilog="examples:\n" + DISSECT_EXAMPLES)
    dissect.add_argument("name", help="a generator, e.g. dcgan_faces")
    dissect.add_argument("layer", help="a layer of it, e.g. main.8 (`jaxvis layers dcgan_faces` lists them)")
    dissect.add_argument("--samples", type=int, default=512, help=SAMPLES_HELP)
    dissect.add_argument("--seed", type=int, default=0, help="which faces are sampled")
    dissect.add_argument("--quantile", type=float, default=0.01,
                         help="a unit is on in its top QUANTILE of activations (GAN Dissection's 0.01)")
    dissect.add_argument("--iou", type=float, default=0.04, help="IoU at which a unit counts as a detector")
    dissect.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    dissect.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/gan-dissect-NAME-LAYER)")
    dissect.set_defaults(run=run_dissect)

    edit = actions.add_parser("edit", help="remove a concept's units from generated faces, or insert them",
                              description="Remove a concept's units from generated faces (everywhere, or inside "
                              "--region), or insert them inside --region at their top-quantile level.",
                              formatter_class=HelpFormatter, epilog="examples:\n" + EDIT_EXAMPLES)
    edit.add_argument("name", help="a generator, e.g. dcgan_faces")
    what = edit.add_mutually_exclusive_group(required=True)
    what.add_argument("--remove", metavar="CONCEPT", help="zero the units of CONCEPT (eye, mouth, lips, ...)")
    what.add_argument("--add", metavar="CONCEPT", help="set the units of CONCEPT high inside --region")
    edit.add_argument("--layer", default="main.8", help="the layer whose units are edited")
    edit.add_argument("--units", default="auto", help="auto (the --k best by IoU) or a list such as 3,17,40-42")
    edit.add_argument("--k", type=int, default=8, help="units chosen with --units auto")
    edit.add_argument("--region", help="a mask image (white = edit here), any size; required with --add")
    edit.add_argument("--seed", type=int, default=0, help="which faces are drawn")
    edit.add_argument("--count", type=int, default=4, help="faces drawn and edited")
    edit.add_argument("--samples", type=int, default=512, help=SAMPLES_HELP + ", to choose --units auto")
    edit.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/gan-edit-NAME-CONCEPT)")
    edit.set_defaults(run=run_edit)
    gan.set_defaults(run=lambda _: gan.print_help())

    paint = commands.add_parser("ganpaint", help="paint with concepts on generated faces in the browser",
                                description="Serve GANPaint on 127.0.0.1: paint a concept onto a generated face "
                                "(its units switched on under the stroke) or off it; undo, new face, download.",
                                formatter_class=HelpFormatter, epilog="examples:\n" + PAINT_EXAMPLES)
    paint.add_argument("name", help="a generator, e.g. dcgan_faces")
    paint.add_argument("--layer", default="main.8", help="the layer painted on")
    paint.add_argument("--k", type=int, default=8, help="units per concept (the best by IoU)")
    paint.add_argument("--samples", type=int, default=256, help=SAMPLES_HELP + ", to choose the units")
    paint.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    paint.set_defaults(run=run_paint)


def generator_card(name: str, layer: str | None = None) -> Any:
    """The catalog's card of a generator (`dcgan-faces` accepted for `dcgan_faces`), its layer checked."""
    from jaxvis.analysis.gan.samples import NotAGeneratorError
    from jaxvis.models.catalog import card

    arch = card(name.replace("-", "_"))
    if not arch.latent_size:
        raise NotAGeneratorError(f"{arch.name} is not a generator; jaxvis gan works on dcgan_faces.")
    if layer is not None and layer not in arch.layers:
        raise UnknownLayerError([layer], arch.name, list(arch.layers))
    return arch


def run_dissect(args: argparse.Namespace) -> None:
    from jaxvis.analysis.gan.dissect import dissect
    from jaxvis.analysis.gan.faces import landmark_model
    from jaxvis.analysis.units.examples import example_strip, needed_images
    from jaxvis.app.gallery import check_output, environment, prepare_output, write_gallery

    arch = generator_card(args.name, args.layer)
    check_counts(samples=args.samples, batch_size=args.batch_size)
    if not 0 < args.quantile < 1:
        raise JaxvisError(f"--quantile must lie strictly between 0 and 1, got {args.quantile}")
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"gan-dissect-{arch.name}-{args.layer}")
    landmark_model()  # the segmenter is installed, before the model loads
    with holding_output(out):
        generator = load_model(arch.name, None)
        start = time.perf_counter()
        found = dissect(generator, args.layer, samples=args.samples, seed=args.seed, quantile=args.quantile,
                        iou_threshold=args.iou, batch_size=args.batch_size)
        out = prepare_output(out)
        shown_units = [u.unit for u in found.ranked() if u.detector][:32] or [u.unit for u in found.ranked()[:8]]
        images = found.survey.read(needed_images(found.survey, shown_units, [], 6))
        strips = np.stack([example_strip(found.survey, unit, images, count=6) for unit in shown_units])
        labels = [f"unit_{found.units[u].unit}_{found.units[u].concept}" for u in shown_units]
        record = {"config": {"command": "gan dissect", "model": arch.name, "layer": args.layer, "samples": args.samples,
                             "seed": args.seed, "quantile": args.quantile, "iou_threshold": args.iou},
                  **found.as_dict(), "environment": environment(), "total_s": time.perf_counter() - start}
        write_whole(out / "dissection.json", json.dumps(record, indent=1).encode())
        paths = write_gallery(out, f"{arch.name} {args.layer}: units and the concepts they draw (top samples)", strips,
                              labels, [found.units[u].iou for u in shown_units], record, stem="examples",
                              value_name="IoU", columns=1)
        print(found.table())
        print(f"{found.images} faces; {out / 'dissection.json'}; top samples of the detectors: {paths['index']}")


def run_edit(args: argparse.Namespace) -> None:
    from jaxvis.analysis.gan.dissect import concept_units, dissect
    from jaxvis.analysis.gan.effect import drawn
    from jaxvis.analysis.gan.faces import landmark_model
    from jaxvis.analysis.gan.samples import UnknownConceptError, concept_rows, latents
    from jaxvis.app.gallery import check_output, environment, prepare_output, write_gallery
    from jaxvis.data.io import read_image
    from jaxvis.models.request import parse_units
    from jaxvis.pieces.edits import UnitEdit, checked_region

    arch = generator_card(args.name, args.layer)
    concept, adding = (args.add, True) if args.add else (args.remove, False)
    known = [name for _, name, _ in concept_rows()]
    if concept not in known:
        raise UnknownConceptError(f"unknown concept {concept!r}; known: {', '.join(known)}.")
    check_counts(count=args.count, k=args.k, samples=args.samples)
    if adding and not args.region:
        raise JaxvisError("--add needs --region MASK.png: where to draw the concept (white = here)")
    region = None
    if args.region:
        if not Path(args.region).is_file():
            raise JaxvisError(f"--region {args.region} is not a file")
        region = checked_region(read_image(args.region).max(axis=-1))
    width = arch.layers[args.layer]
    units = None
    if args.units != "auto":
        units = parse_units(args.units, width, f"for {args.layer} of {arch.name}").tolist()
    name = f"gan-edit-{arch.name}-{'add' if adding else 'remove'}-{concept}"
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / name)
    if units is None:
        landmark_model()
    with holding_output(out):
        generator = load_model(arch.name, None)
        start = time.perf_counter()
        found = None
        if units is None:
            found = dissect(generator, args.layer, samples=args.samples, progress=True)
            units = concept_units(found, concept, args.k)
        z = latents(args.count, generator.arch.latent_size, args.seed)
        if adding:
            levels = np.asarray(found.thresholds if found is not None else
                                _top_levels(generator, args.layer, args.samples), np.float32)
            edit = UnitEdit.setting(args.layer, units, width, levels, region)
        else:
            edit = UnitEdit.removing(args.layer, units, width, region)
        before, after = drawn(generator, None, z), drawn(generator, edit, z)
        change = np.abs(after - before).mean(axis=-1, keepdims=True)
        difference = np.repeat(change / max(float(change.max()), 1e-6), 3, axis=-1)
        out = prepare_output(out)
        images = np.concatenate([before, after, difference])
        labels = [f"{kind}_{i}" for kind in ("before", "after", "change") for i in range(args.count)]
        values = [0.0] * args.count + [float(c.mean()) for c in change] * 2
        record = {"config": {"command": "gan edit", "model": arch.name, "layer": args.layer, "concept": concept,
                             "edit": "add" if adding else "remove", "units": units, "seed": args.seed,
                             "count": args.count, "region": args.region},
                  "mean_pixel_change": [float(c.mean()) for c in change], "environment": environment(),
                  "total_s": time.perf_counter() - start}
        title = f"{arch.name}: {'adding' if adding else 'removing'} {concept} ({len(units)} units of {args.layer})"
        paths = write_gallery(out, title, images, labels, values, record, stem="face", value_name="mean change",
                              columns=args.count)
        print(f"{'added' if adding else 'removed'} {concept} with units {units} of {args.layer} on {args.count} faces "
              f"(seed {args.seed}): rows before / after / change in {paths['sheet']}; gallery: {paths['index']}",
              file=sys.stderr)


def _top_levels(generator: Any, layer: str, samples: int) -> np.ndarray:
    """Each unit's top-1% level over `samples` sampled latents (for insertion with units given by hand)."""
    from jaxvis.analysis.gan.samples import latents
    from jaxvis.models.model import apply

    z = latents(min(samples, 256), generator.arch.latent_size, 0)
    acts = np.asarray(apply(generator, z, (layer,))[layer])
    return np.quantile(acts.reshape(-1, acts.shape[-1]), 0.99, axis=0)


def run_paint(args: argparse.Namespace) -> None:
    from jaxvis.analysis.gan.faces import landmark_model
    from jaxvis.app.ganpaint import Painter, check_port, serve

    arch = generator_card(args.name, args.layer)
    check_counts(k=args.k, samples=args.samples)
    if not 0 <= args.port < 65536:
        raise JaxvisError(f"--port must be 0-65535, got {args.port}")
    check_port(args.port)
    landmark_model()
    painter = Painter.for_generator(load_model(arch.name, None), args.layer, args.k, args.samples)
    server = serve(painter, args.port)
    painter.face(0, [])  # compile the stroke program before the first stroke
    host, port = server.server_address[:2]
    print(f"GANPaint on {arch.name} {args.layer}: open http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
