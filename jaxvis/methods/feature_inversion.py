"""Feature inversion (Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them", CVPR 2015).

Which images does a layer consider equal to a given one?  Starting from noise, find

    x* = argmin_x  ‖Φ(x) − Φ0‖² / ‖Φ0‖²  +  λ_α R_α(x) / (N B^α)  +  λ_V R_V^β(x) / (N V^β)

with R_α(x) = Σ |x|^α (α = 6: keeps the range bounded), R_V^β(x) = Σ_ij ((x_i,j+1 − x_i,j)² +
(x_i+1,j − x_i,j)²)^(β/2) (β = 2: removes the spikes max-pooling networks produce), x in the
network's normalized space, N the number of pixels, B the typical pixel range (80 on the
paper's mean-subtracted 0-255 scale, converted to normalized units here) and V = B / 6.5
the typical neighbour difference (the paper's normalization, §3.3).  The paper minimizes
with momentum gradient descent; jaxvis uses Adam, which needs no per-layer step tuning.
Several images are reconstructed in parallel, one per unit of the vmapped engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import MethodOptionError
from jaxvis.engine.optimize import Result, optimize
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.model import Model, apply, check_images
from jaxvis.pieces.objectives import INPUT, Acts, Objective, feature_match, term
from jaxvis.pieces.optimizers import adam
from jaxvis.pieces.param import clamped

ALPHA = 6.0  # §3.1, "α = 6 in the experiments"
BETA = 2.0  # §3.2, β = 2 for networks with max pooling
LAMBDA_ALPHA = 1.0
LAMBDA_TV = 1.0
RANGE_0_255 = 80.0  # B on the mean-subtracted 0-255 scale (§3.3)
TV_FRACTION = 6.5  # V = B / 6.5 (§3.3)
LEARNING_RATE = 0.05
STEPS = 400


def natural_image_prior(mean: Sequence[float], std: Sequence[float], alpha: float, beta: float, lambda_alpha: float,
                        lambda_tv: float) -> Objective:
    """λ_α R_α/(N B^α) + λ_V R_V^β/(N V^β) on the normalized image (a penalty: subtract it)."""
    scale = RANGE_0_255 / 255.0 / float(np.mean(std))  # B in normalized units
    return Objective(term(_natural_image_prior, mean=tuple(mean), std=tuple(std), scale=scale, alpha=alpha, beta=beta),
                     (lambda_alpha, lambda_tv), frozenset({INPUT}), "natural_image_prior")


def _natural_image_prior(weights: tuple, acts: Acts, *, mean: tuple, std: tuple, scale: float, alpha: float,
                         beta: float) -> jax.Array:
    lambda_alpha, lambda_tv = weights
    tv_scale = scale / TV_FRACTION
    x = (acts[INPUT] - jnp.asarray(mean)) / jnp.asarray(std)  # mean-subtracted, in the network's units
    pixels = x.shape[1] * x.shape[2]
    r_alpha = jnp.sum(jnp.abs(x) ** alpha) / (pixels * scale**alpha)
    dy = x[:, 1:, :-1] - x[:, :-1, :-1]
    dx = x[:, :-1, 1:] - x[:, :-1, :-1]
    r_tv = jnp.sum((jnp.square(dx) + jnp.square(dy)) ** (beta / 2)) / (pixels * tv_scale**beta)
    return lambda_alpha * r_alpha + lambda_tv * r_tv


def reconstruct(
    model: Model,
    images: np.ndarray,
    layer: str,
    *,
    steps: int = STEPS,
    alpha: float = ALPHA,
    beta: float = BETA,
    lambda_alpha: float | list[float] = LAMBDA_ALPHA,
    lambda_tv: float | list[float] = LAMBDA_TV,
    learning_rate: float | list[float] = LEARNING_RATE,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
) -> Result:
    """Reconstruct each of `images` (N, H, W, 3) in [0, 1] from its `layer` activation; images (N, 1, H, W, 3).

    config: the seed, progress bar and checkpoints (`jaxvis.engine.run_config.RunConfig`); seed and progress, when
    given, replace its.  A sweep: lambda_alpha, lambda_tv and learning_rate given as lists run every combination
    in one program (`result.with_grid_axes(result.images)`: the grid's axes first); alpha and beta shape it."""
    refuse_lists(steps=steps, alpha=alpha, beta=beta)
    grid = Grid.of(lambda_alpha=lambda_alpha, lambda_tv=lambda_tv, learning_rate=learning_rate)
    images = check_images(np.asarray(images, np.float32), model.arch)
    if images.shape[1] != images.shape[2]:
        raise MethodOptionError(f"reconstruct takes square images; got {images.shape[1]}x{images.shape[2]} (crop them first)")
    targets = apply(model, images, capture=(layer,))[layer]

    def objective_with(lambda_alpha: float, lambda_tv: float, **_: float):
        prior = natural_image_prior(model.arch.mean, model.arch.std, alpha, beta, lambda_alpha, lambda_tv)
        return lambda index: (feature_match(layer, jnp.take(targets, index, axis=0)) - prior).named(
            f"reconstruct {layer}")

    result = optimize(
        model,
        grid.per_cell(objective_with),
        units=np.arange(len(images)),
        param=clamped(images.shape[1], model.arch.mean, model.arch.std),
        optimizer=grid.per_cell(lambda learning_rate, **_: adam(learning_rate)),
        steps=steps,
        **run_config(config, seed, progress).engine_options(),
    )
    return replace(result, grid=grid.shape) if grid.swept else result
