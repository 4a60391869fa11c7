"""Szegedy et al.'s box-constrained L-BFGS attack ("Intriguing properties of neural networks", ICLR 2014,
Sec. 4.1), per image, towards a target class t:

    minimize  ||r||_2^2 + c · loss_f(x + r, t)     subject to  x + r ∈ [0, 1]^m

by L-BFGS from r = 0, with a line search over c for the smallest c whose
minimizer is classified as t: the smallest c weights the distance most, so it
gives the smallest perturbation. The paper writes c on |r| and searches c's
other end; the weight on the loss, the squared distance and starting at the
clean image follow foolbox 2's `LBFGSAttack` (the implementation most results
since were made with). The c search is Carlini & Wagner's bracketing (ten-fold
up until a success, then bisection), per image, `search_steps` times.

Box constraint: each L-BFGS step (optax's, with its zoom line search, history
of 10 as scipy's L-BFGS-B) is projected back into [0, 1]; the curvature pairs
are taken between projected points. (scipy's L-BFGS-B, which foolbox used,
handles the bounds inside the step instead.) Within one solve an image stops
once its step moves no pixel by more than `TOLERANCE`.

Untargeted: the target is each image's runner-up class on the clean image, and
any misclassification counts as success. Defaults: 150 L-BFGS iterations per
solve (foolbox 2's maxiter), 10 search steps from c = 1e-2.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.attacks.common import (AttackResult, check_attack_request, cross_entropy, keep_smallest, result,
                                   search_over_const, select, succeeded)
from jaxvis.errors import MethodOptionError
from jaxvis.models.model import Model
from jaxvis.programs import Program
from jaxvis.structure import piece

Array = jax.Array
STEPS = 150
SEARCH_STEPS = 10
INITIAL_CONST = 1e-2
MEMORY = 10  # L-BFGS history (scipy's default m)
TOLERANCE = 1e-7  # a solve is over for an image whose step moves no pixel further than this


@piece(data=("search_steps", "steps", "initial_const", "targeted"))
class Settings:
    """One L-BFGS attack; every field is a runtime value, so targeted and untargeted runs share one program."""

    search_steps: Any
    steps: Any
    initial_const: Any
    targeted: Any  # bool: aim at the given targets; else at each image's runner-up, any misclassification counting


def runner_up(logits: Array) -> Array:
    """Each image's second most likely class: the untargeted attack's target."""
    return jnp.argsort(logits, axis=-1)[:, -2]


def run(settings: Settings, model: Model, images: Array, labels: Array, targets: Array
        ) -> tuple[Array, Array, Array]:
    """Every solve of the c search: the smallest successful adversarial images, iterations used, logits.
    `targets` is read only when `settings.targeted`."""
    count = len(images)
    aims = jnp.where(settings.targeted, targets, runner_up(model(images)))
    optimizer = optax.lbfgs(memory_size=MEMORY)

    def found_in(logits: Array) -> Array:
        return jnp.where(settings.targeted, succeeded(logits, labels, aims), succeeded(logits, labels, None))

    def objective(x: Array, clean: Array, aim: Array, const: Array) -> tuple[Array, Array]:
        logits = model(x[None])
        return jnp.sum((x - clean) ** 2) + const * cross_entropy(logits, aim[None])[0], logits[0]

    def lbfgs_step(x: Array, state: Any, clean: Array, aim: Array, const: Array) -> tuple[Array, Any, Array]:
        (value, logits), grad = jax.value_and_grad(objective, has_aux=True)(x, clean, aim, const)
        loss = lambda y: objective(y, clean, aim, const)[0]  # noqa: E731
        updates, state = optimizer.update(grad, state, x, value=value, grad=grad, value_fn=loss)
        return jnp.clip(x + updates, 0.0, 1.0), state, logits

    batched_step = jax.vmap(lbfgs_step)

    def solve(const: Array, best_distance: Array, best_images: Array, used: Array) -> tuple:

        def running(state: tuple) -> Array:
            step, _, _, active, *_ = state
            return (step < settings.steps) & active.any()

        def iteration(state: tuple) -> tuple:
            step, x, opt_state, active, solved, best_distance, best_images, used = state
            stepped, new_state, logits = batched_step(x, opt_state, images, aims, const)
            found = found_in(logits)  # judged at x, before the step
            distance = ((x - images) ** 2).reshape(count, -1).sum(axis=1)
            best_distance, best_images = keep_smallest(found, x, distance, best_distance, best_images)
            moved = jnp.abs(stepped - x).reshape(count, -1).max(axis=1) > TOLERANCE
            moving = active & moved
            x = select(moving, stepped, x)
            opt_state = jax.tree.map(lambda new, old: select(moving, new, old), new_state, opt_state)
            return step + 1, x, opt_state, moving, solved | found, best_distance, best_images, used + moving

        fresh = jax.vmap(optimizer.init)(images)
        initial = (jnp.int32(0), images, fresh, jnp.ones(count, bool), jnp.zeros(count, bool), best_distance,
                   best_images, used)
        _, x, _, _, solved, best_distance, best_images, used = jax.lax.while_loop(running, iteration, initial)
        # the final iterate, not yet judged inside the loop
        found = found_in(model(x))
        distance = ((x - images) ** 2).reshape(count, -1).sum(axis=1)
        best_distance, best_images = keep_smallest(found, x, distance, best_distance, best_images)
        return solved | found, best_distance, best_images, used

    best_images, used = search_over_const(solve, settings.search_steps, settings.initial_const, images)
    return best_images, used, model(best_images)


RUN = Program(run, "lbfgs")


def lbfgs(model: Model, images: Any, labels: Any, *, targets: Any = None, search_steps: int = SEARCH_STEPS,
          steps: int = STEPS, initial_const: float = INITIAL_CONST) -> AttackResult:
    """Szegedy et al.'s L-BFGS adversarial examples for a batch: towards `targets`, or (untargeted) towards
    each image's runner-up class. `result.norm` is the L2 size of each perturbation (0 where no c
    succeeded: the image is returned as it was)."""
    if search_steps < 1:
        raise MethodOptionError(f"search_steps must be at least 1, got {search_steps}")
    if not initial_const > 0:
        raise MethodOptionError(f"initial_const must be positive, got {initial_const}")
    images, labels, targets = check_attack_request(model, images, labels, targets, None, "l2", steps)
    targeted = np.bool_(targets is not None)
    settings = Settings(np.int32(search_steps), np.int32(steps), np.float32(initial_const), targeted)
    adversarial, used, logits = RUN(settings, model, images, labels, labels if targets is None else targets)
    return result(images, adversarial, logits, labels, targets, used, "l2")
