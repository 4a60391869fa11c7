"""Compiled programs, reused: one per structure and shapes, in this process and (on disk) across processes.

`Program(fn)` is `jax.jit(fn)` that keeps its compiled executables in a table
keyed on the *structure* of the arguments (their pytree definitions, which for
jaxvis's pieces hold only their static configuration) and the shapes, dtypes
and shardings of their arrays -- never on object identity.  So a second
visualization with other units, seed, learning rate or step count runs the
program compiled for the first.  Each compilation is timed by phase (tracing,
lowering to StableHLO, XLA's compilation), and XLA's persistent compilation
cache (`jaxvis.core.compilation_cache`) is switched on before the first one, so a
new process with the same shapes loads the program from disk.  Programs made
only of jaxvis's own pieces are also kept as exported StableHLO (`jax.export`)
under that cache's `programs/` folder, keyed on jaxvis's source code, the jax
version, the device, the host processor, `XLA_FLAGS` and the arguments'
structure and shapes, with the structure of their results written as JSON
(`jaxvis.core.tree_codec`): a new process skips tracing the Python, and XLA's
cache behind it skips compiling.  Reading a stored program runs no code from the
file (no pickle); a file that is corrupt, truncated or from another version is
set aside with a one-line note and the program compiled afresh.

A compilation that takes longer than a few seconds is announced once per
process on stderr, with where its result is cached.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import json
import re
import shutil
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxvis.core.files import evict_least_recently_used, write_whole

NOTICE_AFTER_S = 2.0  # announce compilations that take longer than this
PARTITIONABLE_THREEFRY = False  # jax's default is True; the other form compiles faster on CPU
_announced = False


@dataclass(frozen=True)
class CompileTimes:
    """Seconds spent making one program: tracing the Python, lowering to StableHLO, XLA compiling."""

    trace_s: float  # (a stored program: exporting it, i.e. tracing and lowering for export)
    lower_s: float  # (a stored program: lowering its exported form)
    compile_s: float
    loaded: bool = False  # read from the program store instead (compile_s: the seconds it took)
    from_xla_cache: bool = False  # XLA's step was a hit in its persistent cache

    @property
    def total_s(self) -> float:
        return self.trace_s + self.lower_s + self.compile_s

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        if self.loaded:
            return {f"{prefix}load_s": self.compile_s}
        return {f"{prefix}trace_s": self.trace_s, f"{prefix}lower_s": self.lower_s,
                f"{prefix}compile_s": self.compile_s}


class Program:
    """`jax.jit(fn)` with a structural table of compiled executables and timed compilations."""

    def __init__(self, fn: Callable[..., Any], name: str, capacity: int = 32):
        self.fn = fn
        self.jitted = jax.jit(fn)
        self.name = name
        self.capacity = capacity
        self.table: OrderedDict[Any, Any] = OrderedDict()
        self.compilations = 0  # how many times this program was compiled in this process
        self.last_compile: tuple[Any, CompileTimes] | None = None  # the newest (executable, times)

    def __call__(self, *args: Any) -> Any:
        executable, _ = self.executable(*args)
        return executable(*args)

    def executable(self, *args: Any) -> tuple[Any, CompileTimes | None]:
        """The compiled executable for these arguments, and its compile times (None when reused)."""
        key = signature(args)
        if key in self.table:
            self.table.move_to_end(key)
            return self.table[key], None
        executable, times = self._load_or_compile(args)
        self.last_compile = (executable, times)
        self.table[key] = executable
        if len(self.table) > self.capacity:
            self.table.popitem(last=False)
        return executable, times

    def _load_or_compile(self, args: tuple) -> tuple[Any, CompileTimes]:
        from jaxvis.core.compilation_cache import ensure_compilation_cache

        location = ensure_compilation_cache()
        path = _stored_path(location, self.name, args) if location is not None else None
        if path is None:
            return self._compile(args, location)
        if path.exists():
            start = time.perf_counter()
            executable = _load_stored(path, args)
            if executable is not None:
                return executable, CompileTimes(0.0, 0.0, time.perf_counter() - start, loaded=True)
        return self._export_and_compile(args, path)

    def _export_and_compile(self, args: tuple, path: Path) -> tuple[Any, CompileTimes]:
        """Export the program (trace and lower), compile the exported form -- what a later process compiles
        too, so XLA's cache serves it -- and store it with its results' structure where that can be written."""
        leaves, treedef = jax.tree_util.tree_flatten(args)
        results: list[Any] = []

        def flat(*flat_args: Any) -> list[Any]:
            out = self.fn(*jax.tree_util.tree_unflatten(treedef, flat_args))
            out_leaves, out_treedef = jax.tree_util.tree_flatten(out)
            results.append(out_treedef)
            return out_leaves

        timer = _notice_timer(self.name, path.parent.parent)
        try:
            start = time.perf_counter()
            try:
                with jax.threefry_partitionable(PARTITIONABLE_THREEFRY):
                    exported = jax.export.export(jax.jit(flat))(*leaves)
            except Exception:  # what export refuses (a callback, a custom call without guarantees): not stored
                timer.cancel()
                return self._compile(args, path.parent.parent)
            exported_at = time.perf_counter()
            executable, lowered_at, hits = _compiled_export(exported, leaves, results[-1])
            done = time.perf_counter()
        finally:
            timer.cancel()
        self.compilations += 1
        _store(path, exported, results[-1])
        return executable, CompileTimes(exported_at - start, lowered_at - exported_at, done - lowered_at,
                                        from_xla_cache=hits)

    def _compile(self, args: tuple, location: Path | None) -> tuple[Any, CompileTimes]:
        timer = _notice_timer(self.name, location)
        try:
            start = time.perf_counter()
            # Deterministic per key either way; the non-partitionable form compiles faster on CPU
            # (benchmarks/compile_phases.py measures both).
            with jax.threefry_partitionable(PARTITIONABLE_THREEFRY):
                traced = self.jitted.trace(*args)
                traced_at = time.perf_counter()
                lowered = traced.lower()
            lowered_at = time.perf_counter()
            hits_before = _xla_cache_hits()
            executable = lowered.compile()
            done = time.perf_counter()
        finally:
            timer.cancel()
        self.compilations += 1
        return executable, CompileTimes(traced_at - start, lowered_at - traced_at, done - lowered_at,
                                        from_xla_cache=_xla_cache_hits() > hits_before)


_hits = threading.local()  # this thread's count of XLA persistent-cache hits
XLA_CACHE_HIT = "/jax/compilation_cache/cache_hits"


def _count_hit(event: str, **_: Any) -> None:
    if event == XLA_CACHE_HIT:
        _hits.count = getattr(_hits, "count", 0) + 1


jax.monitoring.register_event_listener(_count_hit)


def _xla_cache_hits() -> int:
    return getattr(_hits, "count", 0)


def signature(args: Any) -> tuple:
    """What a compiled program depends on: the pytree structure and every leaf's shape, dtype and sharding."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple(_leaf_signature(leaf) for leaf in leaves))


def _leaf_signature(leaf: Any) -> tuple:
    if isinstance(leaf, jax.Array):
        return (leaf.shape, leaf.dtype, getattr(leaf, "weak_type", False), leaf.sharding)  # (key arrays: none)
    if isinstance(leaf, (bool, int, float, complex)):
        return ((), type(leaf).__name__, True, None)
    array = np.asarray(leaf)
    return (array.shape, array.dtype, False, None)


# --- the program store ------------------------------------------------------------------------------

STORE = "programs"
FORMAT = b"jaxvis-program 1\n"  # first line of a stored program; the header (JSON) and the exported bytes follow
OWN_MODULES = ("jaxvis", "converters")  # code whose every change changes the store's key (`source_digest`)
STORE_LIMIT_BYTES = 2 << 30  # the program store keeps the most recently used programs within this size
FORMER_STORE = "executables"  # pickled executables of jaxvis before the exported store: deleted, never read


class Restructured:
    """A compiled program of flat arguments and results that takes and returns the original pytrees."""

    def __init__(self, compiled: Any, results: Any):
        self.compiled, self.results = compiled, results

    def __call__(self, *args: Any) -> Any:
        return jax.tree_util.tree_unflatten(self.results, self.compiled(*jax.tree_util.tree_leaves(args)))

    def __getattr__(self, name: str) -> Any:  # cost_analysis, as_text, ...
        return getattr(self.compiled, name)


def _compiled_export(exported: Any, leaves: list, results: Any) -> tuple[Restructured, float, bool]:
    """The exported program compiled for these arguments (XLA's cache first), when its lowering ended, and
    whether XLA's cache served it."""
    lowered = jax.jit(exported.call).trace(*leaves).lower()
    lowered_at = time.perf_counter()
    hits_before = _xla_cache_hits()
    compiled = lowered.compile()
    return Restructured(compiled, results), lowered_at, _xla_cache_hits() > hits_before


def _stored_path(location: Path, name: str, args: tuple) -> Path | None:
    """Where the executable for `args` is kept, or None if its structure holds code from elsewhere (or it
    runs across processes).

    A function's code is not part of a pytree's structure, only its name, so only programs
    whose every static function or class is jaxvis's own (covered by the source digest)
    are stored; others rely on XLA's persistent cache (which keys on the lowered program).
    """
    if not all(getattr(c, "__module__", "").split(".")[0] in OWN_MODULES for c in _static_callables(args)):
        return None
    if jax.process_count() > 1:  # a program over several processes' devices: XLA's cache only
        return None
    leaves, treedef = jax.tree_util.tree_flatten(args)
    structure = re.sub(r" at 0x[0-9a-f]+", "", str(treedef))
    shapes = [(tuple(np.shape(leaf)), str(getattr(leaf, "dtype", np.asarray(leaf).dtype)), _weak(leaf),
               str(getattr(leaf, "sharding", None))) for leaf in leaves]
    from jaxvis.core.compilation_cache import host_processor

    device = jax.devices()[0]
    key = hashlib.sha256(repr((source_digest(), jax.__version__, jax.lib.__version__, host_processor(),
                                device.platform, device.device_kind, jax.device_count(),
                                os.environ.get("XLA_FLAGS", ""), PARTITIONABLE_THREEFRY, structure,
                                shapes)).encode()).hexdigest()[:32]
    return location / STORE / f"{name.replace(' ', '_')}-{key}.jaxexport"


def _weak(leaf: Any) -> bool:
    return bool(getattr(leaf, "weak_type", isinstance(leaf, (bool, int, float, complex))))


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of the code of jaxvis and converters as installed here."""
    hasher = hashlib.sha256()
    for module in OWN_MODULES:
        root = Path(sys.modules[module].__file__).parent if module in sys.modules else None
        for path in sorted(root.rglob("*.py")) if root else []:
            hasher.update(str(path.relative_to(root)).encode())
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


def _static_callables(value: Any, depth: int = 0):
    """Every function and class inside dataclasses, containers and partials (the static parts of pieces)."""
    if depth > 40 or isinstance(value, (np.ndarray, jax.Array, str, bytes, int, float, bool, type(None))):
        return
    if isinstance(value, type) or callable(value) and not dataclasses.is_dataclass(value):
        if isinstance(value, functools.partial):
            yield from _static_callables(value.func, depth + 1)
            for item in (*value.args, *value.keywords.values()):
                yield from _static_callables(item, depth + 1)
        else:
            yield value
        return
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _static_callables(getattr(value, f.name), depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _static_callables(item, depth + 1)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            yield from _static_callables(item, depth + 1)


def _store(path: Path, exported: Any, results: Any) -> None:
    """Write the exported program and its results' structure (to a temporary name, then renamed); a
    structure that cannot be written by name, a full disk or an unwritable folder costs only later compiles."""
    from jaxvis.core.tree_codec import NotEncodable, decode_structure, encode_structure

    try:
        structure = encode_structure(results)
        if decode_structure(structure) != results:
            return
        payload = bytes(exported.serialize())
        header = json.dumps({"results": structure, "sha256": hashlib.sha256(payload).hexdigest()}).encode()
        write_whole(path, FORMAT + header + b"\n" + payload)
        _evict(path.parent, STORE_LIMIT_BYTES)
        shutil.rmtree(path.parent.parent / FORMER_STORE, ignore_errors=True)
    except NotEncodable:
        return
    except Exception as err:
        print(f"jaxvis: could not store the {path.name.split('-')[0]} program ({type(err).__name__}: {err})",
              file=sys.stderr)


def _load_stored(path: Path, args: tuple) -> Restructured | None:
    """The stored program compiled for `args`, or None (with a note) when the file cannot be used."""
    from jaxvis.core.tree_codec import decode_structure

    try:
        blob = path.read_bytes()
        if not blob.startswith(FORMAT):
            raise ValueError("not a stored jaxvis program")
        header, _, payload = blob[len(FORMAT):].partition(b"\n")
        meta = json.loads(header)
        if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
            raise ValueError("its checksum does not match (a damaged or partly written file)")
        results = decode_structure(meta["results"])
        exported = jax.export.deserialize(bytearray(payload))
        executable, _, _ = _compiled_export(exported, jax.tree_util.tree_leaves(args), results)
        os.utime(path)  # recently used: evicted last
        return executable
    except Exception as err:
        print(f"jaxvis: set aside the stored program {path.name} ({type(err).__name__}: {err}); compiling afresh",
              file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def _evict(folder: Path, limit: int) -> None:
    """Delete the least recently used stored programs until the folder holds at most `limit` bytes."""
    evict_least_recently_used(folder.glob("*.jaxexport"), limit)


def _notice_timer(name: str, location: Any) -> threading.Timer:
    """A timer that announces a long compilation once it has taken `NOTICE_AFTER_S` (cancel it when done)."""
    timer = threading.Timer(NOTICE_AFTER_S, _announce, (name, location))
    timer.daemon = True
    timer.start()
    return timer


def _announce(name: str, location: Any) -> None:
    global _announced
    if _announced:
        return
    _announced = True
    where = (f"it is kept in {location}, so the next run with the same shapes starts at once"
             if location else "the compilation cache is off (JAXVIS_COMPILATION_CACHE=off)")
    print(f"jaxvis: compiling the {name} program for these shapes (once per shape; seconds on a CPU); {where}.",
          file=sys.stderr, flush=True)
