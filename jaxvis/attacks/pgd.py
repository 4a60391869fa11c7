"""Projected gradient descent (Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018), in the L-infinity and L2 norms.

    x_0     = x + uniform noise in the eps-ball            (random start; else x_0 = x)
    x_{t+1} = Proj_{B(x, eps) ∩ [0,1]}(x_t + alpha · step(∇_x L(f(x_t), y)))
              step = sign(g) for L-infinity,  g / ||g||_2 for L2

run for `steps` steps from each of `restarts` random starts, keeping per image
the best restart (a successful one, else the one with the highest loss). An
image that already fools the model stops changing (`early_stop`).

Defaults are torchattacks 3.5.1's `PGD` / `PGDL2` (the reference implementation
this module is compared with): eps 8/255, alpha 2/255, 10 steps with a random
start for L-infinity (Madry et al.'s CIFAR-10 budget: 8/255 and 2/255); eps 1.0,
alpha 0.2 for L2. The L2 random start is torchattacks': a Gaussian direction
scaled to a radius uniform in [0, eps].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.attacks.common import (AttackResult, adversarial_loss, best_of_restarts, check_attack_request,
                                   per_image_norm, result, select, succeeded)
from jaxvis.errors import MethodOptionError
from jaxvis.models.model import Model
from jaxvis.programs import Program
from jaxvis.structure import piece

Array = jax.Array
DEFAULTS = {"linf": {"eps": 8 / 255, "step_size": 2 / 255}, "l2": {"eps": 1.0, "step_size": 0.2}}
STEPS = 10
DIVISION_GUARD = 1e-10  # added to gradient norms before dividing (torchattacks' eps_for_division)


@piece(data=("eps", "step_size", "steps", "seed", "random_start", "early_stop"))
class Settings:
    """One PGD run: all but the norm are runtime values (another eps, step count or start -- FGSM
    included -- runs the same program)."""

    eps: Any
    step_size: Any
    steps: Any
    seed: Any
    random_start: Any
    early_stop: Any
    norm: str = "linf"


def default_budget(norm: str, eps: float | None, step_size: float | None) -> tuple[Any, Any]:
    """eps and step size, each `DEFAULTS[norm]`'s where not given (an unknown norm is reported later)."""
    known = DEFAULTS.get(norm, {})
    return (known.get("eps") if eps is None else eps), (known.get("step_size") if step_size is None else step_size)


def gradient_step(grad: Array, norm: str) -> Array:
    """The direction of steepest ascent under the norm: sign(g), or g over its L2 norm (per image)."""
    if norm == "linf":
        return jnp.sign(grad)
    return grad / (per_image_norm(grad, "l2") + DIVISION_GUARD)[:, None, None, None]


def project(adversarial: Array, clean: Array, eps: Array, norm: str) -> Array:
    """Back into the eps-ball around `clean` and into [0, 1]."""
    delta = adversarial - clean
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        delta = delta * jnp.minimum(1.0, eps / per_image_norm(delta, "l2"))[:, None, None, None]
    return jnp.clip(clean + delta, 0.0, 1.0)


def random_start(key: Array, clean: Array, eps: Array, norm: str) -> Array:
    if norm == "linf":
        delta = jax.random.uniform(key, clean.shape, minval=-eps, maxval=eps)
    else:
        direction_key, radius_key = jax.random.split(key)
        delta = jax.random.normal(direction_key, clean.shape)
        radius = jax.random.uniform(radius_key, (clean.shape[0],)) * eps
        delta = delta * (radius / per_image_norm(delta, "l2"))[:, None, None, None]
    return jnp.clip(clean + delta, 0.0, 1.0)


def run(settings: Settings, model: Model, images: Array, labels: Array, targets: Array | None,
        restart: Array) -> tuple[Array, Array, Array]:
    """One restart: the adversarial images, the steps each took and their final logits.

    The loop makes `steps + 1` forward passes and `steps` backward passes: the last pass only
    gives the final logits, with its backward skipped (a `cond`), so the program holds one copy
    of the network's forward rather than a second one after the loop (less to trace and compile).
    """
    key = jax.random.fold_in(jax.random.key(settings.seed), restart)
    start = jnp.where(settings.random_start, random_start(key, images, settings.eps, settings.norm), images)

    def loss(x: Array) -> tuple[Array, Array]:
        logits = model(x)
        return adversarial_loss(logits, labels, targets).sum(), logits  # per-image gradients

    def body(step: Array, carry: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        adversarial, used, _ = carry
        total, pullback, logits = jax.vjp(loss, adversarial, has_aux=True)
        last = step == settings.steps  # the extra pass: logits only
        grad = jax.lax.cond(last, lambda: jnp.zeros_like(adversarial), lambda: pullback(jnp.ones_like(total))[0])
        moving = ~(succeeded(logits, labels, targets) & settings.early_stop) & ~last
        stepped = adversarial + settings.step_size * gradient_step(grad, settings.norm)
        stepped = project(stepped, images, settings.eps, settings.norm)
        return select(moving, stepped, adversarial), used + moving, logits

    no_logits = jnp.zeros((len(images), model.arch.num_classes), images.dtype)
    return jax.lax.fori_loop(0, settings.steps + 1, body, (start, jnp.zeros(len(images), jnp.int32), no_logits))


RUN = Program(run, "pgd")


def pgd(model: Model, images: Any, labels: Any, *, targets: Any = None, norm: str = "linf",
        eps: float | None = None, step_size: float | None = None, steps: int = STEPS, random_start: bool = True,
        restarts: int = 1, early_stop: bool = True, seed: int = 0) -> AttackResult:
    """PGD adversarial examples for a batch: untargeted, or towards `targets` (one class per image).

    images: float (N, H, W, 3) in [0, 1]; labels: (N,) true classes. eps and step_size default
    to `DEFAULTS[norm]`. All images, every step, in one compiled program.
    """
    eps, step_size = default_budget(norm, eps, step_size)
    if restarts < 1:
        raise MethodOptionError(f"restarts must be at least 1, got {restarts}")
    images, labels, targets = check_attack_request(model, images, labels, targets, eps, norm, steps, step_size)
    settings = Settings(np.float32(eps), np.float32(step_size), np.int32(steps), np.int32(seed),
                        np.bool_(random_start), np.bool_(early_stop), norm)
    one = lambda restart: RUN(settings, model, images, labels, targets, np.int32(restart))  # noqa: E731
    adversarial, used, logits = best_of_restarts(one, restarts, labels, targets)
    return result(images, adversarial, logits, labels, targets, used, norm)
