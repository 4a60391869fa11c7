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

from jaxvis.models import ops
from jaxvis.models.ops import FastPaths

Array = jax.Array
Edit = Callable[[Array], Array]


class StopForward(Exception):
    """Raised by a probe once every requested capture is in hand and no output is needed."""


@dataclass
class Probe:
    capture: Collection[str] = ()
    edit: Mapping[str, Edit] = field(default_factory=dict)
    fast: FastPaths = field(default_factory=FastPaths.none)
    need_output: bool = True
    redirect_relu: Array | None = None  # a boolean scalar: Lucid's redirected ReLU gradient while true
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

    def act(self, fn: Callable[[Array], Array], x: Array) -> Array:
        """Apply an activation; ReLU and ReLU6 get Lucid's redirected gradient when `redirect_relu` is set."""
        return ops.activation(fn, x, self.redirect_relu)

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
