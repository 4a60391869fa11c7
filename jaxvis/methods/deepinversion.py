"""DeepInversion (Yin, Molchanov, Li, Alvarez, Mallya, Hoiem, Jha, Kautz; CVPR 2020).

Images synthesized from a BatchNorm network alone: a batch x is optimized so that
the network classifies each image as its target *and* the batch statistics at
every BatchNorm input match the running statistics stored in the network.
Reference: NVlabs/DeepInversion, `deepinversion.py` (`DeepInversionClass.get_images`)
with the defaults of `imagenet_inversion.py`:

    x ~ N(0, 1) in the network's normalized space, a batch with one target per image
    for (resolution, iterations, jitter) in [(S/2 by 2×2 average pooling, 2000, 15), (S, 1000, 30)]:   (setting 0)
        Adam(lr 0.2, betas (0.5, 0.9)), 100 steps of linear warm-up then cosine to 0, fresh per resolution:
            v ← flip?(roll(pool(x), ±jitter))
            loss ← CE(model(v), y) + 0.05 · Σ_l w_l (‖μ_l(v) − μ̄_l‖ + ‖σ²_l(v) − σ̄²_l‖)   (w_1 = 10, others 1)
                   + 1e-4 · TV_l2(x) + 0 · TV_l1(x) + 1e-5 · mean_b ‖x_b‖
            x ← clip(x − update) to the normalized image of [0, 1]

The image priors are taken on the (normalized) optimized images; the reference
takes them after jitter/flip, which differs only by the wrap-around seam.  The
whole batch is one unit of the engine, because the BatchNorm prior couples its images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.imagenet import class_indices
from jaxvis.models.model import Model, check_image_shape
from jaxvis.models.statistics import batchnorm_inputs
from jaxvis.objectives import INPUT, Objective, batchnorm_statistics
from jaxvis.optimize import Result, optimize, staged_result
from jaxvis.param import clamped
from jaxvis.transforms import avg_pool, compose, flip, identity, roll

# imagenet_inversion.py argparse defaults; README's command uses --do_flip, which we follow.
LEARNING_RATE = 0.2
R_FEATURE = 0.05
FIRST_BN_MULTIPLIER = 10.0
TV_L1 = 0.0
TV_L2 = 1e-4
L2 = 1e-5
MAIN_LOSS_MULTIPLIER = 1.0
JITTER = 30
BETAS = (0.5, 0.9)  # setting_id 0 and 1
WARMUP = 100  # lr_cosine_policy(lr, 100, iterations)
# setting_id 0: 2k iterations at half resolution, then 1k at full resolution.
MULTI_RESOLUTION = ((2, 2000), (1, 1000))


def warmup_cosine(learning_rate: float, steps: int, warmup: int = WARMUP) -> optax.Schedule:
    """`lr_cosine_policy`: lr·(t+1)/warmup for t < warmup, then 0.5·(1 + cos(π (t − warmup)/(steps − warmup)))·lr."""
    warmup = min(warmup, max(steps - 1, 1))

    def schedule(t: jnp.ndarray) -> jnp.ndarray:
        rising = learning_rate * (t + 1) / warmup
        falling = 0.5 * (1 + jnp.cos(math.pi * (t - warmup) / max(steps - warmup, 1))) * learning_rate
        return jnp.where(t < warmup, rising, falling)

    return schedule


def image_priors(mean: Sequence[float], std: Sequence[float], tv_l1: float, tv_l2: float, l2: float) -> Objective:
    """`get_image_prior_losses` and the l2 term on the normalized images (a penalty: subtract it)."""
    mean_, std_ = jnp.asarray(mean), jnp.asarray(std)

    def fn(acts) -> jnp.ndarray:
        x = (acts[INPUT] - mean_) / std_
        diffs = [x[:, :, :-1] - x[:, :, 1:], x[:, :-1] - x[:, 1:], x[:, 1:, :-1] - x[:, :-1, 1:],
                 x[:, :-1, :-1] - x[:, 1:, 1:]]
        total_l2 = sum(jnp.sqrt(jnp.sum(jnp.square(d))) for d in diffs)
        total_l1 = sum(jnp.mean(jnp.abs(d)) for d in diffs)
        norm = jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)).mean()
        return tv_l2 * total_l2 + tv_l1 * total_l1 + l2 * norm

    return Objective(fn, frozenset({INPUT}), "image_priors")


def deep_inversion(
    model: Model,
    classes: Sequence[int | str],
    *,
    size: int | None = None,
    resolutions: Sequence[tuple[int, int]] = MULTI_RESOLUTION,
    learning_rate: float = LEARNING_RATE,
    r_feature: float = R_FEATURE,
    first_bn_multiplier: float = FIRST_BN_MULTIPLIER,
    tv_l1: float = TV_L1,
    tv_l2: float = TV_L2,
    l2: float = L2,
    main_loss_multiplier: float = MAIN_LOSS_MULTIPLIER,
    jitter: int = JITTER,
    do_flip: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> Result:
    """One batch with an image per class in `classes`; `result.images` is (K, 1, S, S, 3).

    resolutions: (downsampling factor, iterations) per phase -- the reference's
    setting 0 by default; `((1, 2000),)` is its setting 1.
    """
    stats = batchnorm_inputs(model, "DeepInversion")
    targets = jnp.asarray(class_indices(classes, model.arch.num_classes))
    final = size or model.input_size
    check_image_shape((1, final, final, 3), "float32", model.arch)
    mean, std = model.arch.mean, model.arch.std

    def cross_entropy(acts) -> jnp.ndarray:
        log_probs = jax.nn.log_softmax(acts["logits"], axis=-1)
        return jnp.take_along_axis(log_probs, targets[:, None], axis=-1).mean()  # −CE

    objective = (
        main_loss_multiplier * Objective(cross_entropy, frozenset({"logits"}), "log_prob(targets)")
        - r_feature * batchnorm_statistics(stats, first_bn_multiplier)
        - image_priors(mean, std, tv_l1, tv_l2, l2)
    ).named("deepinversion")
    param = clamped(final, mean, std, init="normal")
    theta, stages, timings = None, [], {}
    for phase, (factor, steps) in enumerate(resolutions):
        start = time.perf_counter()
        result = optimize(
            model,
            objective,
            param=param,
            init=theta,
            batch=len(targets),
            step_transform=compose(avg_pool(factor) if factor != 1 else identity(), roll(jitter // factor),
                                   flip() if do_flip else identity()),
            optimizer=optax.adam(warmup_cosine(learning_rate, steps), b1=BETAS[0], b2=BETAS[1], eps=1e-8),
            steps=steps,
            seed=seed * 1000 + phase,
            chunk=min(steps, 100),
            progress=progress,
        )
        theta = (jnp.asarray(result.images) - jnp.asarray(mean)) / jnp.asarray(std)  # back to normalized space
        stages.append(result)
        timings[f"phase_{phase}_s"] = time.perf_counter() - start
    images = np.asarray(result.images[0])[:, None]  # the batch's images, one per class
    return staged_result(images, stages, np.asarray(targets), timings)
