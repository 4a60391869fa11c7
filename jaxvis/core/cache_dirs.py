"""Where jaxvis keeps things between runs, without importing jax (`jaxvis cache` lists and clears them).

    $JAXVIS_CACHE (default ~/.cache/jaxvis)
        runs/KEY/          interrupted runs' optimization states, one folder per --out (jaxvis.cli.common)
        xla/cpu-DIGEST/    compiled programs, per host processor (jaxvis.core.compilation_cache;
                           $JAXVIS_COMPILATION_CACHE moves or switches it off)
        gan/               generated and segmented GAN samples (jaxvis.analysis.gan.samples)
        ARCH/SHA256/       converted weights as orbax checkpoints (jaxvis.load)
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "JAXVIS_CACHE"
COMPILATION_ENV = "JAXVIS_COMPILATION_CACHE"
OFF = {"0", "off", "false", "no", "none"}


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or os.path.expanduser("~/.cache/jaxvis"))


def runs_dir() -> Path:
    return cache_dir() / "runs"


def compilation_dir(directory: str | Path | None = None) -> Path | None:
    """The compilation cache's base folder (per-processor folders inside), or None when switched off."""
    setting = str(directory) if directory is not None else os.environ.get(COMPILATION_ENV, "")
    if setting.strip().lower() in OFF:
        return None
    return Path(setting).expanduser() if setting.strip() else cache_dir() / "xla"


def gan_dir() -> Path:
    return cache_dir() / "gan"
