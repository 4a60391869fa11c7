"""Plug-In Inversion's recipe, piece by piece: zoom stages, paste geometry, jitter, ColorShift, ensemble, optimizer.

Same-model accuracy is reached by plain logit ascent too, so these tests check the
recipe itself: each fails when its piece (zoom, centering, ColorShift, the
ensemble, the shared jitter, the schedule) is dropped or changed. Only the architecture's fixed size matters to
the recipe, so it is built for the tiny CNN (`helpers.tiny_cnn`), and once per module where its options are
the defaults; the one whole run is on a 2-block ResMLP, which also takes the fixed-size path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.engine.optimize import Result
from jaxvis.methods import pii
from jaxvis.pieces.transforms import ColorShift

KEY = jax.random.key(0)


def build_all(model, final=224, **options):
    """The stages' `Stage`s, each built from a previous stage whose images are all 0.25."""
    defaults = dict(zoom=True, center=True)
    builders = pii.stages(model, np.asarray([1, 207]), final, **{**defaults, **options})
    built, previous = [], None
    for index, build in enumerate(builders):
        stage = build(jax.random.key(index), previous)
        built.append(stage)
        size = stage.init.shape[2]
        previous = Result(np.full((2, 1, size, size, 3), 0.25, np.float32), np.zeros((1, 2)), np.arange(2), 1)
    return built


@pytest.fixture(scope="module")
def default_stages(tiny_cnn):
    """`build_all` with the defaults, built once for the tests that only read it."""
    return build_all(tiny_cnn)


def test_zoom_stages_grow_the_canvas_from_a_quarter_to_the_full_size(default_stages):
    stages = default_stages
    assert [s.init.shape[2] for s in stages] == [56, 84, 112, 140, 168, 196, 224]
    assert [s.param.size for s in stages] == [56, 84, 112, 140, 168, 196, 224]
    assert pii.stage_sizes(384) == [96, 144, 192, 240, 288, 336, 384]


def test_each_stage_pastes_the_previous_image_into_fresh_noise_with_a_border_of_s_over_16(default_stages):
    for stage in default_stages[1:]:
        canvas = np.asarray(stage.init[:, 0])
        size, pad = canvas.shape[1], 224 // 16
        inner = slice(pad // 2, pad // 2 + size - pad)
        np.testing.assert_allclose(canvas[:, inner, inner], 0.25, atol=1e-6)  # the previous stage, resized
        border = np.concatenate([canvas[:, : pad // 2].ravel(), canvas[:, size - pad // 2 :].ravel()])
        assert 0.4 < border.mean() < 0.6 and border.std() > 0.25  # U(0, 1) noise around it
    first = np.asarray(default_stages[0].init)
    assert 0.45 < first.mean() < 0.55 and first.std() > 0.25  # the first stage is all noise


def test_zoom_only_and_center_only_variants(tiny_cnn):
    zoom_only = build_all(tiny_cnn, center=False)[1]
    np.testing.assert_allclose(zoom_only.init, 0.25, atol=1e-6)  # pad 0: the previous image fills the canvas
    center_only = build_all(tiny_cnn, zoom=False)
    assert {s.init.shape[2] for s in center_only} == {224}  # the canvas stays S x S
    cropped = center_only[0].step_transform(KEY, jnp.zeros((1, 224, 224, 3)))
    assert cropped.shape == (1, 56, 56, 3)  # stage i optimizes the central i x i


def test_the_jitter_is_one_circular_shift_of_up_to_32_px_per_step(default_stages):
    stage = default_stages[2]
    size = 112
    image = np.arange(size * size * 3, dtype=np.float32).reshape(1, size, size, 3)
    shifts = set()
    for k in range(40):
        moved = np.asarray(stage.step_transform(jax.random.key(k), jnp.asarray(image)))
        source = int(moved[0, 0, 0, 0]) // 3  # which pixel landed at the corner
        dy, dx = (-(source // size)) % size, (-(source % size)) % size
        dy, dx = (dy if dy <= size // 2 else dy - size), (dx if dx <= size // 2 else dx - size)
        np.testing.assert_array_equal(moved, np.roll(image, (dy, dx), axis=(1, 2)))  # a pure roll
        assert max(abs(dy), abs(dx)) <= 32
        shifts.add((dy, dx))
    assert len(shifts) > 20


def test_every_view_gets_its_own_colorshift_with_the_papers_ranges(default_stages):
    stage = default_stages[-1]
    assert stage.ensemble == pii.DEFAULTS.ensemble == 48
    assert ColorShift(1.0, 1.0) in getattr(stage.transform, "transforms", (stage.transform,))
    image = jnp.concatenate([jnp.zeros((1, 4, 4, 3)), jnp.ones((1, 4, 4, 3))], axis=2)  # left 0, right 1
    views = np.asarray(jax.vmap(lambda k: stage.transform(k, image))(jax.random.split(KEY, 4000)))[:, 0]
    mu = views[:, :, :4]  # 0 * sigma + mu
    sigma = views[:, :, 4:] - mu  # 1 * sigma + mu - mu
    assert np.allclose(mu, mu[:, :1, :1]) and np.allclose(sigma, sigma[:, :1, :1])  # one shift per image, channel
    mu, log_sigma = mu[:, 0, 0], np.log(sigma[:, 0, 0])
    for values in (mu, log_sigma):  # U(-1, 1) per channel, independent across channels
        assert values.min() > -1.0 and values.max() < 1.0
        assert abs(values.mean()) < 0.05 and abs(values.std() - 1 / np.sqrt(3)) < 0.03
        assert abs(np.corrcoef(values[:, 0], values[:, 1])[0, 1]) < 0.1


def test_the_optimizer_is_adam_05_099_at_001_with_cosine_annealing_over_the_stage(default_stages):
    optimizer = default_stages[0].optimizer
    assert (optimizer.learning_rate, optimizer.b1, optimizer.b2) == (0.01, 0.5, 0.99)
    schedule = optimizer.schedule
    assert float(schedule(jnp.asarray(0))) == pytest.approx(1.0)
    assert float(schedule(jnp.asarray(200))) == pytest.approx(0.5, abs=1e-6)  # CosineAnnealingLR(T_max=400)
    assert float(schedule(jnp.asarray(400))) == pytest.approx(0.0, abs=1e-7)


def test_fixed_size_networks_see_every_stage_resized_to_their_input():
    import jaxvis

    resmlp = jaxvis.Model(jaxvis.architecture("resmlp_12_224"), None)  # the recipe reads only its architecture
    stage = build_all(resmlp)[0]
    assert stage.init.shape[2] == 56
    assert stage.transform(KEY, jnp.zeros((1, 56, 56, 3))).shape == (1, 224, 224, 3)


def test_other_networks_see_each_stage_at_its_size_unless_model_size_is_given(tiny_cnn):
    """model_size: what feature inversion under PII's recipe needs (activations compared at one size)."""
    assert pii.view_transform(tiny_cnn, 128)(KEY, jnp.zeros((1, 32, 32, 3))).shape == (1, 32, 32, 3)
    assert pii.view_transform(tiny_cnn, 128, model_size=128)(KEY, jnp.zeros((1, 32, 32, 3))).shape == (1, 128, 128, 3)


def test_plug_in_runs_the_recipe_on_any_objective_and_on_a_fixed_size_mlp():
    """`plug_in` with channel objectives, the whole zoom schedule run: each image drives its own channel above
    the other's (a diagonal). Fails if `objective_for` is ignored (the class objective is used) or the units
    are mixed up. The network is a ResMLP of 2 blocks of width 32 (random weights): the fixed-size path of
    resmlp_12_224 (its 224 px input, 16 px patches, ResBlocks), where every stage is resized to S as in the
    reference, without compiling 12 full-width blocks once per stage."""
    import dataclasses

    from jaxvis.methods.pii import plug_in
    from jaxvis.models.mixer import RESMLP_12_224, MlpMixer, ResBlock
    from jaxvis.models.model import Model, apply, random_variables
    from jaxvis.pieces import objectives

    arch = dataclasses.replace(RESMLP_12_224, name="resmlp_2x32_224", default_layer="blocks.1",
                               build=lambda: MlpMixer(ResBlock, dim=32, depth=2))
    resmlp = Model(arch, random_variables(arch))
    assert resmlp.arch.fixed_size and resmlp.arch.input_size == 224
    layer = "blocks.1"
    result = plug_in(resmlp, lambda unit: objectives.channel(layer, unit), np.array([3, 6]), ensemble=2, steps=12,
                     progress=False)
    assert result.images.shape == (2, 1, 224, 224, 3) and result.history.shape == (7 * 12, 2)
    assert np.isfinite(result.history).all()
    acts = np.asarray(apply(resmlp, result.images[:, 0], capture=(layer,))[layer]).mean(axis=1)  # over tokens
    assert acts[0, 3] > acts[1, 3] and acts[1, 6] > acts[0, 6]
