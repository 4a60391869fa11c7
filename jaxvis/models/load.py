"""`jaxvis.load`: an architecture name plus weights -> a `Model`.

Pretrained weights are found offline first (see `converters.resolve`),
converted once, and cached as a flat safetensors file with a checksum, keyed by
the source file's sha256 (`jaxvis.models.converted`), so a second load reads the
cache in a fraction of a second and needs no torch.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import jax
import numpy as np

import converters
from jaxvis.core.cache_dirs import CACHE_ENV, cache_dir  # noqa: F401  (re-exported)
from jaxvis.core.checkpoints import orbax_checkpointer
from jaxvis.core.errors import UnknownArchitectureError
from jaxvis.models import ARCHITECTURES
from jaxvis.models.converted import read_converted, write_converted
from jaxvis.models.model import Architecture, Model, random_variables, variable_shapes
from jaxvis.models.ops import FastPaths

PRETRAINED = "pretrained"
Weights = Union[str, os.PathLike, Mapping[str, Any], None]


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(name, sorted(ARCHITECTURES)) from None


def load(
    name: str,
    weights: Weights = PRETRAINED,
    *,
    fast: bool | FastPaths = True,
    cache: bool = True,
    download: bool | None = None,
    seed: int = 0,
) -> Model:
    """Build `name` with `weights`.

    weights: "pretrained" (default; found offline first, downloaded only where
        internet exists), a path to a `.pth` / `.safetensors` state_dict, a
        state_dict (torch tensors or arrays), or None for a random init (`seed`).
        A known file trained with another input normalization (the TF-ported
        EfficientNet-Lite0 wheel: inception-style mean 127, std 128) gets it;
        `model.arch.mean` / `.std` say which one a model uses.
    fast: the numerically equivalent fast paths (BatchNorm folding, 1x1 convs as
        matmuls, and on CPU depthwise convs as shifted products); False computes
        every layer like torch does.
    cache: keep converted weights as an orbax checkpoint under $JAXVIS_CACHE
        (default ~/.cache/jaxvis) keyed by the file's sha256.
    """
    arch = architecture(name)
    if weights is None:
        variables = random_variables(arch, seed)
    elif isinstance(weights, Mapping):
        variables = convert(arch, converters.as_numpy_state_dict(weights))
    else:
        user_path = None if weights == PRETRAINED else weights
        resolved = converters.find_weights(arch.pretrained, user_path, download)
        variables = load_file(arch, resolved, cache)
        arch = with_normalization_of(arch, resolved.source)
    model = Model(arch, jax.device_put(variables))  # (jnp.asarray would compile a small program per shape)
    return model.with_fast_paths(fast)


def with_normalization_of(arch: Architecture, source: converters.WeightSource | None) -> Architecture:
    """`arch` normalizing its inputs the way the weights of `source` were trained, where that differs."""
    if source is None or source.normalization is None:
        return arch
    mean, std = source.normalization
    return dataclasses.replace(arch, mean=tuple(mean), std=tuple(std))


def convert(arch: Architecture, state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A numpy state_dict (in the arch's naming or a known foreign one) -> Flax variables."""
    naming = converters.detect_naming(state_dict.keys(), arch.namings)
    return converters.convert_state_dict(
        state_dict,
        variable_shapes(arch),
        target_name=f"{arch.name} ({arch.source} naming{', read as ' + naming.name if naming else ''})",
        ignore=arch.ignore_keys,
        rename=naming.rename if naming else None,
    )


def load_file(arch: Architecture, weights: converters.ResolvedWeights, cache: bool = True) -> dict[str, Any]:
    """Variables from a (checksum-verified) weight file, through the conversion cache."""
    location = cache_location(arch, weights.sha256)
    if cache and location.is_file():
        cached = _read_cached(location)
        if cached is not None:
            return cached
    print(f"jaxvis: converting {weights.path} for {arch.name}" + (f" (once; cached in {location})" if cache else ""),
          file=sys.stderr)
    variables = convert(arch, converters.read_state_dict(weights.path))
    if cache:
        _write_cached(location, variables)
    return variables


def cache_location(arch: Architecture, sha256: str) -> Path:
    """The file of the weights converted from the file with this sha256 (`jaxvis.models.converted`)."""
    return cache_dir() / arch.name / f"{sha256[:24]}.safetensors"


def _read_cached(location: Path) -> dict[str, Any] | None:
    try:
        return read_converted(location)
    except Exception as err:  # a damaged cache entry is rebuilt, not fatal
        print(f"jaxvis: ignoring unreadable cache {location} ({type(err).__name__}: {err}); converting again",
              file=sys.stderr)
        location.unlink(missing_ok=True)
        return None


def _write_cached(location: Path, variables: dict[str, Any]) -> None:
    """Keep the converted weights; a failure (read-only cache, full disk) is reported, not raised."""
    try:
        write_converted(location, variables)
        shutil.rmtree(location.with_suffix(""), ignore_errors=True)  # the orbax checkpoint of earlier versions
    except Exception as err:
        print(f"jaxvis: could not write converted weights to {location}: {err}", file=sys.stderr)


def save_checkpoint(location: Path, variables: dict[str, Any]) -> bool:
    """Write variables as an orbax checkpoint; a failure (read-only cache ...) is reported, not raised."""
    try:
        location.parent.mkdir(parents=True, exist_ok=True)
        with orbax_checkpointer() as checkpointer:
            checkpointer.save(location.resolve(), variables, force=True)
            checkpointer.wait_until_finished()
        return True
    except Exception as err:
        print(f"jaxvis: could not write converted weights to {location}: {err}", file=sys.stderr)
        return False
