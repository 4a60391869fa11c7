"""Adversarial examples as pure, compiled functions over batches of images.

    from jaxvis.attacks import pgd, fgsm, lbfgs, cw, apgd
    result = pgd(model, images, labels, eps=2 / 255, step_size=0.5 / 255, steps=10)
    result.images, result.success, result.norm, result.steps        # per image

Every attack takes float NHWC images in [0, 1] and their true labels (and, for
a targeted attack, `targets`: one class per image), runs the whole batch and
every step in one compiled program (another eps or step count reuses it), and
returns an `AttackResult`. An image that already fools the model stops changing.
`pgd_objective(model, images, objective)` moves any objective instead of the
class (a unit, a token, the DINOv2 model's saliency map): no classifier needed.
"""

from jaxvis.attacks.apgd import apgd
from jaxvis.attacks.common import NORMS, AttackResult
from jaxvis.attacks.cw import cw
from jaxvis.attacks.evaluate import Evaluation, evaluate
from jaxvis.attacks.fgsm import fgsm
from jaxvis.attacks.lbfgs import lbfgs
from jaxvis.attacks.objective import ObjectiveAttackResult, pgd_objective
from jaxvis.attacks.pgd import pgd

__all__ = ["NORMS", "AttackResult", "Evaluation", "apgd", "cw", "evaluate", "fgsm", "lbfgs", "pgd", "pgd_objective",
           "ObjectiveAttackResult"]
