"""DeepDream (Mordvintsev, Olah, Tyka 2015): amplify what a layer sees in a photo.

Reference: the original `deepdream.ipynb` (google/deepdream), `make_step` / `deepdream`:

    octaves ← [image, image/1.4, image/1.4², …]  (4 octaves)
    detail ← 0
    for each octave, smallest first:
        x ← octave + upsample(detail)
        10 times:  v ← roll(x, ±32);  g ← ∇ objective(layer(v))     (objective: ½‖a‖², i.e. a itself as gradient)
                   x ← clip(x + 1.5/255 · g / mean|g|, 0, 1)         (step 1.5 on a 0-255 image)
        detail ← x − octave
    return x

Images larger than `tile_size` are processed in tiles (one batch through the
network), as TensorFlow's DeepDream tutorial does for large images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.errors import InvalidImageError, MethodOptionError
from jaxvis.models.model import Model, check_image_shape
from jaxvis.objectives import Objective
from jaxvis.objectives import deepdream as deepdream_objective
from jaxvis.optimize import Result, optimize, staged_result
from jaxvis.param import clamped
from jaxvis.transforms import compose, roll, tiles

OCTAVES = 4  # deepdream(..., octave_n=4, ...)
OCTAVE_SCALE = 1.4  # octave_scale=1.4
STEPS = 10  # iter_n=10
STEP_SIZE = 1.5 / 255  # make_step(step_size=1.5) on a 0-255 image
JITTER = 32  # make_step(jitter=32)
TILE_SIZE = 512  # the TF tutorial's tile_size


def scale_by_mean_abs(eps: float = 1e-8) -> optax.GradientTransformation:
    """Divide the gradient by its mean absolute value (`g / np.abs(g).mean()` in `make_step`)."""

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda g: g / (jnp.abs(g).mean() + eps), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalized_ascent(step_size: float = STEP_SIZE) -> optax.GradientTransformation:
    """DeepDream's update: a step of `step_size` along the mean-|g|-normalized gradient."""
    return optax.chain(scale_by_mean_abs(), optax.sgd(step_size))


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes of the octaves, smallest first (each 1/scale of the next)."""
    return [(round(height / scale**k), round(width / scale**k)) for k in reversed(range(octaves))]


def dream(
    model: Model,
    image: np.ndarray,
    layers: str | Sequence[str],
    *,
    octaves: int = OCTAVES,
    octave_scale: float = OCTAVE_SCALE,
    steps: int = STEPS,
    step_size: float = STEP_SIZE,
    jitter: int = JITTER,
    tile_size: int = TILE_SIZE,
    seed: int = 0,
    chunk: int | None = None,
    progress: bool = True,
) -> Result:
    """DeepDream `image` (H, W, 3) in [0, 1] on one or several layers; `result.images` is (1, 1, H, W, 3).

    chunk: steps per compiled loop (default: a whole octave in one).
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise MethodOptionError("name at least one layer to dream on, e.g. features.10 (`jaxvis layers NAME` lists them)")
    image = np.asarray(image, np.float32)
    sizes = octave_sizes(image.shape[0], image.shape[1], octaves, octave_scale)
    smallest = min(min(size) for size in sizes)
    if smallest < model.arch.min_size:
        raise InvalidImageError(
            f"the smallest of {octaves} octaves (scale {octave_scale}) of a {image.shape[0]}x{image.shape[1]} image "
            f"is {smallest} px, below the {model.arch.min_size} px {model.name} accepts; use fewer octaves or a larger image."
        )
    if model.arch.fixed_size:
        check_image_shape((1, *image.shape), "float32", model.arch)
    objective: Objective = sum((deepdream_objective(layer) for layer in layers[1:]), deepdream_objective(layers[0]))
    x, detail, stages, timings = None, None, [], {}
    for octave, (h, w) in enumerate(sizes):
        start = time.perf_counter()
        base = jax.image.resize(jnp.asarray(image), (h, w, 3), "linear", antialias=True)
        detail = jnp.zeros_like(base) if detail is None else jax.image.resize(detail, (h, w, 3), "linear")
        result = optimize(
            model,
            objective,
            param=clamped(max(h, w)),  # the start `init` sets the true h × w
            init=(base + detail)[None, None],
            step_transform=compose(roll(jitter), tiles(tile_size)),
            optimizer=normalized_ascent(step_size),
            steps=steps,
            seed=seed * 1000 + octave,
            chunk=chunk or steps,
            progress=progress,
        )
        x = jnp.asarray(result.images[0, 0])
        detail = x - base
        stages.append(result)
        timings[f"octave_{octave}_s"] = time.perf_counter() - start
        if "step_s" in result.timings:  # steady state (after the compiling first chunk)
            timings[f"octave_{octave}_step_s"] = result.timings["step_s"]
    return staged_result(np.asarray(x)[None, None], stages, np.zeros(1, np.int32), timings)
