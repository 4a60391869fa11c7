"""An attack seen through the units of one layer (Bau et al., "Understanding the role of individual units
in a deep neural network", PNAS 2020, Sec. "Adversarial attacks"): which units the perturbation turned on
and off, and which of them carry the switch from the true class to the adversarial one.

    changes = unit_changes(model, clean, adversarial, "features.14", labels, adversarial_classes)
    changes.rose[0]           # image 0's units whose activation rose most, most first
    changes.pushed[0]         # its units whose contribution to the adversarial class rose most

Per unit and image: its activation averaged over positions (tokens for a transformer), on the clean and
the adversarial image; and its contribution to a class logit, the sum over positions of activation ×
∂logit/∂activation (gradient × activation, first order; exact for a layer the logits are linear in,
such as the one before global pooling and the classifier).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.errors import UnknownLayerError
from jaxvis.models.model import OUTPUT, Model

Array = jax.Array


@dataclass(frozen=True)
class UnitChanges:
    """For N images and the C units of `layer`: activations and contributions, clean and adversarial."""

    layer: str
    clean: np.ndarray  # (N, C) mean activation on the clean images
    adversarial: np.ndarray  # (N, C) on the adversarial images
    true_contribution: np.ndarray  # (N, C, 2) to the true class's logit: clean, adversarial
    adversarial_contribution: np.ndarray  # (N, C, 2) to the adversarial class's logit: clean, adversarial
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


def unit_changes(model: Model, clean: np.ndarray, adversarial: np.ndarray, layer: str, labels: np.ndarray,
                 adversarial_classes: np.ndarray, top: int = 8) -> UnitChanges:
    """How each unit of `layer` moved between `clean` and `adversarial` (float NHWC in [0, 1])."""
    if layer not in model.layers or layer == OUTPUT:
        raise UnknownLayerError([layer], model.name, [name for name in model.layers if name != OUTPUT])
    classes = jnp.stack([jnp.asarray(labels), jnp.asarray(adversarial_classes)], axis=1)
    mean_clean, contribution_clean = _units(model, layer, jnp.asarray(clean), classes)
    mean_adversarial, contribution_adversarial = _units(model, layer, jnp.asarray(adversarial), classes)
    both = np.stack([np.asarray(contribution_clean), np.asarray(contribution_adversarial)], axis=-1)  # (N, 2, C, 2)
    return UnitChanges(layer, np.asarray(mean_clean), np.asarray(mean_adversarial), both[:, 0], both[:, 1], top)


@functools.partial(jax.jit, static_argnames=("layer",))
def _units(model: Model, layer: str, images: Array, classes: Array) -> tuple[Array, Array]:
    """Per image: each unit's mean activation (N, C) and its contribution to each of `classes` (N, K, C)."""

    def one(image: Array, picked: Array) -> tuple[Array, Array]:
        def chosen_logits(offset: Array) -> tuple[Array, Array]:
            out = model(image[None], capture=[layer, OUTPUT], edit={layer: lambda a: a + offset})
            return out[OUTPUT][0, picked], out[layer][0]

        shape = jax.eval_shape(lambda: model(image[None], capture=layer)[layer]).shape
        grads, activation = jax.jacrev(chosen_logits, has_aux=True)(jnp.zeros(shape))
        grads = grads[:, 0]  # (K, *positions, C)
        positions = tuple(range(activation.ndim - 1))  # every axis but the channels
        return activation.mean(axis=positions), (grads * activation).sum(axis=tuple(p + 1 for p in positions))

    return jax.vmap(one)(images, classes)
