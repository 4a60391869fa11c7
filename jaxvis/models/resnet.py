"""torchvision's ResNets (He et al. 2016; torchvision's v1.5: stride on the 3x3 conv).

Layer names: `conv1`, `bn1`, `relu`, `maxpool`, `layer1` ... `layer4` (stages),
`layer3.1` (a block, after the residual add and ReLU), inside a block `conv1`,
`bn1`, `conv2`, `bn2` (`conv3`, `bn3` in bottlenecks) and `downsample.0/1`;
`avgpool`, `fc` (the logits).  A block's `relu` is applied several times in
torch and is not a capture point.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import (
    Act,
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Linear,
    MaxPool2d,
    Sequential,
    conv_bn,
    make,
)
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe, tap


class BasicBlock(nn.Module):
    inplanes: int
    planes: int
    stride: int = 1
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        y = conv_bn(Conv2d(self.inplanes, self.planes, 3, self.stride, 1, use_bias=False, name="conv1"),
                    BatchNorm2d(self.planes, name="bn1"), x, probe)
        y = probe.act(ops.relu, y)
        y = conv_bn(Conv2d(self.planes, self.planes, 3, 1, 1, use_bias=False, name="conv2"),
                    BatchNorm2d(self.planes, name="bn2"), y, probe)
        return tap(self, probe, probe.act(ops.relu, y + shortcut(self, x, probe)))


class Bottleneck(nn.Module):
    inplanes: int
    planes: int
    stride: int = 1
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        width, out = self.planes, self.planes * self.expansion
        y = conv_bn(Conv2d(self.inplanes, width, 1, use_bias=False, name="conv1"), BatchNorm2d(width, name="bn1"), x, probe)
        y = probe.act(ops.relu, y)
        y = conv_bn(Conv2d(width, width, 3, self.stride, 1, use_bias=False, name="conv2"),
                    BatchNorm2d(width, name="bn2"), y, probe)
        y = probe.act(ops.relu, y)
        y = conv_bn(Conv2d(width, out, 1, use_bias=False, name="conv3"), BatchNorm2d(out, name="bn3"), y, probe)
        return tap(self, probe, probe.act(ops.relu, y + shortcut(self, x, probe)))


def shortcut(block: BasicBlock | Bottleneck, x: jax.Array, probe: Probe) -> jax.Array:
    """Identity, or torchvision's `downsample` = Sequential(1x1 conv with stride, BatchNorm)."""
    out = block.planes * block.expansion
    if block.stride == 1 and block.inplanes == out:
        return x
    layers = [make(Conv2d, block.inplanes, out, 1, block.stride, use_bias=False), make(BatchNorm2d, out)]
    return Sequential(layers, name="downsample")(x, probe)


class ResNet(nn.Module):
    block: type[BasicBlock] | type[Bottleneck]
    layers: Sequence[int]
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        x = conv_bn(Conv2d(3, 64, 7, 2, 3, use_bias=False, name="conv1"), BatchNorm2d(64, name="bn1"), x, probe)
        x = Act(ops.relu, name="relu")(x, probe)
        x = MaxPool2d(3, 2, 1, name="maxpool")(x, probe)
        inplanes = 64
        for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512), self.layers)):
            blocks = []
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(make(self.block, inplanes, planes, stride))
                inplanes = planes * self.block.expansion
            x = Sequential(blocks, name=f"layer{stage + 1}")(x, probe)
        x = AdaptiveAvgPool2d(1, name="avgpool")(x, probe)
        return Linear(inplanes, self.num_classes, name="fc")(x.reshape(x.shape[0], -1), probe)


def _resnet(name: str, block: type, layers: tuple[int, ...], filename: str, top1: str) -> Architecture:
    return Architecture(
        name=name,
        family="cnn",
        source="torchvision",
        build=lambda: ResNet(block, layers),
        min_size=32,
        default_layer="layer3",
        pretrained=(WeightSource.torchvision(filename, f"torchvision IMAGENET1K_V1 (top-1 {top1})"),),
    )


RESNET18 = _resnet("resnet18", BasicBlock, (2, 2, 2, 2), "resnet18-f37072fd.pth", "69.8%")
RESNET50 = _resnet("resnet50", Bottleneck, (3, 4, 6, 3), "resnet50-0676ba61.pth", "76.1%")
