"""Pieces as data: what makes two runs "the same program", and what a run is, in words.

Every piece of an optimization (objective, parameterization, transform,
optimizer) is a frozen dataclass.  Its *static* fields (a layer name, an image
size, a pad width) are its structure; its *data* fields (a unit index, a weight,
a target activation, a learning rate) are pytree leaves.  jax compiles a
program per structure, so two pieces built alike share one compiled program
whatever their data: another unit, seed or learning rate runs at once.

    @piece(data=("learning_rate",))
    class Sgd:
        learning_rate: float = 0.1

`describe` turns a piece into the plain text that run records and resume
fingerprints compare; `digest` summarizes arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


def piece(cls: type[T] | None = None, *, data: Sequence[str] = ()) -> Any:
    """A frozen dataclass registered as a pytree: fields named in `data` are leaves, the others static."""

    def wrap(klass: type[T]) -> type[T]:
        klass = dataclasses.dataclass(frozen=True)(klass)
        names = [f.name for f in dataclasses.fields(klass)]
        unknown = set(data) - set(names)
        if unknown:
            raise TypeError(f"{klass.__name__} has no fields {sorted(unknown)}")
        jax.tree_util.register_dataclass(klass, data_fields=list(data),
                                         meta_fields=[n for n in names if n not in data])
        return klass

    return wrap(cls) if cls is not None else wrap


class Label(str):
    """A display name that never makes two structures differ (all labels compare equal)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Label)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return 0


def describe(value: Any) -> Any:
    """A JSON-able description of `value` that is the same in every process for the same run.

    Dataclasses by their fields, functions by their qualified name (not their address),
    arrays by shape and digest, numbers as themselves.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: describe(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, jax.Array)):
        array = np.asarray(value)
        return array.item() if array.size == 1 else {"array": list(array.shape), "digest": digest(array)}
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        items = sorted(value, key=str) if isinstance(value, (frozenset, set)) else value
        return [describe(v) for v in items]
    if isinstance(value, Callable):  # type: ignore[arg-type]
        inner = getattr(value, "func", None)  # functools.partial
        if inner is not None:
            return {"partial": describe(inner), "args": describe(list(value.args)),
                    "kwargs": describe(dict(value.keywords))}
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return type(value).__name__


def digest(tree: Any) -> str:
    """A short sha256 of the arrays of a pytree (their shapes and float32 values)."""
    hasher = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        array = np.asarray(leaf)
        hasher.update(str(array.shape).encode())
        hasher.update(np.ascontiguousarray(array.astype(np.float32) if array.dtype != bool else array).tobytes())
    return hasher.hexdigest()[:16]
