"""jaxvis: understand vision networks by optimizing their input, in JAX.

    import jaxvis
    model = jaxvis.load("mobilenet_v2")            # real ImageNet weights, offline first
    logits = model(images)                         # float32 NHWC in [0, 1]
    acts = model(images, capture=["features.14"])  # named activations
    images = jaxvis.visualize(model, "features.14:0-15")   # feature visualization, Lucid's defaults
"""

from jaxvis.compilation_cache import enable_compilation_cache
from jaxvis.errors import InvalidImageError, JaxvisError, UnknownArchitectureError, UnknownLayerError
from jaxvis.load import architecture, load
from jaxvis.models import ARCHITECTURES, Architecture, Model
from jaxvis.models.ops import FastPaths
from jaxvis.optimize import OptimizationDiverged, Result, optimize
from jaxvis.visualize import visualize

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "FastPaths",
    "InvalidImageError",
    "JaxvisError",
    "Model",
    "UnknownArchitectureError",
    "UnknownLayerError",
    "architecture",
    "enable_compilation_cache",
    "load",
    "OptimizationDiverged",
    "Result",
    "optimize",
    "visualize",
]
