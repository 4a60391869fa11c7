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


def seconds(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of `runs` calls of `fn` (which must block until its result is ready)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


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


Timed = Callable[[], tuple[float, float]]  # one run -> (steady-state seconds, total seconds)


def alternate(runs: dict[str, Timed], steady_work: float, total_work: float, repeats: int) -> dict[str, tuple[float, float]]:
    """Run each of `runs` in turn, `repeats` times; median (steady, end-to-end) work per second of each."""
    rates: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runs}
    for repeat in range(repeats):
        for name, run in runs.items():
            steady, total = run()
            rates[name][0].append(steady_work / steady)
            rates[name][1].append(total_work / total)
        print(f"repeat {repeat}: " + ", ".join(f"{n} {v[0][-1]:.2f} (end to end {v[1][-1]:.2f})/s"
                                              for n, v in rates.items()), flush=True)
    return {name: (median(steady), median(total)) for name, (steady, total) in rates.items()}


def warm_cache_seconds(run: Timed) -> float:
    """End-to-end seconds of `run` with jax's persistent compilation cache filled by an identical run before."""
    import tempfile

    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from jaxvis.compilation_cache import enable_compilation_cache

    with tempfile.TemporaryDirectory(prefix="jaxvis-bench-xla-") as directory:
        enable_compilation_cache(directory)
        try:
            run()  # fills the cache
            return run()[1]
        finally:
            jax.config.update("jax_compilation_cache_dir", None)
            compilation_cache.reset_cache()


def keep_row(name: str, job: str, row: list[str]) -> list[list[str]]:
    """Store `row` as the result of `job` in benchmarks/NAME.json; all stored rows, oldest job first."""
    import json

    record = RESULTS.with_name(f"{name}.json")
    rows = json.loads(record.read_text()) if record.exists() else {}
    rows[job] = row
    record.write_text(json.dumps(rows, indent=1))
    return list(rows.values())


def versus_torch_table(name: str, job: str, rates: dict[str, tuple[float, float]], warm: float | None, repeats: int,
                       unit: str, write: bool) -> str:
    """The jaxvis-vs-torch table of benchmark `name`: this `job`'s row added to the kept ones (when `write`).

    rates: median (steady, end-to-end) `unit`/s of "jaxvis" and "torch"; warm: jaxvis end to end with a
    filled compilation cache (None: not measured).
    """
    (jax_steady, jax_total), (torch_steady, torch_total) = rates["jaxvis"], rates["torch"]
    row = [job, f"{jax_steady:.2f}", f"{torch_steady:.2f}", f"**{jax_steady / torch_steady:.2f}x**",
           f"{jax_total:.2f}", f"{torch_total:.2f}", f"**{jax_total / torch_total:.2f}x**",
           "-" if warm is None else f"{warm:.2f}", "-" if warm is None else f"{warm / torch_total:.2f}x", str(repeats)]
    rows = keep_row(name, job, row) if write else [row]
    return markdown_table(
        ["job", f"jaxvis {unit}/s", f"torch {unit}/s", "jaxvis / torch", "end to end jaxvis", "end to end torch",
         "end to end ratio", "jaxvis, warm compilation cache", "ratio, warm cache", "repeats"], rows)
