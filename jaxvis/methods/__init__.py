"""The published methods, each a recipe built only from the engine's pieces.

    from jaxvis.methods import invert, dream, reconstruct, transfer_style
    result = invert(model, ["goldfish", 207], method="pii")      # Plug-In Inversion
    result.images                                                # (classes, 1, S, S, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxvis.core.errors import JaxvisError, MethodOptionError, nearest
from jaxvis.engine.optimize import Result
from jaxvis.methods.deepdream import dream
from jaxvis.methods.deepinversion import deep_inversion
from jaxvis.methods.feature_inversion import reconstruct
from jaxvis.methods.logit import logit_inversion
from jaxvis.methods.pii import plug_in_inversion
from jaxvis.methods.style import style_losses, transfer_style
from jaxvis.models.model import Model

INVERSIONS: dict[str, Callable[..., Result]] = {
    "pii": plug_in_inversion,
    "deepinversion": deep_inversion,
    "logit": logit_inversion,
}


class UnknownMethodError(JaxvisError, ValueError):
    pass


def inversion_method(method: str) -> Callable[..., Result]:
    """The inversion function called `method`, or an error naming the valid ones."""
    if method not in INVERSIONS:
        hint = nearest(method, list(INVERSIONS))
        raise UnknownMethodError(
            f"unknown inversion method {method!r}." + (f" Did you mean {hint[0]}?" if hint else "")
            + f" Choose one of {', '.join(INVERSIONS)}."
        )
    return INVERSIONS[method]


def invert(model: Model, classes: Sequence[int | str], method: str = "pii", **options) -> Result:
    """Class images of `model` by `method` (pii, deepinversion, logit); options go to that method.

    Every method takes size, steps, seed, progress, config (`jaxvis.engine.run_config.RunConfig`: checkpoints, so
    that an interrupted call continues) and on_stage; steps means per stage for pii, the total (split 2:1
    over its two resolutions) for deepinversion, and the total for logit.
    """
    run = inversion_method(method)
    if not len(classes):
        raise MethodOptionError("name at least one class to invert, e.g. classes=[1, 'golden retriever']")
    return run(model, classes, **options)


__all__ = [
    "INVERSIONS",
    "deep_inversion",
    "dream",
    "inversion_method",
    "invert",
    "logit_inversion",
    "plug_in_inversion",
    "reconstruct",
    "style_losses",
    "transfer_style",
]
