"""A hyperparameter sweep in one program against one call per grid cell, each side a new process.

Job: MobileNetV2 (real ImageNet weights) `features.14` channels 0-3, Lucid's defaults at 64 px (the network
sees 64 px: `model_size`, so that 128 images a step fit a small machine), 2 images per unit, a
4 x 4 grid of learning rate x diversity weight (16 cells, 64 units x 2 images in all). One side calls
`jaxvis.visualize(..., lr=[4 values], diversity=[4 values])` once: the 16 cells x 4 units run vmapped in one
compiled program. The other calls `jaxvis.visualize` 16 times, one cell each (what a user without sweeps
writes: a loop; the calls share one compiled program, since rates and weights are runtime values). Both are
new processes with an empty compilation cache (a first run) and report the whole process's seconds (imports,
model load, compiling, the steps, rendering), and the seconds of the calls alone.

    python benchmarks/sweep.py [--steps 32] [--size 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from common import in_fresh_process, machine, markdown_table, median, write_section  # noqa: E402

LAYER, UNITS, IMAGES = "features.14", "0-3", 2
RATES, DIVERSITIES = [0.01, 0.02, 0.05, 0.1], [0.0, 10.0, 50.0, 100.0]


def worker(who: str, steps: int, size: int) -> dict:
    import numpy as np

    import jaxvis

    model = jaxvis.load("mobilenet_v2")
    spec = f"{LAYER}:{UNITS}"
    options = dict(size=size, model_size=size, steps=steps, batch=IMAGES, progress=False)
    start = time.perf_counter()
    if who == "sweep":
        images = jaxvis.visualize(model, spec, lr=RATES, diversity=DIVERSITIES, **options)
    else:
        images = np.stack([np.stack([jaxvis.visualize(model, spec, lr=rate, diversity=weight, **options)
                                     for weight in DIVERSITIES]) for rate in RATES])
    calls = time.perf_counter() - start
    assert images.shape == (len(RATES), len(DIVERSITIES), 4, IMAGES, size, size, 3), images.shape
    return {"calls_s": calls, "checksum": float(np.asarray(images, np.float64).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.worker:
        who, steps, size = args.worker
        print(json.dumps(worker(who, int(steps), int(size))))
        return
    seconds: dict[str, dict[str, list[float]]] = {"sweep": {}, "separate": {}}
    checksums = {}
    for repeat in range(args.repeats):
        for who in ("sweep", "separate"):  # alternating, each in a new process with an empty cache
            with tempfile.TemporaryDirectory(prefix="jaxvis-sweep-xla-") as cache:
                began = time.perf_counter()
                measured = in_fresh_process(__file__, who, args.steps, args.size,
                                            env={**os.environ, "JAXVIS_COMPILATION_CACHE": cache})
                measured["process_s"] = time.perf_counter() - began
            for name in ("process_s", "calls_s"):
                seconds[who].setdefault(name, []).append(measured[name])
            checksums[who] = measured["checksum"]
            print(f"  repeat {repeat}: {who} process {measured['process_s']:.1f} s, calls {measured['calls_s']:.1f} s",
                  flush=True)
    sweep, separate = ({name: median(values) for name, values in seconds[who].items()} for who in ("sweep", "separate"))
    same = abs(checksums["sweep"] - checksums["separate"]) <= 1e-6 * abs(checksums["separate"])
    rows = [[f"one call, a {len(RATES)} x {len(DIVERSITIES)} grid", f"{sweep['process_s']:.1f}",
             f"{sweep['calls_s']:.1f}", "1.00x"],
            [f"{len(RATES) * len(DIVERSITIES)} calls, one cell each", f"{separate['process_s']:.1f}",
             f"{separate['calls_s']:.1f}", f"**{separate['process_s'] / sweep['process_s']:.2f}x**"]]
    text = (
        "## A sweep in one program against a call per cell (`benchmarks/sweep.py`)\n\n"
        f"{machine()}. MobileNetV2 `{LAYER}` channels {UNITS}, {IMAGES} images per unit, {args.size} px (the "
        f"network sees them at that size), "
        f"{args.steps} steps, Lucid's defaults; a grid of lr {RATES} x diversity {DIVERSITIES} (16 cells, "
        f"{16 * 4} units). Each side is a new process with an empty compilation cache; seconds of the whole process "
        f"and of the calls alone, medians of {args.repeats} alternating repeats; the ratio is the separate calls' "
        f"process seconds over the sweep's. The two sides' images {'agree' if same else 'DIFFER'} "
        "(sums of all pixels within 1e-6).\n\n"
        + markdown_table(["job", "process s", "calls s", "ratio"], rows)
    )
    if not args.no_write:
        write_section("sweep", text)
    print(text)


if __name__ == "__main__":
    main()
