"""jaxvis: understand vision networks by optimizing their input, in JAX.

    import jaxvis
    model = jaxvis.load("mobilenet_v2")            # real ImageNet weights, offline first
    logits = model(images)                         # float32 NHWC in [0, 1]
    acts = model(images, capture=["features.14"])  # named activations
    images = jaxvis.visualize(model, "features.14:0-15")   # feature visualization, Lucid's defaults

The names below load on first use, so `import jaxvis` (and the command line's
request check) does not import jax until something needs it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_WHERE = {  # public name -> the module that defines it
    "ARCHITECTURES": "jaxvis.models",
    "Architecture": "jaxvis.models",
    "FastPaths": "jaxvis.models.ops",
    "InvalidImageError": "jaxvis.errors",
    "JaxvisError": "jaxvis.errors",
    "Model": "jaxvis.models",
    "UnknownArchitectureError": "jaxvis.errors",
    "UnknownLayerError": "jaxvis.errors",
    "architecture": "jaxvis.load",
    "enable_compilation_cache": "jaxvis.compilation_cache",
    "load": "jaxvis.load",
    "OptimizationDiverged": "jaxvis.optimize",
    "Result": "jaxvis.optimize",
    "optimize": "jaxvis.optimize",
    "visualize": "jaxvis.methods.feature_visualization",
    "dissect": "jaxvis.units.dissect",
    "survey": "jaxvis.units.survey",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'jaxvis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


class _Package(types.ModuleType):
    """The import system binds each submodule to its name on the package when it first loads; where
    the public name is a function of that module (`jaxvis.load`, `jaxvis.optimize`), the function wins,
    whichever of the two is imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
