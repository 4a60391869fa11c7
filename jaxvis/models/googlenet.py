"""torchvision's GoogLeNet (Szegedy et al. 2015, Inception v1 with BatchNorm), as used by Lucid/Lucent.

Layer names: `conv1`, `maxpool1`, `conv2`, `conv3`, `maxpool2`, `inception3a`
... `inception5b` (Lucid's mixed3a ... mixed5b), `maxpool3`, `maxpool4`,
`avgpool`, `dropout`, `fc` (the logits); inside a module `branch1`,
`branch2.0`, `branch2.1`, ... and inside a BasicConv2d `conv` and `bn` (before
its functional ReLU; the BasicConv2d itself is after it).  Max pools use ceil
mode; like torchvision's pretrained model, the input is re-normalized by
`transform_input` to the (x - 0.5) / 0.5 scaling it was trained with.
The training-only auxiliary classifiers (`aux1.*`, `aux2.*`) of a state_dict are
accounted for and not used.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import Act, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Sequential, conv_bn, identity, make
from jaxvis.models.model import IMAGENET_MEAN, IMAGENET_STD, Architecture
from jaxvis.models.probe import Probe, tap

# (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj) per module; torchvision's
# "5x5" branch really uses a 3x3 kernel, like the weights it was trained with.
INCEPTION = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        conv = Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                      use_bias=False, name="conv")
        x = conv_bn(conv, BatchNorm2d(self.out_channels, eps=0.001, name="bn"), x, probe)
        return tap(self, probe, probe.act(ops.relu, x))


class Inception(nn.Module):
    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        branches = [
            BasicConv2d(self.in_channels, self.ch1x1, 1, name="branch1")(x, probe),
            Sequential([make(BasicConv2d, self.in_channels, self.ch3x3red, 1),
                        make(BasicConv2d, self.ch3x3red, self.ch3x3, 3, padding=1)], name="branch2")(x, probe),
            Sequential([make(BasicConv2d, self.in_channels, self.ch5x5red, 1),
                        make(BasicConv2d, self.ch5x5red, self.ch5x5, 3, padding=1)], name="branch3")(x, probe),
            Sequential([make(MaxPool2d, 3, 1, 1, ceil_mode=True),
                        make(BasicConv2d, self.in_channels, self.pool_proj, 1)], name="branch4")(x, probe),
        ]
        return tap(self, probe, jnp.concatenate(branches, axis=-1))


class GoogLeNet(nn.Module):
    num_classes: int = 1000
    transform_input: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        if self.transform_input:  # torchvision's _transform_input: ImageNet scaling -> (x - 0.5) / 0.5
            x = x * (jnp.asarray(IMAGENET_STD) / 0.5) + (jnp.asarray(IMAGENET_MEAN) - 0.5) / 0.5
        x = BasicConv2d(3, 64, 7, 2, 3, name="conv1")(x, probe)
        x = MaxPool2d(3, 2, ceil_mode=True, name="maxpool1")(x, probe)
        x = BasicConv2d(64, 64, 1, name="conv2")(x, probe)
        x = BasicConv2d(64, 192, 3, padding=1, name="conv3")(x, probe)
        x = MaxPool2d(3, 2, ceil_mode=True, name="maxpool2")(x, probe)
        for stage in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
            x = Inception(*INCEPTION[stage], name=f"inception{stage}")(x, probe)
            if stage == "3b":
                x = MaxPool2d(3, 2, ceil_mode=True, name="maxpool3")(x, probe)
            if stage == "4e":
                x = MaxPool2d(2, 2, ceil_mode=True, name="maxpool4")(x, probe)
        x = AdaptiveAvgPool2d(1, name="avgpool")(x, probe)
        x = Act(identity, name="dropout")(x.reshape(x.shape[0], -1), probe)
        return Linear(1024, self.num_classes, name="fc")(x, probe)


GOOGLENET = Architecture(
    name="googlenet",
    family="cnn",
    source="torchvision",
    build=GoogLeNet,
    min_size=32,
    default_layer="inception4a",
    ignore_keys=("aux1.", "aux2."),
    pretrained=(
        WeightSource.torchvision("googlenet-1378be20.pth", "torchvision IMAGENET1K_V1 (top-1 69.8%), transform_input=True"),
    ),
)
