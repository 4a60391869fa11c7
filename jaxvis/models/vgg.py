"""torchvision's VGG-16 and VGG-19 (Simonyan & Zisserman 2015), configurations D and E, without BatchNorm.

Layer names: `features.N` (every conv, ReLU and max pool, numbered like torch;
VGG-16's last conv is `features.28`, its ReLU `features.29`), `avgpool`
(adaptive to 7x7), `classifier.0` ... `classifier.6` (the logits).  Unlike a
torch forward hook, a captured conv output is the value before the in-place ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import flax.linen as nn
import jax

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import Act, AdaptiveAvgPool2d, AvgPool2d, Conv2d, Linear, MaxPool2d, Sequential, identity, make
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe

POOL = "M"
CONFIGS = {
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    "vgg19": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL),
}


class VGG(nn.Module):
    config: Sequence[int | str]
    num_classes: int = 1000
    pool: str = "max"  # "average": Gatys et al.'s replacement for style transfer

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        layers, channels = [], 3
        for item in self.config:
            if item == POOL:
                layers.append(make(MaxPool2d, 2, 2) if self.pool == "max" else make(AvgPool2d, 2))
            else:
                layers += [make(Conv2d, channels, item, 3, padding=1), make(Act, ops.relu)]
                channels = item
        x = Sequential(layers, name="features")(x, probe)
        x = AdaptiveAvgPool2d(7, name="avgpool")(x, probe)
        relu, dropout = make(Act, ops.relu), make(Act, identity)
        classifier = [
            make(Linear, channels * 7 * 7, 4096), relu, dropout,
            make(Linear, 4096, 4096), relu, dropout,
            make(Linear, 4096, self.num_classes),
        ]
        return Sequential(classifier, name="classifier")(ops.flatten_like_torch(x), probe)


def _vgg(name: str, filename: str, top1: str) -> Architecture:
    return Architecture(
        name=name,
        family="cnn",
        source="torchvision",
        build=lambda: VGG(CONFIGS[name]),
        min_size=32,
        default_layer="features.22" if name == "vgg16" else "features.26",
        pretrained=(WeightSource.torchvision(filename, f"torchvision IMAGENET1K_V1 (top-1 {top1})"),),
    )


def average_pooling(arch: Architecture) -> Architecture:
    """The same VGG (same weights and layer names) with average instead of max pooling."""
    return replace(arch, build=lambda: VGG(CONFIGS[arch.name], pool="average"))


VGG16 = _vgg("vgg16", "vgg16-397923af.pth", "71.6%")
VGG19 = _vgg("vgg19", "vgg19-dcbb9e9d.pth", "72.4%")
