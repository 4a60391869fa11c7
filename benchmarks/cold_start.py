"""What a new process costs: each job as a fresh process, with a warm cache and an empty one, split into phases.

    pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 torchattacks==3.5.1 foolbox==3.3.4 eagerpy==0.30.0 && pip install decorator ipython
    python benchmarks/cold_start.py [--jobs visualize-64x1 attack ...] [--repeats 2] [--no-write]
    python benchmarks/cold_start.py --against REV [--jobs ...] [--repeats 3]   # jaxvis against another revision

A user who runs one command waits for the whole process, not for the steady step.
Each job runs as a new Python process, first with an empty jaxvis cache (nothing
compiled or converted before: `JAXVIS_CACHE` a fresh folder, the weights converted
there once beforehand) and then with the cache that run filled, and reports its
phases: `import jax`, the rest of the imports, the model load, then the first
call split by jax's own compile events into tracing, lowering, XLA compiling and
loading from XLA's cache, with the remainder (compute, and the library's own
host work) beside them, and writing the images as PNGs.  The second call in the
same process is the steady cost.  Beside each: the torch peer's new process on
the same job (Lucent's `render_vis`, torchattacks' PGD, torchvision's forward),
its imports, model load and first and second call.  Medians over repeats, the
processes alternating.  `dream` and `invert` have no peer here (`deepdream_vs_torch.py`
and `pii_vs_torch.py` compare their steps).  `--against REV` runs the same jaxvis
processes (empty cache, then warm) for this tree and for git revision REV, alternating,
into `cold_start_revisions.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (against_revision, in_fresh_process, machine, markdown_table, median,  # noqa: E402
                    processor, write_section)

LAYER, SIZE, LR = "features.14", 224, 0.05
PHOTOS, EPS, STEP = 12, 2 / 255, 0.5 / 255
JOBS = {
    "visualize-64x1": "visualize, 1 unit x 64 steps",
    "visualize-512x1": "visualize, 1 unit x 512 steps",
    "visualize-64x8": "visualize, 8 units x 64 steps",
    "visualize-512x8": "visualize, 8 units x 512 steps",
    "attack": f"attack, PGD-10 on {PHOTOS} photos",
    "classify": f"classify {PHOTOS} photos",
    "dream": "dream, one 224 px octave x 10 steps",
    "invert": "invert, PII's first stage (64 px of 256) x 32 steps",
}
PEERS = {"visualize-64x1": "lucent", "visualize-512x1": "lucent", "visualize-64x8": "lucent",
         "visualize-512x8": "lucent", "attack": "torchattacks", "classify": "torchvision"}
COMPILE_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                  "/jax/core/compile/backend_compile_duration": "backend_s",
                  "/jax/compilation_cache/cache_retrieval_time_sec": "cache_load_s"}


# --- the workers: one job each, in a new process ----------------------------------------------------------


def jaxvis_worker(job: str) -> dict:
    begin = time.perf_counter()
    import jax

    imported_jax = time.perf_counter()
    spent: dict[str, float] = {}
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **_: spent.__setitem__(COMPILE_EVENTS[event], spent.get(COMPILE_EVENTS[event], 0.0)
                                                        + duration) if event in COMPILE_EVENTS else None)
    import numpy as np

    import jaxvis
    from jaxvis.data.io import save_image

    call = job_call(job)
    imported = time.perf_counter()
    model = jaxvis.load("mobilenet_v2")
    loaded = time.perf_counter()
    images = call(model, 0)
    first_done = time.perf_counter()
    compile_phases = dict(spent)
    with tempfile.TemporaryDirectory() as out:
        for k, image in enumerate(np.reshape(images, (-1, *np.shape(images)[-3:]))):
            save_image(image, Path(out) / f"{k}.png")
    written = time.perf_counter()
    second_start = time.perf_counter()
    call(model, 1)
    second = time.perf_counter() - second_start
    xla = compile_phases.get("backend_s", 0.0) - compile_phases.get("cache_load_s", 0.0)
    made = sum(compile_phases.get(k, 0.0) for k in ("trace_s", "lower_s", "backend_s"))
    return {"import_jax_s": imported_jax - begin, "imports_s": imported - imported_jax - READING_INPUTS[0],
            "inputs_s": READING_INPUTS[0], "load_s": loaded - imported,
            "trace_s": compile_phases.get("trace_s", 0.0), "lower_s": compile_phases.get("lower_s", 0.0),
            "xla_compile_s": xla, "cache_load_s": compile_phases.get("cache_load_s", 0.0),
            "compute_s": first_done - loaded - made, "write_s": written - first_done,
            "first_s": first_done - loaded, "to_first_result_s": first_done - begin, "process_s": written - begin,
            "second_s": second, "jaxvis_file": jaxvis.__file__}


READING_INPUTS = [0.0]  # seconds `job_call` spent reading the job's photos (the peer reads them too)


def read_photos() -> tuple:
    from attacks_vs_torch import photos

    start = time.perf_counter()
    images_and_labels = photos(PHOTOS)
    READING_INPUTS[0] += time.perf_counter() - start
    return images_and_labels


def job_call(job: str):
    """The library call a job makes: call(model, seed) -> images (any leading axes)."""
    import numpy as np

    import jaxvis

    if job.startswith("visualize"):
        steps, units = (int(n) for n in job.split("-")[1].split("x"))
        return lambda model, seed: jaxvis.visualize(model, f"{LAYER}:0-{units - 1}", steps=steps, size=SIZE, lr=LR,
                                                    seed=seed, progress=False)
    if job in ("attack", "classify"):
        images, labels = read_photos()
        if job == "classify":
            from jaxvis.cli.common import class_probabilities

            return lambda model, seed: (class_probabilities(model, images), images)[1]
        from jaxvis.engine.run_config import RunConfig
        from jaxvis.methods.attacks import pgd

        return lambda model, seed: pgd(model, images, labels, eps=EPS, step_size=STEP, steps=10, random_start=False,
                                       early_stop=False, config=RunConfig(progress=False, seed=seed)).images
    if job == "dream":
        from jaxvis.data.io import center_crop_resize, read_image
        from jaxvis.methods import dream

        photo = center_crop_resize(read_image("sample:chelsea"), SIZE)
        return lambda model, seed: dream(model, photo, "features.10", octaves=1, steps=10, seed=seed,
                                         progress=False).images
    if job == "invert":
        from jaxvis.methods import invert

        class FirstStage(Exception):
            """Raised by `on_stage` with the first stage's images: the job is that stage alone."""

        def first_stage(model, seed):
            def stop(_label, images):
                raise FirstStage(images)

            try:
                invert(model, [1], method="pii", size=256, steps=32, seed=seed, progress=False, on_stage=stop)
            except FirstStage as done:
                return np.asarray(done.args[0])
            raise RuntimeError("PII ran no stage")

        return first_stage
    raise SystemExit(f"unknown job {job}")


def peer_worker(job: str, weights: str) -> dict:
    begin = time.perf_counter()
    import torch
    import torchvision

    if PEERS[job] == "lucent":
        from lucent.optvis import objectives as lobj, param as lparam, render
    elif PEERS[job] == "torchattacks":
        import torchattacks
    imported = time.perf_counter()
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights, weights_only=True))
    net = net.eval().requires_grad_(False)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    loaded = time.perf_counter()

    if PEERS[job] == "lucent":
        steps, units = (int(n) for n in job.split("-")[1].split("x"))
        objective = sum(lobj.channel(LAYER.replace(".", "_"), n, batch=n) for n in range(units))
        call = lambda: render.render_vis(net, objective, param_f=lambda: lparam.image(SIZE, batch=units),  # noqa: E731
                                         thresholds=(steps,), show_image=False, progress=False)
    else:
        from attacks_vs_torch import photos

        images, labels = photos(PHOTOS)
        x, y = torch.tensor(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.long)

        class Normalized(torch.nn.Module):  # the model normalizes its [0, 1] inputs, as jaxvis's does
            def forward(self, batch):
                return net((batch - mean) / std)

        normalized = Normalized().eval()
        if PEERS[job] == "torchattacks":
            call = lambda: torchattacks.PGD(normalized, eps=EPS, alpha=STEP, steps=10, random_start=False)(x, y)  # noqa: E731
        else:
            def call():
                with torch.no_grad():
                    return torch.softmax(normalized(x), -1)
    call()
    first_done = time.perf_counter()
    call()
    return {"imports_s": imported - begin, "load_s": loaded - imported, "first_s": first_done - loaded,
            "to_first_result_s": first_done - begin, "second_s": time.perf_counter() - first_done}


# --- the comparison -----------------------------------------------------------------------------------


def weights_path() -> str:
    import converters

    from jaxvis.models.load import architecture

    return str(converters.find_weights(architecture("mobilenet_v2").pretrained, None, False).path)


def empty_then_warm(job: str) -> dict[str, dict[str, float]]:
    """The job in a new process with an empty cache (the weights converted there beforehand), then in another
    new process with the cache the first one filled."""
    with tempfile.TemporaryDirectory(prefix="jaxvis-cold-start-") as cache:
        env = {**os.environ, "JAXVIS_CACHE": cache}
        env.pop("JAXVIS_COMPILATION_CACHE", None)
        in_fresh_process(__file__, "convert", env=env)
        return {"empty": in_fresh_process(__file__, "jaxvis", job, env=env),
                "warm": in_fresh_process(__file__, "jaxvis", job, env=env)}


def measure(job: str, repeats: int, weights: str) -> dict[str, dict[str, float]]:
    """Medians of the phases: jaxvis with an empty cache, with the cache that run filled, and the peer."""
    runs: dict[str, list[dict]] = {"empty": [], "warm": [], "peer": []}
    for _ in range(repeats):
        both = empty_then_warm(job)
        runs["empty"].append(both["empty"])
        runs["warm"].append(both["warm"])
        if job in PEERS:
            runs["peer"].append(in_fresh_process(__file__, "peer", job, weights))
        print(job, {k: {n: round(v, 2) for n, v in r[-1].items() if isinstance(v, float)} for k, r in runs.items()
                    if r}, flush=True)
    return {kind: {name: median([r[name] for r in results]) for name in results[0] if name != "jaxvis_file"}
            for kind, results in runs.items() if results}


REVISION_COLUMNS = {"to_first_result_s": "to first result s", "second_s": "second call s"}


def revisions_table(revision: str, jobs: list[str], repeats: int) -> str:
    """Each job's new processes (empty cache, then warm) in this tree and in `revision`, alternating."""
    runs = against_revision(__file__, revision, [("both", job) for job in jobs], repeats)
    here, other = list(runs)
    for name, tree_runs in runs.items():  # each revision's workers ran that revision's jaxvis
        files = {r[kind]["jaxvis_file"] for results in tree_runs.values() for r in results for kind in r}
        print(f"{name}: jaxvis from {sorted(files)}")
    rows = []
    for job in jobs:
        for kind in ("empty", "warm"):
            cells = {name: {k: median([r[kind][k] for r in runs[name][("both", job)]]) for k in REVISION_COLUMNS}
                     for name in runs}
            rows.append([JOBS[job], kind, *(f"{cells[n][k]:.2f}" for k in REVISION_COLUMNS for n in runs),
                         *(f"**{cells[other][k] / cells[here][k]:.2f}x**" for k in REVISION_COLUMNS)])
    header = ["job", "cache", *(f"{column} ({name})" for column in REVISION_COLUMNS.values() for name in runs),
              *(f"{column}: speed" for column in REVISION_COLUMNS.values())]
    text = (f"Against another revision (`cold_start.py --against {revision}`), on {machine()}: each job a new "
            "process with an empty cache (the weights converted there beforehand, nothing compiled), then a new "
            "process with the cache that one filled; the revisions alternating; medians of "
            f"{repeats}. *To first result*: from the process's first line to the first call's end; *second call*: "
            f"the same call again in that process. Speed = {other}'s seconds over {here}'s (above 1: this tree is "
            f"faster).\n\n{markdown_table(header, rows)}")
    Path(__file__).with_name("cold_start_revisions.md").write_text(text + "\n", encoding="utf-8")
    return text


def table(results: dict[str, dict]) -> str:
    rows = []
    for job, kinds in results.items():
        peer = kinds.get("peer")
        for kind in ("warm", "empty"):
            m = kinds[kind]
            fixed = sum(m[k] for k in ("imports_s", "load_s", "trace_s", "lower_s", "xla_compile_s", "cache_load_s"))
            rows.append([JOBS[job], kind, str(kinds.get("repeats", "?")), *(f"{m[k]:.2f}" for k in (
                "import_jax_s", "imports_s", "load_s", "trace_s", "lower_s", "xla_compile_s", "cache_load_s",
                "compute_s", "second_s", "write_s", "to_first_result_s")), f"**{fixed:.2f}**",
                f"{m['to_first_result_s'] - m['import_jax_s'] - m['second_s']:.2f}",
                *((f"{peer['to_first_result_s']:.2f}", f"{peer['second_s']:.2f}",
                   f"**{peer['to_first_result_s'] / m['to_first_result_s']:.2f}x**") if peer else ("-", "-", "-"))])
    header = ["job", "cache", "repeats", "import jax s", "other imports s", "model load s", "tracing s", "lowering s",
              "XLA compile s", "XLA cache load s", "rest of first call s", "second call s", "writing PNGs s",
              "to first result s", "fixed cost beyond import jax s", "first result beyond import jax and a second call s",
              "peer to first result s", "peer second call s",
              "speed-up (new process)"]
    return (f"## What a new process costs (`benchmarks/cold_start.py`)\n\n{machine()}. Each job a new process: "
            "*warm*, with the cache an earlier process filled; *empty*, with nothing compiled before (the weights "
            "converted). The first call's tracing, lowering, XLA compile and XLA cache loads are jax's own compile "
            "events; *rest of first call*: everything else in it (compute and host work). *To first result*: from "
            "the process's first line to the first call's end; *fixed cost beyond import jax*: the other imports, "
            "the model load and the first call's tracing, lowering, XLA compiling and cache loads (not reading the "
            "job's photos, which the peer does too; rows kept before that was split off count it as an import); "
            "beside it, the "
            "first result's time less `import jax` and less a second call in the same process (the job's steady "
            "cost; this also counts the first call's host work, and varies with the compute). The peer: torch "
            "2.14.1 on the same weights (Lucent's render_vis, torchattacks' PGD, torchvision's forward), from its "
            "first import to its first call's end. Medians over the repeats, the processes alternating; each job "
            "kept in `benchmarks/cold_start.json` as it finishes.\n\n"
            f"{markdown_table(header, rows)}")


RECORD = Path(__file__).with_suffix(".json")  # {processor: {job: medians}}, each job kept as it finishes


def kept_results() -> dict[str, dict[str, dict[str, float]]]:
    """This machine's finished jobs, in the order of JOBS."""
    mine = json.loads(RECORD.read_text()).get(processor(), {}) if RECORD.exists() else {}
    return {job: mine[job] for job in JOBS if job in mine}


def keep(job: str, result: dict[str, dict[str, float]]) -> None:
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    record.setdefault(processor(), {})[job] = result
    RECORD.write_text(json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--against", help="a git revision: the jaxvis processes of this tree against it")
    args = parser.parse_args()
    if args.worker:
        who, *rest = args.worker
        if who == "convert":
            import jaxvis

            jaxvis.load("mobilenet_v2")
            result = {}
        elif who == "both":
            result = empty_then_warm(*rest)
        else:
            result = jaxvis_worker(*rest) if who == "jaxvis" else peer_worker(*rest)
        print(json.dumps(result))
        return
    if args.against:
        print(revisions_table(args.against, args.jobs, args.repeats))
        return
    weights = weights_path()
    measured = {}
    for job in args.jobs:
        measured[job] = {**measure(job, args.repeats, weights), "repeats": args.repeats}
        if not args.no_write:
            keep(job, measured[job])
    results = measured if args.no_write else kept_results()
    text = table(results)
    print(text)
    if not args.no_write:
        write_section("cold_start", text)


if __name__ == "__main__":
    main()
