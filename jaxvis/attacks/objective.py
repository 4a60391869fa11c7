"""PGD towards an objective instead of a wrong class: a perturbation within eps that moves a unit, a
token or a saliency map -- the attack for networks without a classifier.

    x_{t+1} = Proj_{B(x, eps) ∩ [0,1]}(x_t + alpha · step(∇_x objective(f(x_t))))

with PGD's steps and projection (`jaxvis.attacks.pgd`, Madry et al. 2018). Perturbing an input to
steer an inner representation rather than the label is Sabour, Cao, Faghri & Fleet's "Adversarial
Manipulation of Deep Representations" (ICLR 2016); here the target is any jaxvis objective, e.g.

    from jaxvis.tokens import saliency
    inside = saliency(region=mask)                    # the DINOv2 saliency map's mean inside a mask
    moved = pgd_objective(vit, images, saliency(region=1 - mask) - inside, eps=8 / 255)

Defaults are PGD's L-infinity ones (eps 8/255, step 2/255, 10 steps), without a random start so
the result is deterministic. Eps, step size, step count and the objective's data (units, masks,
weights) are runtime values: changing them reuses the compiled program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.attacks.common import check_attack_budget, per_image_norm
from jaxvis.attacks.pgd import STEPS, Settings, default_budget, gradient_step, project, random_start
from jaxvis.models.model import Model
from jaxvis.objectives import INPUT, Objective
from jaxvis.programs import Program

Array = jax.Array


@dataclass(frozen=True)
class ObjectiveAttackResult:
    """Perturbed images and, per image, the objective before and after and the perturbation's size."""

    images: np.ndarray  # (N, H, W, 3) float32 in [0, 1]
    before: np.ndarray  # (N,) the objective on the clean image
    after: np.ndarray  # (N,) ... and on the perturbed one
    norm: np.ndarray  # (N,) the perturbation's size in the attack's norm
    norm_name: str = "linf"


def objective_value(model: Model, objective: Objective, images: Array) -> Array:
    """The objective on the batch (it averages over images, so its gradient is per image up to 1/N)."""
    acts = dict(model(images, capture=tuple(sorted(objective.model_layers))))
    return objective({**acts, INPUT: images})


def per_image(model: Model, objective: Objective, images: Array) -> Array:
    """(N,) the objective on each image alone."""
    return jax.vmap(lambda image: objective_value(model, objective, image[None]))(images)


def run(settings: Settings, model: Model, objective: Objective, images: Array) -> tuple[Array, Array, Array]:
    start = jnp.where(settings.random_start,
                      random_start(jax.random.key(settings.seed), images, settings.eps, settings.norm), images)

    def body(_: Array, adversarial: Array) -> Array:
        grad = jax.grad(lambda x: objective_value(model, objective, x))(adversarial)
        stepped = adversarial + settings.step_size * gradient_step(grad, settings.norm)
        return project(stepped, images, settings.eps, settings.norm)

    adversarial = jax.lax.fori_loop(0, settings.steps, body, start)
    return adversarial, per_image(model, objective, images), per_image(model, objective, adversarial)


RUN = Program(run, "pgd towards an objective")


def pgd_objective(model: Model, images: Any, objective: Objective, *, norm: str = "linf",
                  eps: float | None = None, step_size: float | None = None, steps: int = STEPS,
                  random_start: bool = False, seed: int = 0) -> ObjectiveAttackResult:
    """Raise `objective` (negate it to lower it) on each of `images` (N, H, W, 3) in [0, 1] within an
    eps-ball; eps and step_size default to `pgd.DEFAULTS[norm]`. One compiled program for the batch."""
    eps, step_size = default_budget(norm, eps, step_size)
    images = jnp.asarray(check_attack_budget(model, images, eps, norm, steps, step_size), jnp.float32)
    settings = Settings(np.float32(eps), np.float32(step_size), np.int32(steps), np.int32(seed),
                        np.bool_(random_start), np.bool_(False), norm)
    adversarial, before, after = RUN(settings, model, objective, images)
    return ObjectiveAttackResult(np.asarray(adversarial, np.float32), np.asarray(before), np.asarray(after),
                                 per_image_norm(np.asarray(adversarial) - np.asarray(images), norm), norm)
