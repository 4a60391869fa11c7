"""Objectives: values, algebra, vectorized unit indices, and the penalties and matches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.pieces import objectives as O


@pytest.fixture()
def acts():
    rng = np.random.default_rng(0)
    return {
        "conv": jnp.asarray(rng.normal(size=(2, 5, 6, 8)).astype(np.float32)),
        "logits": jnp.asarray(rng.normal(size=(2, 10)).astype(np.float32)),
        O.INPUT: jnp.asarray(rng.random((2, 12, 12, 3)).astype(np.float32)),
    }


def test_channel_neuron_direction_and_class_objectives(acts):
    conv = np.asarray(acts["conv"])
    assert np.isclose(O.channel("conv", 3)(acts), conv[..., 3].mean())
    assert np.isclose(O.neuron("conv", 3)(acts), conv[:, 2, 3, 3].mean())
    assert np.isclose(O.neuron("conv", 3, position=(0, 1))(acts), conv[:, 0, 1, 3].mean())
    vector = np.arange(8, dtype=np.float32)
    assert np.isclose(O.direction("conv", vector)(acts), (conv @ vector).mean(), rtol=1e-5)
    logits = np.asarray(acts["logits"])
    assert np.isclose(O.class_logit(4)(acts), logits[:, 4].mean())
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert np.isclose(O.class_log_probability(4)(acts), log_probs[:, 4].mean(), rtol=1e-5)
    assert np.isclose(O.deepdream("conv")(acts), (conv**2).mean(), rtol=1e-5)


def test_algebra_combines_values_and_layers(acts):
    a, b = O.channel("conv", 1), O.class_logit(2)
    combined = a + 0.5 * b - O.total_variation() / 4
    expected = a(acts) + 0.5 * b(acts) - O.total_variation()(acts) / 4
    assert np.isclose(combined(acts), expected, rtol=1e-6)
    assert combined.layers == {"conv", "logits", O.INPUT} and combined.model_layers == {"conv", "logits"}
    assert np.isclose((-a)(acts), -a(acts)) and np.isclose((2 - a)(acts), 2 - a(acts))
    with pytest.raises(TypeError, match="multiply by a number"):
        a * b


def test_unit_index_can_be_a_vmapped_array(acts):
    per_unit = jax.vmap(lambda unit: O.channel("conv", unit)(acts))(jnp.arange(8))
    looped = [float(O.channel("conv", u)(acts)) for u in range(8)]
    np.testing.assert_allclose(per_unit, looped, rtol=1e-6)


def test_diversity_is_higher_for_different_images(acts):
    different = O.diversity("conv")(acts)
    same = O.diversity("conv")({"conv": jnp.stack([acts["conv"][0]] * 2)})
    assert np.isclose(same, -1.0, atol=1e-5)  # identical Gram matrices: cosine similarity 1
    assert different > same


def test_image_penalties(acts):
    flat = {O.INPUT: jnp.full((1, 8, 8, 3), 0.5)}
    assert O.total_variation()(flat) == 0 and O.l1()(flat) == 0 and np.isclose(O.l2()(flat), 1e-3)
    assert O.blur_penalty()(flat) == 0
    assert O.total_variation()(acts) > 0 and O.blur_penalty()(acts) > 0


def test_feature_and_gram_matching_peak_at_the_target(acts):
    target = acts["conv"]
    assert O.feature_match("conv", target)(acts) == 0
    assert O.feature_match("conv", target * 0.5)(acts) < 0
    assert O.gram_match("conv", O.gram(target))(acts) == 0
    assert O.gram_match("conv", O.gram(target) * 2)(acts) < 0
