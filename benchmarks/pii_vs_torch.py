"""Plug-In Inversion, jaxvis vs a PyTorch implementation of the same algorithm, in alternating fresh processes.

The PyTorch side is written from the paper's algorithm (the reference code's
structure: per stage a fresh canvas with the previous image pasted in its
center, Adam (0.5, 0.99) with cosine annealing, roll jitter, ColorShift
ensemble, cross-entropy, clamp), batched over classes the way a user with one
GPU would: all K classes x B views in one forward.  jaxvis runs
`jaxvis.methods.plug_in_inversion` with the same model (MobileNetV2, identical
weights), classes, ensemble, sizes and steps.

    python benchmarks/pii_vs_torch.py [--classes 4] [--ensemble 8] [--size 128] [--steps 24] [--repeats 3]

Reports class-steps/s in steady state (each stage's first steps -- jaxvis's
first chunk, torch's warm-up -- are excluded on both sides) and the seconds a
user waits for a call, cold, warm and with the compilation cache filled, each in
a fresh process (see `common.compare_in_fresh_processes`).  Each job's row is
kept in `pii_vs_torch.json`, so runs at several budgets share the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import jaxvis  # noqa: E402
from common import (END_TO_END, MACHINE_HEADER, ROWS_NAME_THEIR_MACHINE, SPEEDUP_HEADER,  # noqa: E402
                    compare_in_fresh_processes, keep_row, machine, processor,
                    markdown_table, speedup_cells, torch_mobilenet_v2, write_section)
from jaxvis.methods.pii import stage_sizes  # noqa: E402

CLASSES = [1, 130, 207, 309, 980, 950, 417, 954]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def torch_pii(model: torch.nn.Module, classes: list[int], size: int, ensemble: int, steps: int,
              warmup: int) -> tuple[torch.Tensor, float, float]:
    """PII in PyTorch; returns (images, steady-state seconds, total seconds)."""
    count, pad = len(classes), (size // 8) // 2
    targets = torch.tensor(classes).repeat_interleave(ensemble)
    image, steady, start = None, 0.0, time.perf_counter()
    for i in stage_sizes(size):
        canvas = torch.rand(count, 3, i, i)
        if image is not None:
            inner = i - pad
            offset = (i - inner) // 2
            canvas[:, :, offset : offset + inner, offset : offset + inner] = F.interpolate(
                image, size=(inner, inner), mode="bilinear", align_corners=False)
        image = canvas.requires_grad_()
        optimizer = torch.optim.Adam([image], lr=0.01, betas=(0.5, 0.99), eps=1e-8)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps - 1, 1), 0.0)
        for step in range(steps):
            if step == warmup:
                stage_start = time.perf_counter()
            shifts = np.random.randint(-32, 33, size=(count, 2))
            rolled = torch.stack([torch.roll(image[k], tuple(int(s) for s in shifts[k]), dims=(1, 2))
                                  for k in range(count)])
            views = rolled.repeat_interleave(ensemble, dim=0)
            mu = (torch.rand(count * ensemble, 3, 1, 1) - 0.5) * 2
            sigma = ((torch.rand(count * ensemble, 3, 1, 1) - 0.5) * 2).exp()
            logits = model(((views * sigma + mu) - MEAN) / STD)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                image.clamp_(0, 1)
        steady += time.perf_counter() - stage_start
        image = image.detach()
    return image, steady, time.perf_counter() - start


def jax_pii(model: jaxvis.Model, classes: list[int], size: int, ensemble: int, steps: int,
            warmup: int, seed: int = 0) -> tuple[np.ndarray, float, float]:
    from dataclasses import replace

    from jaxvis.methods.pii import DEFAULTS, plug_in_inversion

    start = time.perf_counter()
    result = plug_in_inversion(model, classes, size=size, ensemble=ensemble, steps=steps, progress=False,
                               seed=seed, recipe=replace(DEFAULTS, chunk=warmup))
    total = time.perf_counter() - start
    steady = sum(v for k, v in result.timings.items() if k.endswith("_step_s")) * (steps - warmup)
    return result.images[:, 0], steady, total


def jaxvis_worker(classes: int, size: int, ensemble: int, steps: int, warmup: int) -> dict:
    model = jaxvis.load("mobilenet_v2")
    calls = [jax_pii(model, CLASSES[:classes], size, ensemble, steps, warmup, seed) for seed in (0, 1)]
    return {"first": calls[0][2], "second": calls[1][2], "steady": calls[1][1]}


def torch_worker(classes: int, size: int, ensemble: int, steps: int, warmup: int) -> dict:
    reference = torch_mobilenet_v2(jaxvis.load("mobilenet_v2"))
    calls = [torch_pii(reference, CLASSES[:classes], size, ensemble, steps, warmup) for _ in range(2)]
    return {"first": calls[0][2], "second": calls[1][2], "steady": calls[1][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--ensemble", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=24, help="steps per stage (the reference: 401)")
    parser.add_argument("--warmup", type=int, default=4, help="first steps of each stage left out of steady state")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        who, *job = args.worker
        print(json.dumps({"jaxvis": jaxvis_worker, "torch": torch_worker}[who](*map(int, job))))
        return

    stages = len(stage_sizes(args.size))
    job = (args.classes, args.size, args.ensemble, args.steps, args.warmup)
    m = compare_in_fresh_processes(__file__, "torch", job, args.repeats)
    steady_work = args.classes * stages * (args.steps - args.warmup)
    job_name = f"{args.classes} classes, ensemble {args.ensemble}, {args.size} px, {stages} stages x {args.steps} steps"
    row = [job_name, f"{steady_work / m['steady']:.2f}", f"{steady_work / m['peer_steady']:.2f}",
           f"**{m['peer_steady'] / m['steady']:.2f}x**", *speedup_cells(m), str(args.repeats)]
    rows = keep_row("pii_vs_torch", job_name, row) if not args.no_write else [[processor(), *row]]
    table = markdown_table([MACHINE_HEADER, "job", "jaxvis class-steps/s", "torch class-steps/s", "steady speed-up", *SPEEDUP_HEADER,
                            "repeats"], rows)
    text = (
        "## Plug-In Inversion vs PyTorch (`benchmarks/pii_vs_torch.py`)\n\n"
        f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. MobileNetV2 (identical real weights) in both; the torch implementation batches "
        "all classes x views in one forward. Steady state leaves out the first "
        f"{args.warmup} steps of every stage on both sides (jaxvis's first chunk), measured in the second call. "
        f"{END_TO_END} jaxvis compiles one program per stage size. The reference budget (ensemble 48, 224 px) is "
        "out of reach of this CPU.\n\n" + table
    )
    if not args.no_write:
        write_section("pii_vs_torch", text)
    print(text)


if __name__ == "__main__":
    main()
