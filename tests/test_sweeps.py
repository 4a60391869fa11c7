"""Sweeps: hyperparameters given as lists run as one vmapped program, each grid cell equal to its own run.

On the tiny CNN (`helpers.tiny_cnn`).  Mutations that fail these tests: `stack_plans` keeping cell 0's values for
every cell (the cells no longer equal their own runs), folding the cell index into a unit's random keys (likewise),
a sweep compiling once per cell (the count of compilations).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis
from jaxvis.core.errors import MethodOptionError
from jaxvis.engine.optimize import optimize
from jaxvis.engine.plan import RUN_CHUNK
from jaxvis.pieces import objectives as O
from jaxvis.pieces import optimizers
from jaxvis.pieces import param as P
from jaxvis.pieces import transforms as T

LAYER = "features.8"
UNITS = np.asarray([3, 7])


def run(model, **options):
    defaults = dict(param=P.fourier(32), units=UNITS, transform=T.compose(T.jitter(4), T.flip()),
                    optimizer=optimizers.adam(0.05), steps=6, chunk=3, progress=False, seed=1)
    return optimize(model, lambda u: O.channel(LAYER, u), **{**defaults, **options})


def test_each_cell_of_a_sweep_equals_its_own_run_and_the_sweep_compiles_once(tiny_cnn):
    rates, jitters = [0.02, 0.1, 0.3], [1, 6, 6]
    before = RUN_CHUNK.compilations
    swept = run(tiny_cnn, optimizer=[optimizers.adam(r) for r in rates],
                transform=[T.compose(T.jitter(j), T.flip()) for j in jitters])
    assert RUN_CHUNK.compilations == before + 1
    assert swept.grid == (3,) and swept.images.shape == (6, 1, 32, 32, 3)
    run(tiny_cnn, optimizer=[optimizers.adam(r) for r in reversed(rates)],
        transform=[T.compose(T.jitter(j), T.flip()) for j in jitters])
    assert RUN_CHUNK.compilations == before + 1  # other values: the same program
    by_cell = swept.with_grid_axes(swept.images)
    for cell, (rate, jitter) in enumerate(zip(rates, jitters)):
        alone = run(tiny_cnn, optimizer=optimizers.adam(rate), transform=T.compose(T.jitter(jitter), T.flip()))
        np.testing.assert_array_equal(by_cell[cell], alone.images)
        np.testing.assert_allclose(swept.history[:, 2 * cell : 2 * cell + 2], alone.history, rtol=1e-5)
    assert not np.allclose(by_cell[0], by_cell[2], atol=1e-3)


def test_objectives_can_be_swept_and_cells_must_be_built_alike(tiny_cnn):
    weights = [0.0, 2.0]
    objectives = [lambda u, w=w: O.channel(LAYER, u) + w * O.diversity(LAYER) for w in weights]
    swept = optimize(tiny_cnn, objectives, param=P.fourier(32), units=UNITS, batch=2, steps=4, progress=False)
    alone = optimize(tiny_cnn, objectives[1], param=P.fourier(32), units=UNITS, batch=2, steps=4, progress=False)
    # Within float rounding, not bit for bit: with the diversity term's backward, XLA on the CPU rounds a unit's
    # gradient differently at some positions of the vmapped unit axis (1.2e-6 at most, on a Zen 3); cell 0's
    # values in cell 1 (the mutation) differ by 0.09.
    np.testing.assert_allclose(swept.with_grid_axes(swept.images)[1], alone.images, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="grid cell 1 is built differently"):
        run(tiny_cnn, param=[P.fourier(32), P.pixel(32)])
    with pytest.raises(ValueError, match="one length"):
        run(tiny_cnn, param=[P.fourier(32)] * 2, optimizer=[optimizers.adam(0.1)] * 3)


def test_visualize_takes_lists_and_puts_the_grid_axes_first(tiny_cnn):
    options = dict(size=32, steps=4, progress=False, relu_override_steps=0, batch=2)
    grid = jaxvis.visualize(tiny_cnn, "features.8:2,5", lr=[0.02, 0.2], diversity=[0.0, 1.0, 3.0], **options)
    assert grid.shape == (2, 3, 2, 2, 32, 32, 3)
    alone = jaxvis.visualize(tiny_cnn, "features.8:2,5", lr=0.2, diversity=1.0, **options)
    np.testing.assert_array_equal(grid[1, 1], alone)
    with pytest.raises(MethodOptionError, match="steps cannot be swept"):
        jaxvis.visualize(tiny_cnn, "features.8:2", steps=[4, 8], size=32)


def test_lucid_penalties_jitter_and_scale_range_sweep_in_one_program(tiny_cnn):
    """tv x l2 x jitter x scale as lists: one compilation, each cell its own run.  Mutations that fail it:
    dropping a penalty from the objective (cells of other weights would equal the first), building the
    standard transforms with Lucid's fixed 8 / 0.1 instead of the cell's (likewise), scales kept static
    (a compilation per scale spread)."""
    options = dict(size=32, steps=3, progress=False, relu_override_steps=0, seed=2)
    grid = dict(tv=[0.0, 0.05], l2=[0.0, 2.0], jitter=[2, 10], scale=[0.1, 0.4])
    before = RUN_CHUNK.compilations
    swept = jaxvis.visualize(tiny_cnn, "features.8:2,5", **grid, **options)
    assert RUN_CHUNK.compilations == before + 1
    assert swept.shape == (2, 2, 2, 2, 2, 32, 32, 3)
    for index in [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]:
        cell = {name: values[i] for (name, values), i in zip(grid.items(), index)}
        alone = jaxvis.visualize(tiny_cnn, "features.8:2,5", **cell, **options)
        np.testing.assert_allclose(swept[index], alone, rtol=0, atol=1e-6)
        assert not np.allclose(swept[index], swept[0, 0, 0, 0], atol=1e-4), index
    with pytest.raises(MethodOptionError, match="transform of your own"):
        jaxvis.visualize(tiny_cnn, "features.8:2", transform=T.identity(), jitter=4, size=32)


def test_a_pii_recipe_with_lists_is_a_sweep_each_cell_its_own_run(tiny_cnn):
    """Plug-In Inversion's first two zoom stages with lr x jitter given as lists: every stage runs the grid in
    one program, the second starting from the first's images cell by cell; each cell equals its own run."""
    import itertools
    from dataclasses import replace

    from jaxvis.engine.run_config import RunConfig
    from jaxvis.engine.stages import run_stages
    from jaxvis.methods import pii

    base = replace(pii.DEFAULTS, steps=3, ensemble=2, chunk=3)

    def first_two_stages(recipe):
        builders = pii.stages(tiny_cnn, np.asarray([1, 3]), 32, zoom=True, center=True, recipe=recipe)[:2]
        return run_stages(tiny_cnn, builders, config=RunConfig(progress=False), units=[1, 3])

    rates, jitters = [0.01, 0.05], [2, 8]
    swept = first_two_stages(replace(base, learning_rate=rates, jitter=jitters))
    assert swept.grid == (4,) and swept.images.shape == (8, 1, 12, 12, 3)  # stage 2 is 12 px
    by_cell = swept.with_grid_axes(swept.images)
    for cell, (rate, jitter) in enumerate(itertools.product(rates, jitters)):
        alone = first_two_stages(replace(base, learning_rate=rate, jitter=jitter))
        # within float32 rounding: XLA sums the batch of 8 a little differently from the batch of 2
        np.testing.assert_allclose(by_cell[cell], alone.images, rtol=0, atol=1e-6)
    with pytest.raises(MethodOptionError, match="ensemble cannot be swept"):
        pii.stages(tiny_cnn, np.asarray([1]), 32, zoom=True, center=True, recipe=replace(base, ensemble=[2, 4]))


def test_a_deepdream_sweep_dreams_every_cell_in_each_octaves_one_program(tiny_cnn):
    """step_size x jitter as lists over two octaves: each octave one compilation for the grid, the second octave
    going on from each cell's own first; each cell equals its own run.  Mutation that fails it: every cell
    starting the second octave from cell 0's dream (or sharing cell 0's step size)."""
    from jaxvis.methods import dream

    image = np.random.default_rng(0).uniform(0.2, 0.8, (48, 48, 3)).astype(np.float32)
    options = dict(octaves=2, octave_scale=1.5, steps=3, progress=False, seed=3)
    steps, jitters = [0.5 / 255, 4 / 255], [2, 9]
    before = RUN_CHUNK.compilations
    swept = dream(tiny_cnn, image, LAYER, step_size=steps, jitter=jitters, **options)
    assert RUN_CHUNK.compilations - before <= 2  # one program per octave size, whatever the grid
    assert swept.grid == (2, 2) and swept.images.shape == (4, 1, 48, 48, 3)
    by_cell = swept.with_grid_axes(swept.images)
    for i, step in enumerate(steps):
        for j, jitter in enumerate(jitters):
            alone = dream(tiny_cnn, image, LAYER, step_size=step, jitter=jitter, **options)
            np.testing.assert_allclose(by_cell[i, j], alone.images, rtol=0, atol=1e-6)
    assert not np.allclose(by_cell[0, 0], by_cell[1, 0], atol=1e-3)
    assert not np.allclose(by_cell[1, 0], by_cell[1, 1], atol=1e-3)
    with pytest.raises(MethodOptionError, match="octaves cannot be swept"):
        dream(tiny_cnn, image, LAYER, octaves=[1, 2], progress=False)


def test_a_deepinversion_sweep_runs_a_batch_per_cell_each_its_own_run(tiny_cnn):
    """r_feature x jitter as lists over both phases: a batch of 2 classes per cell, each phase one compilation,
    each cell equal to its own run.  Mutation that fails it: building every cell's objective from the recipe
    given (the r_feature cells would equal each other)."""
    from dataclasses import replace

    from jaxvis.methods import deepinversion

    recipe = replace(deepinversion.DEFAULTS, resolutions=((2, 3), (1, 2)), warmup=1, chunk=3)
    options = dict(size=32, progress=False, seed=4)
    weights, jitters = [0.0, 5.0], [2, 8]
    before = RUN_CHUNK.compilations
    swept = deepinversion.deep_inversion(tiny_cnn, [1, 3], recipe=replace(recipe, r_feature=weights, jitter=jitters),
                                         **options)
    assert RUN_CHUNK.compilations - before <= 2  # one program per phase, whatever the grid
    assert swept.grid == (2, 2) and swept.images.shape == (8, 1, 32, 32, 3)
    assert swept.units.tolist() == [1, 3] * 4
    by_cell = swept.with_grid_axes(swept.images)
    for i, weight in enumerate(weights):
        for j, jitter in enumerate(jitters):
            alone = deepinversion.deep_inversion(tiny_cnn, [1, 3], recipe=replace(recipe, r_feature=weight,
                                                                                  jitter=jitter), **options)
            # within float32 rounding carried through Adam at lr 0.2 (XLA sums 4 cells' batch differently from 1)
            np.testing.assert_allclose(by_cell[i, j], alone.images, rtol=0, atol=1e-4)
    assert not np.allclose(by_cell[0, 0], by_cell[1, 0], atol=1e-3)
    with pytest.raises(MethodOptionError, match="do_flip cannot be swept"):
        deepinversion.deep_inversion(tiny_cnn, [1], recipe=replace(recipe, do_flip=[True, False]), **options)


@pytest.mark.parametrize("param,optimizer", [("pixel", "adam"), ("fourier", "adam"), ("pixel", "lbfgs")])
def test_a_style_transfer_sweep_paints_a_cell_per_weight_each_its_own_run(tiny_cnn, param, optimizer):
    """style_weight (and, with Adam, learning_rate) as lists, two pyramid levels for pixels: each cell equals its
    own run.  Mutation that fails it: the objective built with the first cell's weights for every cell."""
    from jaxvis.methods import transfer_style

    rng = np.random.default_rng(1)
    content, style = (rng.uniform(0, 1, (32, 32, 3)).astype(np.float32) for _ in range(2))
    options = dict(style_layers=["features.2", "features.5"], content_layer="features.8", param=param,
                   optimizer=optimizer, steps=3, pyramid=2 if param == "pixel" else 1, progress=False, seed=5)
    weights = [1e2, 1e5]
    rates = {"learning_rate": [0.01, 0.1]} if optimizer == "adam" else {}
    swept = transfer_style(tiny_cnn, content, style, style_weight=weights, **rates, **options)
    assert swept.grid == ((2, 2) if rates else (2,)) and swept.images.shape[1:] == (1, 32, 32, 3)
    by_cell = swept.with_grid_axes(swept.images)
    for i, weight in enumerate(weights):
        for j, rate in enumerate(rates.get("learning_rate", [None])):
            alone = transfer_style(tiny_cnn, content, style, style_weight=weight, learning_rate=rate, **options)
            cell = by_cell[i, j] if rates else by_cell[i]
            np.testing.assert_allclose(cell, alone.images, rtol=0, atol=1e-5)
    assert not np.allclose(by_cell[0], by_cell[1], atol=1e-4)
    if optimizer == "lbfgs":
        with pytest.raises(MethodOptionError, match="learning_rate is Adam's"):
            transfer_style(tiny_cnn, content, style, learning_rate=[0.1, 0.2], **options)


def test_feature_inversion_and_logit_inversion_sweep_their_weights_and_rates(tiny_cnn):
    """reconstruct's lambda_tv x learning_rate and logit inversion's learning_rate as lists: each cell equals its
    own run.  Mutation that fails it: the prior built with the given (first) weights for every cell."""
    from jaxvis.methods import reconstruct
    from jaxvis.methods.logit import logit_inversion

    photos = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    options = dict(steps=3, progress=False, seed=6)
    swept = reconstruct(tiny_cnn, photos, LAYER, lambda_tv=[0.0, 50.0], learning_rate=[0.05, 0.2], **options)
    assert swept.grid == (2, 2) and swept.images.shape == (8, 1, 32, 32, 3)
    by_cell = swept.with_grid_axes(swept.images)
    alone = reconstruct(tiny_cnn, photos, LAYER, lambda_tv=50.0, learning_rate=0.05, **options)
    np.testing.assert_allclose(by_cell[1, 0], alone.images, rtol=0, atol=1e-6)
    assert not np.allclose(by_cell[0, 0], by_cell[1, 0], atol=1e-4)
    rates = logit_inversion(tiny_cnn, [1, 3], size=32, learning_rate=[0.01, 0.3], **options)
    assert rates.grid == (2,) and rates.units.tolist() == [1, 3, 1, 3]
    alone = logit_inversion(tiny_cnn, [1, 3], size=32, learning_rate=0.3, **options)
    np.testing.assert_allclose(rates.with_grid_axes(rates.images)[1], alone.images, rtol=0, atol=1e-6)
    with pytest.raises(MethodOptionError, match="alpha cannot be swept"):
        reconstruct(tiny_cnn, photos, LAYER, alpha=[2.0, 6.0], **options)


def test_a_grid_of_units_is_split_into_programs_of_at_most_n_cells_by_units():
    """`unit_groups`: every unit once, in order, each group with every cell within the bound (one unit at least).
    Mutation that fails it: splitting by units alone (a 4-cell grid with 32 units would make 128-entry programs)."""
    from jaxvis.engine.sweeps import unit_groups

    units = list(range(10))
    assert unit_groups(units, 1, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert unit_groups(units, 4, 8) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert unit_groups(units, 16, 8) == [[u] for u in units]  # a grid larger than the bound: one unit a program
    for cells, entries in [(3, 7), (5, 100), (1, 1)]:
        groups = unit_groups(units, cells, entries)
        assert sum(groups, []) == units and all(len(g) * cells <= max(entries, cells) for g in groups)
