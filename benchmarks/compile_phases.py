"""Where compile time goes: tracing, lowering and XLA for the programs of the default visualization, PII and DeepDream.

    python benchmarks/compile_phases.py [--repeats 3]

Each program is compiled in a fresh process with the compilation caches off
(what a first run ever pays), `repeats` times; medians.  Rows:

- the default `jaxvis visualize mobilenet_v2` step program (16 units, 128 px upsampled to
  224, Lucid's transforms, ReLU redirection compiled in) and the same without the redirection;
- its initialization program (Fourier parameters and Adam state), with jax's partitionable
  threefry (jax's default) and with the non-partitionable form jaxvis traces its programs in;
- one Plug-In Inversion stage (4 classes, ensemble 8, 128 px: the 64 px stage) and one DeepDream
  octave (features.10, 274 x 274);
- the PGD program of `benchmarks/attacks_vs_torch.py` (10 steps, foolbox's photos, batch 16).

    python benchmarks/compile_phases.py --against REV [--jobs pgd,visualize] [--repeats 2]

compares with another git revision of jaxvis in the same run (a worktree of REV, imported
in alternating processes), for the A/B that one machine's varying speed between
sessions does not allow; its table goes into the section below the per-machine rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))

from common import (MACHINE_HEADER, ROWS_NAME_THEIR_MACHINE, against_revision, in_fresh_process,  # noqa: E402
                    jaxvis_module, keep_row, machine, markdown_table, median, processor, write_section)

JOBS = {
    "visualize step (default)": "visualize",
    "visualize step, no ReLU redirection": "visualize-plain",
    "visualize init, non-partitionable threefry (jaxvis)": "init",
    "visualize init, partitionable threefry (jax default)": "init-partitionable",
    "PII stage, 64 px": "pii",
    "DeepDream octave, 274 px": "dream",
    "PGD-10 L-inf, 16 photos at 224 px": "pgd",
}


def worker(job: str) -> dict:
    import numpy as np

    import jaxvis

    programs = jaxvis_module("jaxvis.core.programs")
    plan_module = jaxvis_module("jaxvis.engine.plan")
    RUN_CHUNK = plan_module.RUN_CHUNK
    # before its start moved into the chunk program, the engine compiled the initialization apart
    INIT_STATE = getattr(plan_module, "INIT_STATE", None)

    model = jaxvis.load("mobilenet_v2")
    model.layers  # the layer-name table, traced once per process, is not part of any program
    if job.startswith("visualize"):
        from jaxvis.methods.feature_visualization import run_visualization

        run_visualization(model, "features.14:0-15", steps=1, progress=False,
                          relu_override_steps=0 if job.endswith("plain") else 16)
    elif job.startswith("init"):
        param, transforms = jaxvis_module("jaxvis.pieces.param"), jaxvis_module("jaxvis.pieces.transforms")
        adam, Plan = jaxvis_module("jaxvis.pieces.optimizers").adam, jaxvis_module("jaxvis.engine.plan").Plan

        plan = Plan(param.fourier(128), adam(0.05), transforms.lucid_standard(224), transforms.identity(),
                    ("features.14",))
        if job == "init-partitionable":  # trace as jax would by default
            programs.PARTITIONABLE_THREEFRY = True
        initialization = INIT_STATE or programs.Program(plan_module.init_state, "initialization")
        _, times = initialization.executable(plan, np.int32(0), np.arange(16, dtype=np.int32))
        return times.as_dict()
    elif job == "pii":
        from dataclasses import replace

        from jaxvis.methods.pii import DEFAULTS, plug_in_inversion

        plug_in_inversion(model, [1, 130, 207, 309], size=128, ensemble=8, steps=1, progress=False,
                          recipe=replace(DEFAULTS, chunk=1))
    elif job == "dream":
        from jaxvis.methods import dream

        read_image, resize = jaxvis_module("jaxvis.data.io").read_image, jaxvis_module("jaxvis.data.io").resize
        photo = read_image("sample:astronaut")
        dream(model, resize(photo, 384, 384), "features.10", octaves=2, steps=1, progress=False)
    elif job == "pgd":
        from attacks_vs_torch import EPS, STEP, STEPS, photos

        attacks = jaxvis_module("jaxvis.methods.attacks")
        pgd = attacks.pgd

        images, labels = photos(16)
        pgd(model, images, labels, eps=EPS, step_size=STEP, steps=STEPS, random_start=False, early_stop=False)
        # before #32: PGD's own loop program; since, the engine's chunk program and its initialization
        program = getattr(sys.modules[f"{attacks.__name__}.pgd"], "RUN", None)
        if program is None:
            parts = [RUN_CHUNK] + ([INIT_STATE] if INIT_STATE is not None else [])
            return _summed(*(part.last_compile[1].as_dict() for part in parts))
        return program.last_compile[1].as_dict()
    _, times = RUN_CHUNK.last_compile
    return times.as_dict()


def _summed(*phases: dict) -> dict:
    return {k: sum(p.get(k, 0.0) for p in phases) for k in ("trace_s", "lower_s", "compile_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=1, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--against", help="a git revision to compare with, in the same run")
    parser.add_argument("--jobs", help=f"comma-separated, of {','.join(JOBS.values())} (--against only)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        print(json.dumps(worker(args.worker[0])))
        return
    env = {**os.environ, "JAXVIS_COMPILATION_CACHE": "off"}
    if args.against:
        compare_revisions(args.against, args.jobs.split(",") if args.jobs else list(JOBS.values()), args.repeats,
                          env, write=not args.no_write)
        return
    rows = []
    for label, job in JOBS.items():
        runs = [in_fresh_process(__file__, job, env=env) for _ in range(args.repeats)]
        phases = {k: median([r[k] for r in runs]) for k in ("trace_s", "lower_s", "compile_s")}
        total = sum(phases.values())
        row = [label, f"{phases['trace_s']:.2f}", f"{phases['lower_s']:.2f}", f"{phases['compile_s']:.2f}",
               f"**{total:.2f}**", str(args.repeats)]
        rows = keep_row("compile_phases", label, row) if not args.no_write else [*rows, [processor(), *row]]
        print(row, flush=True)
    text = section(rows)
    if not args.no_write:
        write_section("compile_phases", text)
    print(text)


def section(rows: list[list[str]]) -> str:
    """The RESULTS.md section: every machine's rows, then the latest comparison between revisions."""
    table = markdown_table([MACHINE_HEADER, "program", "tracing s", "lowering s", "XLA compile s", "total s",
                            "repeats"], rows)
    return ("## Compile time by phase (`benchmarks/compile_phases.py`)\n\n"
            f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. Each program compiled in a fresh process with the compilation caches off; "
            "medians. Tracing = Python building the jaxpr (Flax modules, vmap, autodiff); lowering = StableHLO; "
            "XLA compile = optimization and LLVM code generation.\n\n" + table + _revision_table())


def compare_revisions(revision: str, jobs: list[str], repeats: int, env: dict, write: bool) -> None:
    """Each job's phases for this tree and for `revision`, in alternating fresh processes; medians."""
    runs = against_revision(__file__, revision, [(job,) for job in jobs], repeats, env)
    rows = []
    for job in jobs:
        label = next(name for name, value in JOBS.items() if value == job)
        for name, by_job in runs.items():
            phases = [median([r[k] for r in by_job[(job,)]]) for k in ("trace_s", "lower_s", "compile_s")]
            rows.append([label, name, *(f"{v:.2f}" for v in phases), f"**{sum(phases):.2f}**", str(repeats)])
    table = markdown_table(["program", "revision", "tracing s", "lowering s", "XLA compile s", "total s", "repeats"],
                           rows)
    text = (f"Against another revision (`--against {revision}`), on {machine()}: the same jobs, the two "
            f"revisions' processes alternating in one run.\n\n{table}")
    print(text)
    if write:
        with open(_REVISION_TABLE, "w", encoding="utf-8") as out:
            out.write(text)
        with open(os.path.join(os.path.dirname(_REVISION_TABLE), "compile_phases.json"), encoding="utf-8") as kept:
            write_section("compile_phases", section(list(json.load(kept).values())))


_REVISION_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compile_phases_revisions.md")


def _revision_table() -> str:
    if not os.path.exists(_REVISION_TABLE):
        return ""
    with open(_REVISION_TABLE, encoding="utf-8") as kept:
        return "\n\n" + kept.read()


if __name__ == "__main__":
    main()
