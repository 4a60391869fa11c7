"""The stage runner: methods that optimize in several stages (zoom, octaves, resolutions, pyramid levels).

A method is a list of stage *builders*.  Each builder gets the stage's key and
the previous stage's result (None for the first) and returns the `Stage` to run:
its objective, parameterization, start, transforms, optimizer and steps.  The
runner owns what every such method needs: a seed per stage, timing, the
finished images passed on (and to `on_stage`, so nothing finished is lost), and
one combined `Result` whose history runs through all stages.

    def zoom(size):
        def build(key, previous):
            return Stage(f"{size}px", objective, param=clamped(size), init=grow(previous, size), ...)
        return build
    result = run_stages(model, [zoom(s) for s in sizes], config=RunConfig(seed=0))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import numpy as np

from jaxvis.engine.optimize import CHUNK, ObjectiveFor, Result, optimize
from jaxvis.engine.run_config import RunConfig
from jaxvis.models.model import Model
from jaxvis.pieces.objectives import Objective
from jaxvis.pieces.param import Param
from jaxvis.pieces.transforms import Transform, identity

StageCallback = Callable[[str, np.ndarray], None]  # (stage label, images (units, batch, H, W, 3))


@dataclass
class Stage:
    """One call of the engine (see `jaxvis.engine.optimize.optimize` for the meaning of each field)."""

    label: str
    objective: Objective | ObjectiveFor
    param: Param
    optimizer: Any
    steps: int
    units: Any = None
    init: Any = None
    transform: Transform = field(default_factory=identity)
    step_transform: Transform = field(default_factory=identity)
    batch: int = 1
    ensemble: int = 1
    chunk: int = CHUNK
    stop: Any = None  # per-unit early stop and watched value (see `optimize`)
    watch: Any = None


StageBuilder = Callable[[jax.Array, Result | None], Stage]


def with_options(recipe: Any, **options: Any) -> Any:
    """`recipe` (or a `RunConfig`) with the options that were given (not None) in place of its fields."""
    return replace(recipe, **{name: value for name, value in options.items() if value is not None})


def stage_seed(seed: int, index: int) -> int:
    """The engine seed of stage `index` of a run seeded `seed`."""
    return seed * 1000 + index


def run_stages(model: Model, builders: Sequence[StageBuilder], *, config: RunConfig = RunConfig(),
               on_stage: StageCallback | None = None, units: Any = None) -> Result:
    """Run the stages in order; the result's images are the last stage's, its history all stages' end to end.

    config: the seed, progress bars and checkpoints (`jaxvis.engine.run_config`): with a checkpoint_dir,
    finished stages are restored from it and an interrupted one continues."""
    seed = config.seed
    results: list[Result] = []
    timings: dict[str, float] = {}
    previous: Result | None = None
    for index, build in enumerate(builders):
        start = time.perf_counter()
        stage = build(jax.random.key(stage_seed(seed, index)), previous)
        options = {**config.engine_options(config.stage_dir(index, stage.label)), "seed": stage_seed(seed, index)}
        previous = optimize(
            model, stage.objective, param=stage.param, units=stage.units, init=stage.init,
            transform=stage.transform, step_transform=stage.step_transform, optimizer=stage.optimizer,
            steps=stage.steps, batch=stage.batch, ensemble=stage.ensemble, chunk=stage.chunk, stop=stage.stop,
            watch=stage.watch, **options,
            description=f"{stage.label} ({index + 1} of {len(builders)})" if len(builders) > 1 else None,
        )
        results.append(previous)
        timings[f"{stage.label}_s"] = time.perf_counter() - start
        for name, value in previous.timings.items():
            if name != "first_chunk_s":
                timings[f"{stage.label}_{name}"] = value
        if on_stage is not None:
            on_stage(stage.label, previous.images)
    history = np.concatenate([r.history for r in results])
    final = results[-1]
    combined_units = final.units if units is None else np.tile(np.asarray(units), int(np.prod(final.grid)))
    return Result(final.images, history, combined_units, len(history), timings, stages=results, grid=final.grid)
