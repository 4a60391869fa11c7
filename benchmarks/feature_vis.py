"""Feature visualization, jaxvis vs Lucent (and torch-dreams): what a user waits for, and the hot step.

Job: MobileNetV2 (real ImageNet weights) `features.14` channels 0..K-1, Lucid's
defaults on both sides -- Fourier parameterization in decorrelated color space
(sd 0.01), the standard transforms, Adam 0.05 -- 128 px images upsampled to 224
before the model (Lucent's `render_vis` does so; jaxvis's `visualize` too), K
neurons optimized together (Lucent: a batch of K images with
`channel(layer, n, batch=n)` objectives summed, its documented way), N steps.
jaxvis also redirects the ReLU gradient for the first 16 steps (Lucid's default;
Lucent has no such option).

Every measurement runs in a fresh Python process and times only the call, from
`visualize(...)` / `render_vis(...)` to the returned images:

- cold: the first call in a new process with an empty compilation cache (a first run ever);
- warm: a second call in that process, another seed (a notebook, a script looping over layers);
- cached: the first call in another new process, with the compilation cache the cold run filled
  (every later `jaxvis` run with the same shapes).

torch-dreams (another PyTorch library) renders one image per call with its own
transforms; it runs the same K x N job as K renders of 224 px images, without
random resizing, so its network sees the same 224 px input.

    pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 torch-dreams==4.0.0 && pip install decorator ipython opencv-python-headless
    python benchmarks/feature_vis.py [--neurons 1 8 32] [--steps 64 512] [--repeats 3] [--once 32]
    python benchmarks/feature_vis.py --against REV --steps 64 [--repeats 3]   # jaxvis against another revision

For the hot step: achieved GFLOP/s (XLA's cost analysis of the step, over its
measured time) against this machine's 2048^3 float32 matmul rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

from common import (END_TO_END, MACHINE_HEADER, ROWS_NAME_THEIR_MACHINE, SPEEDUP_HEADER,  # noqa: E402
                    compare_in_fresh_processes, jaxvis_module, keep_row, machine, processor, revisions_table,
                    markdown_table, matmul_gflops, speedup_cells, torch_mobilenet_v2, write_section)

LAYER, SIZE, LR = "features.14", 128, 0.05


# --- workers: one job, two calls, in this (fresh) process ---------------------------------------------


def jaxvis_worker(neurons: int, steps: int) -> dict:
    import jaxvis
    from jaxvis.methods.feature_visualization import run_visualization

    RUN_CHUNK = jaxvis_module("jaxvis.engine.plan").RUN_CHUNK

    model = jaxvis.load("mobilenet_v2")
    spec = f"{LAYER}:0-{neurons - 1}"
    times, results = [], []
    for seed in (0, 1):
        start = time.perf_counter()
        _, result = run_visualization(model, spec, size=SIZE, steps=steps, seed=seed, lr=LR, progress=False)
        times.append(time.perf_counter() - start)
        results.append(result)
    executable = list(RUN_CHUNK.table.values())[-1]
    flops = float(executable.cost_analysis()["flops"])  # the loop body once: one step of all units
    first = results[0].timings
    return {"first": times[0], "second": times[1], "step_s": results[1].timings.get("step_s"),
            "step_flops": flops, **{k: first.get(k, 0.0) for k in ("init_s", "trace_s", "lower_s", "compile_s")}}


def lucent_worker(neurons: int, steps: int) -> dict:
    import jaxvis
    from lucent.optvis import objectives as lobj
    from lucent.optvis import param as lparam
    from lucent.optvis import render

    reference = torch_mobilenet_v2(jaxvis.load("mobilenet_v2"))
    objective = sum(lobj.channel(LAYER.replace(".", "_"), n, batch=n) for n in range(neurons))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        render.render_vis(reference, objective, param_f=lambda: lparam.image(SIZE, batch=neurons),
                          thresholds=(steps,), show_image=False, progress=False)
        times.append(time.perf_counter() - start)
    return {"first": times[0], "second": times[1]}


def dreams_worker(neurons: int, steps: int) -> dict:
    from torch_dreams import Dreamer

    import jaxvis

    reference = torch_mobilenet_v2(jaxvis.load("mobilenet_v2"))
    dreamer = Dreamer(reference, quiet=True, device="cpu")
    layer = reference.features[14]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for n in range(neurons):  # one image per render
            dreamer.render(layers=[layer], width=224, height=224, iters=steps, lr=LR, rotate_degrees=10,
                           scale_min=1.0, scale_max=1.0, custom_func=lambda outs, n=n: -outs[0][:, n].mean())
        times.append(time.perf_counter() - start)
    return {"first": times[0], "second": times[1]}


WORKERS = {"jaxvis": jaxvis_worker, "lucent": lucent_worker, "torch-dreams": dreams_worker}


# --- the comparison -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neurons", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--steps", nargs="+", type=int, default=[64, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--once", nargs="*", type=int, default=[32],
                        help="neuron counts measured with one repeat only (their Lucent runs are the longest)")
    parser.add_argument("--peers", nargs="+", default=["lucent", "torch-dreams"], choices=["lucent", "torch-dreams"])
    parser.add_argument("--dreams-neurons", nargs="+", type=int, default=[1, 8],
                        help="torch-dreams renders one image at a time: compared at these neuron counts")
    parser.add_argument("--worker", nargs=3, metavar=("WHO", "NEURONS", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--against", help="a git revision: jaxvis's visualization at --neurons x --steps against "
                        "it, the revisions' fresh processes alternating (writes feature_vis_revisions.md)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        who, neurons, steps = args.worker
        print(json.dumps(WORKERS[who](int(neurons), int(steps))))
        return
    if args.against:
        jobs = {("jaxvis", n, s): f"{n} units x {s} steps" for n in args.neurons for s in args.steps}
        revisions_table(__file__, args.against, jobs, args.repeats, {"first": "first s (compiles)",
                        "second": "second s", "step_s": "hot step s"}, None if args.no_write else
                        "feature_vis_revisions.md")
        return

    peak = matmul_gflops()
    print(f"matmul peak here: {peak:.0f} GFLOP/s", flush=True)
    jobs = [(peer, neurons, steps) for peer in args.peers
            for neurons in (args.neurons if peer == "lucent" else args.dreams_neurons) for steps in args.steps]
    for peer, neurons, steps in jobs:  # each finished job is kept and written at once: a stopped run loses none
        repeats = 1 if neurons in args.once else args.repeats
        m = compare_in_fresh_processes(__file__, peer, (neurons, steps), repeats)
        gflops = m["step_flops"] / m["step_s"] / 1e9
        compile_s = m["trace_s"] + m["lower_s"] + m["compile_s"] + m["init_s"]
        row = [peer, str(neurons), str(steps), *speedup_cells(m), f"{neurons / m['step_s']:.1f}",
               f"{compile_s:.1f}", f"{gflops:.0f} ({gflops / peak:.0%})", str(repeats)]
        rows = keep_row("feature_vis", f"{peer} {neurons} {steps}", row) if not args.no_write else []
        if args.no_write:
            rows = [[processor(), *row]]
        rows = sorted(rows, key=lambda r: (r[0], r[1] != "lucent", r[1], int(r[2]), int(r[3])))
        table = markdown_table(
            [MACHINE_HEADER, "peer", "neurons", "steps", *SPEEDUP_HEADER, "jaxvis neuron-steps/s (hot)", "jaxvis compile s (cold)",
             "hot step GFLOP/s (of matmul peak)", "repeats"], rows)
        text = (
            "## Feature visualization vs Lucent and torch-dreams (`benchmarks/feature_vis.py`)\n\n"
            f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}, float32 matmul peak {peak:.0f} GFLOP/s (each row's "
            f"share is of the peak measured in its own run). MobileNetV2 `{LAYER}` channels, "
            f"Lucid's defaults on both sides ({SIZE} px upsampled to 224, Fourier + decorrelated param, standard "
            f"transforms, Adam {LR}); torch-lucent 0.1.8 with kornia 0.4.1; torch-dreams 4.0.0 rendering K 224 px "
            f"images one by one. {END_TO_END} jaxvis's second call uses another seed. The hot step: neuron-steps/s "
            "of the warm call's steady state; its flops are XLA's cost analysis of the loop body; compile s = "
            "tracing + lowering + XLA + the initialization program, cold. Each row is kept in "
            "`benchmarks/feature_vis.json` as it finishes; a job not in the table was not measured.\n\n" + table
        )
        if not args.no_write:
            write_section("feature_vis", text)
        print(text, flush=True)


if __name__ == "__main__":
    main()
