"""A visualization request checked whole -- layer, every unit, sizes, names -- without importing jax.

The command line checks against the catalog's card (`jaxvis.models.catalog`) before
jax or any weights load, so a bad request fails in a fraction of a second; the
library checks against the card of the model it was given. Both run this code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxvis.core.errors import InvalidImageError, JaxvisError, UnitRangeError, UnknownLayerError

# The names `jaxvis.methods.feature_visualization.OBJECTIVES` and `jaxvis.pieces.param.PARAMS` implement
# (tests/test_request.py checks that they agree).
OBJECTIVE_NAMES = ("channel", "neuron", "logit", "log_prob", "deepdream")
PARAM_NAMES = ("fourier", "pixel", "maco")
MIN_IMAGE_SIZE = 8  # smaller images hold too few pixels to show anything


@dataclass(frozen=True)
class UnitSpec:
    layer: str
    units: np.ndarray
    channels: int
    token: str | tuple[int, int] | None = None  # transformer layers: "cls", "patches" or a patch (row, column)


def parse_token(text: str) -> str | tuple[int, int]:
    """The part after `@` of a unit spec: `cls`, `patches` or `ROW,COLUMN` (a patch of the token grid)."""
    if text in ("cls", "patches"):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not match:
        raise UnitRangeError(f"cannot read the token {text!r} after @: use @cls, @patches or @ROW,COLUMN "
                             "(a patch of the token grid, e.g. @3,5)")
    return int(match.group(1)), int(match.group(2))


def parse_units(text: str, channels: int, where: str = "") -> np.ndarray:
    """`"7"`, `"0-15"`, `"3,7,9"`, `"0-3,8"` -> indices, in the order given, each checked against the layer's
    `channels` before any range is expanded (`0-99999999999` is refused at once, not built); `where` names the
    layer in the error (`for features.14 of mobilenet_v2`)."""
    units: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part, re.ASCII)
        if not match:
            raise UnitRangeError(f"cannot read units {text!r}: use 7, 0-15 or 3,7,9")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise UnitRangeError(f"empty unit range {part.strip()!r}: write it low-high")
        if last >= channels:
            place = f" {where}" if where else ""
            raise UnitRangeError(f"unit {max(first, channels)} is out of range{place}: it has {channels} channels, "
                                 f"so valid units are 0-{channels - 1}.")
        units.extend(range(first, last + 1))
    return np.asarray(units, np.int32)


def parse_spec(card: Any, spec: str) -> UnitSpec:
    """`"features.14:7"`, `"features.14:0-15"`, `"features.14:3,7,9"`, `"logits:207"` -> layer and unit indices.

    On transformer layers a token may follow: `"backbone.encoder.layer.6:0-7@cls"` (the CLS token),
    `"...@patches"` (averaged over the patch tokens) or `"...@3,5"` (the patch at grid row 3, column 5);
    without one, a channel is averaged over every token (CLS included), as over a conv map's positions.
    """
    spec, _, token_text = spec.partition("@")
    token = parse_token(token_text) if token_text else None
    layer, _, units_text = spec.partition(":")
    if layer not in card.layers:
        raise UnknownLayerError([layer], card.name, list(card.layers))
    channels = card.layers[layer]
    units = parse_units(units_text, channels, f"for {layer} of {card.name}") if units_text else np.zeros(0, np.int32)
    return UnitSpec(layer, units, channels, token)


def model_input_size(card: Any, size: int) -> int:
    """The size the model sees: Lucent upsamples images smaller than the model's input size."""
    if card.fixed_size or size < card.input_size:
        return card.input_size
    return size


def check_image_size(card: Any, height: int, width: int) -> None:
    """`InvalidImageError` unless the network (a `Card` or an `Architecture`) accepts height x width."""
    if card.fixed_size and (height, width) != (card.input_size, card.input_size):
        raise InvalidImageError(
            f"{card.name} takes exactly {card.input_size}x{card.input_size} images (its token count is fixed); "
            f"got {height}x{width}. Resize first, e.g. jax.image.resize(images, "
            f"(n, {card.input_size}, {card.input_size}, 3), 'bilinear')."
        )
    if min(height, width) < card.min_size:
        raise InvalidImageError(
            f"{card.name} needs images of at least {card.min_size}x{card.min_size}; got {height}x{width}."
        )


def check_request(card: Any, spec: str, *, objective: str = "channel", param: str = "fourier",
                  size: int = 128, model_size: int | None = None) -> tuple[UnitSpec, int]:
    """Everything about a visualization that can be wrong, checked before any weights load or anything compiles.

    card: a `jaxvis.models.catalog.Card`. Returns the units and the size the model sees.
    """
    if card.latent_size:
        raise JaxvisError(f"{card.name} is a generator: its input is a latent vector, not an image to optimize; "
                          "study its units with jaxvis gan dissect | edit, or jaxvis ganpaint")
    if objective not in OBJECTIVE_NAMES:
        raise JaxvisError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVE_NAMES)}")
    if param not in PARAM_NAMES:
        raise JaxvisError(f"unknown parameterization {param!r}; choose one of {', '.join(PARAM_NAMES)}")
    if size < MIN_IMAGE_SIZE:
        raise JaxvisError(f"size {size} is too small to visualize anything; use at least {MIN_IMAGE_SIZE} pixels")
    seen = model_size or model_input_size(card, size)
    check_image_size(card, seen, seen)
    unit_spec = parse_spec(card, spec)
    if unit_spec.token is not None and objective != "channel":
        raise JaxvisError(f"a token (@...) selects which tokens a channel is read from; it applies to the channel "
                          f"objective, not {objective!r}")
    if not unit_spec.units.size:
        if objective != "deepdream":
            raise UnitRangeError(f"say which units of {unit_spec.layer} to visualize, e.g. {unit_spec.layer}:0-15")
        unit_spec = UnitSpec(unit_spec.layer, np.zeros(1, np.int32), unit_spec.channels, unit_spec.token)
    return unit_spec, seen
