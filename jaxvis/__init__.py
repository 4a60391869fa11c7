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
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

__version__ = "0.1.0"

_WHERE = {  # public name -> the module that defines it
    "ARCHITECTURES": "jaxvis.models",
    "Architecture": "jaxvis.models",
    "FastPaths": "jaxvis.models.ops",
    "InvalidImageError": "jaxvis.core.errors",
    "JaxvisError": "jaxvis.core.errors",
    "Model": "jaxvis.models",
    "UnknownArchitectureError": "jaxvis.core.errors",
    "UnknownLayerError": "jaxvis.core.errors",
    "architecture": "jaxvis.models.load",
    "enable_compilation_cache": "jaxvis.core.compilation_cache",
    "load": "jaxvis.models.load",
    "OptimizationDiverged": "jaxvis.engine.optimize",
    "Result": "jaxvis.engine.optimize",
    "optimize": "jaxvis.engine.optimize",
    "visualize": "jaxvis.methods.feature_visualization",
    "dissect": "jaxvis.analysis.units.dissect",
    "survey": "jaxvis.analysis.units.survey",
}

__all__ = sorted(_WHERE)

MOVED = {  # module paths of the flat layout (until 0.1) -> where they live now; kept for one release
    **{f"jaxvis.{name}": f"jaxvis.core.{name}" for name in
       ("errors", "structure", "cache_dirs", "compilation_cache", "programs", "run_state", "checkpoints", "progress")},
    **{f"jaxvis.{name}": f"jaxvis.data.{name}" for name in ("io", "imagenet", "datasets", "segmentation")},
    **{f"jaxvis.{name}": f"jaxvis.models.{name}" for name in ("catalog", "load", "request")},
    **{f"jaxvis.{name}": f"jaxvis.pieces.{name}" for name in
       ("objectives", "param", "transforms", "optimizers", "tokens", "eps_ball", "edits")},
    **{f"jaxvis.{name}": f"jaxvis.engine.{name}" for name in ("plan", "optimize", "run_config", "stages", "sweeps")},
    "jaxvis.gallery": "jaxvis.app.gallery",
    "jaxvis.units.atlas": "jaxvis.app.atlas",
    "jaxvis.gan.paint": "jaxvis.app.ganpaint",
    "jaxvis.attacks.explain": "jaxvis.analysis.attribution",
    "jaxvis.units": "jaxvis.analysis.units",
    "jaxvis.gan": "jaxvis.analysis.gan",
    "jaxvis.attacks": "jaxvis.methods.attacks",
}


SHORT = {"jaxvis.distributed": "jaxvis.core.distributed"}  # public short module paths (no warning)


def moved_to(name: str) -> str | None:
    """Where an old module path lives now (`jaxvis.attacks.pgd` -> `jaxvis.methods.attacks.pgd`), else None."""
    if name in SHORT:
        return SHORT[name]
    if name in MOVED:
        return MOVED[name]
    parent, _, child = name.rpartition(".")
    return f"{MOVED[parent]}.{child}" if parent in MOVED else None


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of an old path give the module at its new path (the same object, so state and patches are
    shared) with a DeprecationWarning naming the new path."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if moved_to(name) else None

    def create_module(self, spec: Any) -> types.ModuleType:
        new = moved_to(spec.name)
        if spec.name in SHORT:
            return importlib.import_module(new)
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release", DeprecationWarning,
                      stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # imported already, at its new path


sys.meta_path.insert(0, _MovedModules())


def __getattr__(name: str) -> Any:
    if f"jaxvis.{name}" in SHORT:
        return importlib.import_module(f"jaxvis.{name}")
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
