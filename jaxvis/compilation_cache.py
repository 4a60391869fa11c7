"""XLA's persistent compilation cache, on by default: a new process with the same shapes skips compiling.

Compiling one optimization program takes seconds on a CPU (see `jaxvis.programs`,
which times every compilation by phase).  jaxvis turns jax's persistent
compilation cache on before its first compilation, in the library as in the
command line, so a second process with the same shapes loads the program from
disk.  Where, or whether:

    JAXVIS_COMPILATION_CACHE=DIR   # where (default: $JAXVIS_CACHE/xla, i.e. ~/.cache/jaxvis/xla)
    JAXVIS_COMPILATION_CACHE=off   # never (also: 0, false, no, none)

A cache directory configured in jax itself (`jax_compilation_cache_dir`) is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from jaxvis.load import cache_dir

ENV = "JAXVIS_COMPILATION_CACHE"
OFF = {"0", "off", "false", "no", "none"}
_decided: list[Path | None] = []  # ensure_compilation_cache's answer, once per process


def enable_compilation_cache(directory: str | Path | None = None) -> Path | None:
    """Turn on jax's persistent compilation cache; returns its directory, or None when switched off.

    directory: overrides $JAXVIS_COMPILATION_CACHE.  A cache directory the user already
    configured in jax is kept as it is.
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    setting = str(directory) if directory is not None else os.environ.get(ENV, "")
    if setting.strip().lower() in OFF:
        return None
    location = Path(setting).expanduser() if setting.strip() else cache_dir() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(location))
    compilation_cache.reset_cache()  # jax decides once per process; let the next compilation decide again
    return location


def ensure_compilation_cache() -> Path | None:
    """`enable_compilation_cache()` the first time it is called in a process; its answer after that."""
    if not _decided:
        _decided.append(enable_compilation_cache())
    configured = jax.config.jax_compilation_cache_dir
    return Path(configured) if configured else None
