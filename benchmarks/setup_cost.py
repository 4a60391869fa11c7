"""What the README's two set-up commands cost on a fresh clone: install time and virtual environment size.

    python benchmarks/setup_cost.py

Clones this repository's HEAD into a scratch folder and runs the install part of each README set-up
command there, exactly as written up to the job it ends with (`jaxvis visualize ...`, `pytest ...`),
with pip's cache off (a fresh machine's downloads); then measures the `.venv` folder.  The jobs
themselves are timed by `default_run.py` and by the suite's own report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import machine, markdown_table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def set_up_commands(readme: str) -> list[str]:
    """The README's two set-up commands: its first two bash blocks."""
    return re.findall(r"```bash\n(.*?)\n```", readme, re.S)[:2]


def install_part(command: str) -> str:
    """The command up to the job it ends with."""
    return re.split(r" && \.venv/bin/(?:jaxvis|python -m pytest) ", command)[0]


def folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxvis-setup-") as scratch:
        clone = Path(scratch) / "jaxvis"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
        for name, command in zip(("main", "test"), set_up_commands((clone / "README.md").read_text())):
            start = time.perf_counter()
            subprocess.run(["bash", "-c", install_part(command)], cwd=clone, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            took = time.perf_counter() - start
            size = folder_bytes(clone / ".venv")
            print(f"{name}: {took:.0f} s, .venv {size / 1e9:.2f} GB", flush=True)
            rows.append([name, f"{took:.0f} s", f"{size / 1e9:.2f} GB"])
    text = ("## The set-up commands (`benchmarks/setup_cost.py`)\n\n"
            f"Machine: {machine()}. The install part of each README set-up command on a fresh clone, pip's "
            "cache off; `.venv` measured after it (the test command adds to the main command's environment).\n\n"
            + markdown_table(["command", "install", ".venv after it"], rows))
    write_section("setup_cost", text)
    print(text)


if __name__ == "__main__":
    main()
