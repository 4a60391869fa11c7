"""XLA's persistent compilation cache, on by default: a new process with the same shapes skips compiling.

Compiling one optimization program takes seconds on a CPU (see `jaxvis.core.programs`,
which times every compilation by phase).  jaxvis turns jax's persistent
compilation cache on before its first compilation, in the library as in the
command line, so a second process with the same shapes loads the program from
disk.  Where, or whether:

    JAXVIS_COMPILATION_CACHE=DIR   # where (default: $JAXVIS_CACHE/xla, i.e. ~/.cache/jaxvis/xla)
    JAXVIS_COMPILATION_CACHE=off   # never (also: 0, false, no, none)

Programs are kept in a subfolder per host processor (`cpu-<digest of its model and
feature flags>`): XLA compiles host code for the processor it runs on, and neither
jax's cache key nor the executable store's names the processor otherwise, so machines
with different processors that share a home directory (a cluster, a CI runner) keep
separate entries instead of loading or overwriting each other's code.
A cache directory configured in jax itself (`jax_compilation_cache_dir`) is kept as it is.

Every program goes in, however quickly it compiled (jax's default keeps only those
that took a second: a PGD call's 50 small programs then compiled again in every
process), and the folder is bounded: past `XLA_CACHE_LIMIT_BYTES` the least
recently used entries are deleted, once per process, by a background thread
(`evict_in_background`).  jax's own bound (`jax_compilation_cache_max_size`) is not
used: it rescans the whole folder on every write (91 ms a write at 1,200 entries
here, `benchmarks/cache_eviction.py`).  Either setting made in jax by the user is kept; where
the user bounds jax's cache, entries without jax's access-time file (an unbounded
cache's, or a process killed between jax's two writes: jax would fail every later
write) get their modification time as their access time.

On a CPU, jax's extra XLA caches (`jax_persistent_cache_enable_xla_caches`: GPU
autotuning results, kept in a folder under the cache) are switched off unless the
user set them: their folder's path goes into every program's cache key, so a cache
folder moved, copied or shared under another path would never be hit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import threading
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from jaxvis.core.cache_dirs import COMPILATION_ENV as ENV, compilation_dir
from jaxvis.core.files import evict_least_recently_used

XLA_CACHE_LIMIT_BYTES = 4 << 30
_decided: list[Path | None] = []  # ensure_compilation_cache's answer, once per process


def enable_compilation_cache(directory: str | Path | None = None) -> Path | None:
    """Turn on jax's persistent compilation cache; returns its directory, or None when switched off.

    directory: overrides $JAXVIS_COMPILATION_CACHE.  A cache directory the user already
    configured in jax is kept as it is.
    """
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    base = compilation_dir(directory)
    if base is None:
        return None
    location = base / host_processor()
    problem = _unwritable(location)
    if problem:
        print(f"jaxvis: not keeping compiled programs: {location} cannot be written ({problem}); set "
              f"{ENV}=DIR to keep them elsewhere", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(location))
    _keep_every_program()
    if jax.config.jax_compilation_cache_max_size != -1:  # the user bounded jax's cache: jax evicts
        give_entries_access_times(location)
    else:
        evict_in_background(location, XLA_CACHE_LIMIT_BYTES)
    compilation_cache.reset_cache()  # jax decides once per process; let the next compilation decide again
    return location


def _unwritable(location: Path) -> str | None:
    """Why files cannot be written in `location` (made if missing), or None when they can."""
    probe = location / f".probe-{os.getpid()}"
    try:
        location.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def _keep_every_program() -> None:
    """Cache programs whatever their compile time, under keys that do not name the folder (on a CPU): unless
    set in jax already (by `jax.config` or its JAX_* environment variables)."""
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0 and \
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # jax's default
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if jax.config.jax_persistent_cache_enable_xla_caches == "xla_gpu_per_fusion_autotune_cache_dir" and \
            "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES" not in os.environ and jax.default_backend() == "cpu":
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")  # keys free of the folder's path


def evict_in_background(location: Path, limit: int) -> threading.Thread:
    """Keep XLA's cache folder within `limit` bytes, least recently used entries deleted first, in a daemon
    thread (a scan of the folder need not hold up the first compilation; stopped mid-way, it resumes in the
    next process).  The exported programs in `programs/` are bounded apart (`jaxvis.core.programs`)."""
    thread = threading.Thread(target=lambda: evict_least_recently_used(
        (entry for entry in location.iterdir() if entry.is_file() and not entry.name.startswith(".")), limit),
        name="jaxvis-cache-eviction", daemon=True)
    thread.start()
    return thread


def give_entries_access_times(location: Path) -> int:
    """Write the access-time file jax's LRU eviction reads for each entry in `location` that lacks one (its
    modification time, in jax's format); how many were missing.  Without this, every later write to the folder
    fails with a warning (`FileNotFoundError` on `<entry>-atime`) and nothing new is kept."""
    from jax._src import lru_cache  # the file names and format of jax's bounded cache

    entry_suffix = getattr(lru_cache, "_CACHE_SUFFIX", "-cache")
    time_suffix = getattr(lru_cache, "_ATIME_SUFFIX", "-atime")
    missing = 0
    for entry in location.glob(f"*{entry_suffix}"):
        access_time = entry.with_name(entry.name.removesuffix(entry_suffix) + time_suffix)
        if access_time.exists():
            continue
        try:
            access_time.write_bytes(entry.stat().st_mtime_ns.to_bytes(8, "little"))
            missing += 1
        except OSError:  # gone meanwhile, or not ours to write: jax will say so if it matters
            pass
    return missing


def ensure_compilation_cache() -> Path | None:
    """`enable_compilation_cache()` the first time it is called in a process; its answer after that."""
    if not _decided:
        _decided.append(enable_compilation_cache())
    configured = jax.config.jax_compilation_cache_dir
    return Path(configured) if configured else None


@functools.lru_cache(maxsize=1)
def host_processor() -> str:
    """`cpu-<digest>` naming this machine's processor: its architecture, vendor, model and feature flags."""
    described = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            first = info.read().split("\n\n")[0]  # the first processor; all cores of a host are alike
    except OSError:  # not Linux: the architecture and processor name are what there is
        first = ""
    for line in first.splitlines():
        field, _, value = line.partition(":")
        if field.strip() in ("vendor_id", "model name", "flags", "Features", "CPU implementer", "CPU part"):
            described.append(f"{field.strip()}={' '.join(sorted(value.split()))}")
    return "cpu-" + hashlib.sha256("\n".join(described).encode()).hexdigest()[:16]
