"""Feature visualization in one line, with Lucid/Lucent's defaults.

    images = jaxvis.visualize(model, "features.14:0-15", size=128, steps=512, seed=0)   # (16, 128, 128, 3)
    images = jaxvis.visualize(vit, "backbone.encoder.layer.6.mlp.activation:0-7@patches")   # ViT tokens

Defaults (Lucid `render_vis`, Lucent `render_vis`): Fourier parameterization in
decorrelated color space with sd 0.01 (Lucid's `param.image(128)`), the standard
transforms, Adam with learning rate 0.05, 512 steps; images smaller than the
model's input size are upsampled to it before the model (Lucent); the ReLU
gradient is redirected for the first 16 steps (Lucid, lucid#68).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import MethodOptionError
from jaxvis.engine.optimize import Result, optimize
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.catalog import card_of
from jaxvis.models.model import Model
from jaxvis.models.request import UnitSpec, check_request
from jaxvis.pieces import objectives
from jaxvis.pieces.optimizers import adam
from jaxvis.pieces.param import PARAMS
from jaxvis.pieces.transforms import Transform, lucid_standard

IMAGE_PENALTIES: dict[str, Callable] = {"tv": objectives.total_variation, "l1": objectives.l1, "l2": objectives.l2}

OBJECTIVES: dict[str, Callable] = {
    "channel": objectives.channel,
    "neuron": objectives.neuron,
    "logit": lambda layer, unit: objectives.class_logit(unit, layer),
    "log_prob": lambda layer, unit: objectives.class_log_probability(unit, layer),
    "deepdream": lambda layer, unit: objectives.deepdream(layer),
}


def token_objective(token: str | tuple[int, int]) -> Callable:
    """The objective maker of a unit spec's `@token` (`jaxvis.models.request.parse_spec`)."""
    from jaxvis.pieces import tokens

    if token == "cls":
        return tokens.cls_channel
    if token == "patches":
        return tokens.patch_mean
    return lambda layer, unit: tokens.patch_channel(layer, unit, token)


def objective_maker(unit_spec: UnitSpec, objective: str) -> Callable:
    """`(layer, unit) -> Objective` for a checked request: the named objective, or the `@token`'s."""
    return OBJECTIVES[objective] if unit_spec.token is None else token_objective(unit_spec.token)


def run_visualization(
    model: Model,
    spec: str,
    *,
    objective: str = "channel",
    size: int = 128,
    steps: int = 512,
    seed: int | None = None,
    param: str = "fourier",
    lr: float | list[float] = 0.05,
    transform: Transform | None = None,
    batch: int = 1,
    ensemble: int = 1,
    diversity: float | list[float] = 0.0,
    tv: float | list[float] = 0.0,
    l1: float | list[float] = 0.0,
    l2: float | list[float] = 0.0,
    jitter: int | list[int] | None = None,
    scale: float | list[float] | None = None,
    relu_override_steps: int = 16,
    model_size: int | None = None,
    config: RunConfig | None = None,
    **engine,
) -> tuple[UnitSpec, Result]:
    """Check the request, build the objective and run the engine; returns the units and the full `Result`.

    tv, l1, l2: weights of Lucid's image penalties subtracted from every unit's objective (total variation,
    `objectives.l1` and `objectives.l2` about 0.5); jitter and scale: the first jitter's distance and the
    scale spread of Lucid's standard transforms (`transforms.lucid_standard`: 8 and 0.1; only without a
    `transform` of your own).  lr, diversity, tv, l1, l2, jitter and scale may be lists: every combination
    runs in one compiled program (`jaxvis.engine.sweeps`); the result's entries are then grid cell × unit,
    cell-major.  config: the seed, progress bar and checkpoints (`jaxvis.engine.run_config.RunConfig`); seed and
    the engine's keywords, when given, replace its."""
    refuse_lists(objective=objective, size=size, steps=steps, seed=seed, param=param, batch=batch, ensemble=ensemble,
                 relu_override_steps=relu_override_steps, model_size=model_size)
    if transform is not None and (jitter is not None or scale is not None):
        raise MethodOptionError("jitter and scale set Lucid's standard transforms; with a transform of your own, "
                                "put the jitter and scale in it instead")
    config = run_config(config, seed, engine.pop("progress", None))
    engine = {**config.engine_options(), **engine}
    grid = Grid.of(lr=lr, diversity=diversity, tv=tv, l1=l1, l2=l2, jitter=8 if jitter is None else jitter,
                   scale=0.1 if scale is None else scale)
    unit_spec, model_size = check_request(card_of(model.arch), spec, objective=objective, param=param, size=size,
                                          model_size=model_size)
    make = objective_maker(unit_spec, objective)
    penalties = [(name, make_penalty) for name, make_penalty in IMAGE_PENALTIES.items()
                 if any(cell[name] for cell in grid.cells)]  # a weight that is 0 in every cell adds no term
    with_diversity = any(cell["diversity"] for cell in grid.cells)

    def objective_with(**cell: float) -> Callable:
        def objective_for(unit):
            term = make(unit_spec.layer, unit)
            for name, make_penalty in penalties:
                term = term - cell[name] * make_penalty()
            return term + cell["diversity"] * objectives.diversity(unit_spec.layer) if with_diversity else term

        return objective_for

    def transform_with(jitter: int, scale: float, **_: float) -> Transform:
        return lucid_standard(model_size if model_size != size else None, jitter, scale)

    result = optimize(
        model,
        grid.per_cell(objective_with),
        units=jnp.asarray(unit_spec.units),
        param=PARAMS[param](size),
        transform=transform if transform is not None else grid.per_cell(transform_with),
        optimizer=grid.per_cell(lambda lr, **_: adam(lr)),
        steps=steps,
        batch=batch,
        ensemble=ensemble,
        relu_override_steps=relu_override_steps,
        **engine,
    )
    return unit_spec, replace(result, grid=grid.shape) if grid.swept else result


def visualize(model: Model, spec: str, **options) -> np.ndarray:
    """Images maximizing each unit of `spec`: float32 (units, size, size, 3) in [0, 1] ((units, batch, ...) if batch > 1).

    Options are those of `run_visualization` (objective, size, steps, seed, param, lr,
    transform, batch, ensemble, diversity, tv, l1, l2, jitter, scale, relu_override_steps, model_size) and of
    `jaxvis.engine.optimize.optimize` (checkpoint_dir, checkpoint_every, resume, progress ...).
    A sweep: lr, diversity, tv, l1, l2, jitter and scale may be lists; every combination runs in one
    compiled program and the grid's axes come first, `lr=[0.02, 0.05, 0.1]` giving (3, units, size, size, 3).
    """
    _, result = run_visualization(model, spec, **options)
    images = result.images.astype(np.float32)
    return result.with_grid_axes(images[:, 0] if images.shape[1] == 1 else images)
