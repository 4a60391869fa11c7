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
only of jaxvis's own pieces are also kept whole, as serialized executables under
that cache's `executables/` folder, keyed on jaxvis's source code, the jax
version, the device, the host processor and the arguments' structure and shapes:
a new process then skips tracing and lowering too.

A compilation that takes longer than a few seconds is announced once per
process on stderr, with where its result is cached.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import re
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

NOTICE_AFTER_S = 2.0  # announce compilations that take longer than this
PARTITIONABLE_THREEFRY = False  # jax's default is True; the other form compiles faster on CPU
_announced = False


@dataclass(frozen=True)
class CompileTimes:
    """Seconds spent making one program: tracing the Python, lowering to StableHLO, XLA compiling."""

    trace_s: float
    lower_s: float
    compile_s: float
    loaded: bool = False  # read from the executable store instead (compile_s: the seconds it took)
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
        if path is not None and path.exists():
            start = time.perf_counter()
            executable = _read_executable(path)
            if executable is not None:
                return executable, CompileTimes(0.0, 0.0, time.perf_counter() - start, loaded=True)
        executable, times = self._compile(args, location)
        # What XLA's persistent cache hands back serializes without all of its kernels (a later load
        # fails with "Function ... not found"), so only freshly compiled executables are stored.
        if path is not None and not times.from_xla_cache:
            _write_executable(path, executable)
        return executable, times

    def _compile(self, args: tuple, location: Path | None) -> tuple[Any, CompileTimes]:
        timer = threading.Timer(NOTICE_AFTER_S, _announce, (self.name, location))
        timer.daemon = True
        timer.start()
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


# --- the executable store ----------------------------------------------------------------------------

STORE = "executables"
OWN_MODULES = ("jaxvis", "converters")  # code whose every change changes the store's key (`_source_digest`)


def _stored_path(location: Path, name: str, args: tuple) -> Path | None:
    """Where the executable for `args` is kept, or None if its structure holds code from elsewhere.

    A function's code is not part of a pytree's structure, only its name, so only programs
    whose every static function or class is jaxvis's own (covered by the source digest)
    are stored; others rely on XLA's persistent cache (which keys on the lowered program).
    """
    if not all(getattr(c, "__module__", "").split(".")[0] in OWN_MODULES for c in _static_callables(args)):
        return None
    leaves, treedef = jax.tree_util.tree_flatten(args)
    structure = re.sub(r" at 0x[0-9a-f]+", "", str(treedef))
    shapes = [(tuple(np.shape(leaf)), str(getattr(leaf, "dtype", np.asarray(leaf).dtype)), _weak(leaf),
               str(getattr(leaf, "sharding", None))) for leaf in leaves]
    from jaxvis.core.compilation_cache import host_processor

    device = jax.devices()[0]
    key = hashlib.sha256(repr((_source_digest(), jax.__version__, jax.lib.__version__, host_processor(),
                                device.platform, device.device_kind, jax.device_count(),
                                os.environ.get("XLA_FLAGS", ""), PARTITIONABLE_THREEFRY, structure,
                                shapes)).encode()).hexdigest()[:32]
    return location / STORE / f"{name.replace(' ', '_')}-{key}.pickle"


def _weak(leaf: Any) -> bool:
    return bool(getattr(leaf, "weak_type", isinstance(leaf, (bool, int, float, complex))))


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
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


def _read_executable(path: Path) -> Any:
    from jax.experimental import serialize_executable

    try:
        payload, in_tree, out_tree = pickle.loads(path.read_bytes())
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # written by another version, truncated: compile afresh
        path.unlink(missing_ok=True)
        return None


def _write_executable(path: Path, executable: Any) -> None:
    from jax.experimental import serialize_executable

    try:
        blob = pickle.dumps(serialize_executable.serialize(executable))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(blob)
        partial.replace(path)
    except Exception as err:  # a full disk or an unpicklable structure costs only the next compile
        print(f"jaxvis: could not store the compiled program ({type(err).__name__}: {err})", file=sys.stderr)


def _announce(name: str, location: Any) -> None:
    global _announced
    if _announced:
        return
    _announced = True
    where = (f"it is kept in {location}, so the next run with the same shapes starts at once"
             if location else "the compilation cache is off (JAXVIS_COMPILATION_CACHE=off)")
    print(f"jaxvis: compiling the {name} program for these shapes (once per shape; seconds on a CPU); {where}.",
          file=sys.stderr, flush=True)
