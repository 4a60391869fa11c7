"""What one forward pass is asked to do besides computing logits.

A `Probe` travels through a model's forward as an argument (no hooks, no global
state).  Every named point of the network -- named exactly like the torch
module whose output it is -- passes its activation through `probe.tap(name, x)`,
which records the name, applies a requested edit, keeps a requested capture,
and stops the forward early once everything asked for has been captured.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax

Array = jax.Array
Edit = Callable[[Array], Array]


@dataclass(frozen=True)
class FastPaths:
    """Numerically equivalent rewrites that are faster for a frozen network (DESIGN.md §4).

    fold_batchnorm: BatchNorm folded into the preceding conv's kernel and bias.
    pointwise_as_matmul: 1x1 convolutions computed as one matrix product.
    depthwise_as_shifts: depthwise kxk convolutions as a sum of k*k shifted
        elementwise products (XLA's CPU depthwise conv is 6-10x slower).
    Captured and edited activations are always those of the torch layer: a conv
    whose own output is requested is computed unfused.
    """

    fold_batchnorm: bool = True
    pointwise_as_matmul: bool = True
    depthwise_as_shifts: bool = True

    @classmethod
    def none(cls) -> "FastPaths":
        return cls(False, False, False)

    @classmethod
    def for_backend(cls, backend: str) -> "FastPaths":
        """All rewrites; shifted depthwise only on CPU, where XLA's depthwise conv is slow."""
        return cls(depthwise_as_shifts=backend == "cpu")


class StopForward(Exception):
    """Raised by a probe once every requested capture is in hand and no output is needed."""


@dataclass
class Probe:
    capture: Collection[str] = ()
    edit: Mapping[str, Edit] = field(default_factory=dict)
    fast: FastPaths = field(default_factory=FastPaths.none)
    need_output: bool = True
    record_shapes: bool = False
    captured: dict[str, Array] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pending = set(self.capture) | set(self.edit)

    def wants(self, name: str) -> bool:
        """Whether `name`'s own activation is captured or edited (then it must be computed as is)."""
        return name in self.pending

    def tap(self, name: str, x: Array) -> Array:
        self.seen.append(name)
        if self.record_shapes:
            self.shapes[name] = tuple(x.shape)
        if name in self.edit:
            edited = self.edit[name](x)
            if getattr(edited, "shape", None) != x.shape:
                raise ValueError(
                    f"edit of {name!r} returned shape {getattr(edited, 'shape', type(edited))}, "
                    f"but the activation has shape {x.shape}; an edit must keep the shape."
                )
            x = edited
        if name in self.capture:
            self.captured[name] = x
        self.pending.discard(name)
        if not self.pending and not self.need_output:
            raise StopForward
        return x

    def skip(self, name: str) -> None:
        """Note a named point that a fast path fused away (nobody asked for it)."""
        self.seen.append(name)


def module_name(module: Any, child: str | None = None) -> str:
    """The torch module path of a bound Flax module (its scope path), optionally of a child."""
    path = tuple(module.scope.path)
    return ".".join(path + ((child,) if child else ()))


def tap(module: Any, probe: Probe, x: Array, child: str | None = None) -> Array:
    """`probe.tap` under the torch name of `module` (or of its parameter-free child)."""
    return probe.tap(module_name(module, child), x)
