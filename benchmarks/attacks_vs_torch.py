"""PGD and APGD end to end: jaxvis against torchattacks 3.5.1 and foolbox 3.3.4 on the same weights and photos.

    pip install --no-deps torchattacks==3.5.1 foolbox==3.3.4 eagerpy==0.30.0
    python benchmarks/attacks_vs_torch.py [--batches 1 16 64] [--others pgd10:16:foolbox-jax ...] [--repeats 2]
    python benchmarks/attacks_vs_torch.py --against REV [--repeats 3]     # jaxvis against another revision

The job of #12's anchor: MobileNetV2, PGD L-infinity, eps 2/255, step 0.5/255,
10 steps, no random start, every image stepping all 10 steps on both sides
(jaxvis's early stopping off: the same work as torchattacks). Images: foolbox's
20 ImageNet photos (labels in their file names), centre-cropped to 224 px;
batches above 20 repeat them mirrored. Each side's first and second call in a
fresh process (`common.compare_in_fresh_processes`); throughput is
images x steps per second of the second call. Beyond PGD-10 against
torchattacks at batch 1, 16 and 64: PGD-10 against foolbox (torch and JAX
backends) and APGD-CE-100 against torchattacks' APGD, at batch 16 (foolbox's
JAX backend takes over a minute per call there). `--against REV`: jaxvis's PGD-10,
APGD-CE-100 and C&W (a reduced budget: 2 rounds of 20 steps; the default 9 x 1000
takes ~30 minutes a call here) at batch 16 against git revision REV, the two
revisions' fresh processes alternating, each with an empty compilation cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import (END_TO_END, MACHINE_HEADER, ROWS_NAME_THEIR_MACHINE, SPEEDUP_HEADER,  # noqa: E402
                    compare_in_fresh_processes, jaxvis_module, keep_row, machine, markdown_table,
                    median, processor, revisions_table, speedup_cells, torch_mobilenet_v2, write_section)

EPS, STEP, STEPS = 2 / 255, 0.5 / 255, 10


def photos(batch: int):
    """foolbox's ImageNet photos and labels, `batch` of them (mirrored copies past 20)."""
    import importlib.util

    import numpy as np

    io = jaxvis_module("jaxvis.data.io")
    center_crop_resize, read_image = io.center_crop_resize, io.read_image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        raise SystemExit("install foolbox for its photos: pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0")
    files = sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))
    images = np.stack([center_crop_resize(read_image(str(f)), 224) for f in files]).astype(np.float32)
    labels = np.asarray([int(f.stem.split("_")[-1]) for f in files])
    while len(images) < batch:
        images, labels = np.concatenate([images, images[:, :, ::-1]]), np.concatenate([labels, labels])
    return np.ascontiguousarray(images[:batch]), labels[:batch]


ATTACKS = {"pgd10": f"PGD-{STEPS} L-inf", "apgd100": "APGD-CE-100 L-inf", "cw2x20": "C&W L2, 2 rounds x 20 steps"}
PEERS = ("torchattacks", "foolbox-torch", "foolbox-jax")
APGD_EPS = 8 / 255


def timed_twice(call) -> dict:
    """Seconds of a first and a second call, and the share of images the second call fooled."""
    times, success = [], None
    for _ in range(2):
        start = time.perf_counter()
        success = call()
        times.append(time.perf_counter() - start)
    return {"first": times[0], "second": times[1], "success": success}


def jaxvis_worker(attack: str, batch: int) -> dict:
    import inspect

    import jaxvis

    attacks = jaxvis_module("jaxvis.methods.attacks")
    apgd, cw, pgd = attacks.apgd, attacks.cw, attacks.pgd

    model = jaxvis.load("mobilenet_v2")
    images, labels = photos(batch)
    quiet = {}
    if "config" in inspect.signature(pgd).parameters:  # on the engine (#32): no progress bar
        RunConfig = jaxvis_module("jaxvis.engine.run_config").RunConfig

        quiet = {"config": RunConfig(progress=False)}
    if attack == "pgd10":
        run = lambda: pgd(model, images, labels, eps=EPS, step_size=STEP, steps=STEPS,  # noqa: E731
                          random_start=False, early_stop=False, **quiet)
    elif attack == "cw2x20":
        run = lambda: cw(model, images, labels, binary_search_steps=2, steps=20)  # noqa: E731
    else:
        run = lambda: apgd(model, images, labels, eps=APGD_EPS, steps=100, early_stop=False, **quiet)  # noqa: E731
    return timed_twice(lambda: float(run().success.mean()))


def torch_reference():
    import torch

    import jaxvis

    class Normalized(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[:, None, None])
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[:, None, None])

        def forward(self, x):
            return self.net((x - self.mean) / self.std)

    return Normalized(torch_mobilenet_v2(jaxvis.load("mobilenet_v2"))).eval()


def torch_worker(attack: str, batch: int) -> dict:
    import torch
    import torchattacks

    reference = torch_reference()
    images, labels = photos(batch)
    x = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(labels, dtype=torch.long)

    def call() -> float:
        if attack == "pgd10":
            adversarial = torchattacks.PGD(reference, eps=EPS, alpha=STEP, steps=STEPS, random_start=False)(x, y)
        else:
            adversarial = torchattacks.APGD(reference, norm="Linf", eps=APGD_EPS, steps=100)(x, y)
        with torch.no_grad():
            return float((reference(adversarial).argmax(1) != y).float().mean())

    return timed_twice(call)


def foolbox_worker(backend: str, attack: str, batch: int) -> dict:
    """foolbox 3.3.4's LinfPGD (no early stopping, as here) on the torch model, or through EagerPy on the
    jaxvis model itself (its JAX backend: each step's operations dispatched eagerly, unjitted)."""
    import foolbox

    if attack != "pgd10":
        raise SystemExit("foolbox 3 has no APGD")
    images, labels = photos(batch)
    pgd = foolbox.attacks.LinfPGD(abs_stepsize=STEP, steps=STEPS, random_start=False)
    if backend == "torch":
        import torch

        fmodel = foolbox.PyTorchModel(torch_reference(), bounds=(0, 1))
        x, y = torch.tensor(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.long)
    else:
        import jax.numpy as jnp

        import jaxvis

        model = jaxvis.load("mobilenet_v2")
        fmodel = foolbox.models.JAXModel(lambda batch_: model(batch_), bounds=(0, 1))
        x, y = jnp.asarray(images), jnp.asarray(labels)
    import numpy as np

    return timed_twice(lambda: float(np.asarray(pgd(fmodel, x, y, epsilons=EPS)[2]).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64], help="PGD-10 vs torchattacks")
    parser.add_argument("--others", nargs="*", default=["pgd10:16:foolbox-torch", "pgd10:16:foolbox-jax",
                                                        "apgd100:16:torchattacks"],
                        help="more jobs as ATTACK:BATCH:PEER")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--against", help="a git revision: jaxvis's attacks at batch 16 against it, alternating")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        who, attack, batch = args.worker
        if who == "jaxvis":
            result = jaxvis_worker(attack, int(batch))
        elif who == "torchattacks":
            result = torch_worker(attack, int(batch))
        else:
            result = foolbox_worker(who.split("-")[1], attack, int(batch))
        print(json.dumps(result))
        return
    if args.against:
        compare_revisions(args.against, args.repeats, write=not args.no_write)
        return
    jobs = [("pgd10", batch, "torchattacks") for batch in args.batches]
    jobs += [(attack, int(batch), peer) for attack, batch, peer in (job.split(":") for job in args.others)]
    rows = []
    for attack, batch, peer in jobs:
        steps = STEPS if attack == "pgd10" else 100
        m = compare_in_fresh_processes(__file__, peer, (attack, batch), args.repeats)
        job = f"{ATTACKS[attack]}, batch {batch}, vs {peer}"
        row = [job, f"{batch * steps / m['warm']:.1f}", f"{batch * steps / m['peer_warm']:.1f}", *speedup_cells(m),
               f"{m['success']:.0%} / {m['peer_success']:.0%}", str(args.repeats)]
        rows = keep_row("attacks_vs_torch", job, row) if not args.no_write else [*rows, [processor(), *row]]
        table = markdown_table([MACHINE_HEADER, "job", "jaxvis images·steps/s", "peer images·steps/s",
                                *SPEEDUP_HEADER, "fooled (jaxvis / peer)", "repeats"], rows)
        text = ("## Adversarial attacks vs torchattacks and foolbox (`benchmarks/attacks_vs_torch.py`)\n\n"
                f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. MobileNetV2 (identical real weights), "
                f"foolbox's 20 labelled ImageNet photos at 224 px (mirrored copies past 20). PGD: eps 2/255, "
                f"step 0.5/255, {STEPS} steps, no random start; APGD-CE: eps 8/255, 100 steps, one restart; no "
                "early stopping on either side (the same work). Peers: torchattacks 3.5.1; foolbox 3.3.4's "
                "LinfPGD on the torch model (foolbox-torch) and, through EagerPy, on the jaxvis model itself "
                "(foolbox-jax). Throughput from the second call. "
                f"{END_TO_END}\n\n" + table)
        if not args.no_write:
            write_section("attacks_vs_torch", text)
        print(text, flush=True)


def compare_revisions(revision: str, repeats: int, write: bool) -> None:
    """jaxvis's attacks at batch 16 in this tree and in `revision`: first and second call, medians, ratios."""
    jobs = {("jaxvis", attack, 16): f"{ATTACKS[attack]}, batch 16" for attack in ATTACKS}
    revisions_table(__file__, revision, jobs, repeats, {"first": "first s (compiles)", "second": "second s"},
                    "attacks_revisions.md" if write else None)


if __name__ == "__main__":
    main()
