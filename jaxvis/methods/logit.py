"""Plain class-logit maximization with Lucid's defaults: the baseline Plug-In Inversion is measured against.

Lucid's `render_vis(model, "logits:<class>")` (lucid/optvis/render.py): a decorrelated
Fourier image (sd 0.01, sigmoid), its `standard_transforms`, Adam lr 0.05, 512 steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import jax

from jaxvis.data.imagenet import class_indices, require_classifier
from jaxvis.engine.optimize import Result
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, StageCallback, run_stages, with_options
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.model import Model, check_image_shape
from jaxvis.pieces.objectives import class_logit
from jaxvis.pieces.optimizers import adam
from jaxvis.pieces.param import fourier
from jaxvis.pieces.transforms import lucid_standard


@dataclass(frozen=True)
class Recipe:
    learning_rate: float = 0.05  # render_vis: tf.train.AdamOptimizer(0.05)
    steps: int = 512  # render_vis thresholds=(512,)


DEFAULTS = Recipe()


def logit_inversion(
    model: Model,
    classes: Sequence[int | str],
    *,
    size: int | None = None,
    steps: int | None = None,
    learning_rate: float | list[float] | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
    on_stage: StageCallback | None = None,
    recipe: Recipe = DEFAULTS,
) -> Result:
    """Maximize each class's logit; `result.images` is (K, 1, S, S, 3).

    recipe: every field is used (`Recipe`); steps and learning_rate, when given, replace its fields.  A sweep:
    learning_rate as a list runs every rate in one program (`result.with_grid_axes(result.images)`)."""
    recipe = with_options(recipe, steps=steps, learning_rate=learning_rate)
    refuse_lists(steps=recipe.steps)
    grid = Grid.of(learning_rate=recipe.learning_rate)
    require_classifier(model.name, model.arch.num_classes, "logit inversion")
    targets = class_indices(classes, model.arch.num_classes)
    final = size or model.input_size
    check_image_shape((1, final, final, 3), "float32", model.arch)

    def build(key: jax.Array, previous: Result | None) -> Stage:
        return Stage("logit", class_logit, param=fourier(final), units=targets,
                     transform=lucid_standard(model.input_size if model.arch.fixed_size else None),
                     optimizer=grid.per_cell(lambda learning_rate: adam(learning_rate)), steps=recipe.steps)

    result = run_stages(model, [build], config=run_config(config, seed, progress), on_stage=on_stage, units=targets)
    return replace(result, grid=grid.shape)  # () without a sweep
