"""BatchNorm running statistics, paired with the named layer whose output each BatchNorm normalizes.

DeepInversion's prior compares the batch statistics of every BatchNorm *input*
with that BatchNorm's running mean and variance.  Every BatchNorm in the
converted families directly follows a convolution, so its input is that
convolution's output, which a `capture` provides (capturing a convolution
computes it unfolded, so the statistics are exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax.traverse_util import flatten_dict

from jaxvis.core.errors import JaxvisError
from jaxvis.models.model import Model


class NoBatchNormError(JaxvisError, ValueError):
    """The method needs BatchNorm running statistics and the network has none."""


@dataclass(frozen=True)
class BatchNormInput:
    batchnorm: str  # the BatchNorm's name
    layer: str  # the layer whose output is the BatchNorm's input
    mean: jax.Array  # running mean, (C,)
    var: jax.Array  # running variance, (C,)


def batchnorm_inputs(model: Model, purpose: str = "this method") -> list[BatchNormInput]:
    """Every BatchNorm of `model` in forward order, with its input layer and running statistics."""
    stats = flatten_dict(model.variables.get("batch_stats", {}))
    params = flatten_dict(model.variables.get("params", {}))
    names = {".".join(path[:-1]) for path in stats}
    if not names:
        raise NoBatchNormError(
            f"{purpose} needs BatchNorm running statistics, but {model.name} ({model.arch.family}) has no BatchNorm "
            "layers; use a BatchNorm network (mobilenet_v2, efficientnet_lite0, resnet50, ...) or another method "
            "(e.g. --method pii, which works with any classifier)."
        )
    layers = model.layers
    found = []
    for position, name in enumerate(layers):
        if name not in names:
            continue
        before = layers[position - 1] if position else ""
        if tuple(before.split(".")) + ("kernel",) not in params:
            raise NoBatchNormError(
                f"{purpose}: BatchNorm {name!r} of {model.name} does not directly follow a convolution "
                f"(the layer before it is {before!r}), so its input cannot be captured."
            )
        path = tuple(name.split("."))
        found.append(BatchNormInput(name, before, stats[path + ("mean",)], stats[path + ("var",)]))
    return found
