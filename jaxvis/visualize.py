"""Feature visualization in one line, with Lucid/Lucent's defaults.

    images = jaxvis.visualize(model, "features.14:0-15", size=128, steps=512, seed=0)   # (16, 128, 128, 3)

Defaults (Lucid `render_vis`, Lucent `render_vis`): Fourier parameterization in
decorrelated color space with sd 0.01 (Lucid's `param.image(128)`), the standard
transforms, Adam with learning rate 0.05, 512 steps; images smaller than the
model's input size are upsampled to it before the model (Lucent); the ReLU
gradient is redirected for the first 16 steps (Lucid, lucid#68).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jaxvis import objectives
from jaxvis.errors import JaxvisError, UnknownLayerError
from jaxvis.models.model import Architecture, Model, check_image_shape, layer_shapes
from jaxvis.optimize import Result, optimize
from jaxvis.optimizers import adam
from jaxvis.param import PARAMS
from jaxvis.transforms import Transform, lucid_standard

OBJECTIVES: dict[str, Callable] = {
    "channel": objectives.channel,
    "neuron": objectives.neuron,
    "logit": lambda layer, unit: objectives.class_logit(unit, layer),
    "log_prob": lambda layer, unit: objectives.class_log_probability(unit, layer),
    "deepdream": lambda layer, unit: objectives.deepdream(layer),
}


class UnitRangeError(JaxvisError, ValueError):
    pass


@dataclass(frozen=True)
class UnitSpec:
    layer: str
    units: np.ndarray
    channels: int


def parse_spec(arch: Architecture, spec: str, size: int | None = None) -> UnitSpec:
    """`"features.14:7"`, `"features.14:0-15"`, `"features.14:3,7,9"`, `"logits:207"` -> layer and unit indices."""
    layer, _, units_text = spec.partition(":")
    shapes = layer_shapes(arch, size or arch.input_size)
    if layer not in shapes:
        raise UnknownLayerError([layer], arch.name, list(shapes))
    channels = shapes[layer][-1]
    units = parse_units(units_text) if units_text else np.arange(0)
    bad = units[(units < 0) | (units >= channels)]
    if bad.size:
        raise UnitRangeError(
            f"unit {int(bad[0])} is out of range for {layer} of {arch.name}: it has {channels} "
            f"channels, so valid units are 0-{channels - 1}."
        )
    return UnitSpec(layer, units, channels)


def parse_units(text: str) -> np.ndarray:
    """`"7"`, `"0-15"`, `"3,7,9"`, `"0-3,8"` -> indices, in the order given."""
    units: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UnitRangeError(f"cannot read units {text!r}: use 7, 0-15 or 3,7,9")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise UnitRangeError(f"empty unit range {part.strip()!r}: write it low-high")
        units.extend(range(first, last + 1))
    return np.asarray(units, np.int32)


def check_request(arch: Architecture, spec: str, *, objective: str = "channel", param: str = "fourier",
                  size: int = 128, model_size: int | None = None) -> tuple[UnitSpec, int]:
    """Everything about a visualization that can be wrong, checked before any weights load or anything compiles.

    Returns the units and the size the model sees.
    """
    if objective not in OBJECTIVES:
        raise JaxvisError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if param not in PARAMS:
        raise JaxvisError(f"unknown parameterization {param!r}; choose one of {', '.join(PARAMS)}")
    if size < 8:
        raise JaxvisError(f"size {size} is too small to visualize anything; use at least 8 pixels")
    model_size = model_size or _model_size(arch, size)
    check_image_shape((1, model_size, model_size, 3), "float32", arch)
    unit_spec = parse_spec(arch, spec, model_size)
    if not unit_spec.units.size:
        if objective != "deepdream":
            raise UnitRangeError(f"say which units of {unit_spec.layer} to visualize, e.g. {unit_spec.layer}:0-15")
        unit_spec = UnitSpec(unit_spec.layer, np.zeros(1, np.int32), unit_spec.channels)
    return unit_spec, model_size


def run_visualization(
    model: Model,
    spec: str,
    *,
    objective: str = "channel",
    size: int = 128,
    steps: int = 512,
    seed: int = 0,
    param: str = "fourier",
    lr: float = 0.05,
    transform: Transform | None = None,
    batch: int = 1,
    ensemble: int = 1,
    diversity: float = 0.0,
    relu_override_steps: int = 16,
    model_size: int | None = None,
    **engine,
) -> tuple[UnitSpec, Result]:
    """Check the request, build the objective and run the engine; returns the units and the full `Result`."""
    unit_spec, model_size = check_request(model.arch, spec, objective=objective, param=param, size=size,
                                          model_size=model_size)
    make = OBJECTIVES[objective]

    def objective_for(unit):
        term = make(unit_spec.layer, unit)
        return term + diversity * objectives.diversity(unit_spec.layer) if diversity else term

    result = optimize(
        model,
        objective_for,
        units=jnp.asarray(unit_spec.units),
        param=PARAMS[param](size),
        transform=transform if transform is not None else lucid_standard(model_size if model_size != size else None),
        optimizer=adam(lr),
        steps=steps,
        batch=batch,
        ensemble=ensemble,
        seed=seed,
        relu_override_steps=relu_override_steps,
        **engine,
    )
    return unit_spec, result


def visualize(model: Model, spec: str, **options) -> np.ndarray:
    """Images maximizing each unit of `spec`: float32 (units, size, size, 3) in [0, 1] ((units, batch, ...) if batch > 1).

    Options are those of `run_visualization` (objective, size, steps, seed, param, lr,
    transform, batch, ensemble, diversity, relu_override_steps, model_size) and of
    `jaxvis.optimize.optimize` (checkpoint_dir, checkpoint_every, resume, progress ...).
    """
    _, result = run_visualization(model, spec, **options)
    images = result.images.astype(np.float32)
    return images[:, 0] if images.shape[1] == 1 else images


def _model_size(arch: Architecture, size: int) -> int:
    """The size the model sees: Lucent upsamples images smaller than the model's input size."""
    if arch.fixed_size or size < arch.input_size:
        return arch.input_size
    return size

