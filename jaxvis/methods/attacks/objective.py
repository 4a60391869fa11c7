"""PGD towards an objective instead of a wrong class: a perturbation within eps that moves a unit, a
token or a saliency map -- the attack for networks without a classifier.

    x_{t+1} = Proj_{B(x, eps) ∩ [0,1]}(x_t + alpha · step(∇_x objective(f(x_t))))

with PGD's steps and projection (`jaxvis.methods.attacks.pgd`, Madry et al. 2018). Perturbing an input to
steer an inner representation rather than the label is Sabour, Cao, Faghri & Fleet's "Adversarial
Manipulation of Deep Representations" (ICLR 2016); here the target is any jaxvis objective, e.g.

    from jaxvis.pieces.tokens import saliency
    inside = saliency(region=mask)                    # the DINOv2 saliency map's mean inside a mask
    moved = pgd_objective(vit, images, saliency(region=1 - mask) - inside, eps=8 / 255)

Defaults are PGD's L-infinity ones (eps 8/255, step 2/255, 10 steps), without a random start so
the result is deterministic. Eps, step size, step count and the objective's data (units, masks,
weights) are runtime values: changing them reuses the compiled program.  It runs on the engine
(`jaxvis.optimize`), each image a unit with the eps-ball around it as its parameterization; the
objective is computed on each image alone (an objective that averages over its batch has the same
steps: a sign, or a direction normalized per image, does not see the 1/N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.programs import Program
from jaxvis.engine.optimize import optimize
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.methods.attacks.common import check_attack_budget
from jaxvis.methods.attacks.pgd import STEPS, default_budget
from jaxvis.models.model import Model
from jaxvis.pieces.eps_ball import eps_ball, per_image_norm
from jaxvis.pieces.objectives import INPUT, Objective
from jaxvis.pieces.optimizers import steepest_ascent

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


PER_IMAGE = Program(per_image, "objective per image")


def pgd_objective(model: Model, images: Any, objective: Objective, *, norm: str = "linf",
                  eps: float | None = None, step_size: float | None = None, steps: int = STEPS,
                  random_start: bool = False, seed: int | None = None, config: RunConfig | None = None
                  ) -> ObjectiveAttackResult:
    """Raise `objective` (negate it to lower it) on each of `images` (N, H, W, 3) in [0, 1] within an
    eps-ball; eps and step_size default to `pgd.DEFAULTS[norm]`. One compiled program for the batch."""
    eps, step_size = default_budget(norm, eps, step_size)
    images = check_attack_budget(model, images, eps, norm, steps, step_size).astype(np.float32)
    config = run_config(config, seed)
    optimized = optimize(model, objective, param=lambda unit: eps_ball(images[unit], eps, norm, random_start),
                         optimizer=steepest_ascent(step_size, norm), units=np.arange(len(images)), steps=steps,
                         description=f"pgd towards {objective.name}", **config.engine_options())
    adversarial = optimized.images[:, 0]
    both = PER_IMAGE(model, objective, jnp.asarray(np.concatenate([images, adversarial])))
    before, after = np.split(np.asarray(both), 2)
    return ObjectiveAttackResult(adversarial, before, after, per_image_norm(adversarial - images, norm), norm)
