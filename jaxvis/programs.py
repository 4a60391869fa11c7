"""Compiled programs, reused: one per structure and shapes, in this process and (on disk) across processes.

`Program(fn)` is `jax.jit(fn)` that keeps its compiled executables in a table
keyed on the *structure* of the arguments (their pytree definitions, which for
jaxvis's pieces hold only their static configuration) and the shapes, dtypes
and shardings of their arrays -- never on object identity.  So a second
visualization with other units, seed, learning rate or step count runs the
program compiled for the first.  Each compilation is timed by phase (tracing,
lowering to StableHLO, XLA's compilation), and XLA's persistent compilation
cache (`jaxvis.compilation_cache`) is switched on before the first one, so a
new process with the same shapes loads the program from disk.

A compilation that takes longer than a few seconds is announced once per
process on stderr, with where its result is cached.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

NOTICE_AFTER_S = 2.0  # announce compilations that take longer than this
_announced = False


@dataclass(frozen=True)
class CompileTimes:
    """Seconds spent making one program: tracing the Python, lowering to StableHLO, XLA compiling."""

    trace_s: float
    lower_s: float
    compile_s: float

    @property
    def total_s(self) -> float:
        return self.trace_s + self.lower_s + self.compile_s

    def as_dict(self, prefix: str = "") -> dict[str, float]:
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

    def __call__(self, *args: Any) -> Any:
        executable, _ = self.executable(*args)
        return executable(*args)

    def executable(self, *args: Any) -> tuple[Any, CompileTimes | None]:
        """The compiled executable for these arguments, and its compile times (None when reused)."""
        key = signature(args)
        if key in self.table:
            self.table.move_to_end(key)
            return self.table[key], None
        executable, times = self._compile(args)
        self.table[key] = executable
        if len(self.table) > self.capacity:
            self.table.popitem(last=False)
        return executable, times

    def _compile(self, args: tuple) -> tuple[Any, CompileTimes]:
        from jaxvis.compilation_cache import ensure_compilation_cache

        location = ensure_compilation_cache()
        timer = threading.Timer(NOTICE_AFTER_S, _announce, (self.name, location))
        timer.daemon = True
        timer.start()
        try:
            start = time.perf_counter()
            with jax.threefry_partitionable(False):  # deterministic per key; its bits compile 2-4x faster on CPU
                traced = self.jitted.trace(*args)
                traced_at = time.perf_counter()
                lowered = traced.lower()
            lowered_at = time.perf_counter()
            executable = lowered.compile()
            done = time.perf_counter()
        finally:
            timer.cancel()
        self.compilations += 1
        return executable, CompileTimes(traced_at - start, lowered_at - traced_at, done - lowered_at)


def signature(args: Any) -> tuple:
    """What a compiled program depends on: the pytree structure and every leaf's shape, dtype and sharding."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (treedef, tuple(_leaf_signature(leaf) for leaf in leaves))


def _leaf_signature(leaf: Any) -> tuple:
    if isinstance(leaf, jax.Array):
        return (leaf.shape, leaf.dtype, leaf.weak_type, leaf.sharding)
    if isinstance(leaf, (bool, int, float, complex)):
        return ((), type(leaf).__name__, True, None)
    array = np.asarray(leaf)
    return (array.shape, array.dtype, False, None)


def _announce(name: str, location: Any) -> None:
    global _announced
    if _announced:
        return
    _announced = True
    where = (f"it is kept in {location}, so the next run with the same shapes starts at once"
             if location else "the compilation cache is off (JAXVIS_COMPILATION_CACHE=off)")
    print(f"jaxvis: compiling the {name} program for these shapes (once per shape; seconds on a CPU); {where}.",
          file=sys.stderr, flush=True)
