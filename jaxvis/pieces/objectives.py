"""Objectives: pure functions of captured activations, composable like Lucid's.

An `Objective` is a function `fn(params, acts) -> scalar`, its numbers `params`
(unit indices, weights, target activations), and the layers it reads.  `acts`
maps layer names to the activations of one image batch (leading axis B) and
`INPUT` to the images themselves (B, H, W, 3) as rendered by the
parameterization, before any transform.  Objectives are *maximized*; combine
them with `+`, `-`, unary `-`, and scalar `*` / `/`:

    obj = channel("features.14", 7) + 100 * diversity("features.14") - 1e-4 * total_variation()

An objective is a pytree whose leaves are its params: the engine vmaps one over
an array of unit indices (`channel(layer, units)`), and two objectives built
alike -- other units, weights or targets -- share one compiled program.  A
function of your own becomes an objective with `custom(fn, layers)`; define it
once (at module level) so that runs can share its program.

Defaults and definitions follow Lucid's `lucid/optvis/objectives.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from jaxvis.core.structure import Label

Array = jax.Array
Acts = Mapping[str, Array]
INPUT = "input"  # the rendered images, before transforms


@dataclass(frozen=True)
class Term:
    """`function(params, acts, **static)` with its static arguments, compared by value."""

    function: Callable[..., Array]
    static: tuple[tuple[str, Any], ...] = ()

    def __call__(self, params: Any, acts: Acts) -> Array:
        return self.function(params, acts, **dict(self.static))


def term(function: Callable[..., Array], /, **static: Any) -> Term:
    return Term(function, tuple(sorted(static.items())))


@dataclass(frozen=True)
class Sum:
    terms: tuple[Callable[[Any, Acts], Array], ...]

    def __call__(self, params: tuple, acts: Acts) -> Array:
        return sum(fn(p, acts) for fn, p in zip(self.terms, params))


@dataclass(frozen=True)
class Scaled:
    inner: Callable[[Any, Acts], Array]

    def __call__(self, params: tuple, acts: Acts) -> Array:
        weight, inner = params
        return weight * self.inner(inner, acts)


@dataclass(frozen=True)
class Objective:
    fn: Callable[[Any, Acts], Array]
    params: Any = ()
    layers: frozenset[str] = frozenset()
    name: str = "objective"

    def __call__(self, acts: Acts) -> Array:
        return self.fn(self.params, acts)

    @property
    def model_layers(self) -> frozenset[str]:
        """The layers the model must capture (everything but the input images)."""
        return self.layers - {INPUT}

    def __add__(self, other: Objective | float) -> Objective:
        other = as_objective(other)
        return Objective(Sum((self.fn, other.fn)), (self.params, other.params), self.layers | other.layers,
                         f"{self.name} + {other.name}")

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(Scaled(self.fn), (-1.0, self.params), self.layers, f"-({self.name})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-as_objective(other))

    def __rsub__(self, other: float) -> Objective:
        return as_objective(other) - self

    def __mul__(self, scale: float | Array) -> Objective:
        if isinstance(scale, Objective):
            raise TypeError("objectives combine linearly: multiply by a number, not by another objective")
        return Objective(Scaled(self.fn), (scale, self.params), self.layers, f"{_fmt(scale)} * {self.name}")

    __rmul__ = __mul__

    def __truediv__(self, scale: float | Array) -> Objective:
        return self * (1.0 / scale)

    def named(self, name: str) -> Objective:
        """The same objective under a shorter name (for progress bars and run records)."""
        return Objective(self.fn, self.params, self.layers, name)


jax.tree_util.register_pytree_node(
    Objective,
    lambda o: ((o.params,), (o.fn, o.layers, Label(o.name))),
    lambda aux, children: Objective(aux[0], children[0], aux[1], str(aux[2])),
)


def custom(fn: Callable[..., Array], layers: Sequence[str] | frozenset[str], name: str = "custom",
           params: Any = None) -> Objective:
    """An objective from your own `fn(acts) -> scalar` reading `layers` (use `INPUT` for the images).

    With `params` (e.g. the unit index of `optimize`'s objective function), `fn(params, acts)`:
    a function must get its numbers this way, not close over them, because the engine
    vmaps objectives over units (a closed-over unit index would escape that transformation).
    """
    return Objective(term(_call, function=fn, with_params=params is not None), params, frozenset(layers), name)


def _call(params: Any, acts: Acts, *, function: Callable[..., Array], with_params: bool) -> Array:
    return function(params, acts) if with_params else function(acts)


def as_objective(value: Objective | float) -> Objective:
    if isinstance(value, Objective):
        return value
    return Objective(term(_constant), value, frozenset(), _fmt(value))


def _constant(value: Any, acts: Acts) -> Array:
    return jnp.asarray(value, jnp.float32)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else "w"


def _index_name(index: Any) -> str:
    return str(index) if isinstance(index, int) else "*"


# --- units -----------------------------------------------------------------------------------------


def channel(layer: str, index: int | Array) -> Objective:
    """Mean activation of channel `index` over the batch and all positions (Lucid's `channel`)."""
    return Objective(term(_channel, layer=layer), index, frozenset({layer}), f"channel({layer}:{_index_name(index)})")


def _channel(index: Array, acts: Acts, *, layer: str) -> Array:
    return jnp.take(acts[layer], index, axis=-1).mean()


def neuron(layer: str, index: int | Array, position: tuple[int, ...] | None = None) -> Objective:
    """Activation of channel `index` at one spatial position / token (default: the center), as Lucid's `neuron`."""
    return Objective(term(_neuron, layer=layer, position=position), index, frozenset({layer}),
                     f"neuron({layer}:{_index_name(index)})")


def _neuron(index: Array, acts: Acts, *, layer: str, position: tuple[int, ...] | None) -> Array:
    x = acts[layer]
    if x.ndim == 2:  # (B, C): no positions
        return jnp.take(x, index, axis=-1).mean()
    where = position if position is not None else tuple(d // 2 for d in x.shape[1:-1])
    return jnp.take(x[(slice(None), *where)], index, axis=-1).mean()


def direction(layer: str, vector: Array) -> Objective:
    """Mean dot product of the activations with `vector` in channel space (Lucid's `direction`)."""
    return Objective(term(_direction, layer=layer), jnp.asarray(vector, jnp.float32), frozenset({layer}),
                     f"direction({layer})")


def _direction(vector: Array, acts: Acts, *, layer: str) -> Array:
    return jnp.mean(acts[layer] @ vector.astype(acts[layer].dtype))


def class_logit(index: int | Array, layer: str = "logits") -> Objective:
    return Objective(term(_channel, layer=layer), index, frozenset({layer}), f"logit({_index_name(index)})")


def class_log_probability(index: int | Array, layer: str = "logits") -> Objective:
    """Mean over the batch of log softmax at class `index`."""
    return Objective(term(_log_probability, layer=layer), index, frozenset({layer}),
                     f"log_prob({_index_name(index)})")


def _log_probability(index: Array, acts: Acts, *, layer: str) -> Array:
    return jnp.take(jax.nn.log_softmax(acts[layer], axis=-1), index, axis=-1).mean()


def class_log_probabilities(targets: Array, layer: str = "logits") -> Objective:
    """Mean of log p(targets[b] | image b): one target per image of the batch (−cross-entropy)."""
    return Objective(term(_log_probabilities, layer=layer), jnp.asarray(targets, jnp.int32), frozenset({layer}),
                     "log_prob(targets)")


def _log_probabilities(targets: Array, acts: Acts, *, layer: str) -> Array:
    log_probs = jax.nn.log_softmax(acts[layer], axis=-1)
    return jnp.take_along_axis(log_probs, targets[:, None], axis=-1).mean()


def deepdream(layer: str) -> Objective:
    """Mean squared activation of a layer (Mordvintsev et al. 2015; Lucid's `deepdream`)."""
    return Objective(term(_deepdream, layer=layer), (), frozenset({layer}), f"deepdream({layer})")


def _deepdream(params: Any, acts: Acts, *, layer: str) -> Array:
    return jnp.mean(jnp.square(acts[layer]))


def diversity(layer: str) -> Objective:
    """Negative mean pairwise cosine similarity of the batch's Gram matrices (Lucid's `diversity`).

    Higher is more diverse, so *add* it (Lucid's version returns the similarity
    and is subtracted: `channel - 1e2 * diversity` there is `channel + 1e2 * diversity` here).
    """
    return Objective(term(_diversity, layer=layer), (), frozenset({layer}), f"diversity({layer})")


def _diversity(params: Any, acts: Acts, *, layer: str) -> Array:
    x = acts[layer]
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat)
    grams = grams / jnp.maximum(jnp.linalg.norm(grams.reshape(x.shape[0], -1), axis=1), 1e-10)[:, None, None]
    similarity = jnp.einsum("icd,jcd->ij", grams, grams)
    return -(similarity.sum() - jnp.trace(similarity)) / x.shape[0]


# --- penalties on the image (subtract them) -----------------------------------------------------------


def l1(constant: float = 0.5) -> Objective:
    """Sum of |image - constant| (Lucid's `L1`; subtract it)."""
    return Objective(term(_l1), constant, frozenset({INPUT}), "l1")


def _l1(constant: Array, acts: Acts) -> Array:
    return jnp.abs(acts[INPUT] - constant).sum()


def l2(constant: float = 0.5) -> Objective:
    """Root of the sum of squares of image - constant (Lucid's `L2` with epsilon 1e-6; subtract it)."""
    return Objective(term(_l2), constant, frozenset({INPUT}), "l2")


def _l2(constant: Array, acts: Acts) -> Array:
    return jnp.sqrt(1e-6 + jnp.square(acts[INPUT] - constant).sum())


def total_variation() -> Objective:
    """Sum of absolute differences between neighbouring pixels (tf.image.total_variation; subtract it)."""
    return Objective(term(_total_variation), (), frozenset({INPUT}), "tv")


def _total_variation(params: Any, acts: Acts) -> Array:
    x = acts[INPUT]
    return jnp.abs(jnp.diff(x, axis=1)).sum() + jnp.abs(jnp.diff(x, axis=2)).sum()


def blur_penalty() -> Objective:
    """Half the squared distance to a 3x3-box-blurred copy held constant (Lucid's `blur_input_each_step`)."""
    return Objective(term(_blur), (), frozenset({INPUT}), "blur")


def _blur(params: Any, acts: Acts) -> Array:
    x = acts[INPUT]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    blurred = sum(padded[:, i : i + x.shape[1], j : j + x.shape[2]] for i in range(3) for j in range(3)) / 9.0
    return 0.5 * jnp.square(x - jax.lax.stop_gradient(blurred)).sum()


def batchnorm_statistics(inputs: Sequence[Any], first_multiplier: float = 10.0) -> Objective:
    """DeepInversion's feature-distribution prior R_feature (subtract it).

    Sum over BatchNorms of ||batch mean - running mean||_2 + ||batch variance - running
    variance||_2 at each BatchNorm's input (mean and biased variance over batch and
    positions), the first BatchNorm weighted by `first_multiplier` (NVlabs/DeepInversion
    `DeepInversionFeatureHook`, `first_bn_multiplier` 10).  `inputs`: the
    `jaxvis.models.statistics.batchnorm_inputs` of a model.
    """
    layers = tuple(entry.layer for entry in inputs)
    weights = jnp.asarray([first_multiplier] + [1.0] * (len(layers) - 1), jnp.float32)
    running = tuple((jnp.asarray(entry.mean), jnp.asarray(entry.var)) for entry in inputs)
    return Objective(term(_batchnorm_statistics, layers=layers), (weights, running), frozenset(layers),
                     "batchnorm_statistics")


def _batchnorm_statistics(params: tuple, acts: Acts, *, layers: tuple[str, ...]) -> Array:
    weights, running = params
    total = 0.0
    for k, (layer, (running_mean, running_var)) in enumerate(zip(layers, running)):
        x = acts[layer].reshape(-1, acts[layer].shape[-1])
        mean, var = x.mean(axis=0), x.var(axis=0)
        total = total + weights[k] * (jnp.linalg.norm(var - running_var) + jnp.linalg.norm(mean - running_mean))
    return total


# --- matching a reference (feature inversion, style transfer) ------------------------------------------


def gram(x: Array) -> Array:
    """Channel Gram matrix per image, normalized by the number of positions: (B, C, C)."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    return jnp.einsum("bpc,bpd->bcd", flat, flat) / flat.shape[1]


def feature_match(layer: str, target: Array) -> Objective:
    """-||acts - target||^2 / ||target||^2 (Mahendran & Vedaldi's normalized reconstruction loss)."""
    return Objective(term(_feature_match, layer=layer), jnp.asarray(target), frozenset({layer}),
                     f"feature_match({layer})")


def _feature_match(target: Array, acts: Acts, *, layer: str) -> Array:
    return -jnp.square(acts[layer] - target).sum() / jnp.maximum(jnp.square(target).sum(), 1e-12)


def gram_match(layer: str, target_gram: Array) -> Objective:
    """-mean squared difference between the batch's Gram matrices and a target Gram (Gatys et al.)."""
    return Objective(term(_gram_match, layer=layer), jnp.asarray(target_gram), frozenset({layer}),
                     f"gram_match({layer})")


def _gram_match(target_gram: Array, acts: Acts, *, layer: str) -> Array:
    return -jnp.square(gram(acts[layer]) - target_gram).mean()
