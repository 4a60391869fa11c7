"""How long the README's main job takes: `jaxvis visualize mobilenet_v2`, the whole command, as a user runs it.

    python benchmarks/default_run.py [--repeats 2]

Times the command (process start to exit, weights already converted) twice per
repeat: with an empty compilation cache (a first run) and again with the cache
that run filled (every later run with the same shapes).  Its default job:
MobileNetV2 features.14, channels 0-15, 128 px upsampled to 224, 512 steps,
Lucid's defaults, all 16 units in one vectorized program.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import machine, markdown_table, median, write_section  # noqa: E402

COMMAND = ["visualize", "mobilenet_v2"]


def run_command(out: Path, env: dict) -> float:
    script = Path(sys.executable).parent / "jaxvis"
    start = time.perf_counter()
    done = subprocess.run([str(script), *COMMAND, "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    first, later = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="jaxvis-default-run-") as scratch:
            env = {**os.environ, "JAXVIS_COMPILATION_CACHE": str(Path(scratch) / "xla")}
            first.append(run_command(Path(scratch) / "out", env))
            shutil.rmtree(Path(scratch) / "out")
            later.append(run_command(Path(scratch) / "out", env))
        print(f"repeat {repeat}: first run {first[-1]:.0f} s, later run {later[-1]:.0f} s", flush=True)
    table = markdown_table(["command", "first run (empty compilation cache)", "later runs", "repeats"],
                           [[f"`jaxvis {' '.join(COMMAND)}`", f"{median(first):.0f} s", f"{median(later):.0f} s",
                             str(args.repeats)]])
    text = ("## The main job (`benchmarks/default_run.py`)\n\n"
            f"Machine: {machine()}. The whole command, process start to exit (weights already converted): "
            "16 channels of features.14, 128 px upsampled to 224, 512 steps.\n\n" + table)
    if not args.no_write:
        write_section("default_run", text)
    print(text)


if __name__ == "__main__":
    main()
