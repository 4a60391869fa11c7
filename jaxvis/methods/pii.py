"""Plug-In Inversion (Ghiasi, Kazemi, Reich, Zhu, Goldblum, Goldstein 2022; arXiv 2201.12961).

Class images from any classifier -- CNN, ViT or MLP-Mixer -- with one fixed
recipe and no regularizer tuned per network.  Reference code:
`youranonymousefriend/plugininversion`, `experiment/iteration20/pii.py` (with
`inversion/utils.py` `new_init`, `inversion/imagenet_invertor.py`,
`augmentation/pre.py`).  Its algorithm, per target class:

    s ← S // 8;  x ← U(0, 1) noise                                   (S: the model's input size)
    for i in 2s, 3s, …, S:                                           (zoom: the canvas grows)
        x ← U(0, 1) noise of size i with bilinear(x, i − pad) in its center  (centering, pad = s // 2)
        Adam(lr 0.01, betas (0.5, 0.99)), cosine to 0 over 400 steps, fresh each stage; 401 steps:
            v ← roll(x, (δy, δx)), δ ~ U{−32..32}                     (jitter: one shift per step)
            views ← v·σ_k + μ_k, k = 1..B, μ ~ U(−1, 1), σ = exp(U(−1, 1)) per channel  (ColorShift ensemble)
            loss ← cross-entropy(model(views), target);  x ← clamp(x − update, 0, 1)
    CNNs see the i × i image; fixed-size networks (ViT, Mixer) see it bilinearly resized to S.

Here every class is one unit of a single vmapped run and the B views are vmapped
too, so a stage is one compiled program for all classes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.errors import InvalidImageError, MethodOptionError
from jaxvis.imagenet import class_indices
from jaxvis.models.model import Model, check_image_shape
from jaxvis.objectives import class_log_probability
from jaxvis.optimize import Result, optimize, staged_result
from jaxvis.param import clamped
from jaxvis.transforms import center_crop, color_shift, compose, identity, resize, resize_images, roll

LEARNING_RATE = 0.01  # ImageNetVisualizer(lr=.01) in pii.py
BETAS = (0.5, 0.99)  # optim.Adam(..., betas=(0.5, 0.99)) in imagenet_invertor.py
STEPS_PER_STAGE = 401  # steps=400, loop `range(self.steps + 1)`; cosine annealing over 400
JITTER = 32  # Jitter(lim=32)
ENSEMBLE = 48  # RepeatBatch(batch_size): the reference's batch for MobileNetV2 (model/cnns/mobilenet.py)

StageCallback = Callable[[int, np.ndarray], None]  # (stage size, images (K, i, i, 3))


def stage_sizes(size: int) -> list[int]:
    """The reference's `range(2 * step, size + 1, step)` with step = size // 8."""
    step = size // 8
    return list(range(2 * step, size + 1, step))


def pii_optimizer(steps: int = STEPS_PER_STAGE, learning_rate: float = LEARNING_RATE) -> optax.GradientTransformation:
    """Adam with betas (0.5, 0.99) and CosineAnnealingLR to 0 over the stage's steps - 1 scheduler steps."""
    schedule = optax.cosine_decay_schedule(learning_rate, max(steps - 1, 1))
    return optax.adam(schedule, b1=BETAS[0], b2=BETAS[1], eps=1e-8)


def paste_center(key: jax.Array, previous: jax.Array | None, count: int, size: int, pad: int) -> jax.Array:
    """`new_init`: U(0, 1) noise (count, size, size, 3) with `previous` resized to size − pad in its center."""
    canvas = jax.random.uniform(key, (count, size, size, 3), jnp.float32)
    if previous is None:
        return canvas
    inner = size - pad
    offset = (size - inner) // 2
    return canvas.at[:, offset : offset + inner, offset : offset + inner].set(resize_images(previous, inner))


def plug_in_inversion(
    model: Model,
    classes: Sequence[int | str],
    *,
    size: int | None = None,
    ensemble: int = ENSEMBLE,
    steps_per_stage: int = STEPS_PER_STAGE,
    zoom: bool = True,
    center: bool = True,
    jitter: int = JITTER,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    chunk: int = 101,
    progress: bool = True,
    on_stage: StageCallback | None = None,
) -> Result:
    """Invert `classes` (indices or ImageNet names) of `model`; `result.images` is (K, 1, S, S, 3).

    zoom / center: the reference's `way` option -- both (pad = S // 16, the default),
    zoom only (pad 0: the previous stage fills the new canvas), or center only
    (the canvas stays S × S; stage i optimizes its central i × i crop, so the
    optimized region grows outward).  `on_stage(i, images)` sees each finished stage.
    chunk: steps per compiled loop (progress updates between chunks).
    """
    if not (zoom or center):
        raise MethodOptionError("Plug-In Inversion needs zoom, centering or both; set zoom=True or center=True")
    targets = class_indices(classes, model.arch.num_classes)
    final = size or model.input_size
    check_image_shape((1, final, final, 3), "float32", model.arch)
    sizes = stage_sizes(final)
    if zoom and not model.arch.fixed_size and sizes[0] < model.arch.min_size:
        raise InvalidImageError(
            f"Plug-In Inversion at size {final} starts at 2·({final}//8) = {sizes[0]} px, below the "
            f"{model.arch.min_size} px that {model.name} accepts; use size >= {-(-model.arch.min_size // 2) * 8}."
        )
    pad = (final // 8) // 2 if (zoom and center) else 0
    keys = jax.random.split(jax.random.key(seed), len(sizes))

    images, stages, timings = None, [], {}
    for stage, (i, key) in enumerate(zip(sizes, keys)):
        start = time.perf_counter()
        canvas = paste_center(key, images, len(targets), i if zoom else final, pad) if zoom or images is None else images
        view = center_crop(i) if not zoom and i < final else identity()  # centering only: optimize the center i × i
        result = optimize(
            model,
            lambda target, i=i: class_log_probability(target).named(f"PII {i}px"),
            units=targets,
            param=clamped(canvas.shape[1]),
            init=canvas[:, None],
            step_transform=compose(view, roll(jitter)),
            transform=compose(color_shift(1.0, 1.0), resize(final) if model.arch.fixed_size else identity()),
            optimizer=pii_optimizer(steps_per_stage, learning_rate),
            steps=steps_per_stage,
            ensemble=ensemble,
            seed=seed * 1000 + stage,
            chunk=min(steps_per_stage, chunk),
            progress=progress,
        )
        images = jnp.asarray(result.images[:, 0])
        stages.append(result)
        timings[f"stage_{i}px_s"] = time.perf_counter() - start
        if "step_s" in result.timings:  # steady state (after the compiling first chunk)
            timings[f"stage_{i}px_step_s"] = result.timings["step_s"]
        if on_stage is not None:
            on_stage(i, np.asarray(images))
    return staged_result(np.asarray(images)[:, None], stages, targets, timings)
