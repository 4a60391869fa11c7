"""DeepDream, jaxvis vs a PyTorch implementation of the same algorithm, in alternating fresh processes.

Both: MobileNetV2 (identical real weights), scikit-image's `astronaut` photo, the
original notebook's recipe -- octaves (scale 1.4), steps per octave, random roll
jitter of up to 32 px, gradient ascent on the mean squared activation with the
gradient divided by its mean absolute value, clip to [0, 1], detail carried from
octave to octave.  The torch side captures the layer with a forward hook.

    python benchmarks/deepdream_vs_torch.py [--size 384] [--octaves 4] [--steps 10] [--repeats 3]

Reports steps/s in steady state (each octave's first step left out on both
sides) and the seconds a user waits for a call, cold, warm and with the
compilation cache filled, each in a fresh process (`common.compare_in_fresh_processes`).
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
from jaxvis.data.io import read_image, resize  # noqa: E402
from jaxvis.methods.deepdream import DEFAULTS, octave_sizes  # noqa: E402

JITTER, OCTAVE_SCALE, STEP_SIZE = DEFAULTS.jitter, DEFAULTS.octave_scale, DEFAULTS.step_size

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def torch_dream(model: torch.nn.Module, image: np.ndarray, layer: str, octaves: int, steps: int):
    """Returns (dreamed image, steady-state seconds, total seconds)."""
    captured = {}
    hook = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    photo = torch.from_numpy(image).permute(2, 0, 1)[None]
    start, steady, x, detail = time.perf_counter(), 0.0, None, None
    for h, w in octave_sizes(image.shape[0], image.shape[1], octaves, OCTAVE_SCALE):
        base = F.interpolate(photo, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        detail = torch.zeros_like(base) if detail is None else F.interpolate(detail, size=(h, w), mode="bilinear")
        x = (base + detail).requires_grad_()
        for step in range(steps):
            if step == 1:
                octave_start = time.perf_counter()
            dy, dx = np.random.randint(-JITTER, JITTER + 1, 2)
            model(((torch.roll(x, (int(dy), int(dx)), (2, 3))) - MEAN) / STD)
            loss = captured["a"].square().mean()
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x += STEP_SIZE * grad / (grad.abs().mean() + 1e-8)
                x.clamp_(0, 1)
        steady += time.perf_counter() - octave_start
        detail = (x - base).detach()
    hook.remove()
    return x.detach()[0].permute(1, 2, 0).numpy(), steady, time.perf_counter() - start


def jax_dream(model: jaxvis.Model, image: np.ndarray, layer: str, octaves: int, steps: int):
    from dataclasses import replace

    from jaxvis.methods import dream

    start = time.perf_counter()
    result = dream(model, image, layer, octaves=octaves, steps=steps, progress=False, recipe=replace(DEFAULTS, chunk=1))
    total = time.perf_counter() - start
    steady = sum(v for k, v in result.timings.items() if k.endswith("_step_s")) * (steps - 1)
    return result.images[0, 0], steady, total


def photo(size: int) -> np.ndarray:
    image = read_image("sample:astronaut")
    scale = size / max(image.shape[:2])
    return resize(image, round(image.shape[0] * scale), round(image.shape[1] * scale))


def jaxvis_worker(size: int, layer: str, octaves: int, steps: int) -> dict:
    model = jaxvis.load("mobilenet_v2")
    calls = [jax_dream(model, photo(size), layer, octaves, steps) for _ in range(2)]
    return {"first": calls[0][2], "second": calls[1][2], "steady": calls[1][1]}


def torch_worker(size: int, layer: str, octaves: int, steps: int) -> dict:
    reference = torch_mobilenet_v2(jaxvis.load("mobilenet_v2"))
    calls = [torch_dream(reference, photo(size), layer, octaves, steps) for _ in range(2)]
    return {"first": calls[0][2], "second": calls[1][2], "steady": calls[1][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=384, help="longer side of the photo in pixels")
    parser.add_argument("--layer", default="features.10")
    parser.add_argument("--octaves", type=int, default=DEFAULTS.octaves)
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        who, size, layer, octaves, steps = args.worker
        worker = {"jaxvis": jaxvis_worker, "torch": torch_worker}[who]
        print(json.dumps(worker(int(size), layer, int(octaves), int(steps))))
        return

    m = compare_in_fresh_processes(__file__, "torch", (args.size, args.layer, args.octaves, args.steps),
                                   args.repeats)
    shape = photo(args.size).shape
    steady_work = args.octaves * (args.steps - 1)
    job = f"{shape[0]}x{shape[1]} photo, {args.layer}, {args.octaves} octaves x {args.steps} steps"
    row = [job, f"{steady_work / m['steady']:.2f}", f"{steady_work / m['peer_steady']:.2f}",
           f"**{m['peer_steady'] / m['steady']:.2f}x**", *speedup_cells(m), str(args.repeats)]
    rows = keep_row("deepdream_vs_torch", job, row) if not args.no_write else [[processor(), *row]]
    table = markdown_table([MACHINE_HEADER, "job", "jaxvis steps/s", "torch steps/s", "steady speed-up", *SPEEDUP_HEADER, "repeats"],
                           rows)
    text = (
        "## DeepDream vs PyTorch (`benchmarks/deepdream_vs_torch.py`)\n\n"
        f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. MobileNetV2 (identical real weights), the original notebook's recipe on both "
        "sides. Steady state leaves out each octave's first step on both sides, measured in the second call. "
        f"{END_TO_END} jaxvis compiles one program per octave size.\n\n" + table
    )
    if not args.no_write:
        write_section("deepdream_vs_torch", text)
    print(text)


if __name__ == "__main__":
    main()
