"""Flax modules that mirror torch.nn layers: same constructor arguments, same parameter names.

Each layer taps its own output under its torch module path, so a model built
from these modules with torch's child names (`name="0"`, `name="conv1"`)
exposes exactly torch's layer names.  Parameters follow Flax conventions
(`kernel` HWIO / (in, out), `scale`, `bias`; BatchNorm statistics in the
`batch_stats` collection); `converters.mapping` knows the correspondence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvis.models import ops
from jaxvis.models.probe import Probe, module_name, tap

Array = jax.Array
# torch's default init for conv and linear weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def parameter(module: nn.Module, name: str, init: Callable[..., Array], shape: tuple[int, ...]) -> Array:
    """`module.param(name, init, shape)`, with a plain shape check once the parameter exists.

    Flax's own check traces the initializer (`jax.eval_shape` of `init`) for every parameter each
    time the network is traced, a large share of the tracing time of a compiled program's first
    call (`benchmarks/compile_phases.py` times tracing)."""
    if not module.has_variable("params", name):
        return module.param(name, init, shape)
    value = module.get_variable("params", name)
    if tuple(value.shape) != tuple(shape):
        raise flax.errors.ScopeParamShapeError(name, module.scope.path_text, tuple(value.shape), tuple(shape))
    return value


class Conv2d(nn.Module):
    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    use_bias: bool = True

    def setup(self) -> None:
        kh, kw = ops.pair(self.kernel_size)
        shape = (kh, kw, self.in_channels // self.groups, self.out_channels)
        self.kernel = parameter(self, "kernel", torch_default_init, shape)
        self.bias = parameter(self, "bias", nn.initializers.zeros, (self.out_channels,)) if self.use_bias else None

    def convolve(self, x: Array, kernel: Array, bias: Array | None, probe: Probe) -> Array:
        """This layer's geometry with a given kernel and bias (e.g. with a BatchNorm folded in)."""
        return ops.conv2d(
            x,
            kernel,
            bias,
            stride=ops.pair(self.stride),
            padding=ops.pair(self.padding),
            dilation=ops.pair(self.dilation),
            groups=self.groups,
            fast=probe.fast,
        )

    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, self.convolve(x, self.kernel, self.bias, probe))


class ConvTranspose2d(nn.Module):
    """torch.nn.ConvTranspose2d (groups 1, no output padding); kernel stored (kh, kw, out, in), the generic
    converter's layout of torch's (in, out, kh, kw) weight. Computed as the equivalent convolution of the
    input dilated by `stride`, with the flipped kernel and k - 1 - padding of padding on each side."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        k = self.kernel_size
        kernel = parameter(self, "kernel", torch_default_init, (k, k, self.out_channels, self.in_channels))
        flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # HWIO of the equivalent dilated convolution
        edge = k - 1 - self.padding
        y = jax.lax.conv_general_dilated(x, flipped.astype(x.dtype), (1, 1), [(edge, edge)] * 2,
                                         lhs_dilation=(self.stride, self.stride),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            y = y + parameter(self, "bias", nn.initializers.zeros, (self.out_channels,))
        return tap(self, probe, y)


class BatchNorm2d(nn.Module):
    """Eval-mode BatchNorm (running statistics); `activation` covers timm's BatchNormAct2d."""

    num_features: int
    eps: float = 1e-5
    activation: Callable[[Array], Array] | None = None

    def setup(self) -> None:
        c = self.num_features
        self.scale = parameter(self, "scale", nn.initializers.ones, (c,))
        self.bias = parameter(self, "bias", nn.initializers.zeros, (c,))
        self.mean = self.variable("batch_stats", "mean", jnp.zeros, (c,)).value
        self.var = self.variable("batch_stats", "var", jnp.ones, (c,)).value

    def fold_into(self, conv: Conv2d) -> tuple[Array, Array]:
        return ops.fold_batchnorm(conv.kernel, conv.bias, self.scale, self.bias, self.mean, self.var, self.eps)

    def __call__(self, x: Array, probe: Probe) -> Array:
        y = ops.batchnorm(x, self.scale, self.bias, self.mean, self.var, self.eps)
        return tap(self, probe, probe.act(self.activation, y) if self.activation else y)


def conv_bn(conv: Conv2d, bn: BatchNorm2d, x: Array, probe: Probe) -> Array:
    """`bn(conv(x))`, with the BatchNorm folded into the conv unless the conv's output is asked for."""
    conv_name = module_name(conv)
    if not probe.fast.fold_batchnorm or probe.wants(conv_name):
        return bn(conv(x, probe), probe)
    probe.skip(conv_name)
    kernel, bias = bn.fold_into(conv)
    y = conv.convolve(x, kernel, bias, probe)
    return tap(bn, probe, probe.act(bn.activation, y) if bn.activation else y)


class Linear(nn.Module):
    in_features: int
    out_features: int
    use_bias: bool = True

    def setup(self) -> None:
        self.kernel = parameter(self, "kernel", torch_default_init, (self.in_features, self.out_features))
        self.bias = parameter(self, "bias", nn.initializers.zeros, (self.out_features,)) if self.use_bias else None

    def __call__(self, x: Array, probe: Probe) -> Array:
        y = x @ self.kernel
        return tap(self, probe, y if self.bias is None else y + self.bias)


class LayerNorm(nn.Module):
    dim: int
    eps: float = 1e-5

    def setup(self) -> None:
        self.scale = parameter(self, "scale", nn.initializers.ones, (self.dim,))
        self.bias = parameter(self, "bias", nn.initializers.zeros, (self.dim,))

    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, ops.layer_norm(x, self.scale, self.bias, self.eps))


class Act(nn.Module):
    """A parameter-free torch module that is a function of its input (ReLU, GELU, Dropout in eval ...)."""

    fn: Callable[[Array], Array]

    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, probe.act(self.fn, x))


def identity(x: Array) -> Array:
    return x


class MaxPool2d(nn.Module):
    kernel_size: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False

    def __call__(self, x: Array, probe: Probe) -> Array:
        y = ops.max_pool2d(
            x, ops.pair(self.kernel_size), ops.pair(self.stride), ops.pair(self.padding), self.ceil_mode
        )
        return tap(self, probe, y)


class AvgPool2d(nn.Module):
    """torch.nn.AvgPool2d(kernel_size, stride=kernel_size) without padding."""

    kernel_size: int

    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, ops.avg_pool2d(x, self.kernel_size))


class AdaptiveAvgPool2d(nn.Module):
    output_size: int | tuple[int, int]

    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, ops.adaptive_avg_pool2d(x, ops.pair(self.output_size)))


class Sequential(nn.Module):
    """torch.nn.Sequential: children named "0", "1", ... (or `names`) built from `layers`, applied in order.

    A Conv2d directly followed by a BatchNorm2d is computed by `conv_bn` (foldable).
    """

    layers: Sequence[Callable[..., nn.Module]]
    names: Sequence[str] | None = None  # an OrderedDict Sequential's child names

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        names = self.names or [str(index) for index in range(len(self.layers))]
        children = [build(name) for build, name in zip(self.layers, names, strict=True)]
        index = 0
        while index < len(children):
            child = children[index]
            following = children[index + 1] if index + 1 < len(children) else None
            if isinstance(child, Conv2d) and isinstance(following, BatchNorm2d):
                x = conv_bn(child, following, x, probe)
                index += 2
            else:
                x = child(x, probe)
                index += 1
        return tap(self, probe, x)


class ConvNormActivation(nn.Module):
    """torchvision's Conv2dNormActivation: Sequential(conv "0", BatchNorm "1", activation "2")."""

    in_channels: int
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    groups: int = 1
    activation: Callable[[Array], Array] | None = ops.relu
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        conv = Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride,
            padding=(self.kernel_size - 1) // 2, groups=self.groups, use_bias=False, name="0",
        )
        x = conv_bn(conv, BatchNorm2d(self.out_channels, self.eps, name="1"), x, probe)
        if self.activation is not None:
            x = Act(self.activation, name="2")(x, probe)
        return tap(self, probe, x)


def make(cls: type[nn.Module], *args: Any, **kwargs: Any) -> Callable[..., nn.Module]:
    """A constructor for a `Sequential` child: `make(Conv2d, 3, 64, 3)`."""

    def build(name: str) -> nn.Module:
        return cls(*args, **kwargs, name=name)

    return build
