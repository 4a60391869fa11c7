"""torchvision's AlexNet (Krizhevsky 2014, "One weird trick" single-tower variant).

Layer names: `features.0` ... `features.12` (convs, ReLUs, max pools numbered
like torch), `avgpool` (adaptive to 6x6), `classifier.0` ... `classifier.6`.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import Act, AdaptiveAvgPool2d, Conv2d, Linear, MaxPool2d, Sequential, identity, make
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe


class AlexNet(nn.Module):
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        relu = make(Act, ops.relu)
        features = [
            make(Conv2d, 3, 64, 11, 4, 2), relu, make(MaxPool2d, 3, 2),
            make(Conv2d, 64, 192, 5, padding=2), relu, make(MaxPool2d, 3, 2),
            make(Conv2d, 192, 384, 3, padding=1), relu,
            make(Conv2d, 384, 256, 3, padding=1), relu,
            make(Conv2d, 256, 256, 3, padding=1), relu, make(MaxPool2d, 3, 2),
        ]
        x = Sequential(features, name="features")(x, probe)
        x = AdaptiveAvgPool2d(6, name="avgpool")(x, probe)
        dropout = make(Act, identity)
        classifier = [
            dropout, make(Linear, 256 * 6 * 6, 4096), relu,
            dropout, make(Linear, 4096, 4096), relu,
            make(Linear, 4096, self.num_classes),
        ]
        return Sequential(classifier, name="classifier")(ops.flatten_like_torch(x), probe)


ALEXNET = Architecture(
    name="alexnet",
    family="cnn",
    source="torchvision",
    build=AlexNet,
    min_size=63,
    default_layer="features.9",
    pretrained=(WeightSource.torchvision("alexnet-owt-7be5be79.pth", "torchvision IMAGENET1K_V1 (top-1 56.5%)"),),
)
