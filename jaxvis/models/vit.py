"""Vision Transformers (Dosovitskiy et al. 2021): torchvision's `vit_b_16` and timm's `vit_small_patch16_224`.

Token activations are (N, 1 + 196, dim) with the class token first; the patch
embedding conv is NHWC (N, 14, 14, dim).  The two libraries name the same
network differently, and each model keeps its library's names:

  torchvision: `conv_proj`, `encoder.layers.encoder_layer_I` (`ln_1`,
      `self_attention`, `ln_2`, `mlp.0`, `mlp.1` (GELU), `mlp.3`), `encoder.ln`, `heads.head`
  timm: `patch_embed.proj`, `blocks.I` (`norm1`, `attn.qkv`, `attn.proj`, `attn`,
      `norm2`, `mlp.fc1`, `mlp.act`, `mlp.fc2`, `mlp`), `norm`, `head`
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import (Act, Conv2d, LayerNorm, Linear, Sequential, identity, make, parameter,
                                  torch_default_init)
from jaxvis.models.model import INCEPTION_MEAN, INCEPTION_STD, Architecture
from jaxvis.models.probe import Probe, tap

Array = jax.Array


def multi_head_attention(qkv: Array, heads: int, by_head: bool = False) -> Array:
    """softmax(q k^T / sqrt(d)) v over `heads` heads, from packed (N, L, 3*dim) projections [q | k | v]."""
    return attend(*jnp.split(qkv, 3, axis=-1), heads, by_head=by_head)


def attend(q: Array, k: Array, v: Array, heads: int, on_weights=None, by_head: bool = False) -> Array:
    """softmax(q k^T / sqrt(d)) v over `heads` heads of (N, L, dim) projections, heads concatenated.
    `on_weights` sees (and may tap) the attention weights (N, heads, L_query, L_key) first; without it,
    `by_head` takes the fast path `ops.attention_by_head` (FastPaths.attention_by_head)."""
    n, length, dim = q.shape
    if by_head and on_weights is None:
        return ops.attention_by_head(q * (dim // heads) ** -0.5, k, v, heads)
    q, k, v = (t.reshape(n, length, heads, dim // heads) for t in (q, k, v))
    scores = jnp.einsum("nqhd,nkhd->nhqk", q * (dim // heads) ** -0.5, k)
    weights = jax.nn.softmax(scores, axis=-1)
    if on_weights is not None:
        weights = on_weights(weights)
    out = jnp.einsum("nhqk,nkhd->nqhd", weights, v)
    return out.reshape(n, length, dim)


def patches_to_tokens(x: Array) -> Array:
    """(N, h, w, dim) patch embeddings -> (N, h*w, dim), row-major like torch's flatten(2).transpose(1, 2)."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def prepend_class_token(tokens: Array, class_token: Array) -> Array:
    return jnp.concatenate([jnp.broadcast_to(class_token, (tokens.shape[0], 1, tokens.shape[-1])), tokens], axis=1)


# --- torchvision naming -------------------------------------------------------------------


class TorchMultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention(batch_first=True) used as self-attention: packed `in_proj_weight`."""

    dim: int
    heads: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        weight = parameter(self, "in_proj_weight", torch_default_init, (3 * self.dim, self.dim))
        bias = parameter(self, "in_proj_bias", nn.initializers.zeros, (3 * self.dim,))
        y = multi_head_attention(x @ weight.T + bias, self.heads, probe.fast.attention_by_head)
        return tap(self, probe, Linear(self.dim, self.dim, name="out_proj")(y, probe))


class EncoderBlock(nn.Module):
    dim: int
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        y = LayerNorm(self.dim, 1e-6, name="ln_1")(x, probe)
        x = x + TorchMultiheadAttention(self.dim, self.heads, name="self_attention")(y, probe)
        y = LayerNorm(self.dim, 1e-6, name="ln_2")(x, probe)
        mlp = [make(Linear, self.dim, self.mlp_dim), make(Act, ops.gelu), make(Act, identity),
               make(Linear, self.mlp_dim, self.dim), make(Act, identity)]
        return tap(self, probe, x + Sequential(mlp, name="mlp")(y, probe))


class Encoder(nn.Module):
    seq_length: int
    depth: int
    dim: int
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        x = x + parameter(self, "pos_embedding", nn.initializers.normal(0.02), (1, self.seq_length, self.dim))
        blocks = [make(EncoderBlock, self.dim, self.heads, self.mlp_dim)] * self.depth
        x = Sequential(blocks, [f"encoder_layer_{i}" for i in range(self.depth)], name="layers")(x, probe)
        return tap(self, probe, LayerNorm(self.dim, 1e-6, name="ln")(x, probe))


class TorchvisionViT(nn.Module):
    image_size: int = 224
    patch_size: int = 16
    depth: int = 12
    dim: int = 768
    heads: int = 12
    mlp_dim: int = 3072
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        p = self.patch_size
        x = Conv2d(3, self.dim, p, p, name="conv_proj")(x, probe)
        class_token = parameter(self, "class_token", nn.initializers.zeros, (1, 1, self.dim))
        x = prepend_class_token(patches_to_tokens(x), class_token)
        x = Encoder((self.image_size // p) ** 2 + 1, self.depth, self.dim, self.heads, self.mlp_dim, name="encoder")(x, probe)
        return Sequential([make(Linear, self.dim, self.num_classes)], ["head"], name="heads")(x[:, 0], probe)


# --- timm naming ----------------------------------------------------------------------------


class TimmAttention(nn.Module):
    dim: int
    heads: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        qkv = Linear(self.dim, 3 * self.dim, name="qkv")(x, probe)
        y = Linear(self.dim, self.dim, name="proj")(multi_head_attention(qkv, self.heads, probe.fast.attention_by_head), probe)
        return tap(self, probe, y)


class Mlp(nn.Module):
    """timm's Mlp: `fc1`, `act` (GELU), `fc2`."""

    dim: int
    hidden: int
    out: int | None = None

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        x = Linear(self.dim, self.hidden, name="fc1")(x, probe)
        x = Act(ops.gelu, name="act")(x, probe)
        return tap(self, probe, Linear(self.hidden, self.out or self.dim, name="fc2")(x, probe))


class Block(nn.Module):
    dim: int
    heads: int
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        x = x + TimmAttention(self.dim, self.heads, name="attn")(LayerNorm(self.dim, 1e-6, name="norm1")(x, probe), probe)
        x = x + Mlp(self.dim, int(self.dim * self.mlp_ratio), name="mlp")(LayerNorm(self.dim, 1e-6, name="norm2")(x, probe), probe)
        return tap(self, probe, x)


class PatchEmbed(nn.Module):
    """timm's PatchEmbed: `proj` conv, flattened to tokens (the module's own output)."""

    patch_size: int
    dim: int

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        x = Conv2d(3, self.dim, self.patch_size, self.patch_size, name="proj")(x, probe)
        return tap(self, probe, patches_to_tokens(x))


class TimmViT(nn.Module):
    image_size: int = 224
    patch_size: int = 16
    depth: int = 12
    dim: int = 384
    heads: int = 6
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        tokens = (self.image_size // self.patch_size) ** 2 + 1
        x = PatchEmbed(self.patch_size, self.dim, name="patch_embed")(x, probe)
        x = prepend_class_token(x, parameter(self, "cls_token", nn.initializers.zeros, (1, 1, self.dim)))
        x = x + parameter(self, "pos_embed", nn.initializers.normal(0.02), (1, tokens, self.dim))
        x = Sequential([make(Block, self.dim, self.heads) for _ in range(self.depth)], name="blocks")(x, probe)
        x = LayerNorm(self.dim, 1e-6, name="norm")(x, probe)
        return Linear(self.dim, self.num_classes, name="head")(x[:, 0], probe)


VIT_B_16 = Architecture(
    name="vit_b_16",
    family="vit",
    source="torchvision",
    build=TorchvisionViT,
    min_size=224,
    default_layer="encoder.layers.encoder_layer_6.mlp.1",
    fixed_size=True,
    pretrained=(WeightSource.torchvision("vit_b_16-c867db91.pth", "torchvision IMAGENET1K_V1 (top-1 81.1%)"),),
)

VIT_SMALL_PATCH16_224 = Architecture(
    name="vit_small_patch16_224",
    family="vit",
    source="timm",
    build=TimmViT,
    min_size=224,
    default_layer="blocks.6.mlp.act",
    fixed_size=True,
    mean=INCEPTION_MEAN,
    std=INCEPTION_STD,
    pretrained=(
        WeightSource(
            filename="vit_small_patch16_224.augreg_in21k_ft_in1k.safetensors",
            hf_repo="timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
            description="timm augreg_in21k_ft_in1k (top-1 81.4%)",
        ),
    ),
)
