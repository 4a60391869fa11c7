"""Auto-PGD with the cross-entropy loss, APGD-CE (Croce & Hein, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", ICML 2020, Algorithm 1) -- AutoAttack's
first component -- in the L-infinity and L2 norms:

    x_0 = a random point on the eps-sphere (projected into [0, 1]),  η = 2·eps
    z_{k+1} = P(x_k + η · step(∇L(x_k)))
    x_{k+1} = P(x_k + α(z_{k+1} - x_k) + (1 - α)(x_k - x_{k-1}))        α = 0.75 (1 for the first step)

keeping the highest-loss point x_max. At each checkpoint (the first after
0.22·N steps, then ever shorter windows, down by 0.03·N to at least 0.06·N)
an image's step size halves and it restarts from x_max when either

    1. the loss rose in at most ρ = 0.75 of the steps since the last checkpoint, or
    2. the step size was not halved at the last checkpoint and x_max's loss has not risen since.

Defaults and arithmetic follow the authors' code as torchattacks 3.5.1's `APGD`
carries it (its checkpoints, its first comparison against a loss of 0, its
guards): eps 8/255 (L-infinity) or 0.5 (L2), 100 steps (AutoAttack's standard
budget; torchattacks defaults to 10), one restart. As there, a fooled image
returns the last adversarial point it reached; an image never fooled returns
x_max (torchattacks returns it unchanged). With `early_stop` (the default) an
image stops changing once it is fooled; `early_stop=False` is the reference.
Targeted: the loss is minus the target's cross-entropy.

It runs on the engine (`jaxvis.optimize`): each image of each restart is a unit
whose parameterization is the eps-ball around it (started on the sphere), and
Algorithm 1's step-size rule is an optax transformation with a typed state
(`ApgdState`): the engine evaluates the loss and gradient at x_k, and the update
does the bookkeeping of x_k (best point, fooled point, rises, checkpoint) and
then the momentum step to x_{k+1}.  N steps take N + 1 engine steps (the last
evaluates x_N only); the early stop is a mask inside the update, and the image
returned (fooled point, else x_max) is read from the state (`Optimizer.final`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.methods.attacks.common import (AttackResult, adversarial_objective, best_restart, budgets, check_attack_request,
                                   per_image_norm, result, with_logits)
from jaxvis.core.errors import MethodOptionError
from jaxvis.core.structure import piece
from jaxvis.engine.optimize import optimize
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.sweeps import refuse_lists
from jaxvis.models.model import Model
from jaxvis.pieces.eps_ball import eps_ball, sphere_start  # noqa: F401  (APGD's start)
from jaxvis.pieces.optimizers import Optimizer

Array = jax.Array
EPS = {"linf": 8 / 255, "l2": 0.5}
STEPS = 100
RHO = 0.75  # condition 1's fraction of loss increases
MOMENTUM = 0.75  # α
FIRST_CHECKPOINT, SHRINK, SHORTEST = 0.22, 0.03, 0.06  # of the step count
GUARD = 1e-12  # the reference's guard against dividing by a zero norm


def _ball(point: Array, clean: Array, eps: Array, norm: str, guard: float = 0.0) -> Array:
    """Into the eps-ball around `clean` and [0, 1], in the reference's arithmetic (`guard` where it adds
    its 1e-12 to the clipped length too)."""
    if norm == "linf":
        return jnp.clip(jnp.minimum(jnp.maximum(point, clean - eps), clean + eps), 0.0, 1.0)
    delta = point - clean
    length = per_image_norm(delta, "l2")[:, None, None, None]
    return jnp.clip(clean + delta / (length + GUARD) * jnp.minimum(eps, length + guard), 0.0, 1.0)


def ascent(x: Array, grad: Array, step_size: Array, norm: str) -> Array:
    if norm == "linf":
        return x + step_size * jnp.sign(grad)
    return x + step_size * grad / (per_image_norm(grad, "l2")[:, None, None, None] + GUARD)


def momentum_step(x: Array, previous: Array, grad: Array, clean: Array, step_size: Array, alpha: Array,
                  eps: Array, norm: str) -> Array:
    """x_{k+1} from x_k, x_{k-1} and the gradient at x_k (Algorithm 1, lines 7-8)."""
    z = _ball(ascent(x, grad, step_size, norm), clean, eps, norm)
    return _ball(x + (z - x) * alpha + (x - previous) * (1.0 - alpha), clean, eps, norm, GUARD if norm == "l2" else 0.0)


def checkpoint_schedule(steps: Array) -> tuple[Array, Array, Array]:
    """The first window, how much each window shrinks, the shortest window (the reference's int() floors)."""
    part = lambda fraction: jnp.maximum(jnp.floor(fraction * steps).astype(jnp.int32), 1)  # noqa: E731
    return part(FIRST_CHECKPOINT), part(SHRINK), part(SHORTEST)


class ApgdState(NamedTuple):
    """One image's Algorithm 1 bookkeeping (x itself is the engine's parameters)."""

    count: Array  # engine steps done: x_count is being evaluated
    previous: Array  # x_{k-1}
    best: Array  # x_max
    best_grad: Array
    best_loss: Array
    best_logits: Array
    adversarial: Array  # the last fooling point reached
    adversarial_logits: Array
    fooled: Array  # bool: fooled at some point
    moved_last: Array  # bool: x_k came from a step (not held by the early stop)
    step_size: Array  # η
    last_loss: Array
    rises: Array  # loss increases since the last checkpoint
    since_check: Array
    window: Array
    halved_last: Array
    best_loss_at_check: Array
    used: Array  # steps that moved the image


def checkpoint(s: ApgdState, x: Array, grad: Array, shrink: Array, shortest: Array
               ) -> tuple[ApgdState, Array, Array]:
    """Algorithm 1's checkpoint: halve the step size and return to the best point (x, grad) if the loss rose
    in at most ρ of the window's steps (1) or if the step was not halved last time and the best loss has not
    risen since (2); then start a window `shrink` steps shorter (at least `shortest`)."""
    oscillating = s.rises <= s.window * RHO
    stuck = ~s.halved_last & (s.best_loss_at_check >= s.best_loss)
    halve = oscillating | stuck
    s = s._replace(step_size=jnp.where(halve, s.step_size / 2.0, s.step_size), halved_last=halve,
                   best_loss_at_check=s.best_loss, rises=jnp.zeros_like(s.rises), since_check=jnp.int32(0),
                   window=jnp.maximum(s.window - shrink, shortest))
    return s, jnp.where(halve, s.best, x), jnp.where(halve, s.best_grad, grad)


@piece(data=("clean", "eps", "steps", "early_stop"))
class Apgd(Optimizer):
    """Algorithm 1's update for one image (`clean`, (1, H, W, 3)): given at x_k its loss (`value`, the
    engine's: minus the adversarial loss), gradient, and whether it fools the model followed by its logits
    (`watch`: the logits of the points kept are kept too, so none is computed again)."""

    clean: Any
    eps: Any
    steps: Any
    early_stop: Any
    norm: str = "linf"
    classes: int = 1000

    def transformation(self) -> optax.GradientTransformationExtraArgs:
        first, shrink, shortest = checkpoint_schedule(self.steps)

        def init(x: Array) -> ApgdState:
            scalar = lambda value, dtype=x.dtype: jnp.asarray(value, dtype)  # noqa: E731
            no_logits = jnp.zeros(self.classes, jnp.float32)
            return ApgdState(jnp.int32(0), x, x, jnp.zeros_like(x), scalar(0.0), no_logits, x, no_logits,
                             jnp.bool_(False), jnp.bool_(True), scalar(2.0) * self.eps, scalar(0.0), scalar(0.0),
                             jnp.int32(0), first, jnp.bool_(True), scalar(0.0), jnp.int32(0))

        def update(updates: Array, s: ApgdState, x: Array, *, value: Array, watch: Array, **_: Any
                   ) -> tuple[Array, ApgdState]:
            loss, fooled_now, logits = -value.astype(x.dtype), watch[0] > 0, watch[1:]
            grad = -updates  # the engine's gradient is of its loss (minus the adversarial loss)
            s, x_k, grad_k = jax.lax.cond(s.count == 0, lambda: start(s, x, grad, loss, fooled_now, logits),
                                          lambda: bookkeeping(s, x, grad, loss, fooled_now, logits))
            moving = ~(s.fooled & self.early_stop) & (s.count < self.steps)
            alpha = jnp.where(s.count > 0, MOMENTUM, 1.0).astype(x.dtype)
            stepped = momentum_step(x_k, s.previous, grad_k, self.clean, s.step_size, alpha, self.eps, self.norm)
            new_x = jnp.where(moving, stepped, x_k)
            s = s._replace(count=s.count + 1, previous=jnp.where(moving, x_k, s.previous), moved_last=moving,
                           used=s.used + moving)
            return new_x - x, s

        def start(s: ApgdState, x: Array, grad: Array, loss: Array, fooled: Array, logits: Array
                  ) -> tuple[ApgdState, Array, Array]:
            return s._replace(previous=x, best=x, best_grad=grad, best_loss=loss, best_logits=logits, adversarial=x,
                              adversarial_logits=logits, fooled=fooled, best_loss_at_check=loss), x, grad

        def bookkeeping(s: ApgdState, x: Array, grad: Array, loss: Array, fooled: Array, logits: Array
                        ) -> tuple[ApgdState, Array, Array]:
            higher, reached = loss > s.best_loss, fooled & s.moved_last
            s = s._replace(adversarial=jnp.where(reached, x, s.adversarial), fooled=s.fooled | fooled,
                           adversarial_logits=jnp.where(reached, logits, s.adversarial_logits),
                           best_logits=jnp.where(higher, logits, s.best_logits),
                           best=jnp.where(higher, x, s.best), best_grad=jnp.where(higher, grad, s.best_grad),
                           best_loss=jnp.where(higher, loss, s.best_loss), rises=s.rises + (loss > s.last_loss),
                           last_loss=loss, since_check=s.since_check + 1)
            return jax.lax.cond(s.since_check == s.window, lambda: checkpoint(s, x, grad, shrink, shortest),
                                lambda: (s, x, grad))

        return optax.GradientTransformationExtraArgs(init, update)

    def final(self, theta: Array, state: ApgdState) -> Array:
        """The image returned: the last fooling point, else the highest-loss point."""
        return jnp.where(state.fooled, state.adversarial, state.best)


def apgd(model: Model, images: Any, labels: Any, *, targets: Any = None, norm: str = "linf",
         eps: float | Sequence[float] | None = None, steps: int = STEPS, restarts: int = 1, early_stop: bool = True,
         seed: int | None = None, config: RunConfig | None = None) -> AttackResult | list[AttackResult]:
    """APGD-CE adversarial examples for a batch: untargeted, or towards `targets` (one class per image).

    images: float (N, H, W, 3) in [0, 1]; labels: (N,) true classes; eps defaults to `EPS[norm]`; a
    list of eps sweeps it (one `AttackResult` per value, all in one program). Each restart starts from
    another random point of the eps-sphere (drawn from the image's and the restart's own key); per
    image the best restart is kept. All restarts in one program.
    """
    eps = EPS[norm] if norm in EPS and eps is None else eps
    refuse_lists(steps=steps, restarts=restarts, norm=norm)
    if restarts < 1:
        raise MethodOptionError(f"restarts must be at least 1, got {restarts}")
    cells = [cell_eps for cell_eps, _ in budgets(eps, 1.0)]
    for cell_eps in cells:
        checked, labels, targets = check_attack_request(model, images, labels, targets, cell_eps, norm, steps)
    config = run_config(config, seed)
    adversarial, used, final = run(model, np.asarray(checked), np.asarray(labels),
                                   None if targets is None else np.asarray(targets), cells, norm, steps, restarts,
                                   early_stop, config)
    results = [result(checked, adversarial[c], final[c], labels, targets, used[c], norm) for c in range(len(cells))]
    return results if isinstance(eps, (list, tuple)) else results[0]


def run(model: Model, images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None, cells: list[float],
        norm: str, steps: int, restarts: int, early_stop: bool, config: RunConfig, starts: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every eps (cell) × restart × image as one engine run: per cell, per image the best restart's image, the
    steps it moved and its logits. `starts` (restarts, N, H, W, 3): the starting points instead of random ones."""
    count = len(images)
    pieces = lambda unit: adversarial_objective(labels[unit % count],  # noqa: E731
                                                None if targets is None else targets[unit % count])
    ball = lambda eps: lambda unit: eps_ball(images[unit % count], eps, norm, start="sphere",  # noqa: E731
                                             keep_in_ball=False)
    update = lambda eps: lambda unit: Apgd(images[unit % count][None], np.asarray(eps, images.dtype),  # noqa: E731
                                           np.int32(steps), np.bool_(early_stop), norm, model.arch.num_classes)
    swept = lambda make: [make(eps) for eps in cells] if len(cells) > 1 else make(cells[0])  # noqa: E731
    optimized = optimize(
        model, lambda unit: pieces(unit)[0], watch=lambda unit: with_logits(pieces(unit)[1]), param=swept(ball),
        optimizer=swept(update), units=np.arange(restarts * count), steps=steps + 1,
        init=None if starts is None else starts.reshape(-1, 1, *images.shape[1:]), description="apgd",
        **config.engine_options())
    shape = (len(cells), restarts, count)
    adversarial = optimized.images[:, 0].reshape(*shape, *images.shape[1:])
    state = optimized.opt_state
    used = state.used.reshape(shape)
    # the logits of the returned images, kept where they were found: no forward pass after the run
    final = np.where(state.fooled[:, None], state.adversarial_logits, state.best_logits).reshape(*shape, -1)
    best = [best_restart(adversarial[c], used[c], final[c], labels, targets) for c in range(len(cells))]
    return tuple(np.stack(parts) for parts in zip(*best))  # type: ignore[return-value]


apgd.eps_sweep = True  # type: ignore[attr-defined]  # eps as a list: one program for every value (`evaluate` asks)
