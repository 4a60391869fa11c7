"""Feature visualization, jaxvis vs Lucent (the PyTorch port of Lucid), the same job alternately in one run.

Job: MobileNetV2 (real ImageNet weights) `features.14` channels 0..K-1, Fourier
parameterization in decorrelated color space (sd 0.01), Lucid's standard
transforms, Adam 0.05, 128 px images upsampled to 224 before the model (Lucent's
behaviour), K = 1, 8, 32 neurons optimized together.

    pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 && pip install decorator ipython
    python benchmarks/feature_vis.py [--neurons 1 8 32] [--steps 12] [--repeats 3]

Reports neuron-steps/s for both (median over repeats, steady state: jaxvis's
compilation is timed separately), their ratio, and the share of jaxvis's step
time spent outside the model's forward + backward (parameterization,
transforms, objective, optimizer).  Lucent's many-neuron setup is its documented
one: a batch of K images with `channel(layer, n, batch=n)` objectives summed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import jaxvis  # noqa: E402
from common import machine, markdown_table, median, torch_mobilenet_v2, write_section  # noqa: E402
from jaxvis import objectives, param, transforms  # noqa: E402
from jaxvis.optimize import optimize  # noqa: E402

LAYER, SIZE, LR = "features.14", 128, 0.05


def lucent_seconds_per_step(model: torch.nn.Module, neurons: int, steps: int) -> float:
    from lucent.optvis import objectives as lobj
    from lucent.optvis import param as lparam
    from lucent.optvis import render

    objective = sum(lobj.channel(LAYER.replace(".", "_"), n, batch=n) for n in range(neurons))
    run = lambda count: render.render_vis(  # noqa: E731
        model, objective, param_f=lambda: lparam.image(SIZE, batch=neurons), thresholds=(count,),
        show_image=False, progress=False,
    )
    run(2)  # warm-up (allocations, kornia kernels)
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


def jaxvis_run(model: jaxvis.Model, neurons: int, steps: int) -> jaxvis.Result:
    return optimize(
        model, lambda u: objectives.channel(LAYER, u), units=jnp.arange(neurons), param=param.fourier(SIZE),
        transform=transforms.lucid_standard(224), optimizer=optax.adam(LR), steps=3 * steps, chunk=steps,
        progress=False,
    )


def model_seconds(model: jaxvis.Model, neurons: int, runs: int = 5) -> float:
    """Forward to the objective's layer + backward to the images, for the batch the engine feeds the model."""
    grad = jax.jit(jax.grad(lambda m, x: m(x, capture=[LAYER])[LAYER][..., 0].mean(), argnums=1))
    images = jnp.asarray(np.random.default_rng(0).random((neurons, 224, 224, 3), dtype=np.float32))
    grad(model, images).block_until_ready()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        grad(model, images).block_until_ready()
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neurons", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    model = jaxvis.load("mobilenet_v2")
    reference = torch_mobilenet_v2(model)

    rows = []
    for neurons in args.neurons:
        jax_steps, lucent_steps, compile_s, outside_shares = [], [], [], []
        for _ in range(args.repeats):  # alternate the implementations, and the model-only timing
            result = jaxvis_run(model, neurons, args.steps)
            jax_steps.append(result.timings["step_s"])
            compile_s.append(result.timings["first_chunk_s"] - args.steps * result.timings["step_s"])
            outside_shares.append(1.0 - model_seconds(model, neurons) / result.timings["step_s"])
            lucent_steps.append(lucent_seconds_per_step(reference, neurons, args.steps))
        step, lucent = median(jax_steps), median(lucent_steps)
        outside = max(0.0, median(outside_shares))
        row = dict(neurons=neurons, jaxvis=neurons / step, lucent=neurons / lucent, compile=median(compile_s),
                   outside=outside)
        row["ratio"] = row["jaxvis"] / row["lucent"]
        rows.append(row)
        print(f"{neurons:3d} neurons: jaxvis {row['jaxvis']:7.1f} neuron-steps/s  Lucent {row['lucent']:7.1f}  "
              f"ratio {row['ratio']:.2f}x  (compile {row['compile']:.1f}s, outside the model {outside:.0%})", flush=True)

    table = markdown_table(
        ["neurons", "jaxvis neuron-steps/s", "Lucent neuron-steps/s", "jaxvis / Lucent", "jaxvis compile s",
         "jaxvis step time outside the model"],
        [[str(r["neurons"]), f"{r['jaxvis']:.1f}", f"{r['lucent']:.1f}", f"**{r['ratio']:.2f}x**",
          f"{r['compile']:.1f}", f"{r['outside']:.0%}"] for r in rows],
    )
    text = (
        "## Feature visualization vs Lucent (`benchmarks/feature_vis.py`)\n\n"
        f"Machine: {machine()}. MobileNetV2 `features.14` channels, Fourier + decorrelated param, Lucid's "
        f"standard transforms, Adam {LR}, {SIZE} px upsampled to 224; torch-lucent 0.1.8 with kornia 0.4.1. "
        f"Median of {args.repeats} alternating repeats of {args.steps} steady-state steps. \"Outside the model\" "
        "is 1 - (forward to the layer + backward, alone) / (jaxvis step), median over repeats (0% when "
        "the whole step ran as fast as the model alone, within timing noise).\n\n" + table
    )
    if not args.no_write:
        write_section("feature_vis", text)
    print(text)


if __name__ == "__main__":
    main()
