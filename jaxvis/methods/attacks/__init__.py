"""Adversarial examples as pure, compiled functions over batches of images.

    from jaxvis.methods.attacks import pgd, fgsm, lbfgs, cw, apgd
    result = pgd(model, images, labels, eps=2 / 255, step_size=0.5 / 255, steps=10)
    result.images, result.success, result.norm, result.steps        # per image

Every attack takes float NHWC images in [0, 1] and their true labels (and, for
a targeted attack, `targets`: one class per image), runs the whole batch and
every step in one compiled program (another eps or step count reuses it), and
returns an `AttackResult`. An image that already fools the model stops changing.
`pgd_objective(model, images, objective)` moves any objective instead of the
class (a unit, a token, the DINOv2 model's saliency map): no classifier needed.
"""

from jaxvis.methods.attacks.apgd import apgd
from jaxvis.methods.attacks.common import NORMS, AttackResult
from jaxvis.methods.attacks.cw import cw
from jaxvis.methods.attacks.evaluate import Evaluation, evaluate
from jaxvis.methods.attacks.fgsm import fgsm
from jaxvis.methods.attacks.lbfgs import lbfgs
from jaxvis.methods.attacks.objective import ObjectiveAttackResult, pgd_objective
from jaxvis.methods.attacks.pgd import pgd

__all__ = ["NORMS", "AttackResult", "Evaluation", "apgd", "cw", "evaluate", "fgsm", "lbfgs", "pgd", "pgd_objective",
           "ObjectiveAttackResult"]
