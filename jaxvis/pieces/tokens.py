"""Objectives for the token layers of Vision Transformers: activations (B, 1 + h·w, C), the CLS token first.

    cls_channel(layer, unit)               channel `unit` of the CLS token
    patch_channel(layer, unit, (r, c))     channel `unit` of the patch token at grid row r, column c
    patch_mean(layer, unit)                channel `unit` averaged over the patch tokens (CLS left out):
                                           the ViT analogue of a conv channel
    head_output(layer, head, heads)        the mean squared output of one attention head (a layer holding
                                           the heads' concatenated context, e.g. `...attention.attention`)
    attention_to(layer, head, (r, c))      the attention weight from the CLS token to a patch, in one head
                                           (a layer of attention weights (B, heads, L, L), e.g.
                                           `...attention.attention.dropout` of the DINOv2 model)
    saliency(layer[, region])              the mean of a saliency map (`output_importance`), or its mean
                                           inside a mask: "what does this network find salient"
    patch_grid(tokens)                     token activations as maps on the patch grid (dissection, examples)

An MLP hidden neuron is a channel of the MLP's activation layer (`...mlp.activation`), read
with the same three functions.  Like the CNN objectives, each takes its unit (channel or
head) as data, so the engine vmaps it over many units in one program.  The patch grid is
taken to be square (h = w), as at every square input size; a position or head outside the
layer raises a `TokenIndexError` when the objective first meets the layer's shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxvis.core.errors import JaxvisError
from jaxvis.pieces.objectives import Acts, Objective, _index_name, term

Array = jax.Array


class TokenIndexError(JaxvisError, ValueError):
    """A token position or attention head that the layer does not have."""


def _grid(tokens: int, layer: str) -> int:
    side = math.isqrt(tokens - 1)
    if tokens < 2 or side * side != tokens - 1:
        raise TokenIndexError(f"{layer} has {tokens} tokens, not a CLS token and a square grid of patches")
    return side


def grid_side(tokens: int) -> tuple[int, int] | None:
    """(prefix, side) when `tokens` tokens are a square grid of patches, after a CLS token (prefix 1) or
    without one (prefix 0, e.g. an MLP-Mixer); None for any other count."""
    for prefix in (0, 1):
        side = math.isqrt(max(tokens - prefix, 0))
        if side and side * side == tokens - prefix:
            return prefix, side
    return None


def patch_grid(x: Array) -> Array:
    """Token activations (B, [1 +] h·w, C) as maps (B, h, w, C) on the patch grid, the CLS token left out:
    how dataset examples and dissection read a transformer layer (upsampled like a conv map)."""
    found = grid_side(x.shape[1])
    if found is None:
        raise TokenIndexError(f"{x.shape[1]} tokens are not a square grid of patches (with or without a CLS token)")
    prefix, side = found
    return x[:, prefix:].reshape(x.shape[0], side, side, x.shape[-1])


def _token(position: tuple[int, int], tokens: int, layer: str) -> int:
    side = _grid(tokens, layer)
    row, column = position
    if not (0 <= row < side and 0 <= column < side):
        raise TokenIndexError(f"patch ({row}, {column}) is outside the {side} x {side} grid of {layer}: rows and "
                              f"columns run 0..{side - 1}")
    return 1 + row * side + column


def _tokens(x: Array, layer: str) -> Array:
    if x.ndim != 3:
        raise TokenIndexError(f"{layer} gives {x.shape[1:]} per image, not tokens (L, C); token objectives read "
                              "transformer layers")
    return x


def cls_channel(layer: str, unit: int | Array) -> Objective:
    return Objective(term(_cls, layer=layer), unit, frozenset({layer}), f"cls({layer}:{_index_name(unit)})")


def _cls(unit: Array, acts: Acts, *, layer: str) -> Array:
    return jnp.take(_tokens(acts[layer], layer)[:, 0], unit, axis=-1).mean()


def patch_channel(layer: str, unit: int | Array, position: tuple[int, int]) -> Objective:
    position = (int(position[0]), int(position[1]))
    return Objective(term(_patch, layer=layer, position=position), unit, frozenset({layer}),
                     f"patch({layer}:{_index_name(unit)}@{position[0]},{position[1]})")


def _patch(unit: Array, acts: Acts, *, layer: str, position: tuple[int, int]) -> Array:
    x = _tokens(acts[layer], layer)
    return jnp.take(x[:, _token(position, x.shape[1], layer)], unit, axis=-1).mean()


def patch_mean(layer: str, unit: int | Array) -> Objective:
    return Objective(term(_patch_mean, layer=layer), unit, frozenset({layer}),
                     f"patches({layer}:{_index_name(unit)})")


def _patch_mean(unit: Array, acts: Acts, *, layer: str) -> Array:
    x = _tokens(acts[layer], layer)
    _grid(x.shape[1], layer)
    return jnp.take(x[:, 1:], unit, axis=-1).mean()


def head_output(layer: str, head: int | Array, heads: int) -> Objective:
    return Objective(term(_head, layer=layer, heads=heads), head, frozenset({layer}),
                     f"head({layer}:{_index_name(head)})")


def _head(head: Array, acts: Acts, *, layer: str, heads: int) -> Array:
    x = _tokens(acts[layer], layer)
    if x.shape[-1] % heads:
        raise TokenIndexError(f"{layer} is {x.shape[-1]} wide, not a multiple of {heads} heads")
    _check_head(head, heads, layer)
    per_head = x.reshape(*x.shape[:2], heads, -1)
    return jnp.square(jnp.take(per_head, head, axis=2)).mean()


def attention_to(layer: str, head: int | Array, position: tuple[int, int]) -> Objective:
    position = (int(position[0]), int(position[1]))
    return Objective(term(_attention_to, layer=layer, position=position), head, frozenset({layer}),
                     f"attention({layer}:{_index_name(head)}->{position[0]},{position[1]})")


def _attention_to(head: Array, acts: Acts, *, layer: str, position: tuple[int, int]) -> Array:
    weights = acts[layer]
    if weights.ndim != 4 or weights.shape[2] != weights.shape[3]:
        raise TokenIndexError(f"{layer} gives {weights.shape[1:]} per image, not attention weights "
                              "(heads, L, L)")
    _check_head(head, weights.shape[1], layer)
    key = _token(position, weights.shape[-1], layer)
    return jnp.take(weights[:, :, 0, key], head, axis=1).mean()


def _check_head(head: int | Array, heads: int, layer: str) -> None:
    if isinstance(head, int) and not 0 <= head < heads:
        raise TokenIndexError(f"head {head} is out of range for {layer}: it has heads 0..{heads - 1}")


def saliency(layer: str = "output_importance", region: Array | None = None) -> Objective:
    """The mean of the saliency map, or its mean inside `region` (H, W) (a 0/1 or soft mask at the map's
    size): `saliency(region=r) - saliency(region=1 - r)` moves what the network finds salient into r."""
    if region is None:
        return Objective(term(_saliency, layer=layer), (), frozenset({layer}), f"saliency({layer})")
    region = jnp.asarray(region, jnp.float32)
    if region.ndim != 2:
        raise TokenIndexError(f"a saliency region is a mask (H, W) at the map's size; got shape {region.shape}")
    return Objective(term(_saliency_in, layer=layer), region, frozenset({layer}), f"saliency({layer} in region)")


def _saliency(_: tuple, acts: Acts, *, layer: str) -> Array:
    return acts[layer].mean()


def _saliency_in(region: Array, acts: Acts, *, layer: str) -> Array:
    x = acts[layer]
    if x.shape[1:3] != region.shape:
        raise TokenIndexError(f"the saliency region is {region.shape[0]}x{region.shape[1]} but {layer} is "
                              f"{x.shape[1]}x{x.shape[2]}: make the mask at the input size")
    weights = region[None, :, :, None]
    return (x * weights).sum() / (jnp.maximum(weights.sum(), 1e-6) * x.shape[0] * x.shape[-1])
