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

It runs on the engine (`jaxvis.optimize`): each image of each restart is a unit
whose parameterization is the eps-ball around its clean image (`jaxvis.pieces.eps_ball`),
its update `optimizers.steepest_ascent`, its early stop the engine's `stop`; all
restarts are one vmapped program.  eps and the step size can be lists: a sweep,
every value in that one program (a robustness curve), one result per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.methods.attacks.common import (AttackResult, adversarial_objective, best_restart, budgets, check_attack_request,
                                   logits_report, result)
from jaxvis.core.errors import MethodOptionError
from jaxvis.engine.optimize import optimize
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.sweeps import refuse_lists
from jaxvis.models.model import Model, logits
from jaxvis.pieces.eps_ball import eps_ball, per_image_norm, project, random_start  # noqa: F401  (PGD's pieces)
from jaxvis.pieces.optimizers import steepest_ascent

Array = jax.Array
DEFAULTS = {"linf": {"eps": 8 / 255, "step_size": 2 / 255}, "l2": {"eps": 1.0, "step_size": 0.2}}
STEPS = 10
DIVISION_GUARD = 1e-10  # added to gradient norms before dividing (torchattacks' eps_for_division)


def default_budget(norm: str, eps: Any, step_size: Any) -> tuple[Any, Any]:
    """eps and step size, each `DEFAULTS[norm]`'s where not given (an unknown norm is reported later)."""
    known = DEFAULTS.get(norm, {})
    return (known.get("eps") if eps is None else eps), (known.get("step_size") if step_size is None else step_size)


def gradient_step(grad: Array, norm: str) -> Array:
    """The direction of steepest ascent under the norm: sign(g), or g over its L2 norm (per image)."""
    if norm == "linf":
        return jnp.sign(grad)
    return grad / (per_image_norm(grad, "l2") + DIVISION_GUARD)[:, None, None, None]


def pgd(model: Model, images: Any, labels: Any, *, targets: Any = None, norm: str = "linf",
        eps: float | Sequence[float] | None = None, step_size: float | Sequence[float] | None = None,
        steps: int = STEPS, random_start: bool = True, restarts: int = 1, early_stop: bool = True,
        seed: int | None = None, config: RunConfig | None = None) -> AttackResult | list[AttackResult]:
    """PGD adversarial examples for a batch: untargeted, or towards `targets` (one class per image).

    images: float (N, H, W, 3) in [0, 1]; labels: (N,) true classes. eps and step_size default
    to `DEFAULTS[norm]`; either given as a list sweeps it (one `AttackResult` per value, all in
    one compiled program). Every image, restart and step in one program; `config` gives the
    seed, progress bar and checkpoints (a run interrupted continues where it stopped).
    """
    eps, step_size = default_budget(norm, eps, step_size)
    refuse_lists(steps=steps, restarts=restarts, norm=norm)
    if restarts < 1:
        raise MethodOptionError(f"restarts must be at least 1, got {restarts}")
    cells = budgets(eps, step_size)
    for cell_eps, cell_step in cells:
        images_checked, labels, targets = check_attack_request(model, images, labels, targets, cell_eps, norm, steps,
                                                               cell_step)
    config = run_config(config, seed)
    adversarial, used, final_logits = run(model, np.asarray(images_checked), np.asarray(labels),
                                          None if targets is None else np.asarray(targets), cells, norm, steps,
                                          random_start, restarts, early_stop, config)
    results = [result(images_checked, adversarial[c], final_logits[c], labels, targets, used[c], norm)
               for c in range(len(cells))]
    swept = any(isinstance(value, (list, tuple)) for value in (eps, step_size))
    return results if swept else results[0]


def run(model: Model, images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None,
        cells: list[tuple[float, float]], norm: str, steps: int, start_at_random: bool, restarts: int,
        early_stop: bool, config: RunConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell's (eps, step size) × restart × image as one engine run: per cell, the best restart's
    adversarial images (N, H, W, 3), the steps each moved (N,) and their logits (N, classes), from one
    more pass of the program's loop at the final images (its backward skipped)."""
    count = len(images)
    ball = lambda cell_eps: lambda unit: eps_ball(images[unit % count], cell_eps, norm, start_at_random)  # noqa: E731
    pieces = lambda unit: adversarial_objective(labels[unit % count],  # noqa: E731
                                                None if targets is None else targets[unit % count], early_stop)
    optimized = optimize(
        model, lambda unit: pieces(unit)[0], stop=lambda unit: pieces(unit)[1],
        param=[ball(cell_eps) for cell_eps, _ in cells] if len(cells) > 1 else ball(cells[0][0]),
        optimizer=[steepest_ascent(step, norm) for _, step in cells] if len(cells) > 1
        else steepest_ascent(cells[0][1], norm),
        units=np.arange(restarts * count), steps=steps, report=logits_report(), final_evaluation=True,
        description="pgd", **config.engine_options())
    shape = (len(cells), restarts, count)
    adversarial = optimized.images[:, 0].reshape(*shape, *images.shape[1:])
    moved = optimized.moved.reshape(shape)
    # the logits of the last pass: the final images (a run restored whole from its checkpoint has none)
    final = optimized.report if optimized.report is not None else logits(model, optimized.images[:, 0])
    final = final.reshape(*shape, -1)
    best = [best_restart(adversarial[c], moved[c], final[c], labels, targets) for c in range(len(cells))]
    return tuple(np.stack(parts) for parts in zip(*best))  # type: ignore[return-value]


pgd.eps_sweep = True  # type: ignore[attr-defined]  # eps as a list: one program for every value (`evaluate` asks)
