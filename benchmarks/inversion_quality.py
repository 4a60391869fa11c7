"""Class-inversion quality, the Plug-In Inversion paper's protocol on the models available offline.

Invert N ImageNet classes with each method on model A, then classify the images
with a *different* model B (MobileNetV2 -> EfficientNet-Lite0 and back): top-1 and
top-5 accuracy for the target, and an Inception-style score
exp(E_x KL(p_B(y|x) || p_B(y))) from B's softmax.  Writes a table to RESULTS.md
and one contact sheet per method and model under docs/.

    python benchmarks/inversion_quality.py [--classes 20] [--size 128] [--pii-steps 100] [--ensemble 8]
                                           [--di-steps 600] [--logit-steps 512] [--methods pii,logit] [--pairs 0 1]
    python benchmarks/inversion_quality.py --rejudge    # classify the kept images again (after a model fix)
    python benchmarks/inversion_quality.py --class-ids 145,292,309 --size 224 --ensemble 48 --pii-steps 401

Every finished run is kept (one row per method, model and budget; a run on fewer
than 20 classes says so in its budget), its raw images under benchmarks/out/.

The reference budgets (PII: 7 stages x 401 steps, ensemble 48, 224 px; DeepInversion:
2000 + 1000 steps at 224 px) are far beyond a 2-core CPU; the budget actually used
is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import jaxvis  # noqa: E402
from common import machine, markdown_table, write_section  # noqa: E402
from jaxvis.app.gallery import contact_sheet  # noqa: E402
from jaxvis.data.imagenet import class_names  # noqa: E402
from jaxvis.methods import invert  # noqa: E402
from jaxvis.pieces.transforms import resize_images  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"
OUT = Path(__file__).resolve().parent / "out"  # the raw images (gitignored), for re-judging
RECORD = Path(__file__).resolve().parent / "inversion_quality.json"
# Varied, recognizable classes (animals, objects, scenes), spread over ImageNet.
CLASSES = [1, 9, 22, 94, 130, 145, 207, 292, 309, 323, 340, 388, 417, 430, 470, 508, 574, 609, 717, 779, 817, 850,
           933, 950, 954, 963, 970, 980, 987, 992]
PAIRS = [("mobilenet_v2", "efficientnet_lite0"), ("efficientnet_lite0", "mobilenet_v2")]
PROTOCOL_CLASSES = 20  # the protocol: at least 20 classes; a row with fewer says so in its budget


def inception_score(probabilities: np.ndarray) -> float:
    marginal = probabilities.mean(axis=0, keepdims=True)
    kl = np.sum(probabilities * (np.log(probabilities + 1e-12) - np.log(marginal + 1e-12)), axis=1)
    return float(np.exp(kl.mean()))


def judge(model: jaxvis.Model, images: np.ndarray, classes: list[int]) -> dict[str, float]:
    """Top-1, top-5 and Inception score under `model`, at the images' own size (fixed-size nets: resized)."""
    batch = resize_images(images, model.input_size) if model.arch.fixed_size else images
    probabilities = np.asarray(jax.nn.softmax(jax.jit(lambda m, x: m(x))(model, batch), axis=-1), np.float64)
    ranks = np.argsort(-probabilities, axis=1)
    return {
        "top1": float(np.mean(ranks[:, 0] == classes)),
        "top5": float(np.mean([c in r[:5] for c, r in zip(classes, ranks)])),
        "inception_score": inception_score(probabilities),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--class-ids", help="instead: these of the 30 listed classes, comma-separated (a subset "
                        "run, labelled so), e.g. the hardest ones at a costly budget")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--pii-steps", type=int, default=100, help="per stage (reference 401)")
    parser.add_argument("--ensemble", type=int, default=8, help="PII ColorShift views (reference 48)")
    parser.add_argument("--di-steps", type=int, default=600, help="total, 2/3 at half resolution (reference 3000)")
    parser.add_argument("--logit-steps", type=int, default=512, help="Lucid's default 512")
    parser.add_argument("--methods", default="pii,deepinversion,logit")
    parser.add_argument("--pairs", type=int, nargs="+", default=[0, 1], help="0: MobileNetV2 -> Lite0, 1: back")
    parser.add_argument("--rejudge", action="store_true",
                        help="classify the saved images (benchmarks/out) again with the current models; no inversion")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    classes = chosen_classes(args.class_ids) if args.class_ids else CLASSES[: args.classes]
    low = args.di_steps * 2 // 3
    options = {
        "pii": {"size": args.size, "steps": args.pii_steps, "ensemble": args.ensemble},
        "deepinversion": {"size": args.size, "resolutions": ((2, low), (1, args.di_steps - low))},
        "logit": {"size": args.size, "steps": args.logit_steps},
    }
    subset = "" if classes == CLASSES[:PROTOCOL_CLASSES] else f", first {len(classes)} classes"
    if args.class_ids and subset:
        subset = f", classes {','.join(map(str, classes))}"
    budgets = {
        "pii": f"{args.size} px, {args.pii_steps} steps/stage, ensemble {args.ensemble}{subset}",
        "deepinversion": f"{args.size} px, {low} + {args.di_steps - low} steps{subset}",
        "logit": f"{args.size} px, {args.logit_steps} steps{subset}",
    }
    models = {name: jaxvis.load(name) for pair in args.pairs for name in PAIRS[pair]}
    runs = json.loads(RECORD.read_text())["runs"] if RECORD.exists() and not args.no_write else []
    if args.rejudge:
        runs = [rejudged(run, models) for run in runs]
        RECORD.write_text(json.dumps({"runs": runs}, indent=1))
        write_section("inversion_quality", report(runs))
        print(report(runs))
        return
    names = class_names()
    for pair in args.pairs:
        source, judge_name = PAIRS[pair]
        for method in args.methods.split(","):
            start = time.perf_counter()
            result = invert(models[source], classes, method=method, **options[method])
            seconds = time.perf_counter() - start
            images = result.images[:, 0]
            OUT.mkdir(exist_ok=True)
            np.savez_compressed(saved_images(method, source, budgets[method]), images=images, classes=classes,
                                budget=budgets[method])
            run = {"method": method, "model": source, "judge": judge_name, "budget": budgets[method],
                   "classes": classes, "seconds": seconds, "cross": judge(models[judge_name], images, classes),
                   "same": judge(models[source], images, classes)}
            same_run = (method, source, budgets[method])  # a run at another budget is kept beside it
            runs = [r for r in runs if (r["method"], r["model"], r["budget"]) != same_run] + [run]
            print(" | ".join(row(run)), flush=True)
            if not subset:  # the docs show full-protocol runs
                labels = [names[c][:18] for c in classes]
                Image.fromarray(contact_sheet(images, labels, columns=5)).convert("RGB").save(
                    DOCS / f"inversion-{method}-{source}.jpg", quality=90)
            if not args.no_write:  # every finished run is kept at once
                RECORD.write_text(json.dumps({"runs": runs}, indent=1))
                write_section("inversion_quality", report(runs))
    print(report(runs))


def chosen_classes(text: str) -> list[int]:
    """`--class-ids`: indices from CLASSES, in CLASSES' order."""
    try:
        wanted = {int(c) for c in text.split(",") if c.strip()}
    except ValueError:
        raise SystemExit(f"--class-ids takes comma-separated class indices, got {text!r}") from None
    unknown = sorted(wanted - set(CLASSES))
    if unknown or not wanted:
        raise SystemExit(f"--class-ids must name some of the harness's classes {CLASSES}; not among them: {unknown}")
    return [c for c in CLASSES if c in wanted]


def saved_images(method: str, model: str, budget: str) -> Path:
    """Where a run's raw images are kept (gitignored), one file per method, model and budget."""
    return OUT / f"inversion-{method}-{model}-{re.sub(r'[^0-9a-z]+', '-', budget.lower()).strip('-')}.npz"


def rejudged(run: dict, models: dict[str, jaxvis.Model]) -> dict:
    """`run` with its saved images classified again (a run whose images are gone is kept as it was)."""
    saved = saved_images(run["method"], run["model"], run["budget"])
    if run["model"] not in models or run["judge"] not in models or not saved.exists():
        return run
    with np.load(saved) as data:
        if list(data["classes"]) != run["classes"]:
            return run
        images = data["images"]
    return {**run, "cross": judge(models[run["judge"]], images, run["classes"]),
            "same": judge(models[run["model"]], images, run["classes"])}


def row(run: dict) -> list[str]:
    cross, same = run["cross"], run["same"]
    return [run["method"], f"{run['model']} → {run['judge']}", f"{cross['top1']:.0%}", f"**{cross['top5']:.0%}**",
            f"{cross['inception_score']:.1f}", f"{same['top1']:.0%}", f"{same['top5']:.0%}", run["budget"],
            f"{run['seconds'] / 60:.1f}"]


def report(runs: list[dict]) -> str:
    order = {"pii": 0, "deepinversion": 1, "logit": 2}
    runs = sorted(runs, key=lambda r: (r["model"], order.get(r["method"], 9), r["budget"]))
    classes = max((r["classes"] for r in runs), key=len, default=[])  # the protocol's; subset rows say theirs
    table = markdown_table(
        ["method", "inverted on → judged by", "top-1", "top-5", "Inception score (judge)", "same-model top-1",
         "same-model top-5", "budget", "minutes"], [row(r) for r in runs])
    return (
        "## Class inversion quality (`benchmarks/inversion_quality.py`)\n\n"
        f"Machine: {machine()}. {len(classes)} ImageNet classes ({', '.join(map(str, classes))}), real "
        "weights. Images inverted on one network and classified by the *other* at the size they were made "
        "(as in the PII paper, where that size is the networks' 224); Inception-style score from the judge's "
        "softmax over the generated images. The reference budgets (PII 7 x 401 steps, ensemble 48, 224 px; "
        "DeepInversion 2000 + 1000 steps, 224 px) do not fit this CPU; each row names the budget it used. "
        "Logit maximization uses Lucid's defaults (Fourier param, standard transforms, Adam 0.05). "
        "EfficientNet-Lite0 (the TF-ported wheel) sees the inception-style normalization it was trained with. Contact "
        "sheets: `docs/inversion-METHOD-MODEL.jpg`; raw results: `benchmarks/inversion_quality.json`.\n\n" + table
    )

if __name__ == "__main__":
    main()
