"""Every field of every method's recipe is read: changing one field changes the result.

Each method runs on the tiny CNN at a tiny budget, once with its base recipe and once per field with that field
changed, and the images must differ.  The fields that are the compiled program's shape (the ensemble, and `chunk`,
which by design never changes the images) are checked on what the engine is given, without compiling anew.
Mutations that fail it: `pii_optimizer` reading `DEFAULTS.betas` (the state before this test), `dream` building
its stage from `DEFAULTS.jitter`, DeepInversion's flip ignoring `do_flip`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jaxvis.engine.run_config import RunConfig
import jaxvis.engine.stages
from jaxvis.engine.stages import run_stages
from jaxvis.methods import deepdream, deepinversion, logit, pii

PHOTO = np.random.default_rng(0).uniform(0.2, 0.8, (32, 32, 3)).astype(np.float32)

def first_stages(model, recipe: pii.Recipe, count: int = 2):
    """Plug-In Inversion's first two zoom stages (of seven) for classes 1 and 3: every field reaches each stage,
    and two stages compile in a third of the time."""
    return run_stages(model, pii.stages(model, np.asarray([1, 3]), 32, zoom=True, center=True, recipe=recipe)[:count],
                      config=RunConfig(progress=False))


# Per method: how to run it, its base recipe (a tiny budget), and a changed value for every field.
METHODS = {
    "pii": (
        lambda model, recipe: first_stages(model, recipe),
        dataclasses.replace(pii.DEFAULTS, steps=3, ensemble=2, chunk=3),
        dict(learning_rate=0.05, betas=(0.9, 0.999), steps=4, jitter=2, ensemble=3, color_shift=(0.5, 0.5), chunk=2),
    ),
    "deepdream": (
        lambda model, recipe: deepdream.dream(model, PHOTO, "features.8", progress=False, recipe=recipe),
        dataclasses.replace(deepdream.DEFAULTS, octaves=2, steps=2, chunk=2),
        dict(octaves=1, octave_scale=2.0, steps=3, step_size=4 / 255, jitter=4, tile_size=16, chunk=1),
    ),
    "deepinversion": (
        lambda model, recipe: deepinversion.deep_inversion(model, [1, 3], size=32, progress=False, recipe=recipe),
        dataclasses.replace(deepinversion.DEFAULTS, resolutions=((2, 3), (1, 3)), warmup=1, chunk=3),
        dict(learning_rate=0.05, r_feature=1.0, first_bn_multiplier=1.0, tv_l1=1.0, tv_l2=1.0, l2=1.0,
             main_loss_multiplier=3.0, jitter=2, do_flip=False, betas=(0.9, 0.999), warmup=2,
             resolutions=((1, 4),), chunk=1),
    ),
    "logit": (
        lambda model, recipe: logit.logit_inversion(model, [1, 3], size=32, progress=False, recipe=recipe),
        dataclasses.replace(logit.DEFAULTS, steps=2),
        dict(learning_rate=0.5, steps=3),
    ),
}


def test_every_field_has_a_changed_value_here():
    recipes = {"pii": pii.Recipe, "deepdream": deepdream.Recipe, "deepinversion": deepinversion.Recipe,
               "logit": logit.Recipe}
    for name, recipe in recipes.items():
        assert set(METHODS[name][2]) == {field.name for field in dataclasses.fields(recipe)}, name


class Given(Exception):
    """Raised by `first_engine_call` in place of running the engine."""


@pytest.fixture
def first_engine_call(monkeypatch):
    """The options the method's first stage gives the engine, which is not run (`Given` is raised instead)."""
    given: dict = {}

    def record(*args, **options):
        given.update(options)
        raise Given

    monkeypatch.setattr(jaxvis.engine.stages, "optimize", record)
    return given


# Fields that are the compiled program's shape: checked on what the engine is given (a run would compile anew).
STRUCTURAL = ("ensemble", "chunk")


@pytest.mark.parametrize("method", METHODS)
def test_changing_any_recipe_field_changes_the_result(tiny_cnn, method):
    run, base, changes = METHODS[method]
    before = run(tiny_cnn, base).images
    for field, value in changes.items():
        if field not in STRUCTURAL:
            after = run(tiny_cnn, dataclasses.replace(base, **{field: value})).images
            assert after.shape != before.shape or not np.array_equal(after, before), f"{method}: {field} is not read"


@pytest.mark.parametrize("method", [name for name, (_, _, fields) in METHODS.items() if set(STRUCTURAL) & set(fields)])
def test_the_structural_recipe_fields_reach_the_engine(tiny_cnn, first_engine_call, method):
    run, base, changes = METHODS[method]
    for field in set(STRUCTURAL) & set(changes):
        with pytest.raises(Given):
            run(tiny_cnn, dataclasses.replace(base, **{field: changes[field]}))
        assert first_engine_call[field] == changes[field], f"{method}: {field} is not read"
