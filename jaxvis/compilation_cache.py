"""XLA's persistent compilation cache, for runs that compile the same programs again.

Compiling one optimization step of MobileNetV2 takes ~8 s on two CPU cores, and a
Plug-In Inversion run compiles one program per resolution stage, a DeepDream run
one per octave.  With the cache on, a second run with the same shapes loads them
from disk.  The `jaxvis` command line turns it on; library users call
`enable_compilation_cache()` once, before their first run.

    JAXVIS_COMPILATION_CACHE=DIR   # where (default: $JAXVIS_CACHE/xla, i.e. ~/.cache/jaxvis/xla)
    JAXVIS_COMPILATION_CACHE=off   # never
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from jaxvis.load import cache_dir

ENV = "JAXVIS_COMPILATION_CACHE"
OFF = {"0", "off", "false", "no", "none"}


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
