"""Errors jaxvis raises for bad input.  Each message says what was wrong and what to do.

The weight-file and state_dict errors live in `converters.errors` (converters
imports nothing from jaxvis) and are re-exported here so users catch one family.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from converters.errors import (  # noqa: F401  (re-exported)
    ChecksumError,
    ConversionError,
    StateDictMismatchError,
    UnsafeWeightFileError,
    WeightFileError,
    WeightsNotFoundError,
    nearest,
)


class JaxvisError(Exception):
    """Base class of the errors that are about jaxvis's own inputs."""


class UnknownArchitectureError(JaxvisError, ValueError):
    def __init__(self, name: str, valid: Sequence[str]):
        hint = nearest(name, valid)
        near = f" Did you mean {', '.join(hint)}?" if hint else ""
        super().__init__(
            f"unknown architecture {name!r}.{near} Valid architectures: {', '.join(valid)}."
        )


class UnknownLayerError(JaxvisError, ValueError):
    def __init__(self, names: Iterable[str], model_name: str, valid: Sequence[str]):
        names = list(names)
        parts = []
        for name in names:
            hint = nearest(name, valid, n=5)
            parts.append(f"{name!r} (nearest: {', '.join(hint)})" if hint else repr(name))
        super().__init__(
            f"unknown layer{'s' if len(names) > 1 else ''} for {model_name}: {'; '.join(parts)}. "
            f"`model.layers` (or `jaxvis layers {model_name}`) lists all {len(valid)} names."
        )


class InvalidImageError(JaxvisError, ValueError):
    """Images must be float NHWC with 3 channels, at least the model's minimum size."""


class InvalidLatentError(JaxvisError, ValueError):
    """A generator's latents must be float (N, latent_size)."""


class UnitRangeError(JaxvisError, ValueError):
    """Units that a layer does not have, or a unit list that cannot be read."""


class MethodOptionError(JaxvisError, ValueError):
    """An option of a method (DeepDream, style transfer, ...) that cannot work as given."""
