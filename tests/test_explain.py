"""An attack seen through a layer's units: activations and contributions checked against NumPy recomputations
from the captured activations and the classifier's own weights; the restoration effects against torchvision's
MobileNetV2 with the unit's map put back by a forward hook."""

from __future__ import annotations

import numpy as np
import pytest

from jaxvis.analysis.attribution import restored_margin, unit_changes
from jaxvis.core.errors import UnknownLayerError
from jaxvis.data.io import read_photo
from jaxvis.methods.attacks import pgd
from jaxvis.models.model import logits

from helpers import forward, torch_input, torch_pretrained_mobilenet_v2


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
        features = np.asarray(forward(mobilenet, images, capture="features.18")["features.18"]).mean(axis=(1, 2))
        np.testing.assert_allclose(changes.clean if k == 0 else changes.adversarial, features, atol=1e-5)
        for which, classes in ((changes.true_contribution, labels), (changes.adversarial_contribution, fooled_as)):
            expected = features * weights[:, classes].T
            np.testing.assert_allclose(which[..., k], expected, atol=1e-5)
            logit = logits(mobilenet, images)[np.arange(len(images)), classes]
            np.testing.assert_allclose(which[..., k].sum(1) + bias[classes], logit, rtol=1e-4)


@pytest.fixture(scope="module")
def changes_14(mobilenet, attacked):
    clean, adversarial, labels, fooled_as = attacked
    return unit_changes(mobilenet, clean, adversarial, "features.14", labels, fooled_as, top=5)


def torch_margin_with_restored(mobilenet, attacked, units_per_image):
    """torchvision's adversarial margin per image with `units_per_image[n]` of features.14 put back to the
    clean image's maps by a forward hook: an independent implementation of the intervention."""
    import torch

    clean, adversarial, labels, fooled_as = attacked
    net = torch_pretrained_mobilenet_v2(mobilenet)
    captured = {}
    handle = net.features[14].register_forward_hook(lambda _m, _i, out: captured.__setitem__("clean", out.clone()))
    with torch.no_grad():
        net(torch_input(clean, mobilenet.arch))
    handle.remove()
    margins = []
    for n, units in enumerate(units_per_image):
        def restore(_module, _inputs, out, n=n, units=list(units)):
            out = out.clone()
            out[:, units] = captured["clean"][n:n + 1, units]
            return out

        handle = net.features[14].register_forward_hook(restore)
        with torch.no_grad():
            scores = net(torch_input(adversarial[n:n + 1], mobilenet.arch))[0].numpy()
        handle.remove()
        margins.append(scores[fooled_as[n]] - scores[labels[n]])
    return np.array(margins)


def test_restoring_a_unit_matches_torch_with_the_map_put_back_by_a_hook(mobilenet, attacked, changes_14):
    """Each unit's restoration effect (margin less the margin with its map restored) equals torch's, for the top
    carried unit, the unit that carries least and one in between. Fails if the edit restores the wrong image's
    map, the wrong unit, or scores the classes the other way round."""
    units = np.argsort(-changes_14.restored, axis=1)[:, [0, 80, -1]]
    for column in range(units.shape[1]):
        chosen = units[:, column:column + 1]
        expected = changes_14.margin - torch_margin_with_restored(mobilenet, attacked, chosen)
        np.testing.assert_allclose(np.take_along_axis(changes_14.restored, chosen, 1)[:, 0], expected, atol=2e-3)
    logit = logits(mobilenet, attacked[1])
    np.testing.assert_allclose(changes_14.margin, logit[[0, 1], attacked[3]] - logit[[0, 1], attacked[2]], atol=1e-4)


def test_restoring_the_units_that_carry_the_attack_undoes_more_of_it_than_random_units(mobilenet, attacked,
                                                                                       changes_14):
    """Eight units ranked by restoration, put back together, remove more of the adversarial margin than any of
    five random draws of eight (torch computes the margins); fails if the ranking is reversed or random."""
    clean, adversarial, labels, fooled_as = attacked
    carried = np.argsort(-changes_14.restored, axis=1)[:, :8]
    together = restored_margin(mobilenet, clean, adversarial, "features.14", labels, fooled_as, carried)
    np.testing.assert_allclose(together, torch_margin_with_restored(mobilenet, attacked, carried), atol=2e-3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        random_units = np.stack([rng.choice(160, 8, replace=False) for _ in range(len(clean))])
        assert (together < restored_margin(mobilenet, clean, adversarial, "features.14", labels, fooled_as,
                                           random_units)).all()
    assert (together < changes_14.margin - 0.5).all()


def test_units_ranked_by_how_the_attack_moved_them(changes_14):
    changes = changes_14
    assert changes.rose.shape == (2, 5) and changes.clean.shape == (2, 160)
    change = changes.change
    for k in range(2):
        assert change[k, changes.rose[k, 0]] == change[k].max() > 0
        assert change[k, changes.fell[k, 0]] == change[k].min() < 0
        assert (np.diff(change[k, changes.rose[k]]) <= 0).all()
        gain = np.diff(changes.adversarial_contribution[k], axis=-1)[:, 0]
        assert gain[changes.pushed[k, 0]] == gain.max()
        assert changes.restored[k, changes.carried[k, 0]] == changes.restored[k].max()
    assert (changes.ranked("carried") == changes.carried).all()
    from jaxvis.analysis.attribution import RANKINGS
    from jaxvis.cli.attack import RANKINGS as OFFERED_BY_THE_CLI

    assert OFFERED_BY_THE_CLI == RANKINGS
    with pytest.raises(ValueError, match="carried, rose, fell, pushed"):
        changes.ranked("largest")


def test_an_unknown_layer_names_the_nearest(mobilenet, attacked):
    clean, adversarial, labels, fooled_as = attacked
    with pytest.raises(UnknownLayerError, match="features.14"):
        unit_changes(mobilenet, clean, adversarial, "feature.14", labels, fooled_as)
    with pytest.raises(ValueError, match="0-159"):
        restored_margin(mobilenet, clean, adversarial, "features.14", labels, fooled_as, np.array([[0], [160]]))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        restored_margin(mobilenet, clean, adversarial, "features.14", labels, fooled_as, np.array([0, 1]))
