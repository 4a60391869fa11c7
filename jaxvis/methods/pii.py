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
too, so a stage is one compiled program for all classes; stages of the same size
in another run (other classes, seed or step count) reuse it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import InvalidImageError, MethodOptionError
from jaxvis.core.programs import Program
from jaxvis.core.structure import piece
from jaxvis.data.imagenet import class_indices, require_classifier
from jaxvis.engine.optimize import Result
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, StageBuilder, StageCallback, run_stages, with_options
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.model import Model, check_image_shape
from jaxvis.pieces.objectives import Objective, class_log_probability
from jaxvis.pieces.optimizers import Adam, adam, cosine
from jaxvis.pieces.param import clamped
from jaxvis.pieces.transforms import Transform, center_crop, color_shift, compose, identity, resize, resize_images, roll


ObjectiveFor = Callable[[jax.Array], Objective]


@dataclass(frozen=True)
class Recipe:
    """Plug-In Inversion's defaults, each from the reference code."""

    learning_rate: float = 0.01  # ImageNetVisualizer(lr=.01) in pii.py
    betas: tuple[float, float] = (0.5, 0.99)  # optim.Adam(..., betas=(0.5, 0.99)) in imagenet_invertor.py
    steps: int = 401  # per stage: steps=400, loop `range(self.steps + 1)`; cosine annealing over 400
    jitter: int = 32  # Jitter(lim=32)
    ensemble: int = 48  # RepeatBatch(batch_size): the reference's batch for MobileNetV2 (model/cnns/mobilenet.py)
    color_shift: tuple[float, float] = (1.0, 1.0)  # ColorJitterR(1, 1): mu ~ U(-1, 1), log sigma ~ U(-1, 1)
    chunk: int = 101  # steps per compiled loop call (the reference logs every 100 steps)


DEFAULTS = Recipe()


def stage_sizes(size: int) -> list[int]:
    """The reference's `range(2 * step, size + 1, step)` with step = size // 8."""
    step = size // 8
    return list(range(2 * step, size + 1, step))


def check_stage_sizes(arch: Any, final: int, zoom: bool = True) -> None:
    """`InvalidImageError` if the first zoom stage of a run ending at `final` px is below what `arch` (an
    `Architecture` or a catalog `Card`) accepts."""
    first = stage_sizes(final)[0]
    if zoom and not arch.fixed_size and first < arch.min_size:
        raise InvalidImageError(
            f"Plug-In Inversion at size {final} starts at 2·({final}//8) = {first} px, below the "
            f"{arch.min_size} px that {arch.name} accepts; use size >= {-(-arch.min_size // 2) * 8}."
        )


def paste_pad(size: int, zoom: bool = True, center: bool = True) -> int:
    """How much noise frames the previous stage's image: S // 16 with zoom and centering, else 0."""
    return (size // 8) // 2 if (zoom and center) else 0


def pii_optimizer(recipe: Recipe = DEFAULTS) -> Adam:
    """Adam with the recipe's betas and CosineAnnealingLR to 0 over the stage's steps - 1 scheduler steps."""
    return adam(recipe.learning_rate, b1=recipe.betas[0], b2=recipe.betas[1], eps=1e-8,
                schedule=cosine(max(recipe.steps - 1, 1)))


def paste_center(key: jax.Array, previous: jax.Array | None, count: int, size: int, pad: int,
                 cells: int = 1) -> jax.Array:
    """`new_init`: U(0, 1) noise (count, size, size, 3) with `previous` resized to size − pad in its center.

    cells: a sweep's grid cells; every cell gets the same noise (so a cell is its own run), and `previous`
    holds cells × count images, cell-major."""
    # a program (the engine's threefry form: 0.3 s to compile), given the key's bits (programs take plain arrays)
    return PASTE_CENTER(Canvas(count, size, pad, cells), jax.random.key_data(key), previous)


@piece
class Canvas:
    """The static part of `paste_center`'s program (one per stage, not a compile per primitive)."""

    count: int
    size: int
    pad: int
    cells: int = 1


def _paste_center(canvas_shape: Canvas, key_data: jax.Array, previous: jax.Array | None) -> jax.Array:
    count, size, pad, cells = canvas_shape.count, canvas_shape.size, canvas_shape.pad, canvas_shape.cells
    key = jax.random.wrap_key_data(key_data)
    canvas = jnp.tile(jax.random.uniform(key, (count, size, size, 3), jnp.float32), (cells, 1, 1, 1))
    if previous is None:
        return canvas
    inner = size - pad
    offset = (size - inner) // 2
    return canvas.at[:, offset : offset + inner, offset : offset + inner].set(resize_images(previous, inner))


PASTE_CENTER = Program(_paste_center, "pasted start")


def sweep_grid(recipe: Recipe) -> Grid:
    """The grid of a recipe whose runtime fields (learning_rate, betas, jitter, color_shift) may be lists; the
    fields that shape the program (steps, ensemble, chunk) may not."""
    refuse_lists(steps=recipe.steps, ensemble=recipe.ensemble, chunk=recipe.chunk)
    return Grid.of(**{field.name: getattr(recipe, field.name) for field in dataclasses.fields(recipe)})


def view_transform(model: Model, final: int, recipe: Recipe = DEFAULTS, model_size: int | None = None) -> Transform:
    """Per view: ColorShift, then the resize to `model_size` (default: to `final` for fixed-size networks;
    other networks see each stage at its own size)."""
    size = model_size or (final if model.arch.fixed_size else None)
    return compose(color_shift(*recipe.color_shift), resize(size) if size else identity())


def stages(model: Model, targets: np.ndarray, final: int, *, zoom: bool, center: bool,
           recipe: Recipe = DEFAULTS, objective_for: ObjectiveFor = class_log_probability,
           label: str = "PII", model_size: int | None = None) -> list[StageBuilder]:
    """One builder per stage of the zoom schedule (see the module docstring), each of `recipe.steps` steps
    with `recipe.ensemble` views; `objective_for(unit)` is what each unit maximizes (the reference's: the
    target class's log-probability).  A recipe with lists (`sweep_grid`) is a sweep: every combination runs
    in the stage's one program, each cell as its own run."""
    pad = paste_pad(final, zoom, center)
    grid = sweep_grid(recipe)
    cells = int(np.prod(grid.shape))
    per_cell = lambda build: grid.per_cell(lambda **cell: build(dataclasses.replace(recipe, **cell)))  # noqa: E731

    def stage(size: int) -> StageBuilder:
        def build(key: jax.Array, previous: Result | None) -> Stage:
            before = None if previous is None else jnp.asarray(previous.images[:, 0])
            if zoom or before is None:
                canvas = paste_center(key, before, len(targets), size if zoom else final, pad, cells)
            else:
                canvas = before  # centering only: the S × S canvas stays
            view = center_crop(size) if not zoom and size < final else identity()  # optimize the center i × i
            return Stage(
                f"stage_{size}px", lambda unit: objective_for(unit).named(f"{label} {size}px"),
                param=clamped(canvas.shape[1]), units=targets, init=canvas[:, None],
                step_transform=per_cell(lambda cell: compose(view, roll(cell.jitter))),
                transform=per_cell(lambda cell: view_transform(model, final, cell, model_size)),
                optimizer=per_cell(pii_optimizer), steps=recipe.steps, ensemble=recipe.ensemble, chunk=recipe.chunk,
            )

        return build

    return [stage(size) for size in stage_sizes(final)]


def plug_in_inversion(
    model: Model,
    classes: Sequence[int | str],
    *,
    size: int | None = None,
    ensemble: int | None = None,
    steps: int | None = None,
    zoom: bool = True,
    center: bool = True,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
    on_stage: StageCallback | None = None,
    recipe: Recipe = DEFAULTS,
) -> Result:
    """Invert `classes` (indices or ImageNet names) of `model`; `result.images` is (K, 1, S, S, 3).

    recipe: every field is used (`Recipe`); ensemble and steps (per stage, the reference's 401), when
    given, replace the recipe's.  A sweep: learning_rate, betas, jitter and color_shift given as lists
    (`replace(DEFAULTS, learning_rate=[0.005, 0.01, 0.02])`) run every combination in each stage's one
    program; `result.with_grid_axes(result.images)` puts the grid's axes first.
    zoom / center: the reference's `way` option -- both (pad = S // 16, the default),
    zoom only (pad 0: the previous stage fills the new canvas), or center only
    (the canvas stays S × S; stage i optimizes its central i × i crop, so the
    optimized region grows outward).  `on_stage(label, images)` sees each finished stage.
    config: the seed, progress bars and checkpoints (`jaxvis.engine.run_config.RunConfig`: with a checkpoint_dir an
    interrupted call continues); seed and progress, when given, replace its.
    """
    require_classifier(model.name, model.arch.num_classes, "Plug-In Inversion of classes")
    targets = class_indices(classes, model.arch.num_classes)
    return plug_in(model, class_log_probability, targets, size=size, ensemble=ensemble, steps=steps, zoom=zoom,
                   center=center, config=run_config(config, seed, progress), on_stage=on_stage, recipe=recipe)


def plug_in(
    model: Model,
    objective_for: ObjectiveFor,
    units: np.ndarray,
    *,
    size: int | None = None,
    ensemble: int | None = None,
    steps: int | None = None,
    zoom: bool = True,
    center: bool = True,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
    on_stage: StageCallback | None = None,
    recipe: Recipe = DEFAULTS,
    label: str = "PII",
    model_size: int | None = None,
) -> Result:
    """Plug-In Inversion's recipe (zoom, centering, jitter, ColorShift ensemble, its Adam) for any objective:
    each of `units` maximizes `objective_for(unit)` -- a class, a channel, a token -- with no other change.
    Options as in `plug_in_inversion`; model_size: resize every view to it before the model (an objective
    that compares with activations taken at one size, e.g. feature inversion). `result.images` is
    (len(units), 1, S, S, 3)."""
    if not (zoom or center):
        raise MethodOptionError("Plug-In Inversion needs zoom, centering or both; set zoom=True or center=True")
    targets = np.asarray(units)
    recipe = with_options(recipe, ensemble=ensemble, steps=steps)
    final = size or model.input_size
    check_image_shape((1, final, final, 3), "float32", model.arch)
    check_stage_sizes(model.arch, final, zoom)
    builders = stages(model, targets, final, zoom=zoom, center=center, recipe=recipe,
                      objective_for=objective_for, label=label, model_size=model_size)
    result = run_stages(model, builders, config=run_config(config, seed, progress), on_stage=on_stage, units=targets)
    return dataclasses.replace(result, grid=sweep_grid(recipe).shape)  # () without a sweep


def visualize_units(model: Model, spec: str, *, objective: str = "channel", size: int | None = None,
                    ensemble: int | None = None, steps: int | None = None, seed: int | None = None,
                    progress: bool | None = None, recipe: Recipe = DEFAULTS,
                    config: RunConfig | None = None) -> np.ndarray:
    """Feature visualization with Plug-In Inversion's recipe instead of Lucid's: the units of `spec` (the
    `jaxvis.visualize` shorthand, `@token`s included) as PII's targets. float32 (units, S, S, 3) in [0, 1]."""
    from jaxvis.methods.feature_visualization import objective_maker
    from jaxvis.models.catalog import card_of
    from jaxvis.models.request import check_request

    final = size or model.input_size
    unit_spec, _ = check_request(card_of(model.arch), spec, objective=objective, size=final, model_size=final)
    make = objective_maker(unit_spec, objective)
    result = plug_in(model, lambda unit: make(unit_spec.layer, unit), unit_spec.units, size=final, ensemble=ensemble,
                     steps=steps, config=run_config(config, seed, progress), recipe=recipe,
                     label=f"PII {unit_spec.layer}")
    return result.with_grid_axes(result.images[:, 0].astype(np.float32))
