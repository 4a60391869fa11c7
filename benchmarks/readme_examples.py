"""How long the README's command-line examples take, each as a user runs it: a new process, process start to exit.

    python benchmarks/readme_examples.py [--repeats 1] [--only style]

Every `jaxvis ...` line in a bash block under the README's "Five examples" is run with an empty
compilation cache (a first run) and again with the cache that run filled (a later run), weights already
converted, outputs in a scratch folder.  The README quotes these times next to its examples.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import machine, markdown_table, median, write_section  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def example_commands(readme: str = README.read_text()) -> list[str]:
    """The `jaxvis` command lines of the bash blocks in the README's examples section."""
    section = readme.split("## Five examples", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("jaxvis ")]


def timed(command: str, out: Path, env: dict[str, str]) -> float:
    words = shlex.split(command)
    script = Path(sys.executable).parent / "jaxvis"
    start = time.perf_counter()
    done = subprocess.run([str(script), *words[1:], "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{command}: {done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", help="run only the commands matching this regular expression")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    for command in example_commands():
        if args.only and not re.search(args.only, command):
            continue
        first, later = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="jaxvis-readme-") as scratch:
                env = {**os.environ, "JAXVIS_COMPILATION_CACHE": str(Path(scratch) / "xla")}
                first.append(timed(command, Path(scratch) / "first", env))
                later.append(timed(command, Path(scratch) / "later", env))
        print(f"{command}: first {median(first):.0f} s, later {median(later):.0f} s", flush=True)
        rows.append([f"`{command}`", f"{median(first):.0f} s", f"{median(later):.0f} s", str(args.repeats)])
    table = markdown_table(["command", "first run (empty compilation cache)", "later runs", "repeats"], rows)
    text = ("## The README's example commands (`benchmarks/readme_examples.py`)\n\n"
            f"Machine: {machine()}. Each command as a new process, start to exit, weights already converted.\n\n"
            + table)
    if args.only:
        text += f"\n\nRun with `--only {args.only}`: the other example commands were not timed in this run."
    if not args.no_write:
        write_section("readme_examples", text)
    print(text)


if __name__ == "__main__":
    main()
