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
