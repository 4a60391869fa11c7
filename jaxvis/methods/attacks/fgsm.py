"""The fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015, Eq. 3):

    x_adv = clip_[0,1](x + eps · sign(∇_x J(θ, x, y)))

one step of L-infinity PGD with step size eps from the clean image, so it runs
PGD's compiled program. Targeted: the step descends the loss of the target
class instead. Default eps 8/255, torchattacks 3.5.1's `FGSM`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxvis.engine.run_config import RunConfig
from jaxvis.methods.attacks.common import AttackResult
from jaxvis.methods.attacks.pgd import pgd
from jaxvis.models.model import Model

EPS = 8 / 255


def fgsm(model: Model, images: Any, labels: Any, *, targets: Any = None, eps: float | Sequence[float] = EPS,
         early_stop: bool = True, config: RunConfig | None = None) -> AttackResult | list[AttackResult]:
    """FGSM adversarial examples for a batch; an image the model already gets wrong is left as it is
    (`early_stop=False` perturbs it too, as torchattacks does). eps as a list: one result per value, all
    in one program."""
    return pgd(model, images, labels, targets=targets, norm="linf", eps=eps, step_size=eps, steps=1,
               random_start=False, early_stop=early_stop, config=config)


fgsm.eps_sweep = True  # type: ignore[attr-defined]
