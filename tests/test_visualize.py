"""Feature-visualization quality on the real MobileNetV2, the one-liner's specs, and its errors (the diversity
term's effect and the one-liner's output format on the tiny CNN, `helpers.tiny_cnn`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis
from jaxvis.core.errors import UnitRangeError
from jaxvis.methods.feature_visualization import run_visualization
from jaxvis.models.request import parse_units

LAYER = "features.10"


def mean_channels(model, images, layer=LAYER):
    acts = jax.jit(lambda m, x: m(x, capture=[layer])[layer])(model, jnp.asarray(images))
    return np.asarray(acts.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def eight_channels(mobilenet):
    _, result = run_visualization(mobilenet, f"{LAYER}:0-7", size=64, model_size=64, steps=64, progress=False)
    return result


def test_each_image_drives_its_own_channel(mobilenet, eight_channels):
    acts = mean_channels(mobilenet, eight_channels.images[:, 0])[:, :8]  # (image, channel)
    noise = mean_channels(mobilenet, np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32))[:, :8]
    for channel in range(8):
        own, others = acts[channel, channel], np.delete(acts[:, channel], channel)
        assert own > others.max(), (channel, own, others)
        assert own > noise[:, channel].max() + 1.0, (channel, own, noise[:, channel])
    assert np.all(eight_channels.history[-1] > eight_channels.history[0])


def test_diversity_makes_a_units_images_differ(tiny_cnn):
    layer = "features.8"
    options = dict(size=32, model_size=32, steps=32, batch=2, progress=False)
    _, plain = run_visualization(tiny_cnn, f"{layer}:3", **options)
    _, diverse = run_visualization(tiny_cnn, f"{layer}:3", diversity=100.0, **options)

    def similarity(images):
        acts = jax.jit(lambda m, x: m(x, capture=[layer])[layer])(tiny_cnn, jnp.asarray(images))
        return -float(jaxvis.pieces.objectives.diversity(layer)({layer: acts}))

    assert similarity(diverse.images[0]) < similarity(plain.images[0]) - 0.05


def test_class_logit_visualizations_are_classified_as_their_class(mobilenet):
    classes = [1, 130, 207, 980]  # goldfish, flamingo, golden retriever, volcano
    _, result = run_visualization(mobilenet, "logits:" + ",".join(map(str, classes)), objective="logit",
                                  size=96, model_size=96, steps=96, progress=False)
    logits = np.asarray(jax.jit(lambda m, x: m(x))(mobilenet, jnp.asarray(result.images[:, 0])))
    for target, row in zip(classes, logits):
        assert target in np.argsort(row)[::-1][:5]


def test_one_liner_returns_float_images_of_the_requested_shape(tiny_cnn):
    images = jaxvis.visualize(tiny_cnn, "features.8:3,7", size=40, steps=2, progress=False)
    assert images.shape == (2, 40, 40, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1


def test_unit_specs():
    np.testing.assert_array_equal(parse_units("7", 16), [7])
    np.testing.assert_array_equal(parse_units("0-3,9", 16), [0, 1, 2, 3, 9])
    with pytest.raises(UnitRangeError, match="low-high"):
        parse_units("5-2", 16)
    with pytest.raises(UnitRangeError, match="cannot read"):
        parse_units("a-b", 16)
    with pytest.raises(UnitRangeError, match="unit 16 is out of range: it has 16 channels"):
        parse_units("3,9-99999999999", 16)  # checked before the range is built


def test_out_of_range_unit_names_the_valid_range(mobilenet):
    with pytest.raises(UnitRangeError, match="160 channels, so valid units are 0-159"):
        jaxvis.visualize(mobilenet, "features.14:150-170", steps=1)


def test_unknown_layer_and_too_small_size(mobilenet):
    with pytest.raises(jaxvis.UnknownLayerError, match="features.14"):
        jaxvis.visualize(mobilenet, "feature.14:0", steps=1)
    with pytest.raises(jaxvis.InvalidImageError, match="at least 32x32"):
        jaxvis.visualize(mobilenet, "features.14:0", size=24, model_size=24, steps=1)
