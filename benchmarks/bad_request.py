"""How long the command line takes to refuse a bad request: the whole command, process start to exit.

    python benchmarks/bad_request.py [--repeats 5]

The requests a new user gets wrong first (`jaxvis visualize` with units the
layer does not have, a layer that does not exist, an unknown model). Each is
checked from the catalog before jax is imported (`jaxvis.models.request`), so the
time is Python's start, numpy and the check.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import (MACHINE_HEADER, ROWS_NAME_THEIR_MACHINE, keep_row, machine, markdown_table,  # noqa: E402
                    median, processor, write_section)

REQUESTS = {
    "units out of range (--channels 0-5000)": ["visualize", "mobilenet_v2", "--channels", "0-5000"],
    "unknown layer (features.99)": ["visualize", "mobilenet_v2", "features.99"],
    "unknown model (mobilenet_v3)": ["visualize", "mobilenet_v3"],
}


def refuse(arguments: list[str], out: Path) -> float:
    script = Path(sys.executable).parent / "jaxvis"
    start = time.perf_counter()
    done = subprocess.run([str(script), *arguments, "--out", str(out)], capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - start
    if done.returncode != 2 or out.exists():
        raise RuntimeError(f"expected a refusal (exit 2, no output folder): {done.returncode}\n{done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxvis-bad-request-") as scratch:
        for label, arguments in REQUESTS.items():
            took = [refuse(arguments, Path(scratch) / "out") for _ in range(args.repeats)]
            row = [label, f"{median(took):.2f}", f"{max(took):.2f}", str(args.repeats)]
            rows = keep_row("bad_request", label, row) if not args.no_write else [*rows, [processor(), *row]]
            print(row, flush=True)
    table = markdown_table([MACHINE_HEADER, "request", "median s", "slowest s", "repeats"], rows)
    text = ("## A bad request refused (`benchmarks/bad_request.py`)\n\n"
            f"{ROWS_NAME_THEIR_MACHINE}; the latest: {machine()}. `jaxvis visualize ...`, process start to exit "
            "with status 2 and no output folder made.\n\n" + table)
    if not args.no_write:
        write_section("bad_request", text)
    print(text)


if __name__ == "__main__":
    main()
