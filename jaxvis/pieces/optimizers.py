"""Optimizers whose hyperparameters are runtime values, not constants of the compiled program.

Each is a `piece` whose numbers (learning rate, betas, schedule lengths) are
pytree leaves; `transformation()` builds the optax transformation from them
inside the compiled step.  So a run at another learning rate, or a stage of
another length, reuses the program already compiled:

    adam(0.05)                                            # Lucid's render_vis
    adam(0.01, b1=0.5, b2=0.99, schedule=cosine(400))     # Plug-In Inversion
    adam(0.2, b1=0.5, b2=0.9, schedule=warmup_cosine(100, 2000))   # DeepInversion

Any optax `GradientTransformation` is accepted too (`custom(tx)`); its numbers
are then fixed in the program, and another one compiles again.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxvis.core.structure import piece

Array = jax.Array


# --- schedules: multipliers of the learning rate at step t -------------------------------------------


@piece
class Constant:
    def __call__(self, count: Array) -> Array:
        return jnp.ones((), jnp.float32)


@piece(data=("steps",))
class Cosine:
    """0.5 (1 + cos(pi t / steps)), then 0: torch's CosineAnnealingLR(T_max=steps, eta_min=0)."""

    steps: Any

    def __call__(self, count: Array) -> Array:
        progress = jnp.minimum(count / jnp.maximum(self.steps, 1), 1.0)
        return 0.5 * (1.0 + jnp.cos(math.pi * progress))


@piece(data=("warmup", "steps"))
class WarmupCosine:
    """DeepInversion's `lr_cosine_policy`: (t + 1) / warmup for t < warmup, then cosine from 1 to 0 at `steps`."""

    warmup: Any
    steps: Any

    def __call__(self, count: Array) -> Array:
        warmup = jnp.maximum(self.warmup, 1)
        rising = (count + 1) / warmup
        falling = 0.5 * (1 + jnp.cos(math.pi * (count - self.warmup) / jnp.maximum(self.steps - self.warmup, 1)))
        return jnp.where(count < self.warmup, rising, falling)


def constant() -> Constant:
    return Constant()


def cosine(steps: int) -> Cosine:
    return Cosine(steps)


def warmup_cosine(warmup: int, steps: int) -> WarmupCosine:
    """`warmup` is capped below `steps` (a short run still decays)."""
    return WarmupCosine(min(warmup, max(steps - 1, 1)), steps)


# --- optimizers -----------------------------------------------------------------------------------


class Optimizer:
    """The interface: `transformation()` -> an optax GradientTransformation (built from runtime values)."""

    def transformation(self) -> optax.GradientTransformation:
        raise NotImplementedError

    def final(self, theta: Any, state: Any) -> Any:
        """The parameters a run returns, from the last ones and the optimizer's state (default: the last)."""
        return theta

    def finished(self, state: Any) -> Any:
        """Per unit (NumPy, on the host), whether its optimization is over for good -- it will not move again
        and its last point was judged -- so a run whose every unit is finished can end early; None: never."""
        return None


@piece(data=("learning_rate", "b1", "b2", "eps", "schedule"))
class Adam(Optimizer):
    learning_rate: Any = 0.05
    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    schedule: Any = Constant()

    def transformation(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.scale_by_adam(self.b1, self.b2, self.eps),
            optax.scale_by_schedule(lambda count: -self.learning_rate * self.schedule(count)),
        )


def adam(learning_rate: float = 0.05, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         schedule: Any = None) -> Adam:
    """optax.adam with these hyperparameters as runtime values; `schedule` scales the learning rate per step."""
    return Adam(learning_rate, b1, b2, eps, schedule if schedule is not None else Constant())


@piece(data=("step_size",))
class NormalizedAscent(Optimizer):
    """DeepDream's update: a step of `step_size` along the gradient divided by its mean absolute value
    (`make_step`: `src.data[:] += step_size / np.abs(g).mean() * g`)."""

    step_size: Any
    eps: float = 1e-8

    def transformation(self) -> optax.GradientTransformation:
        def update(updates, state, params=None):
            del params
            scaled = jax.tree_util.tree_map(lambda g: -self.step_size * g / (jnp.abs(g).mean() + self.eps), updates)
            return scaled, state

        return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalized_ascent(step_size: float) -> NormalizedAscent:
    return NormalizedAscent(step_size)


@piece(data=("step_size",))
class SteepestAscent(Optimizer):
    """PGD's update (Madry et al. 2018): a step of `step_size` along the direction of steepest ascent under
    the norm -- sign(g) for L-infinity, g / (||g||_2 + 1e-10) for L2 (torchattacks' guard), the norm over
    each unit's whole parameters (one image per unit in an attack)."""

    step_size: Any
    norm: str = "linf"
    guard: float = 1e-10

    def transformation(self) -> optax.GradientTransformation:
        def update(updates, state, params=None):
            del params
            if self.norm == "linf":
                return jax.tree_util.tree_map(lambda g: -self.step_size * jnp.sign(g), updates), state
            length = optax.tree.norm(updates) + self.guard
            return jax.tree_util.tree_map(lambda g: -self.step_size * g / length, updates), state

        return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def steepest_ascent(step_size: float, norm: str = "linf") -> SteepestAscent:
    if norm not in ("linf", "l2"):
        raise ValueError(f"unknown norm {norm!r}; choose linf or l2")
    return SteepestAscent(step_size, norm)


@piece
class LBFGS(Optimizer):
    """optax.lbfgs with its zoom line search (given the loss function by the engine)."""

    memory_size: int = 10

    def transformation(self) -> optax.GradientTransformation:
        return optax.lbfgs(memory_size=self.memory_size)


def lbfgs(memory_size: int = 10) -> LBFGS:
    return LBFGS(memory_size)


@piece
class Custom(Optimizer):
    """Any optax transformation, as it is (its numbers are constants of the compiled program)."""

    tx: optax.GradientTransformation

    def transformation(self) -> optax.GradientTransformation:
        return self.tx


def as_optimizer(optimizer: Optimizer | optax.GradientTransformation | None) -> Optimizer:
    if optimizer is None:
        return adam()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation):
        return Custom(optimizer)
    raise TypeError(f"optimizer must be a jaxvis.pieces.optimizers optimizer or an optax GradientTransformation, "
                    f"got {type(optimizer).__name__}")
