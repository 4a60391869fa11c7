"""Objectives: pure functions of captured activations, composable like Lucid's.

An `Objective` wraps `fn(acts) -> scalar` together with the layers it reads.
`acts` maps layer names to the activations of one batch of images (leading
axis B) and `INPUT` to the images themselves (B, H, W, 3) as rendered by the
parameterization, before any transform.  Objectives are *maximized*; combine
them with `+`, `-`, unary `-`, and scalar `*` / `/`:

    obj = channel("features.14", 7) + 100 * diversity("features.14") - 1e-4 * total_variation()

Unit indices may be traced arrays: the engine vmaps one objective over an
index array (`channel(layer, units[k])`), so hundreds of units are evaluated
in one compiled program, never by a Python loop.

Defaults and definitions follow Lucid's `lucid/optvis/objectives.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Acts = Mapping[str, Array]
INPUT = "input"  # the rendered images, before transforms


@dataclass(frozen=True)
class Objective:
    fn: Callable[[Acts], Array]
    layers: frozenset[str]
    name: str = "objective"

    def __call__(self, acts: Acts) -> Array:
        return self.fn(acts)

    @property
    def model_layers(self) -> frozenset[str]:
        """The layers the model must capture (everything but the input images)."""
        return self.layers - {INPUT}

    def __add__(self, other: Objective | float) -> Objective:
        other = as_objective(other)
        return Objective(lambda a: self(a) + other(a), self.layers | other.layers, f"{self.name} + {other.name}")

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self(a), self.layers, f"-({self.name})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-as_objective(other))

    def __rsub__(self, other: float) -> Objective:
        return as_objective(other) - self

    def __mul__(self, scale: float | Array) -> Objective:
        if isinstance(scale, Objective):
            raise TypeError("objectives combine linearly: multiply by a number, not by another objective")
        return Objective(lambda a: scale * self(a), self.layers, f"{_fmt(scale)} * {self.name}")

    __rmul__ = __mul__

    def __truediv__(self, scale: float | Array) -> Objective:
        return self * (1.0 / scale)

    def named(self, name: str) -> Objective:
        """The same objective under a shorter name (for progress bars and run records)."""
        return Objective(self.fn, self.layers, name)


def as_objective(value: Objective | float) -> Objective:
    if isinstance(value, Objective):
        return value
    return Objective(lambda a: jnp.asarray(value, jnp.float32), frozenset(), _fmt(value))


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "w"


# --- units -----------------------------------------------------------------------------------------


def channel(layer: str, index: int | Array) -> Objective:
    """Mean activation of channel `index` over the batch and all positions (Lucid's `channel`)."""
    return Objective(lambda a: jnp.take(a[layer], index, axis=-1).mean(), frozenset({layer}),
                     f"channel({layer}:{_index_name(index)})")


def neuron(layer: str, index: int | Array, position: tuple[int, ...] | None = None) -> Objective:
    """Activation of channel `index` at one spatial position / token (default: the center), as Lucid's `neuron`."""

    def fn(acts: Acts) -> Array:
        x = acts[layer]
        if x.ndim == 2:  # (B, C): no positions
            return jnp.take(x, index, axis=-1).mean()
        where = position if position is not None else tuple(d // 2 for d in x.shape[1:-1])
        return jnp.take(x[(slice(None), *where)], index, axis=-1).mean()

    return Objective(fn, frozenset({layer}), f"neuron({layer}:{_index_name(index)})")


def direction(layer: str, vector: Array) -> Objective:
    """Mean dot product of the activations with `vector` in channel space (Lucid's `direction`)."""
    return Objective(lambda a: jnp.mean(a[layer] @ jnp.asarray(vector, a[layer].dtype)), frozenset({layer}),
                     f"direction({layer})")


def class_logit(index: int | Array, layer: str = "logits") -> Objective:
    return Objective(lambda a: jnp.take(a[layer], index, axis=-1).mean(), frozenset({layer}),
                     f"logit({_index_name(index)})")


def class_log_probability(index: int | Array, layer: str = "logits") -> Objective:
    return Objective(lambda a: jnp.take(jax.nn.log_softmax(a[layer], axis=-1), index, axis=-1).mean(),
                     frozenset({layer}), f"log_prob({_index_name(index)})")


def deepdream(layer: str) -> Objective:
    """Mean squared activation of a layer (Mordvintsev et al. 2015; Lucid's `deepdream`)."""
    return Objective(lambda a: jnp.mean(jnp.square(a[layer])), frozenset({layer}), f"deepdream({layer})")


def diversity(layer: str) -> Objective:
    """Negative mean pairwise cosine similarity of the batch's Gram matrices (Lucid's `diversity`).

    Higher is more diverse, so *add* it (Lucid's version returns the similarity
    and is subtracted: `channel - 1e2 * diversity` there is `channel + 1e2 * diversity` here).
    """

    def fn(acts: Acts) -> Array:
        x = acts[layer]
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        grams = jnp.einsum("bpc,bpd->bcd", flat, flat)
        grams = grams / jnp.maximum(jnp.linalg.norm(grams.reshape(x.shape[0], -1), axis=1), 1e-10)[:, None, None]
        similarity = jnp.einsum("icd,jcd->ij", grams, grams)
        batch = x.shape[0]
        return -(similarity.sum() - jnp.trace(similarity)) / batch

    return Objective(fn, frozenset({layer}), f"diversity({layer})")


# --- penalties on the image (subtract them) -----------------------------------------------------------


def l1(constant: float = 0.5) -> Objective:
    """Sum of |image - constant| (Lucid's `L1`; subtract it)."""
    return Objective(lambda a: jnp.abs(a[INPUT] - constant).sum(), frozenset({INPUT}), "l1")


def l2(constant: float = 0.5) -> Objective:
    """Root of the sum of squares of image - constant (Lucid's `L2` with epsilon 1e-6; subtract it)."""
    return Objective(lambda a: jnp.sqrt(1e-6 + jnp.square(a[INPUT] - constant).sum()), frozenset({INPUT}), "l2")


def total_variation() -> Objective:
    """Sum of absolute differences between neighbouring pixels (tf.image.total_variation; subtract it)."""

    def fn(acts: Acts) -> Array:
        x = acts[INPUT]
        return jnp.abs(jnp.diff(x, axis=1)).sum() + jnp.abs(jnp.diff(x, axis=2)).sum()

    return Objective(fn, frozenset({INPUT}), "tv")


def blur_penalty() -> Objective:
    """Half the squared distance to a 3x3-box-blurred copy held constant (Lucid's `blur_input_each_step`)."""

    def fn(acts: Acts) -> Array:
        x = acts[INPUT]
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        blurred = sum(padded[:, i : i + x.shape[1], j : j + x.shape[2]] for i in range(3) for j in range(3)) / 9.0
        return 0.5 * jnp.square(x - jax.lax.stop_gradient(blurred)).sum()

    return Objective(fn, frozenset({INPUT}), "blur")


def batchnorm_statistics(inputs: Sequence[Any], first_multiplier: float = 10.0) -> Objective:
    """DeepInversion's feature-distribution prior R_feature (subtract it).

    Sum over BatchNorms of ||batch mean - running mean||_2 + ||batch variance - running
    variance||_2 at each BatchNorm's input (mean and biased variance over batch and
    positions), the first BatchNorm weighted by `first_multiplier` (NVlabs/DeepInversion
    `DeepInversionFeatureHook`, `first_bn_multiplier` 10).  `inputs`: the
    `jaxvis.models.statistics.batchnorm_inputs` of a model.
    """
    entries = [(entry.layer, jnp.asarray(entry.mean), jnp.asarray(entry.var)) for entry in inputs]
    weights = [first_multiplier] + [1.0] * (len(entries) - 1)

    def fn(acts: Acts) -> Array:
        total = 0.0
        for weight, (layer, running_mean, running_var) in zip(weights, entries):
            x = acts[layer].reshape(-1, acts[layer].shape[-1])
            mean, var = x.mean(axis=0), x.var(axis=0)
            total = total + weight * (jnp.linalg.norm(var - running_var) + jnp.linalg.norm(mean - running_mean))
        return total

    return Objective(fn, frozenset(layer for layer, _, _ in entries), "batchnorm_statistics")


# --- matching a reference (feature inversion, style transfer) ------------------------------------------


def gram(x: Array) -> Array:
    """Channel Gram matrix per image, normalized by the number of positions: (B, C, C)."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    return jnp.einsum("bpc,bpd->bcd", flat, flat) / flat.shape[1]


def feature_match(layer: str, target: Array) -> Objective:
    """-||acts - target||^2 / ||target||^2 (Mahendran & Vedaldi's normalized reconstruction loss)."""
    target = jnp.asarray(target)
    return Objective(
        lambda a: -jnp.square(a[layer] - target).sum() / jnp.maximum(jnp.square(target).sum(), 1e-12),
        frozenset({layer}),
        f"feature_match({layer})",
    )


def gram_match(layer: str, target_gram: Array) -> Objective:
    """-mean squared difference between the batch's Gram matrices and a target Gram (Gatys et al.)."""
    target_gram = jnp.asarray(target_gram)
    return Objective(lambda a: -jnp.square(gram(a[layer]) - target_gram).mean(), frozenset({layer}),
                     f"gram_match({layer})")


def _index_name(index: Any) -> str:
    return str(index) if isinstance(index, int) else "*"
