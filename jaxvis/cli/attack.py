"""`jaxvis attack`: adversarial examples for photos, with what the model saw before and after.

Writes to --out: per photo the adversarial image as a PNG and the magnified perturbation (grey is
zero; ±the largest change maps to black/white), every adversarial image exactly as float32 in
`adversarial.npy` (a PNG rounds to 8 bits: `run.json` also says whether each PNG as saved still
fools the model), a contact sheet of clean / adversarial / perturbation with top-1 classes and
probabilities, an `index.html` gallery and `run.json`.

`--eps` as a comma list (pgd, fgsm, apgd) is a robustness curve: every eps in one compiled program,
each eps's outputs in its own folder `eps-<value>/`, and on top an `index.html` with the share of
images still classified as on the clean photo at each eps, linking to each folder, and `run.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.cli.common import (DEFAULT_OUT, VIEW, add_parser, check_counts, class_probabilities, classify_view,
                               holding_output, load_model)
from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import write_files, write_whole

RANKINGS = ("carried", "rose", "fell", "pushed")  # jaxvis.analysis.attribution's, here so that --help needs no jax

COMMANDS = ("attack",)
METHODS = ("pgd", "fgsm", "apgd", "cw", "lbfgs")
BOUNDED = ("pgd", "fgsm", "apgd")  # the others minimize the L2 norm and take no eps
EXAMPLES = """  jaxvis attack mobilenet_v2 sample:chelsea sample:coffee             PGD L-inf 2/255, 10 steps
  jaxvis attack mobilenet_v2 photo.jpg --method apgd --eps 8/255 --steps 100
  jaxvis attack mobilenet_v2 sample:chelsea --method cw --target "golden retriever"
  jaxvis attack efficientnet_lite0 sample:rocket --method pgd --norm l2 --eps 0.5 --target 1
  jaxvis attack mobilenet_v2 sample:chelsea sample:coffee --eps 1/255,2/255,4/255       robustness curve"""


def add_commands(commands: Any) -> None:
    attack = add_parser(commands, "attack", "adversarial examples for photos (FGSM, PGD, APGD-CE, C&W, L-BFGS)",
                        EXAMPLES)
    attack.add_argument("name", help="architecture, e.g. mobilenet_v2")
    attack.add_argument("images", nargs="+", help="image files or sample:NAME (attacked as one batch)")
    attack.add_argument("--method", default="pgd", choices=METHODS,
                        help="pgd, fgsm and apgd bound the perturbation by --eps; cw and lbfgs find the smallest "
                             "L2 perturbation that succeeds")
    attack.add_argument("--eps", help="perturbation budget; fractions accepted (default: 2/255 for linf, 0.5 for "
                                      "l2); a comma list (e.g. 1/255,2/255,4/255) sweeps it in one program")
    attack.add_argument("--norm", default="linf", choices=["linf", "l2"], help="pgd and apgd: the eps ball's norm")
    attack.add_argument("--steps", type=int, help="gradient steps (default: the method's own)")
    attack.add_argument("--target", help="a class index or ImageNet name to aim every image at (default: untargeted)")
    attack.add_argument("--size", type=int, help="square size the photos are cropped to (default: the model's input)")
    attack.add_argument("--seed", type=int, default=0, help="pgd and apgd: random start")
    attack.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    attack.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/attack-METHOD-MODEL)")
    attack.add_argument("--explain", metavar="LAYER",
                        help="also show, per image, the units of LAYER that carry the attack, each with its "
                             "feature visualization and its map on the clean and the adversarial image "
                             "(Bau et al. 2020); run.json ranks the units every way")
    attack.add_argument("--explain-by", default="carried", choices=RANKINGS,
                        help="--explain: which units to show: carried (restoring the unit's clean map removes "
                             "most of the adversarial margin; the default), rose / fell (mean activation rose or "
                             "fell most), pushed (gradient x activation toward the adversarial class rose most)")
    attack.add_argument("--explain-units", type=int, default=4, help="--explain: units shown per image")
    attack.add_argument("--explain-steps", type=int, default=256,
                        help="--explain: feature-visualization steps (Lucid's 512 for full quality)")
    attack.set_defaults(run=run_attack)


def parse_budget(text: str) -> float:
    """`2/255`, `0.5` or `8e-3` as a float, or a clear error."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise JaxvisError(f"--eps {text!r} is not a number or a fraction such as 2/255") from None
    if not value > 0:
        raise JaxvisError(f"--eps must be positive, got {text}")
    return value


def parse_budgets(text: str) -> float | list[float]:
    """`--eps`: one budget, or a comma list of them (a sweep; distinct values)."""
    values = [parse_budget(part) for part in text.split(",")]
    if len(set(values)) < len(values):
        raise JaxvisError(f"--eps {text!r} repeats a value; give each budget once")
    return values[0] if len(values) == 1 else values


def attack_options(method: str, eps: str | None, norm: str, steps: int | None, seed: int) -> dict[str, Any]:
    """The attack function's keyword options for a command line request (checked, nothing loaded)."""
    if method not in BOUNDED:
        if eps is not None:
            raise JaxvisError(f"--method {method} finds the smallest L2 perturbation itself; leave out --eps "
                              "(or use pgd, fgsm or apgd for a bounded attack)")
        if norm != "linf":
            raise JaxvisError(f"--method {method} is an L2 attack; --norm does not apply")
        return {} if steps is None else {"steps": steps}
    if method == "fgsm" and (norm != "linf" or steps not in (None, 1)):
        raise JaxvisError("fgsm is one L-inf step of size eps; --norm and --steps do not apply")
    options: dict[str, Any] = {"eps": parse_budgets(eps) if eps else (2 / 255 if norm == "linf" else 0.5)}
    if method != "fgsm":
        options.update(norm=norm, seed=seed, **({} if steps is None else {"steps": steps}))
        if method == "pgd" and norm == "linf":  # Madry et al.'s ratio; torchattacks' 2/255 default step
            options["step_size"] = [e / 4 for e in options["eps"]] if swept(options) else options["eps"] / 4
    return options


def swept(options: dict[str, Any]) -> bool:
    return isinstance(options.get("eps"), list)


def cell_options(options: dict[str, Any], cell: int) -> dict[str, Any]:
    """A sweep's options for one eps (the lists' entries `cell`)."""
    return {name: value[cell] if isinstance(value, list) else value for name, value in options.items()}


def run_attack(args: argparse.Namespace) -> None:
    from jaxvis.app.gallery import check_output, prepare_output
    from jaxvis.data.imagenet import class_index, require_classifier
    from jaxvis.data.io import read_photo
    from jaxvis.methods.attacks.common import check_eps
    from jaxvis.models.load import architecture
    from jaxvis.models.request import check_image_size

    arch = architecture(args.name)
    require_classifier(arch.name, arch.num_classes, "jaxvis attack (a class attack)")
    check_counts(steps=args.steps, size=args.size, explain_units=args.explain_units,
                 explain_steps=args.explain_steps)
    options = attack_options(args.method, args.eps, args.norm, args.steps, args.seed)
    size = args.size or arch.input_size
    check_image_size(arch, size, size)
    for eps in (options["eps"] if swept(options) else [options["eps"]]) if "eps" in options else []:
        check_eps(eps, args.norm, (size, size, 3))
    if args.explain is not None and swept(options):
        raise JaxvisError("--explain shows one attack's units; give one --eps with it")
    if args.explain is not None:
        from jaxvis.cli.methods import check_layers

        check_layers(arch, [args.explain])
    photos = np.stack([read_photo(source, size, arch.min_size, arch.name) for source in args.images])
    target = None if args.target is None else class_index(args.target, arch.num_classes)
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"attack-{args.method}-{arch.name}")
    from jaxvis.methods import attacks

    with holding_output(out):
        model = load_model(args.name, args.weights)
        clean = class_probabilities(model, photos)
        labels = clean.argmax(-1)  # untargeted: move each photo off the model's own clean class
        targets = None if target is None else np.full(len(photos), target)
        if targets is not None and (targets == labels).any():
            first = int(np.flatnonzero(targets == labels)[0])
            raise JaxvisError(f"{args.images[first]} is already classified as the target class {target}; choose "
                              "another --target")
        out = prepare_output(out)
        print(f"{args.method}: {len(photos)} images on {model.name}", file=sys.stderr)
        start = time.perf_counter()
        result = getattr(attacks, args.method)(model, photos, labels, targets=targets, **options)
        took = time.perf_counter() - start
        if swept(options):
            write_robustness_curve(out, model, args, photos, clean, result, options, took)
            return
        explained = explain_units(model, args, photos, labels, result) if args.explain else None
        _write(out, model, args, photos, clean, result, options, took, explained)


def eps_folder(eps: float) -> str:
    """`eps-2_255` for 2/255, else `eps-0.5`: the folder of one eps of a sweep."""
    from jaxvis.methods.attacks.common import eps_text

    return "eps-" + eps_text(eps).replace("/", "_")


def write_robustness_curve(out: Path, model: Any, args: argparse.Namespace, photos: np.ndarray, clean: np.ndarray,
                           results: list, options: dict[str, Any], took: float) -> None:
    """Each eps's outputs in its folder, and on top the curve: per eps the share of images the attack did not
    move (judged on the saved 8-bit PNGs, as each folder's run.json says)."""
    from jaxvis.app.gallery import environment, robustness_page

    rows = []
    for cell, result in enumerate(results):
        folder = out / eps_folder(options["eps"][cell])
        folder.mkdir(exist_ok=True)
        print(f"eps {options['eps'][cell]:.4g}:")
        _write(folder, model, args, photos, clean, result, cell_options(options, cell), took, None,
               links=[("../index.html", "the robustness curve")])
        images = json.loads((folder / "run.json").read_text(encoding="utf-8"))["images"]
        held = sum(not item["png_still_fools"] for item in images)
        rows.append({"eps": options["eps"][cell], "folder": folder.name, "held": held, "images": len(images),
                     "fooled": int(result.success.sum()), "mean_norm": float(result.norm.mean())})
    record = {"config": {"command": "attack", "model": model.name, "method": args.method, "images": args.images,
                         "norm": results[0].norm_name, **options},
              "environment": environment(), "total_s": took, "curve": rows}
    title = f"{model.name}: {args.method} robustness curve ({len(photos)} images)"
    write_files({out / "run.json": json.dumps(record, indent=1).encode(),
                 out / "index.html": robustness_page(title, rows, results[0].norm_name).encode()})
    for row in rows:
        print(f"eps {row['eps']:.4g}: {row['held']}/{row['images']} images resisted the attack as saved "
              f"({row['fooled']} fooled in float32)")
    print(f"the curve: {out / 'index.html'}; each eps in its folder ({', '.join(r['folder'] for r in rows)})")


def explain_units(model: Any, args: argparse.Namespace, photos: np.ndarray, labels: np.ndarray, result: Any
                  ) -> tuple[Any, dict[int, np.ndarray]]:
    """The unit changes of --explain's layer and a feature visualization of each unit shown (one vectorized run)."""
    import jaxvis
    from jaxvis.analysis.attribution import unit_changes
    from jaxvis.data.io import resize

    changes = unit_changes(model, photos, result.images, args.explain, labels, result.prediction,
                           top=args.explain_units)
    units = sorted({int(u) for u in changes.ranked(args.explain_by).ravel()})
    print(f"--explain: feature visualizations of {len(units)} units of {args.explain}", file=sys.stderr)
    pictures = jaxvis.visualize(model, f"{args.explain}:{','.join(map(str, units))}", steps=args.explain_steps,
                                seed=args.seed)
    height, width = photos.shape[1:3]
    return changes, {unit: resize(picture, height, width) for unit, picture in zip(units, pictures)}


def _write(out: Path, model: Any, args: argparse.Namespace, photos: np.ndarray, clean: np.ndarray, result: Any,
           options: dict[str, Any], took: float, explained: tuple[Any, dict[int, np.ndarray]] | None,
           links: list[tuple[str, str]] = ()) -> None:
    from jaxvis.app.gallery import environment, write_gallery
    from jaxvis.data.imagenet import class_names
    from jaxvis.data.io import npy_bytes, to_float, to_uint8

    names = class_names()
    quantized = [to_float(to_uint8(image)) for image in result.images]  # the pixels of the PNGs to be saved
    after = png_probabilities(model, quantized)
    write_whole(out / "adversarial.npy", npy_bytes(result.images.astype(np.float32)))
    images, labels, values, per_image = [], [], [], []
    for k, source in enumerate(args.images):
        before_class, after_class = int(clean[k].argmax()), int(after[k].argmax())
        stem = f"{k:02d}-{Path(source.removeprefix('sample:')).stem}"
        images += [photos[k], result.images[k], perturbation_map(result.images[k] - photos[k])]
        labels += [f"{stem}-clean-{_short(names[before_class])}-p{clean[k, before_class]:.2f}",
                   f"{stem}-adversarial-{_short(names[after_class])}-p{after[k, after_class]:.2f}",
                   f"{stem}-perturbation-x{0.5 / max(float(np.abs(result.images[k] - photos[k]).max()), 1e-12):.0f}"]
        values += [float(clean[k, before_class]), float(after[k, after_class]), float(result.norm[k])]
        per_image.append({"image": source, "clean": names[before_class], "clean_p": float(clean[k, before_class]),
                          "png": f"image_{labels[-2]}.png", "success": bool(result.success[k]),
                          "norm": float(result.norm[k]), "steps": int(result.steps[k])})
        if explained is not None:
            changes, pictures = explained
            for unit in changes.ranked(args.explain_by)[k]:
                tiles = unit_tiles(changes, k, int(unit), pictures[int(unit)], photos[k], result.images[k])
                images += list(tiles.values())
                labels += [f"{stem}-unit{unit}-{part}-{args.explain_by}-margin{changes.restored[k, unit]:+.3f}"
                           for part in tiles]
                values += [float(changes.restored[k, unit])] * len(tiles)
            per_image[-1]["units"] = _unit_record(changes, k)
    judge_saved_pngs(model, out, per_image, result.images, None if result.targets is None else result.targets.tolist(),
                     judged=(quantized, after))
    config = {"command": "attack", "model": model.name, "method": args.method, "images": args.images,
              "target": None if result.targets is None else int(result.targets[0]), "norm": result.norm_name,
              **options}
    record = {"config": config, "environment": environment(), "total_s": took, "images": per_image,
              "success_rate": result.success_rate}
    title = f"{model.name}: {args.method} ({sum(p['success'] for p in per_image)}/{len(per_image)} fooled)"
    paths = write_gallery(out, title, np.stack(images), labels, values, record, stem="image",
                          value_name="p(top-1) / norm / margin removed by restoring the unit", columns=3,
                          links=links)
    print(f"{model.name} sees each image as `jaxvis classify` does: {VIEW}; the adversarial class is that of the "
          "saved 8-bit PNG")
    for item in per_image:
        print(summary_line(item, result.norm_name, model.name))
    print(f"{len(images)} images in {out}  (contact sheet: {paths['sheet']}, gallery: {paths['index']}; the exact "
          f"float images: {out / 'adversarial.npy'})")


def judge_saved_pngs(model: Any, out: Path, per_image: list[dict[str, Any]], adversarial: np.ndarray,
                     targets: list[int] | None, judged: tuple[list[np.ndarray], np.ndarray] | None = None) -> None:
    """Save each adversarial PNG, read it back as `jaxvis classify` reads it, and record what the model says of
    it and whether it still fools it (off the clean class; onto the target, for a targeted attack).  `judged`:
    pixels already classified and their probabilities, reused where the PNGs read back to exactly those pixels."""
    from jaxvis.data.imagenet import class_names
    from jaxvis.data.io import read_image, save_image

    for item, image in zip(per_image, adversarial):
        save_image(image, out / item["png"])

    read_back = [read_image(out / item["png"]) for item in per_image]
    same = judged is not None and all(np.array_equal(a, b) for a, b in zip(read_back, judged[0]))
    probabilities = judged[1] if same else png_probabilities(model, read_back)
    for k, (item, probs) in enumerate(zip(per_image, probabilities)):
        top = int(probs.argmax())
        fools = class_names()[top] != item["clean"] if targets is None else top == targets[k]
        item.update(adversarial=class_names()[top], adversarial_p=float(probs[top]), png_still_fools=bool(fools))


def png_probabilities(model: Any, images: list[np.ndarray]) -> np.ndarray:
    """Class probabilities of whole images as `jaxvis classify` computes them (see `classify_view`)."""
    return class_probabilities(model, np.stack([classify_view(image, model.input_size) for image in images]))


def summary_line(item: dict[str, Any], norm_name: str, model_name: str) -> str:
    """One image's outcome in words: the clean class, the saved PNG's class, and plainly when the PNG (8-bit
    rounded) no longer fools the model although the float image did."""
    line = (f"{item['image']}: {item['clean']} ({item['clean_p']:.2f}) -> {item['adversarial']} "
            f"({item['adversarial_p']:.2f}) in {item['png']}, {norm_name} {item['norm']:.4g}, {item['steps']} steps")
    if not item["success"]:
        return line + "  [not fooled]"
    if not item["png_still_fools"]:
        return line + (f"\n  the saved PNG no longer fools {model_name}: rounding to 8 bits undid the attack (the float "
                       "image in adversarial.npy still fools it; a larger --eps survives the rounding)")
    return line


def unit_tiles(changes: Any, k: int, unit: int, picture: np.ndarray, clean: np.ndarray, adversarial: np.ndarray
               ) -> dict[str, np.ndarray]:
    """A unit's tiles for image k: its feature visualization and, for a layer with maps, its map over the clean
    and over the adversarial image on one brightness scale (the larger peak of the two)."""
    from jaxvis.analysis.units.examples import overlay

    tiles = {"visualization": picture}
    if changes.clean_maps.ndim == 4:
        before, after = changes.clean_maps[k, ..., unit], changes.adversarial_maps[k, ..., unit]
        peak = max(float(before.max()), float(after.max()))
        tiles.update({"clean-map": overlay(clean, before, peak), "adversarial-map": overlay(adversarial, after, peak)})
    return tiles


def _unit_record(changes: Any, k: int) -> dict[str, Any]:
    """run.json's view of image k's units: the layer, the adversarial margin, and per ranking the units with
    their numbers."""
    def entry(unit: int) -> dict[str, float]:
        return {"unit": int(unit), "clean": float(changes.clean[k, unit]),
                "adversarial": float(changes.adversarial[k, unit]),
                "margin_removed_by_restoring": float(changes.restored[k, unit]),
                "to_true_class": [float(v) for v in changes.true_contribution[k, unit]],
                "to_adversarial_class": [float(v) for v in changes.adversarial_contribution[k, unit]]}

    return {"layer": changes.layer, "adversarial_margin": float(changes.margin[k]),
            **{("pushed_adversarial_class" if by == "pushed" else by): [entry(u) for u in changes.ranked(by)[k]]
               for by in RANKINGS}}


def perturbation_map(delta: np.ndarray) -> np.ndarray:
    """The perturbation magnified to the display range: 0.5 is no change, 0/1 the largest change either way."""
    largest = float(np.abs(delta).max())
    return np.full_like(delta, 0.5) if largest == 0 else 0.5 + delta / (2 * largest)


def _short(name: str) -> str:
    return name.replace(" ", "_").replace("/", "_")[:16]
