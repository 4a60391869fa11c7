"""An attack seen through the units of one layer (Bau et al., "Understanding the role of individual units
in a deep neural network", PNAS 2020, Sec. "Adversarial attacks"): which units the perturbation turned on
and off, and which of them carry the switch from the true class to the adversarial one.

    changes = unit_changes(model, clean, adversarial, "features.14", labels, adversarial_classes)
    changes.rose[0]           # image 0's units whose activation rose most, most first
    changes.pushed[0]         # its units whose contribution to the adversarial class rose most

Per unit and image:
- its activation averaged over positions (tokens for a transformer), on the clean and the adversarial
  image, and its map (activation per position) on both, to show where it changed;
- its contribution to a class logit, the sum over positions of activation × ∂logit/∂activation
  (gradient × activation, first order; exact for a layer the logits are linear in, such as the one before
  global pooling and the classifier);
- how much of the attack it carries, by intervention (the paper's method: change a unit, watch the
  output): the adversarial margin, logit(adversarial class) − logit(true class) on the adversarial
  image, less that margin once the unit's whole map is put back to its clean value. Exact, not first
  order; the layer's restored maps are built from the captured clean and adversarial maps, so the forward
  up to the layer is dead code there and only the rest of the network runs once per unit.

    changes.carried[0]        # image 0's units whose restoration undoes most of the attack
    restored_margin(model, clean, adversarial, layer, labels, adversarial_classes, changes.carried[:, :8])
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import UnknownLayerError
from jaxvis.core.programs import Program
from jaxvis.core.structure import piece
from jaxvis.models.model import OUTPUT, Model, apply

Array = jax.Array

RANKINGS = ("carried", "rose", "fell", "pushed")  # the ways `UnitChanges` orders units, most first


@dataclass(frozen=True)
class UnitChanges:
    """For N images and the C units of `layer`: activations and contributions, clean and adversarial."""

    layer: str
    clean: np.ndarray  # (N, C) mean activation on the clean images
    adversarial: np.ndarray  # (N, C) on the adversarial images
    true_contribution: np.ndarray  # (N, C, 2) to the true class's logit: clean, adversarial
    adversarial_contribution: np.ndarray  # (N, C, 2) to the adversarial class's logit: clean, adversarial
    restored: np.ndarray  # (N, C) adversarial margin removed by restoring the unit's clean map
    margin: np.ndarray  # (N,) adversarial margin with nothing restored
    clean_maps: np.ndarray  # (N, *positions, C) the layer's activations on the clean images
    adversarial_maps: np.ndarray  # (N, *positions, C) and on the adversarial ones
    top: int = 8

    @property
    def change(self) -> np.ndarray:
        return self.adversarial - self.clean

    @property
    def rose(self) -> np.ndarray:
        """(N, top) units whose activation rose most."""
        return np.argsort(-self.change, axis=1, kind="stable")[:, : self.top]

    @property
    def fell(self) -> np.ndarray:
        """(N, top) units whose activation fell most."""
        return np.argsort(self.change, axis=1, kind="stable")[:, : self.top]

    @property
    def pushed(self) -> np.ndarray:
        """(N, top) units whose contribution to the adversarial class rose most."""
        gain = self.adversarial_contribution[..., 1] - self.adversarial_contribution[..., 0]
        return np.argsort(-gain, axis=1, kind="stable")[:, : self.top]

    @property
    def carried(self) -> np.ndarray:
        """(N, top) units whose restoration to their clean map removes most of the adversarial margin."""
        return np.argsort(-self.restored, axis=1, kind="stable")[:, : self.top]

    def ranked(self, by: str) -> np.ndarray:
        """(N, top) units by one of `RANKINGS`."""
        if by not in RANKINGS:
            raise ValueError(f"unknown ranking {by!r}; choose from {', '.join(RANKINGS)}")
        return getattr(self, by)


UNITS_PER_PASS = 64  # units restored side by side in one batched pass (bounds memory on wide layers)


def unit_changes(model: Model, clean: np.ndarray, adversarial: np.ndarray, layer: str, labels: np.ndarray,
                 adversarial_classes: np.ndarray, top: int = 8) -> UnitChanges:
    """How each unit of `layer` moved between `clean` and `adversarial` (float NHWC in [0, 1])."""
    _check_layer(model, layer)
    classes = _pairs(labels, adversarial_classes)
    mean_clean, contribution_clean, clean_maps = UNITS(At(layer), model, jnp.asarray(clean), classes)
    mean_adversarial, contribution_adversarial, adversarial_maps = UNITS(At(layer), model, jnp.asarray(adversarial),
                                                                          classes)
    both = np.stack([np.asarray(contribution_clean), np.asarray(contribution_adversarial)], axis=-1)  # (N, 2, C, 2)
    width = clean_maps.shape[-1]
    every_unit = jnp.broadcast_to(jnp.arange(width)[:, None], (len(clean), width, 1))
    margin, with_each_restored = RESTORED_MARGINS(At(layer, min(UNITS_PER_PASS, width)), model,
                                                  jnp.asarray(adversarial), adversarial_maps, clean_maps, classes,
                                                  every_unit)
    return UnitChanges(layer, np.asarray(mean_clean), np.asarray(mean_adversarial), both[:, 0], both[:, 1],
                       np.asarray(margin[:, None] - with_each_restored), np.asarray(margin),
                       np.asarray(clean_maps), np.asarray(adversarial_maps), top)


def restored_margin(model: Model, clean: np.ndarray, adversarial: np.ndarray, layer: str, labels: np.ndarray,
                    adversarial_classes: np.ndarray, units: np.ndarray) -> np.ndarray:
    """(N,) the adversarial margin on each adversarial image once the units `units[n]` (N, K) of `layer` are
    all put back to their clean maps together (a negative margin: the true class wins again)."""
    _check_layer(model, layer)
    units = np.asarray(units)
    if units.ndim != 2 or len(units) != len(clean):
        raise ValueError(f"units is (N, K) with N = {len(clean)} images; got shape {units.shape}")
    classes = _pairs(labels, adversarial_classes)
    clean_maps, adversarial_maps = (apply(model, jnp.asarray(images), capture=(layer,))[layer]
                                    for images in (clean, adversarial))
    width = clean_maps.shape[-1]
    if units.size and (units.min() < 0 or units.max() >= width):
        raise ValueError(f"units must lie in 0-{width - 1}: {layer} has {width} units")
    _, margins = RESTORED_MARGINS(At(layer), model, jnp.asarray(adversarial), adversarial_maps, clean_maps, classes,
                                  jnp.asarray(units)[:, None, :])
    return np.asarray(margins[:, 0])


def _check_layer(model: Model, layer: str) -> None:
    if layer not in model.layers or layer == OUTPUT:
        raise UnknownLayerError([layer], model.name, [name for name in model.layers if name != OUTPUT])


def _pairs(labels: np.ndarray, adversarial_classes: np.ndarray) -> Array:
    """(N, 2): the true class and the adversarial class of each image."""
    return jnp.stack([jnp.asarray(labels), jnp.asarray(adversarial_classes)], axis=1)


@piece
class At:
    """The static part of the programs below: the layer, and how many unit sets one pass of `lax.map` takes."""

    layer: str
    per_pass: int = 1


def restored_margins(at: At, model: Model, adversarial: Array, adversarial_maps: Array, clean_maps: Array,
                     classes: Array, unit_sets: Array) -> tuple[Array, Array]:
    """The adversarial margin per image (N,), and per image and unit set (N, S) with the sets' units
    (`unit_sets` (N, S, K)) restored to `clean_maps`."""
    layer, per_pass = at.layer, at.per_pass

    def one(image: Array, adversarial_map: Array, clean_map: Array, pair: Array, sets: Array
            ) -> tuple[Array, Array]:
        def margin(edit: dict | None) -> Array:
            scores = model(image[None], edit=edit)[0]
            return scores[pair[1]] - scores[pair[0]]

        def restoring(units: Array) -> Array:
            chosen = jax.nn.one_hot(units, clean_map.shape[-1], dtype=clean_map.dtype).max(axis=0)
            restored = adversarial_map * (1 - chosen) + clean_map * chosen  # independent of the layer's input
            return margin({layer: lambda _: restored[None]})

        return margin(None), jax.lax.map(restoring, sets, batch_size=per_pass)

    return jax.vmap(one)(adversarial, adversarial_maps, clean_maps, classes, unit_sets)


def units_of(at: At, model: Model, images: Array, classes: Array) -> tuple[Array, Array, Array]:
    """Per image: each unit's mean activation (N, C), its contribution to each of `classes` (N, K, C), and
    the layer's activations (N, *positions, C)."""
    layer = at.layer

    def one(image: Array, picked: Array) -> tuple[Array, Array]:
        def chosen_logits(offset: Array) -> tuple[Array, Array]:
            out = model(image[None], capture=[layer, OUTPUT], edit={layer: lambda a: a + offset})
            return out[OUTPUT][0, picked], out[layer][0]

        shape = jax.eval_shape(lambda: model(image[None], capture=layer)[layer]).shape
        grads, activation = jax.jacrev(chosen_logits, has_aux=True)(jnp.zeros(shape))
        grads = grads[:, 0]  # (K, *positions, C)
        positions = tuple(range(activation.ndim - 1))  # every axis but the channels
        contribution = (grads * activation).sum(axis=tuple(p + 1 for p in positions))
        return activation.mean(axis=positions), contribution, activation

    return jax.vmap(one)(images, classes)


RESTORED_MARGINS = Program(restored_margins, "restored margins")
UNITS = Program(units_of, "unit contributions")
