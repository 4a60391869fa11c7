"""What bounding XLA's cache folder costs: jax's own LRU bound against jaxvis's once-per-process eviction.

    python benchmarks/cache_eviction.py [--entries 1200 5000]

jax's `jax_compilation_cache_max_size` rescans the whole folder on every write (each
entry's size and its access-time file); jaxvis instead scans once per process, in a
background thread (`jaxvis.core.compilation_cache.evict_in_background`).  A folder of N
entries (1,200 is what one pytest-xdist worker of the test suite writes) is made with
jax's own layout; the table gives the seconds of one jax write-time scan and of one
jaxvis scan.  Medians of 5.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, median  # noqa: E402


def folder_of(entries: int, root: Path) -> Path:
    """`entries` cache entries of 1 kB, each with jax's access-time file beside it."""
    for k in range(entries):
        (root / f"jit_f-{k:064x}-cache").write_bytes(b"x" * 1024)
        (root / f"jit_f-{k:064x}-atime").write_bytes(time.time_ns().to_bytes(8, "little"))
    return root


def timed(call, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", nargs="+", type=int, default=[1200, 5000])
    args = parser.parse_args()
    from jax._src.lru_cache import LRUCache

    from jaxvis.core.files import evict_least_recently_used

    rows = []
    for entries in args.entries:
        with tempfile.TemporaryDirectory() as root:
            folder = folder_of(entries, Path(root))
            jax_scan = timed(lambda: LRUCache(str(folder), max_size=4 << 30)._evict_if_needed(additional_size=1))
            ours = timed(lambda: evict_least_recently_used((p for p in folder.iterdir() if p.is_file()), 4 << 30))
        rows.append([str(entries), f"{jax_scan * 1000:.0f}", f"{ours * 1000:.0f}"])
    print(f"{machine()}\n\n" + markdown_table(["entries", "jax: ms per write", "jaxvis: ms per process"], rows))


if __name__ == "__main__":
    main()
