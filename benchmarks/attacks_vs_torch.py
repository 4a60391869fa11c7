"""PGD end to end: jaxvis against torchattacks 3.5.1 on the same weights and labelled photos.

    pip install --no-deps torchattacks==3.5.1 foolbox==3.3.4 eagerpy==0.30.0   # foolbox: only for its photos
    python benchmarks/attacks_vs_torch.py [--batches 1 16 64] [--repeats 2]

The job of #12's anchor: MobileNetV2, PGD L-infinity, eps 2/255, step 0.5/255,
10 steps, no random start, every image stepping all 10 steps on both sides
(jaxvis's early stopping off: the same work as torchattacks). Images: foolbox's
20 ImageNet photos (labels in their file names), centre-cropped to 224 px;
batches above 20 repeat them mirrored. Each side's first and second call in a
fresh process (`common.compare_in_fresh_processes`); throughput is
images x steps per second of the second call. foolbox's own attacks are not
timed here yet.
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
                    compare_in_fresh_processes, keep_row, machine, markdown_table, processor, speedup_cells,
                    torch_mobilenet_v2, write_section)

EPS, STEP, STEPS = 2 / 255, 0.5 / 255, 10


def photos(batch: int):
    """foolbox's ImageNet photos and labels, `batch` of them (mirrored copies past 20)."""
    import importlib.util

    import numpy as np

    from jaxvis.io import center_crop_resize, read_image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        raise SystemExit("install foolbox for its photos: pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0")
    files = sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))
    images = np.stack([center_crop_resize(read_image(str(f)), 224) for f in files]).astype(np.float32)
    labels = np.asarray([int(f.stem.split("_")[-1]) for f in files])
    while len(images) < batch:
        images, labels = np.concatenate([images, images[:, :, ::-1]]), np.concatenate([labels, labels])
    return np.ascontiguousarray(images[:batch]), labels[:batch]


def jaxvis_worker(batch: int) -> dict:
    import jaxvis
    from jaxvis.attacks import pgd

    model = jaxvis.load("mobilenet_v2")
    images, labels = photos(batch)
    times, success = [], None
    for _ in range(2):
        start = time.perf_counter()
        result = pgd(model, images, labels, eps=EPS, step_size=STEP, steps=STEPS, random_start=False,
                     early_stop=False)
        times.append(time.perf_counter() - start)
        success = float(result.success.mean())
    return {"first": times[0], "second": times[1], "success": success}


def torch_worker(batch: int) -> dict:
    import torch
    import torchattacks

    import jaxvis

    class Normalized(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406])[:, None, None])
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225])[:, None, None])

        def forward(self, x):
            return self.net((x - self.mean) / self.std)

    reference = Normalized(torch_mobilenet_v2(jaxvis.load("mobilenet_v2"))).eval()
    images, labels = photos(batch)
    x = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(labels, dtype=torch.long)
    times, success = [], None
    for _ in range(2):
        start = time.perf_counter()
        attack = torchattacks.PGD(reference, eps=EPS, alpha=STEP, steps=STEPS, random_start=False)
        adversarial = attack(x, y)
        times.append(time.perf_counter() - start)
        with torch.no_grad():
            success = float((reference(adversarial).argmax(1) != y).float().mean())
    return {"first": times[0], "second": times[1], "success": success}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        who, batch = args.worker
        print(json.dumps({"jaxvis": jaxvis_worker, "torchattacks": torch_worker}[who](int(batch))))
        return
    rows = []
    for batch in args.batches:
        m = compare_in_fresh_processes(__file__, "torchattacks", (batch,), args.repeats)
        row = [f"PGD-{STEPS} L-inf, batch {batch}", f"{batch * STEPS / m['warm']:.1f}",
               f"{batch * STEPS / m['peer_warm']:.1f}", *speedup_cells(m),
               f"{m['success']:.0%} / {m['peer_success']:.0%}", str(args.repeats)]
        rows = keep_row("attacks_vs_torch", row[0], row) if not args.no_write else [*rows, [processor(), *row]]
        table = markdown_table([MACHINE_HEADER, "job", "jaxvis images·steps/s", "torchattacks images·steps/s",
                                *SPEEDUP_HEADER, "fooled (jaxvis / torchattacks)", "repeats"], rows)
        text = ("## Adversarial attacks vs torchattacks (`benchmarks/attacks_vs_torch.py`)\n\n"
                f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. MobileNetV2 (identical real weights), "
                f"foolbox's 20 labelled ImageNet photos at 224 px (mirrored copies past 20), eps 2/255, step "
                f"0.5/255, {STEPS} steps, no random start, no early stopping on either side. Throughput from the "
                f"second call. {END_TO_END}\n\n" + table)
        if not args.no_write:
            write_section("attacks_vs_torch", text)
        print(text, flush=True)


if __name__ == "__main__":
    main()
