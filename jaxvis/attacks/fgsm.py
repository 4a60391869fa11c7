"""The fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
Examples", ICLR 2015, Eq. 3):

    x_adv = clip_[0,1](x + eps · sign(∇_x J(θ, x, y)))

one step of L-infinity PGD with step size eps from the clean image, so it runs
PGD's compiled program. Targeted: the step descends the loss of the target
class instead. Default eps 8/255, torchattacks 3.5.1's `FGSM`.
"""

from __future__ import annotations

from typing import Any

from jaxvis.attacks.common import AttackResult
from jaxvis.attacks.pgd import pgd
from jaxvis.models.model import Model

EPS = 8 / 255


def fgsm(model: Model, images: Any, labels: Any, *, targets: Any = None, eps: float = EPS,
         early_stop: bool = True) -> AttackResult:
    """FGSM adversarial examples for a batch; an image the model already gets wrong is left as it is
    (`early_stop=False` perturbs it too, as torchattacks does)."""
    return pgd(model, images, labels, targets=targets, norm="linf", eps=eps, step_size=eps, steps=1,
               random_start=False, early_stop=early_stop)
