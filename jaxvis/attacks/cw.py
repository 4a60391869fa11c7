"""The Carlini–Wagner L2 attack (Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
IEEE S&P 2017, Sec. V-A), per image:

    x' = (tanh(w) + 1) / 2                                   (the box [0, 1] by construction)
    minimize  ||x' - x||_2^2 + c · max(Z(x')_y - max_{i≠y} Z(x')_i, -κ)      (untargeted)
              ||x' - x||_2^2 + c · max(max_{i≠t} Z(x')_i - Z(x')_t, -κ)      (targeted to t)

over w with Adam from w = atanh(2x - 1), for `steps` steps; then a binary search
over c: where the image succeeded, c falls to the middle of its bracket; where
it failed, c rises (ten-fold until a success brackets it). Each image keeps the
smallest successful perturbation of any step of any search round; an image
never fooled is returned unchanged. "Abort early" (the reference's): every
steps / 10 steps, an image whose objective fell by less than 0.01% stops moving
for the rest of that round.

Defaults are the authors' reference code (nn_robust_attacks, l2_attack.py), also
foolbox 3's `L2CarliniWagnerAttack`: 9 binary-search steps, initial c = 1e-3,
Adam learning rate 1e-2, κ = 0, abort early -- except the steps per round:
the reference allows 10000, hours on a CPU for one ImageNet image; we default
to 1000 (pass steps=10000 for the reference budget). torchattacks 3.5.1's `CW`
is one round at c = 1 with 50 steps (`binary_search_steps=1, initial_const=1,
steps=50, abort_early=False` here).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.attacks.common import (AttackResult, check_attack_request, keep_smallest, margin, result,
                                   search_over_const, select)
from jaxvis.errors import MethodOptionError
from jaxvis.models.model import Model
from jaxvis.programs import Program
from jaxvis.structure import piece

Array = jax.Array
BINARY_SEARCH_STEPS = 9
STEPS = 1000
LEARNING_RATE = 1e-2
INITIAL_CONST = 1e-3
KAPPA = 0.0
TANH_SHRINK = 0.999999  # the reference's 1.999999 / 2: keeps atanh finite at pixels of exactly 0 or 1
ABORT_TOLERANCE = 0.9999  # a round's image stops once its objective no longer falls by 0.01% per check


@piece(data=("binary_search_steps", "steps", "learning_rate", "initial_const", "kappa", "abort_early"))
class Settings:
    """One C&W run; every field is a runtime value (another budget or c runs the same program)."""

    binary_search_steps: Any
    steps: Any
    learning_rate: Any
    initial_const: Any
    kappa: Any
    abort_early: Any


def to_image(w: Array) -> Array:
    return (jnp.tanh(w) + 1.0) / 2.0


def to_w(images: Array) -> Array:
    return jnp.arctanh((2.0 * images - 1.0) * TANH_SHRINK)


def hinge(logits: Array, labels: Array, targets: Array | None, kappa: Array) -> Array:
    """The paper's f_6 per image: how far the image is from being adversarial with margin κ (floored at -κ)."""
    if targets is not None:
        return jnp.maximum(-margin(logits, targets), -kappa)
    return jnp.maximum(margin(logits, labels), -kappa)


def adversarial_with_margin(logits: Array, labels: Array, targets: Array | None, kappa: Array) -> Array:
    """The reference's `compare`: adversarial even after κ is given back to the true class (taken from the
    target) -- with κ = 0, simply misclassified, or classified as the target."""
    return hinge(logits, labels, targets, kappa) <= -kappa


def run(settings: Settings, model: Model, images: Array, labels: Array, targets: Array | None
        ) -> tuple[Array, Array, Array]:
    """The whole search: the smallest successful adversarial images, the Adam steps each took, their logits."""
    count = len(images)
    w_clean = to_w(images)
    start = to_image(w_clean)  # the reference measures distance to the clean image as tanh space holds it
    optimizer = optax.adam(settings.learning_rate)
    check_every = jnp.maximum(settings.steps // 10, 1)

    def objective(w: Array, const: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        adversarial = to_image(w)
        distance = ((adversarial - start) ** 2).reshape(count, -1).sum(axis=1)
        logits = model(adversarial)
        per_image = distance + const * hinge(logits, labels, targets, settings.kappa)
        return per_image.sum(), (per_image, distance, logits)

    def search_round(const: Array, best_distance: Array, best_images: Array, used: Array) -> tuple:

        def running(state: tuple) -> Array:
            step, _, _, active, *_ = state
            return (step < settings.steps) & active.any()

        def adam_step(state: tuple) -> tuple:
            step, w, opt_state, active, previous, round_success, best_distance, best_images, used = state
            grad, (per_image, distance, logits) = jax.grad(objective, has_aux=True)(w, const)
            adversarial = to_image(w)
            found = adversarial_with_margin(logits, labels, targets, settings.kappa) & active
            best_distance, best_images = keep_smallest(found, adversarial, distance, best_distance, best_images)
            round_success = round_success | found
            checkpoint = step % check_every == 0
            stalled = settings.abort_early & checkpoint & (per_image > ABORT_TOLERANCE * previous)
            previous = jnp.where(checkpoint, per_image, previous)
            updates, new_state = optimizer.update(grad, opt_state, w)
            moving = active & ~stalled
            w = select(moving, optax.apply_updates(w, updates), w)
            # Adam's moments per image; its step count (a scalar) is shared.
            opt_state = jax.tree.map(lambda new, old: select(moving, new, old) if new.ndim else new, new_state,
                                     opt_state)
            return (step + 1, w, opt_state, moving, previous, round_success, best_distance, best_images,
                    used + moving)

        initial = (jnp.int32(0), w_clean, optimizer.init(w_clean), jnp.ones(count, bool), jnp.full(count, 1e6),
                   jnp.zeros(count, bool), best_distance, best_images, used)
        *_, round_success, best_distance, best_images, used = jax.lax.while_loop(running, adam_step, initial)
        return round_success, best_distance, best_images, used

    best_images, used = search_over_const(search_round, settings.binary_search_steps, settings.initial_const,
                                          images)
    return best_images, used, model(best_images)


RUN = Program(run, "cw")


def cw(model: Model, images: Any, labels: Any, *, targets: Any = None, binary_search_steps: int = BINARY_SEARCH_STEPS,
       steps: int = STEPS, learning_rate: float = LEARNING_RATE, initial_const: float = INITIAL_CONST,
       kappa: float = KAPPA, abort_early: bool = True) -> AttackResult:
    """Carlini–Wagner L2 adversarial examples for a batch: untargeted, or towards `targets`.

    images: float (N, H, W, 3) in [0, 1]; labels: (N,) true classes. Every round of the search and
    every step in one compiled program; `result.norm` is the L2 size of each perturbation (0 where the
    image was never fooled: it is returned as it was).
    """
    if binary_search_steps < 1:
        raise MethodOptionError(f"binary_search_steps must be at least 1, got {binary_search_steps}")
    for name, value in (("learning_rate", learning_rate), ("initial_const", initial_const)):
        if not value > 0:
            raise MethodOptionError(f"{name} must be positive, got {value}")
    if kappa < 0:
        raise MethodOptionError(f"kappa (the confidence margin) must be 0 or more, got {kappa}")
    images, labels, targets = check_attack_request(model, images, labels, targets, None, "l2", steps)
    settings = Settings(np.int32(binary_search_steps), np.int32(steps), np.float32(learning_rate),
                        np.float32(initial_const), np.float32(kappa), np.bool_(abort_early))
    adversarial, used, logits = RUN(settings, model, images, labels, targets)
    return result(images, adversarial, logits, labels, targets, used, "l2")
