"""`jaxvis cache`: what jaxvis keeps between runs (see `jaxvis.core.cache_dirs`), with sizes, and clearing it."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxvis.cli.common import add_parser, print_table
from jaxvis.core.cache_dirs import cache_dir, compilation_dir, gan_dir, runs_dir
from jaxvis.core.files import human

COMMANDS = ("cache",)
KINDS = ("runs", "programs", "models", "gan")
WHAT = {"runs": "interrupted runs' optimization states", "programs": "compiled programs (XLA)",
        "models": "converted weights (safetensors) and layer tables", "gan": "GAN samples"}
EXAMPLES = """  jaxvis cache                    what is kept, where, and its size
  jaxvis cache clear runs         forget interrupted runs (a run another jaxvis is continuing is kept)
  jaxvis cache clear              everything: run states, compiled programs, converted models, GAN samples"""


def add_commands(commands: Any) -> None:
    cache = add_parser(commands, "cache", "list or clear what jaxvis keeps: interrupted runs' states, compiled "
                       "programs, converted models, GAN samples", EXAMPLES)
    cache.add_argument("action", nargs="?", default="list", choices=["list", "clear"], help="list (the default) or "
                       "clear")
    cache.add_argument("kinds", nargs="*", metavar="KIND", help=f"clear: which of {', '.join(KINDS)} (default: all)")
    cache.set_defaults(run=run_cache)


def kept(kind: str) -> list[Path]:
    """The entries of one kind of kept thing: a folder per run state, converted model or GAN sample set, and
    the whole compiled-program folder."""
    if kind == "runs":
        return children(runs_dir())
    if kind == "programs":
        location = compilation_dir()
        return [location] if location is not None and location.is_dir() else []
    if kind == "models":
        from jaxvis.models.catalog import names

        return [entry for name in [*names(), "layers"] for entry in children(cache_dir() / name)]
    return children(gan_dir())


def where(kind: str) -> str:
    """The folder one kind of kept thing lives in."""
    if kind == "programs":
        return str(compilation_dir() or "nowhere: switched off by $JAXVIS_COMPILATION_CACHE")
    return str({"runs": runs_dir(), "models": cache_dir() / "ARCHITECTURE", "gan": gan_dir()}[kind])


def children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def size(path: Path) -> int:
    """Bytes under `path` (a file or a folder, links not followed)."""
    return sum(file.lstat().st_size for file in walk(path))


def walk(path: Path) -> Iterator[Path]:
    if path.is_file() or path.is_symlink():
        yield path
    elif path.is_dir():
        for entry in path.iterdir():
            yield from walk(entry)


def in_use(path: Path) -> bool:
    """A run state that a live jaxvis holds (see `jaxvis.core.run_state.locked`)."""
    from jaxvis.core.run_state import is_alive, lock_holder

    holder = lock_holder(path)
    return holder is not None and is_alive(holder)


def run_cache(args: argparse.Namespace) -> None:
    from jaxvis.core.errors import JaxvisError

    unknown = [kind for kind in args.kinds if kind not in KINDS]
    if unknown or (args.kinds and args.action == "list"):
        raise JaxvisError(f"unknown kind {unknown[0]!r}; choose from {', '.join(KINDS)}" if unknown
                          else "name kinds only to clear them: jaxvis cache clear runs")
    if args.action == "clear":
        clear(args.kinds or list(KINDS))
        return
    rows = [("kind", "entries", "size", "where")]
    for kind in KINDS:
        entries = kept(kind)
        rows.append((kind, str(len(entries)), human(sum(size(entry) for entry in entries)),
                     f"{where(kind)}  ({WHAT[kind]})"))
    print_table(rows)


def clear(kinds: list[str]) -> None:
    for kind in kinds:
        entries = kept(kind)
        busy = [entry for entry in entries if kind == "runs" and in_use(entry)]
        freed = 0
        for entry in entries:
            if entry not in busy:
                freed += size(entry)
                shutil.rmtree(entry, ignore_errors=True)
        print(f"{kind}: removed {len(entries) - len(busy)} ({human(freed)})"
              + (f"; kept {len(busy)} that a running jaxvis holds" if busy else ""))
