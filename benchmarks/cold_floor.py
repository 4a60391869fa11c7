"""How fast a cold call can be with XLA on this machine: each cold bar against the compile of the bare network gradient.

    python benchmarks/cold_floor.py [--repeats 2] [--jobs LABEL ...]

(The peers as `feature_vis.py` and `attacks_vs_torch.py` install them: torch-lucent,
torchattacks, foolbox with eagerpy; see their docstrings.)

A cold call (a fresh process, an empty compilation cache) pays XLA's compile of
a program that holds at least the network's input gradient, and then runs its
steps.  This script measures, in one run and in fresh processes with the
compilation caches off:

- the *floor*: tracing, lowering and XLA compile of the bare input gradient of
  MobileNetV2 at the job's input shape (nothing but the network: no
  parameterization, transforms, optimizer or loop), with jaxvis's CPU fast paths
  and with plain `lax` convolutions, and one run of that gradient;
- each job's end to end calls on both sides, as `feature_vis.py` and
  `attacks_vs_torch.py` measure them (jaxvis's cold and warm call, the peer's
  first call).

The best cold speed-up of a program that compiles the network's gradient
whole is then `peer first / (floor + jaxvis warm)`: the peer's whole first call
over the floor's compile plus jaxvis's steps as fast as they already run (for
the plain formulation, the warm call scaled by its gradient's time over the
fast one's); the better formulation counts.  A bar above that ceiling cannot
be met by cutting jaxvis's compile, only by faster steps, a faster XLA, or
not compiling the gradient as one program.  Jobs: the
cold bars of #11 (one neuron, 64 and 512 steps, against Lucent) and #12 (PGD-10
at batch 16 against torchattacks and foolbox's JAX backend, APGD-CE-100
against torchattacks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))

from common import (MACHINE_HEADER, ROWS_NAME_THEIR_MACHINE, in_fresh_process, keep_row,  # noqa: E402
                    machine, markdown_table, median, processor, write_section)

CACHES_OFF = {**os.environ, "JAXVIS_COMPILATION_CACHE": "off"}  # every process compiles what it runs

# label: (script, peer, job arguments, bare-gradient shape and target, bar on the cold speed-up)
JOBS = {
    "visualize 1 neuron x 64 steps vs Lucent": ("feature_vis.py", "lucent", (1, 64), "visualize:1", 1.0),
    "visualize 1 neuron x 512 steps vs Lucent": ("feature_vis.py", "lucent", (1, 512), "visualize:1", 1.5),
    "PGD-10 L-inf batch 16 vs torchattacks": ("attacks_vs_torch.py", "torchattacks", ("pgd10", 16), "pgd:16", 1.5),
    "PGD-10 L-inf batch 16 vs foolbox-jax": ("attacks_vs_torch.py", "foolbox-jax", ("pgd10", 16), "pgd:16", 10.0),
    "APGD-CE-100 L-inf batch 16 vs torchattacks": ("attacks_vs_torch.py", "torchattacks", ("apgd100", 16), "pgd:16",
                                                   2.0),
}
FORMULATIONS = ("fast", "plain")  # jaxvis's CPU fast paths (its default), plain `lax` convolutions


def floor_worker(target: str, fast: str) -> dict:
    """Seconds to trace, lower and compile the bare input gradient, and of one run of it (median of 5)."""
    import jax
    import jax.numpy as jnp

    import jaxvis

    model = jaxvis.load("mobilenet_v2").with_fast_paths(fast == "fast")
    model.layers  # the layer-name table, traced once per process, is not part of the gradient
    kind, batch = target.split(":")
    images = jnp.zeros((int(batch), 224, 224, 3), jnp.float32)
    if kind == "visualize":  # one channel's mean at features.14, the network cut there (as jaxvis's step)
        def loss(m, x):
            return m(x, capture="features.14")["features.14"][..., 0].mean()
    else:  # cross-entropy of the logits (PGD's loss)
        labels = jnp.zeros((int(batch),), jnp.int32)

        def loss(m, x):
            return -jnp.take_along_axis(jax.nn.log_softmax(m(x)), labels[:, None], axis=1).sum()

    gradient = jax.jit(jax.grad(loss, argnums=1))
    start = time.perf_counter()
    compiled = gradient.trace(model, images).lower().compile()
    done = time.perf_counter()
    compiled(model, images).block_until_ready()
    runs = []
    for _ in range(5):
        begin = time.perf_counter()
        compiled(model, images).block_until_ready()
        runs.append(time.perf_counter() - begin)
    return {"compile_s": done - start, "run_s": median(runs)}


def end_to_end(script: str, side: str, job: tuple) -> dict:
    """One fresh process of `script`'s worker for `side` (jaxvis with its compilation cache off)."""
    return in_fresh_process(os.path.join(os.path.dirname(os.path.abspath(__file__)), script), side, *job,
                            env=CACHES_OFF)


def measure(label: str, repeats: int) -> list[str]:
    script, peer, job, target, bar = JOBS[label]
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):  # the sides alternate
        for formulation in FORMULATIONS:
            floor = in_fresh_process(__file__, target, formulation, env=CACHES_OFF)
            runs.setdefault(f"floor {formulation}", []).append(floor["compile_s"])
            runs.setdefault(f"gradient {formulation}", []).append(floor["run_s"])
        ours = end_to_end(script, "jaxvis", job)
        runs.setdefault("cold", []).append(ours["first"])
        runs.setdefault("warm", []).append(ours["second"])
        runs.setdefault("peer", []).append(end_to_end(script, peer, job)["first"])
        print(f"  {label}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in runs.items()), flush=True)
    m = {name: median(values) for name, values in runs.items()}
    ceiling = max(ceilings(m).values())
    return [label, f"{m['peer']:.1f}", f"{m['cold']:.1f}", f"{m['warm']:.1f}",
            *(f"{m[f'floor {f}']:.1f} / {m[f'gradient {f}'] * 1000:.0f}" for f in FORMULATIONS),
            f"{m['peer'] / m['cold']:.2f}x", f"**{ceiling:.2f}x**", f"{bar:.1f}x",
            "yes" if ceiling >= bar else "**no**", str(repeats)]


def ceilings(m: dict[str, float]) -> dict[str, float]:
    """Per formulation: the peer's first call over (its floor + jaxvis's warm call with the steps scaled by
    that formulation's gradient time over the fast paths', which jaxvis's steps use)."""
    return {f: m["peer"] / (m[f"floor {f}"] + m["warm"] * m[f"gradient {f}"] / m["gradient fast"])
            for f in FORMULATIONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        print(json.dumps(floor_worker(*args.worker)))
        return
    rows = []
    for label in args.jobs:
        row = measure(label, args.repeats)
        rows = keep_row("cold_floor", label, row) if not args.no_write else [*rows, [processor(), *row]]
    table = markdown_table(
        [MACHINE_HEADER, "job", "peer first s", "jaxvis cold s", "jaxvis warm s", "floor s / gradient ms (fast paths)",
         "floor s / gradient ms (plain lax)", "speed-up cold", "ceiling", "bar", "bar within reach", "repeats"], rows)
    text = (
        "## How fast a cold call can be here (`benchmarks/cold_floor.py`)\n\n"
        f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. *Floor*: tracing + lowering + XLA compile of "
        "the bare input gradient of MobileNetV2 at the job's input shape (224 px; the visualization's one channel "
        "of features.14, the attacks' cross-entropy of 16 photos), nothing else in the program, in a fresh process "
        "with the caches off, and one run of it; with jaxvis's CPU fast paths (what its steps use) and with plain "
        "`lax` convolutions. *Ceiling*: the cold speed-up of a program that compiled no more than that gradient "
        "and stepped as fast as jaxvis does now (its warm call, scaled by the plain gradient's time over the fast "
        "one's for the plain formulation), the better of the two: peer first call / (floor + warm call). A bar "
        "above its ceiling cannot be met by cutting jaxvis's compile. Cold, warm and the peer's first call as in "
        "`feature_vis.py` and `attacks_vs_torch.py`, jaxvis's compilation cache off. Medians over alternating "
        "repeats.\n\n" + table)
    if not args.no_write:
        write_section("cold_floor", text)
    print(text)


if __name__ == "__main__":
    main()
