"""timm's all-MLP networks: MLP-Mixer (Tolstikhin et al. 2021) and ResMLP (Touvron et al. 2021).

Layer names (timm's): `stem.proj` (patch conv, NHWC), `stem` (tokens, (N, 196, dim)),
`blocks.I`, then `norm`, `head` (the logits).  Mixer blocks: `norm1`,
`mlp_tokens` (`fc1`, `act`, `fc2`; applied across tokens, so its activations are
(N, dim, tokens) like torch's), `norm2`, `mlp_channels`.  ResMLP blocks:
`norm1` / `norm2` (Affine), `linear_tokens` ((N, dim, tokens)), `mlp_channels`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from converters.resolve import WeightSource
from jaxvis.models.layers import LayerNorm, Linear, Sequential, make, parameter
from jaxvis.models.model import INCEPTION_MEAN, INCEPTION_STD, Architecture
from jaxvis.models.probe import Probe, tap
from jaxvis.models.vit import Mlp, PatchEmbed

Array = jax.Array


def across_tokens(x: Array) -> Array:
    """(N, tokens, dim) <-> (N, dim, tokens), torch's `.transpose(1, 2)`."""
    return jnp.swapaxes(x, 1, 2)


class MixerBlock(nn.Module):
    dim: int
    tokens: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        y = LayerNorm(self.dim, 1e-6, name="norm1")(x, probe)
        x = x + across_tokens(Mlp(self.tokens, self.dim // 2, name="mlp_tokens")(across_tokens(y), probe))
        y = LayerNorm(self.dim, 1e-6, name="norm2")(x, probe)
        return tap(self, probe, x + Mlp(self.dim, 4 * self.dim, name="mlp_channels")(y, probe))


class Affine(nn.Module):
    """ResMLP's 'norm': alpha * x + beta, per channel."""

    dim: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        alpha = parameter(self, "alpha", nn.initializers.ones, (1, 1, self.dim))
        beta = parameter(self, "beta", nn.initializers.zeros, (1, 1, self.dim))
        return tap(self, probe, alpha * x + beta)


class ResBlock(nn.Module):
    dim: int
    tokens: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        ls1 = parameter(self, "ls1", nn.initializers.constant(1e-4), (self.dim,))
        ls2 = parameter(self, "ls2", nn.initializers.constant(1e-4), (self.dim,))
        y = Affine(self.dim, name="norm1")(x, probe)
        x = x + ls1 * across_tokens(Linear(self.tokens, self.tokens, name="linear_tokens")(across_tokens(y), probe))
        y = Affine(self.dim, name="norm2")(x, probe)
        return tap(self, probe, x + ls2 * Mlp(self.dim, 4 * self.dim, name="mlp_channels")(y, probe))


class MlpMixer(nn.Module):
    block: type[MixerBlock] | type[ResBlock]
    dim: int
    depth: int
    image_size: int = 224
    patch_size: int = 16
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        tokens = (self.image_size // self.patch_size) ** 2
        x = PatchEmbed(self.patch_size, self.dim, name="stem")(x, probe)
        x = Sequential([make(self.block, self.dim, tokens)] * self.depth, name="blocks")(x, probe)
        norm = Affine(self.dim, name="norm") if self.block is ResBlock else LayerNorm(self.dim, 1e-6, name="norm")
        x = norm(x, probe)
        return Linear(self.dim, self.num_classes, name="head")(x.mean(axis=1), probe)


MIXER_B16_224 = Architecture(
    name="mixer_b16_224",
    family="mlp",
    source="timm",
    build=lambda: MlpMixer(MixerBlock, dim=768, depth=12),
    min_size=224,
    default_layer="blocks.6",
    fixed_size=True,
    mean=INCEPTION_MEAN,
    std=INCEPTION_STD,
    pretrained=(
        WeightSource(
            filename="mixer_b16_224.goog_in21k_ft_in1k.safetensors",
            hf_repo="timm/mixer_b16_224.goog_in21k_ft_in1k",
            description="timm goog_in21k_ft_in1k (top-1 76.6%)",
        ),
    ),
)

RESMLP_12_224 = Architecture(
    name="resmlp_12_224",
    family="mlp",
    source="timm",
    build=lambda: MlpMixer(ResBlock, dim=384, depth=12),
    min_size=224,
    default_layer="blocks.6",
    fixed_size=True,
    pretrained=(
        WeightSource(
            filename="resmlp_12_224.fb_in1k.safetensors",
            hf_repo="timm/resmlp_12_224.fb_in1k",
            description="timm fb_in1k (top-1 77.0%)",
        ),
    ),
)
