"""Shared benchmark helpers: timing, the machine's description, and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def jaxvis_module(path: str):
    """A jaxvis module by its path in the layered package, or by its flat-layout path in an older revision
    (`against_revision` runs a worker of this tree on the other tree's jaxvis): `jaxvis.engine.plan`, else
    `jaxvis.plan`.  Decided by the files of the jaxvis imported (an editable install's finder would
    otherwise hand back this tree's module for a path the other tree lacks)."""
    import importlib

    import jaxvis

    parts = path.split(".")
    package = Path(jaxvis.__file__).parent
    layered = package.joinpath(*parts[1:]).with_suffix(".py").exists() or package.joinpath(*parts[1:]).is_dir()
    return importlib.import_module(path if layered else ".".join(parts[:1] + parts[2:]))


def sample_photos(names: tuple[str, ...] | list[str], size: int):
    """scikit-image's photos shipped with jaxvis (`sample:NAME`), center-cropped to size x size: (N, S, S, 3)."""
    import numpy as np

    from jaxvis.data.io import center_crop_resize, read_image

    return np.stack([center_crop_resize(read_image(f"sample:{name}"), size) for name in names])


def seconds(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of `runs` calls of `fn` (which must block until its result is ready)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def alternating(ours: Callable[[], object], theirs: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median seconds of `ours` and of `theirs` over `runs` calls each, the two interleaved call by call so
    that a machine whose speed drifts (shared cores) slows both sides alike."""
    return tuple(interleaved([ours, theirs], runs))


def interleaved(jobs: list[Callable[[], object]], runs: int) -> list[float]:
    """Median seconds of each job over `runs` rounds, each round calling every job once in turn."""
    rounds = [[seconds(job, 1)[0] for job in jobs] for _ in range(runs)]
    return [median([times[index] for times in rounds]) for index in range(len(jobs))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    """CPU model, core count and library versions, for the results table."""
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    import jax

    parts = [f"{cpu}, {os.cpu_count()} cores", f"jax {jax.__version__} ({jax.default_backend()})"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    return "; ".join(parts)


MACHINE_HEADER = "machine"
ROWS_NAME_THEIR_MACHINE = "Each row names the CPU it was measured on"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; the first column left-aligned, the others right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section `name` of RESULTS.md, leaving the other benchmarks' sections."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nEach section is written by the script it names.\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def torch_state_dict(model) -> dict:
    """The state_dict of the file jaxvis resolved for `model`, so torch runs the identical network."""
    from converters import find_weights, read_state_dict

    return read_state_dict(find_weights(model.arch.pretrained, download=False).path)


def torch_mobilenet_v2(model):
    """torchvision's MobileNetV2 with `model`'s weights, eval mode, parameters frozen."""
    import torch
    import torchvision

    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict({k: torch.as_tensor(v) for k, v in torch_state_dict(model).items()})
    return reference.eval().requires_grad_(False)


def torch_dcgan(model):
    """The PyTorch DCGAN tutorial's generator holding `model`'s weights (read from its weight file), eval mode."""
    import torch

    from converters import find_local

    nn = torch.nn
    layers, widths = [], (100, 512, 256, 128, 64)
    for index, (inputs, outputs) in enumerate(zip(widths, widths[1:])):
        stride, padding = (1, 0) if index == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(inputs, outputs, 4, stride, padding, bias=False), nn.BatchNorm2d(outputs),
                   nn.ReLU(True)]
    net = nn.Module()
    net.main = nn.Sequential(*layers, nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())
    weights = find_local(model.arch.pretrained).path
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"])
    return net.eval().requires_grad_(False)


def in_fresh_process(script: str, *args: object, env: dict | None = None, timeout: float = 7200) -> dict:
    """Run `script --worker ARGS` in a new Python process; the JSON object it prints last."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, script, "--worker", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def compare_in_fresh_processes(script: str, peer: str, job: tuple, repeats: int) -> dict[str, float]:
    """Medians over `repeats` of each side's seconds per call, every call in a fresh process.

    jaxvis: "cold" (first call, empty compilation cache), "warm" (second call there), "cached"
    (first call of a new process with the cache the cold one filled); the peer: "peer_cold"
    and "peer_warm" (its first and second call).  Other numbers the workers report
    (steady-state seconds, flops, compile phases) come back as medians under their names
    (the peer's prefixed "peer_").  The processes alternate between the sides.
    """
    import tempfile

    values: dict[str, list[float]] = {}

    def add(prefix: str, result: dict) -> None:
        for name, value in result.items():
            if isinstance(value, (int, float)) and value is not None:
                values.setdefault(prefix + name, []).append(float(value))

    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="jaxvis-bench-xla-") as cache:
            env = {**os.environ, "JAXVIS_COMPILATION_CACHE": cache}
            cold = in_fresh_process(script, "jaxvis", *job, env=env)
            cached = in_fresh_process(script, "jaxvis", *job, env=env)
        theirs = in_fresh_process(script, peer, *job)
        add("", {**cold, "cold": cold["first"], "warm": cold["second"], "cached": cached["first"]})
        add("peer_", {**theirs, "cold": theirs["first"], "warm": theirs["second"]})
        print(f"  {peer} {job}, repeat {repeat}: jaxvis cold {cold['first']:.1f}s warm {cold['second']:.1f}s "
              f"cached {cached['first']:.1f}s | {peer} {theirs['first']:.1f}s / {theirs['second']:.1f}s", flush=True)
    return {name: median(v) for name, v in values.items()}


def speedup_cells(m: dict[str, float]) -> list[str]:
    """Seconds of both sides and the peer-over-jaxvis ratios for cold, warm and cached calls."""
    return [f"{m['cold']:.1f}", f"{m['warm']:.1f}", f"{m['cached']:.1f}", f"{m['peer_cold']:.1f}",
            f"{m['peer_warm']:.1f}", f"**{m['peer_cold'] / m['cold']:.2f}x**", f"**{m['peer_warm'] / m['warm']:.2f}x**",
            f"{m['peer_cold'] / m['cached']:.2f}x"]


SPEEDUP_HEADER = ["jaxvis cold s", "jaxvis warm s", "jaxvis cached s", "peer first s", "peer second s",
                  "speed-up cold", "speed-up warm", "speed-up cached"]

END_TO_END = (
    "Seconds of the call alone, each in a fresh process: *cold* = jaxvis's first call with an empty compilation "
    "cache; *warm* = its second call in that process; *cached* = the first call of a new process whose "
    "compilation cache the cold run filled. Speed-ups are the peer's seconds over jaxvis's (cold and cached: "
    "against the peer's first call; warm: its second). Medians over alternating repeats."
)


def matmul_gflops(size: int = 2048, runs: int = 5) -> float:
    """This machine's float32 matmul rate through XLA (median of `runs`), the peak the hot steps are held to."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    product = jax.jit(jnp.matmul)
    product(a, a).block_until_ready()
    return 2 * size**3 / median(seconds(lambda: product(a, a).block_until_ready(), runs)) / 1e9


def processor() -> str:
    """This machine's CPU model and core count: the first cell of each kept row."""
    return machine().split(";")[0]


def keep_row(name: str, job: str, row: list[str]) -> list[list[str]]:
    """Store `row` as the result of `job` on this machine in benchmarks/NAME.json; all stored rows (each
    opening with its machine's `processor()`, under `MACHINE_HEADER`), oldest first."""
    import json

    record = RESULTS.with_name(f"{name}.json")
    rows = json.loads(record.read_text()) if record.exists() else {}
    rows[f"{processor()} | {job}"] = [processor(), *row]
    record.write_text(json.dumps(rows, indent=1))
    return list(rows.values())


def against_revision(script: str, revision: str, jobs: list[tuple], repeats: int, env: dict | None = None
                     ) -> dict[str, dict[tuple, list[dict]]]:
    """Each job (`script --worker *job`) run `repeats` times for this tree and for git `revision` (a worktree),
    the two revisions' fresh processes alternating.  Returns {revision name: {job: [worker results]}}; this
    tree's name says when it has uncommitted changes."""
    import os
    import subprocess
    import tempfile

    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(script)), check=True).stdout.strip()
    git = lambda *args: subprocess.run(["git", *args], capture_output=True, text=True, cwd=root,  # noqa: E731
                                       check=True).stdout.strip()
    other_name, here = git("rev-parse", "--short", revision), git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--", "jaxvis", "converters"):
        here += " + uncommitted changes"
    results: dict[str, dict[tuple, list[dict]]] = {here: {}, other_name: {}}
    with tempfile.TemporaryDirectory() as other:
        git("worktree", "add", "--detach", other, revision)
        try:
            trees = {here: root, other_name: other}
            for job in jobs:
                for _ in range(repeats):
                    for name, tree in trees.items():
                        run_env = {**(env or os.environ), "PYTHONPATH": tree}
                        results[name].setdefault(job, []).append(in_fresh_process(script, *job, env=run_env))
                print(job, {name: results[name][job] for name in trees}, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", other], cwd=root, capture_output=True)
    return results


def revisions_table(script: str, revision: str, jobs: dict[tuple, str], repeats: int, fields: dict[str, str],
                    out: str | None) -> str:
    """Each job (`script --worker *job`, labelled by `jobs`) in this tree and in `revision`, fresh processes
    alternating, compilation caches off; per field (a worker's key -> its column name) the medians and the
    ratio (the other revision's seconds over this tree's).  Written to `out` (a file beside the script)."""
    import os

    runs = against_revision(script, revision, list(jobs), repeats, {**os.environ, "JAXVIS_COMPILATION_CACHE": "off"})
    here, other = list(runs)
    rows = []
    for job, label in jobs.items():
        cells = {name: {k: median([r[k] for r in runs[name][job]]) for k in fields} for name in runs}
        rows.append([label, *(f"{cells[n][k]:.3g}" for k in fields for n in runs),
                     *(f"**{cells[other][k] / cells[here][k]:.2f}x**" for k in fields)])
    header = ["job", *(f"{column} ({name})" for column in fields.values() for name in runs),
              *(f"{column}: speed" for column in fields.values())]
    text = (f"Against another revision (`--against {revision}`), on {machine()}: seconds, each in a fresh process "
            f"with compilation caches off, the revisions alternating; medians of {repeats}. Speed = {other}'s "
            f"seconds over {here}'s (above 1: this tree is faster).\n\n{markdown_table(header, rows)}")
    print(text)
    if out:
        Path(script).resolve().with_name(out).write_text(text + "\n", encoding="utf-8")
    return text
