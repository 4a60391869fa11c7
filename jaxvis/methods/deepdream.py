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
network), as TensorFlow's DeepDream tutorial does for large images.  step_size and jitter may be lists:
every combination dreams in each octave's one program (`jaxvis.engine.sweeps`), a cell per image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import InvalidImageError, MethodOptionError
from jaxvis.engine.optimize import Result
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, StageBuilder, StageCallback, run_stages, with_options
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.model import Model, check_image_shape
from jaxvis.pieces.objectives import Objective
from jaxvis.pieces.objectives import deepdream as deepdream_objective
from jaxvis.pieces.optimizers import normalized_ascent
from jaxvis.pieces.param import clamped
from jaxvis.pieces.transforms import compose, roll, tiles


@dataclass(frozen=True)
class Recipe:
    """DeepDream's defaults, from the notebook's `deepdream(...)` and `make_step(...)` signatures."""

    octaves: int = 4  # octave_n=4
    octave_scale: float = 1.4  # octave_scale=1.4
    steps: int = 10  # iter_n=10, per octave
    step_size: float = 1.5 / 255  # make_step(step_size=1.5) on a 0-255 image
    jitter: int = 32  # make_step(jitter=32)
    tile_size: int = 512  # the TF tutorial's tile_size
    chunk: int = 32  # steps per compiled loop call (an octave's 10 steps run in one)


DEFAULTS = Recipe()


def octave_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """Sizes of the octaves, smallest first (each 1/scale of the next)."""
    return [(round(height / scale**k), round(width / scale**k)) for k in reversed(range(octaves))]


def check_octaves(arch: Any, height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """The octave sizes of a height x width image, or `InvalidImageError` if the smallest is below what `arch`
    (an `Architecture` or a catalog `Card`) accepts."""
    if octaves < 1 or not scale > 0:
        raise MethodOptionError(f"DeepDream needs at least 1 octave and a positive octave scale; got {octaves} and "
                                f"{scale}")
    sizes = octave_sizes(height, width, octaves, scale)
    smallest = min(min(size) for size in sizes)
    if smallest < arch.min_size:
        raise InvalidImageError(
            f"the smallest of {octaves} octaves (scale {scale}) of a {height}x{width} image "
            f"is {smallest} px, below the {arch.min_size} px {arch.name} accepts; use fewer octaves or a larger image."
        )
    return sizes


def dream(
    model: Model,
    image: np.ndarray,
    layers: str | Sequence[str],
    *,
    octaves: int | None = None,
    octave_scale: float | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    jitter: int | None = None,
    tile_size: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
    on_stage: StageCallback | None = None,
    recipe: Recipe = DEFAULTS,
) -> Result:
    """DeepDream `image` (H, W, 3) in [0, 1] on one or several layers; `result.images` is (1, 1, H, W, 3).

    recipe: every field is used (`Recipe`); the keywords, when given, replace its fields.  A sweep: step_size
    and jitter given as lists run every combination in each octave's one program, one image per cell
    (`result.images` (cells, 1, H, W, 3); `result.with_grid_axes(result.images)` puts the grid's axes first).
    config: the seed, progress bars and checkpoints (`jaxvis.engine.run_config.RunConfig`: with a checkpoint_dir an
    interrupted call continues); seed and progress, when given, replace its.
    """
    recipe = with_options(recipe, octaves=octaves, octave_scale=octave_scale, steps=steps, step_size=step_size,
                          jitter=jitter, tile_size=tile_size)
    refuse_lists(octaves=recipe.octaves, octave_scale=recipe.octave_scale, steps=recipe.steps,
                 tile_size=recipe.tile_size, chunk=recipe.chunk)
    grid = Grid.of(step_size=recipe.step_size, jitter=recipe.jitter)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise MethodOptionError("name at least one layer to dream on, e.g. features.10 (`jaxvis layers NAME` lists them)")
    image = np.asarray(image, np.float32)
    sizes = check_octaves(model.arch, image.shape[0], image.shape[1], recipe.octaves, recipe.octave_scale)
    if model.arch.fixed_size:
        check_image_shape((1, *image.shape), "float32", model.arch)
    objective: Objective = sum((deepdream_objective(layer) for layer in layers[1:]), deepdream_objective(layers[0]))

    def octave(index: int, h: int, w: int) -> StageBuilder:
        def build(key: jax.Array, previous: Result | None) -> Stage:
            base = octave_base(image, h, w)
            if previous is None:
                start = jnp.broadcast_to(base, (int(np.prod(grid.shape)), h, w, 3))
            else:  # each cell goes on from its own dream
                before = jnp.asarray(previous.images[:, 0])
                detail = before - octave_base(image, *before.shape[1:3])
                start = base + jax.image.resize(detail, (len(detail), h, w, 3), "linear")
            return Stage(
                f"octave_{index}", objective, param=clamped(max(h, w)),  # the start `init` sets the true h × w
                init=start[:, None],
                step_transform=grid.per_cell(lambda jitter, **_: compose(roll(jitter), tiles(recipe.tile_size))),
                optimizer=grid.per_cell(lambda step_size, **_: normalized_ascent(step_size)), steps=recipe.steps,
                chunk=recipe.chunk,
            )

        return build

    builders = [octave(index, h, w) for index, (h, w) in enumerate(sizes)]
    result = run_stages(model, builders, config=run_config(config, seed, progress), on_stage=on_stage)
    return dataclasses.replace(result, grid=grid.shape)  # () without a sweep


def octave_base(image: np.ndarray, height: int, width: int) -> jax.Array:
    """The photo at one octave's size (antialiased when shrinking)."""
    return jax.image.resize(jnp.asarray(image), (height, width, 3), "linear", antialias=True)
