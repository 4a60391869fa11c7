"""Plain class-logit maximization with Lucid's defaults: the baseline Plug-In Inversion is measured against.

Lucid's `render_vis(model, "logits:<class>")` (lucid/optvis/render.py): a decorrelated
Fourier image (sd 0.01, sigmoid), its `standard_transforms`, Adam lr 0.05, 512 steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import optax

from jaxvis.imagenet import class_indices
from jaxvis.models.model import Model, check_image_shape
from jaxvis.objectives import class_logit
from jaxvis.optimize import Result, optimize
from jaxvis.param import fourier
from jaxvis.transforms import lucid_standard

LEARNING_RATE = 0.05  # render_vis: tf.train.AdamOptimizer(0.05)
STEPS = 512  # render_vis thresholds=(512,)


def logit_inversion(
    model: Model,
    classes: Sequence[int | str],
    *,
    size: int | None = None,
    steps: int = STEPS,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    progress: bool = True,
) -> Result:
    """Maximize each class's logit; `result.images` is (K, 1, S, S, 3)."""
    targets = class_indices(classes, model.arch.num_classes)
    final = size or model.input_size
    check_image_shape((1, final, final, 3), "float32", model.arch)
    return optimize(
        model,
        class_logit,
        units=targets,
        param=fourier(final),
        transform=lucid_standard(model.input_size if model.arch.fixed_size else None),
        optimizer=optax.adam(learning_rate),
        steps=steps,
        seed=seed,
        progress=progress,
    )
