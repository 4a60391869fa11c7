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

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.data.imagenet import class_indices, require_classifier
from jaxvis.engine.optimize import Result
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, StageBuilder, StageCallback, run_stages
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.model import Model, check_image_shape
from jaxvis.models.statistics import batchnorm_inputs
from jaxvis.pieces.objectives import INPUT, Acts, Objective, batchnorm_statistics, class_log_probabilities, term
from jaxvis.pieces.optimizers import adam, warmup_cosine
from jaxvis.pieces.param import clamped
from jaxvis.pieces.transforms import avg_pool, compose, flip, identity, roll


@dataclass(frozen=True)
class Recipe:
    """DeepInversion's defaults: `imagenet_inversion.py`'s argparse defaults; its README's command adds --do_flip."""

    learning_rate: float = 0.2
    r_feature: float = 0.05  # the published runs use 0.01 (README command, example logs); 0.05 is the default
    first_bn_multiplier: float = 10.0
    tv_l1: float = 0.0
    tv_l2: float = 1e-4
    l2: float = 1e-5
    main_loss_multiplier: float = 1.0
    jitter: int = 30
    do_flip: bool = True
    betas: tuple[float, float] = (0.5, 0.9)  # setting_id 0 and 1
    warmup: int = 100  # lr_cosine_policy(lr, 100, iterations)
    resolutions: tuple[tuple[int, int], ...] = ((2, 2000), (1, 1000))  # setting_id 0: (downsampling, iterations)
    chunk: int = 100

    @property
    def steps(self) -> int:
        return sum(steps for _, steps in self.resolutions)


DEFAULTS = Recipe()
STRUCTURE = ("do_flip", "warmup", "resolutions", "chunk")  # fields that shape the program: never swept


def sweep_grid(recipe: Recipe) -> Grid:
    """The grid of a recipe whose runtime fields (rate, betas, weights, jitter) may be lists."""
    refuse_lists(**{name: getattr(recipe, name) for name in STRUCTURE})
    return Grid.of(**{f.name: getattr(recipe, f.name) for f in fields(recipe) if f.name not in STRUCTURE})


def split_steps(total: int, resolutions: Sequence[tuple[int, int]] = DEFAULTS.resolutions) -> tuple[tuple[int, int], ...]:
    """`total` steps over the phases of `resolutions`, in the same proportions (3000 -> 2000 + 1000)."""
    weights = np.asarray([steps for _, steps in resolutions], np.float64)
    counts = np.maximum(1, np.round(total * np.cumsum(weights) / weights.sum()).astype(int))
    counts = np.diff(np.concatenate([[0], counts]))
    return tuple((factor, max(1, int(count))) for (factor, _), count in zip(resolutions, counts))


def image_priors(mean: Sequence[float], std: Sequence[float], tv_l1: float, tv_l2: float, l2: float) -> Objective:
    """`get_image_prior_losses` and the l2 term on the normalized images (a penalty: subtract it)."""
    return Objective(term(_image_priors, mean=tuple(mean), std=tuple(std)), (tv_l1, tv_l2, l2), frozenset({INPUT}),
                     "image_priors")


def _image_priors(weights: tuple, acts: Acts, *, mean: tuple, std: tuple) -> jax.Array:
    tv_l1, tv_l2, l2 = weights
    x = (acts[INPUT] - jnp.asarray(mean)) / jnp.asarray(std)
    diffs = [x[:, :, :-1] - x[:, :, 1:], x[:, :-1] - x[:, 1:], x[:, 1:, :-1] - x[:, :-1, 1:], x[:, :-1, :-1] - x[:, 1:, 1:]]
    total_l2 = sum(jnp.sqrt(jnp.sum(jnp.square(d))) for d in diffs)
    total_l1 = sum(jnp.mean(jnp.abs(d)) for d in diffs)
    norm = jnp.sqrt(jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)).mean()
    return tv_l2 * total_l2 + tv_l1 * total_l1 + l2 * norm


def deepinversion_objective(model: Model, targets: np.ndarray, recipe: Recipe = DEFAULTS) -> Objective:
    """−(loss) of the module docstring, for a batch with one image per target."""
    stats = batchnorm_inputs(model, "DeepInversion")
    return (
        recipe.main_loss_multiplier * class_log_probabilities(targets)
        - recipe.r_feature * batchnorm_statistics(stats, recipe.first_bn_multiplier)
        - image_priors(model.arch.mean, model.arch.std, recipe.tv_l1, recipe.tv_l2, recipe.l2)
    ).named("deepinversion")


def deep_inversion(
    model: Model,
    classes: Sequence[int | str],
    *,
    size: int | None = None,
    steps: int | None = None,
    resolutions: Sequence[tuple[int, int]] | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
    on_stage: StageCallback | None = None,
    recipe: Recipe = DEFAULTS,
    **overrides: float,
) -> Result:
    """One batch with an image per class in `classes`; `result.images` is (K, 1, S, S, 3).

    steps: the total, split over the phases in the reference's proportions (default 3000:
    2000 at half resolution, 1000 at full); or `resolutions`, (downsampling factor,
    iterations) per phase -- `((1, 2000),)` is the reference's setting 1.
    overrides: any `Recipe` field (r_feature=0.01, tv_l2=..., learning_rate=...).  A sweep: the runtime
    fields (learning_rate, betas, r_feature, first_bn_multiplier, tv_l1, tv_l2, l2, main_loss_multiplier,
    jitter) given as lists run every combination in each phase's one program, a whole batch per cell;
    `result.with_grid_axes(result.images)` puts the grid's axes first.
    config: the seed, progress bars and checkpoints (`jaxvis.engine.run_config.RunConfig`: with a checkpoint_dir an
    interrupted call continues); seed and progress, when given, replace its.
    """
    recipe = replace(recipe, **overrides)
    require_classifier(model.name, model.arch.num_classes, "DeepInversion")
    targets = class_indices(classes, model.arch.num_classes)
    final = size or model.input_size
    check_image_shape((1, final, final, 3), "float32", model.arch)
    if resolutions is None:
        resolutions = split_steps(steps, recipe.resolutions) if steps else recipe.resolutions
    grid = sweep_grid(recipe)
    per_cell = lambda build: grid.per_cell(lambda **cell: build(replace(recipe, **cell)))  # noqa: E731
    objective = per_cell(lambda cell: deepinversion_objective(model, targets, cell))
    param = clamped(final, model.arch.mean, model.arch.std, init="normal")

    def phase(index: int, factor: int, count: int) -> StageBuilder:
        def build(key: jax.Array, previous: Result | None) -> Stage:
            theta = None if previous is None else (
                (jnp.asarray(previous.images) - jnp.asarray(model.arch.mean)) / jnp.asarray(model.arch.std))
            return Stage(
                f"phase_{index}_{factor}x", objective, param=param, init=theta, batch=len(targets),
                step_transform=per_cell(lambda cell: compose(avg_pool(factor) if factor != 1 else identity(),
                                                             roll(cell.jitter // factor),
                                                             flip() if recipe.do_flip else identity())),
                optimizer=per_cell(lambda cell: adam(cell.learning_rate, b1=cell.betas[0], b2=cell.betas[1],
                                                     eps=1e-8, schedule=warmup_cosine(recipe.warmup, count))),
                steps=count, chunk=recipe.chunk,
            )

        return build

    result = run_stages(model, [phase(i, f, n) for i, (f, n) in enumerate(resolutions)],
                        config=run_config(config, seed, progress), on_stage=on_stage)
    cells = int(np.prod(grid.shape))  # each cell's batch: its images, one per class
    return replace(result, images=result.images.reshape(cells * len(targets), 1, *result.images.shape[2:]),
                   units=np.tile(targets, cells), grid=grid.shape)
