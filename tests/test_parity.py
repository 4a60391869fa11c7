"""Every converted architecture computes what its torch original computes.

For each architecture: a torchvision/timm model with random weights and
non-trivial BatchNorm statistics, its state_dict converted by jaxvis, the same
images through both; logits and at least three intermediate layers must agree
to max|diff| / max|reference| <= 1e-4 (float32, CPU).  CNNs are checked at
input sizes other than 224 too (adaptive pools, odd sizes, ceil-mode pools).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import jaxvis
from helpers import forward, nhwc, relative_error, torch_input, torch_reference

TOLERANCE = 1e-4
CNN_SIZES = (224, 160, 193, 227)
# Intermediate layers compared per architecture (torch module names = jaxvis layer names).
LAYERS = {
    "mobilenet_v2": ["features.2.conv.1", "features.7", "features.14", "features.18"],
    "efficientnet_lite0": ["blocks.1.0.bn2", "blocks.3", "blocks.5.2.conv_pwl", "bn2"],
    "resnet18": ["maxpool", "layer2.0.downsample", "layer3.1.bn2", "layer4"],
    "resnet50": ["layer1.0.conv3", "layer2.1", "layer3.5.bn3", "layer4"],
    "vgg16": ["features.4", "features.16", "features.28", "classifier.3"],
    "vgg19": ["features.9", "features.25", "features.36", "classifier.1"],
    "alexnet": ["features.2", "features.7", "features.12", "avgpool", "classifier.4"],
    "googlenet": ["maxpool1", "inception3a.branch2.1", "inception4e", "maxpool4", "inception5b"],
    "vit_b_16": ["conv_proj", "encoder.layers.encoder_layer_3.self_attention",
                 "encoder.layers.encoder_layer_7.mlp.1", "encoder.ln"],
    "vit_small_patch16_224": ["patch_embed", "blocks.2.attn", "blocks.9.mlp.fc1", "norm"],
    "mixer_b16_224": ["stem", "blocks.3.mlp_tokens", "blocks.11", "norm"],
    "resmlp_12_224": ["stem", "blocks.2.linear_tokens", "blocks.8", "norm"],
}
ELSEWHERE = {"dinov2_vits14_focus": "tests/test_dinov2.py, against onnxruntime on its ONNX graph",
             "dcgan_faces": "tests/test_dcgan.py, against the PyTorch DCGAN tutorial's generator"}
CASES = [
    (name, size)
    for name, arch in jaxvis.ARCHITECTURES.items() if name not in ELSEWHERE
    for size in ((arch.input_size,) if arch.fixed_size else CNN_SIZES)
]


def test_every_architecture_is_covered():
    assert set(LAYERS) | set(ELSEWHERE) == set(jaxvis.ARCHITECTURES)


@functools.lru_cache(maxsize=1)  # one architecture's pair of models at a time
def models(name: str):
    reference = torch_reference(name)
    return reference, jaxvis.load(name, weights=reference.state_dict())


def torch_activations(model, inputs, names):
    modules = dict(model.named_modules())
    captured, handles = {}, []
    for name in names:
        def hook(_module, _inputs, output, name=name):
            output = output[0] if isinstance(output, tuple) else output  # nn.MultiheadAttention
            captured[name] = output.detach().clone()  # before any in-place ReLU that follows
        handles.append(modules[name].register_forward_hook(hook))
    with torch.no_grad():
        logits = model(inputs)
    for handle in handles:
        handle.remove()
    return logits, captured


@pytest.mark.parametrize("name,size", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_parity_with_torch(name, size):
    reference, model = models(name)
    images = np.random.default_rng(size).random((2, size, size, 3), dtype=np.float32)
    logits, expected = torch_activations(reference, torch_input(images, model.arch), LAYERS[name])
    ours = forward(model, images, capture=LAYERS[name] + ["logits"])
    errors = {layer: relative_error(ours[layer], nhwc(expected[layer])) for layer in LAYERS[name]}
    errors["logits"] = relative_error(ours["logits"], logits.numpy())
    assert max(errors.values()) <= TOLERANCE, errors
    assert np.abs(logits.numpy()).max() > 1e-3  # a real comparison, not of zeros
