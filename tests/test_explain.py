"""An attack seen through a layer's units: activations and contributions checked against NumPy recomputations
from the captured activations and the classifier's own weights."""

from __future__ import annotations

import numpy as np
import pytest

from jaxvis.attacks import pgd
from jaxvis.attacks.explain import unit_changes
from jaxvis.errors import UnknownLayerError
from jaxvis.io import read_photo
from jaxvis.models.model import logits


@pytest.fixture(scope="module")
def attacked(mobilenet):
    clean = np.stack([read_photo(f"sample:{name}", 224, 32) for name in ("chelsea", "coffee")])
    labels = logits(mobilenet, clean).argmax(-1)
    result = pgd(mobilenet, clean, labels, eps=2 / 255, steps=10)
    assert result.success.all()
    return clean, result.images, labels, result.prediction


def test_contributions_before_the_classifier_are_weight_times_mean_activation(mobilenet, attacked):
    """MobileNetV2's logits are linear in features.18 (global mean, then classifier.1): each unit's
    contribution is W[unit, class] · its mean activation, and they add up to the logit less the bias."""
    clean, adversarial, labels, fooled_as = attacked
    changes = unit_changes(mobilenet, clean, adversarial, "features.18", labels, fooled_as)
    weights = np.asarray(mobilenet.variables["params"]["classifier"]["1"]["kernel"])
    bias = np.asarray(mobilenet.variables["params"]["classifier"]["1"]["bias"])
    for k, images in enumerate((clean, adversarial)):
        features = np.asarray(mobilenet(images, capture="features.18")["features.18"]).mean(axis=(1, 2))
        np.testing.assert_allclose(changes.clean if k == 0 else changes.adversarial, features, atol=1e-5)
        for which, classes in ((changes.true_contribution, labels), (changes.adversarial_contribution, fooled_as)):
            expected = features * weights[:, classes].T
            np.testing.assert_allclose(which[..., k], expected, atol=1e-5)
            logit = logits(mobilenet, images)[np.arange(len(images)), classes]
            np.testing.assert_allclose(which[..., k].sum(1) + bias[classes], logit, rtol=1e-4)


def test_units_ranked_by_how_the_attack_moved_them(mobilenet, attacked):
    clean, adversarial, labels, fooled_as = attacked
    changes = unit_changes(mobilenet, clean, adversarial, "features.14", labels, fooled_as, top=5)
    assert changes.rose.shape == (2, 5) and changes.clean.shape == (2, 160)
    change = changes.change
    for k in range(2):
        assert change[k, changes.rose[k, 0]] == change[k].max() > 0
        assert change[k, changes.fell[k, 0]] == change[k].min() < 0
        assert (np.diff(change[k, changes.rose[k]]) <= 0).all()
        gain = np.diff(changes.adversarial_contribution[k], axis=-1)[:, 0]
        assert gain[changes.pushed[k, 0]] == gain.max()


def test_an_unknown_layer_names_the_nearest(mobilenet, attacked):
    clean, adversarial, labels, fooled_as = attacked
    with pytest.raises(UnknownLayerError, match="features.14"):
        unit_changes(mobilenet, clean, adversarial, "feature.14", labels, fooled_as)
