"""Auto-PGD with the cross-entropy loss, APGD-CE (Croce & Hein, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", ICML 2020, Algorithm 1) -- AutoAttack's
first component -- in the L-infinity and L2 norms:

    x_0 = a random point on the eps-sphere (projected into [0, 1]),  η = 2·eps
    z_{k+1} = P(x_k + η · step(∇L(x_k)))
    x_{k+1} = P(x_k + α(z_{k+1} - x_k) + (1 - α)(x_k - x_{k-1}))        α = 0.75 (1 for the first step)

keeping the highest-loss point x_max. At each checkpoint (the first after
0.22·N steps, then ever shorter windows, down by 0.03·N to at least 0.06·N)
an image's step size halves and it restarts from x_max when either

    1. the loss rose in at most ρ = 0.75 of the steps since the last checkpoint, or
    2. the step size was not halved at the last checkpoint and x_max's loss has not risen since.

Defaults and arithmetic follow the authors' code as torchattacks 3.5.1's `APGD`
carries it (its checkpoints, its first comparison against a loss of 0, its
guards): eps 8/255 (L-infinity) or 0.5 (L2), 100 steps (AutoAttack's standard
budget; torchattacks defaults to 10), one restart. As there, a fooled image
returns the last adversarial point it reached; an image never fooled returns
x_max (torchattacks returns it unchanged). With `early_stop` (the default) an
image stops changing once it is fooled; `early_stop=False` is the reference.
Targeted: the loss is minus the target's cross-entropy.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.attacks.common import (AttackResult, adversarial_loss, best_of_restarts, check_attack_request,
                                   per_image_norm, result, select, succeeded)
from jaxvis.errors import MethodOptionError
from jaxvis.models.model import Model
from jaxvis.programs import Program
from jaxvis.structure import piece

Array = jax.Array
EPS = {"linf": 8 / 255, "l2": 0.5}
STEPS = 100
RHO = 0.75  # condition 1's fraction of loss increases
MOMENTUM = 0.75  # α
FIRST_CHECKPOINT, SHRINK, SHORTEST = 0.22, 0.03, 0.06  # of the step count
GUARD = 1e-12  # the reference's guard against dividing by a zero norm


@piece(data=("eps", "steps", "early_stop"))
class Settings:
    """One APGD run: eps, step count and early stopping are runtime values; the norm is structure."""

    eps: Any
    steps: Any
    early_stop: Any
    norm: str = "linf"


def _ball(point: Array, clean: Array, eps: Array, norm: str, guard: float = 0.0) -> Array:
    """Into the eps-ball around `clean` and [0, 1], in the reference's arithmetic (`guard` where it adds
    its 1e-12 to the clipped length too)."""
    if norm == "linf":
        return jnp.clip(jnp.minimum(jnp.maximum(point, clean - eps), clean + eps), 0.0, 1.0)
    delta = point - clean
    length = per_image_norm(delta, "l2")[:, None, None, None]
    return jnp.clip(clean + delta / (length + GUARD) * jnp.minimum(eps, length + guard), 0.0, 1.0)


def ascent(x: Array, grad: Array, step_size: Array, norm: str) -> Array:
    if norm == "linf":
        return x + step_size[:, None, None, None] * jnp.sign(grad)
    return x + step_size[:, None, None, None] * grad / (per_image_norm(grad, "l2")[:, None, None, None] + GUARD)


def momentum_step(x: Array, previous: Array, grad: Array, clean: Array, step_size: Array, alpha: Array,
                  eps: Array, norm: str) -> Array:
    """x_{k+1} from x_k, x_{k-1} and the gradient at x_k (Algorithm 1, lines 7-8)."""
    z = _ball(ascent(x, grad, step_size, norm), clean, eps, norm)
    return _ball(x + (z - x) * alpha + (x - previous) * (1.0 - alpha), clean, eps, norm, GUARD if norm == "l2" else 0.0)


def sphere_start(key: Array, clean: Array, eps: Array, norm: str) -> Array:
    """The reference's random start: a uniform (L-infinity) or Gaussian (L2) direction scaled onto the eps-sphere."""
    if norm == "linf":
        direction = 2.0 * jax.random.uniform(key, clean.shape) - 1.0
        length = per_image_norm(direction, "linf")
    else:
        direction = jax.random.normal(key, clean.shape)
        length = per_image_norm(direction, "l2") + GUARD
    return jnp.clip(clean + eps * direction / length[:, None, None, None], 0.0, 1.0)


def checkpoint_schedule(steps: Array) -> tuple[Array, Array, Array]:
    """The first window, how much each window shrinks, the shortest window (the reference's int() floors)."""
    part = lambda fraction: jnp.maximum(jnp.floor(fraction * steps).astype(jnp.int32), 1)  # noqa: E731
    return part(FIRST_CHECKPOINT), part(SHRINK), part(SHORTEST)


def checkpoint(s: dict, shrink: Array, shortest: Array) -> dict:
    """Algorithm 1's checkpoint: per image, halve the step size and return to the best point if the loss rose
    in at most ρ of the window's steps (1) or if the step was not halved last time and the best loss has not
    risen since (2); then start a window `shrink` steps shorter (at least `shortest`)."""
    oscillating = s["rises"] <= s["window"] * RHO
    stuck = ~s["halved_last"] & (s["best_loss_at_check"] >= s["best_loss"])
    halve = oscillating | stuck
    if_halved = lambda new, old: select(halve, new, old)  # noqa: E731
    return dict(s, step_size=jnp.where(halve, s["step_size"] / 2.0, s["step_size"]),
                x=if_halved(s["best"], s["x"]), grad=if_halved(s["best_grad"], s["grad"]),
                halved_last=halve, best_loss_at_check=s["best_loss"], rises=jnp.zeros_like(s["rises"]),
                since_check=jnp.int32(0), window=jnp.maximum(s["window"] - shrink, shortest))


def run(settings: Settings, model: Model, images: Array, labels: Array, targets: Array | None, start: Array
        ) -> tuple[Array, Array, Array]:
    """One APGD run from `start`: per image the adversarial (or highest-loss) image, steps moved, logits."""
    count, norm, eps = len(images), settings.norm, settings.eps

    def loss_and_grad(x: Array) -> tuple[Array, Array, Array]:
        def total(x: Array) -> tuple[Array, tuple[Array, Array]]:
            logits = model(x)
            per_image = adversarial_loss(logits, labels, targets)
            return per_image.sum(), (per_image, logits)

        grad, (per_image, logits) = jax.grad(total, has_aux=True)(x)
        return per_image, grad, logits

    loss, grad, logits = loss_and_grad(start)
    window, shrink, shortest = checkpoint_schedule(settings.steps)
    fooled = succeeded(logits, labels, targets)
    state = dict(
        x=start, previous=start, grad=grad, best=start, best_grad=grad, best_loss=loss, adversarial=start,
        fooled=fooled, best_logits=logits, adversarial_logits=logits, step_size=jnp.full(count, 2.0) * eps,
        last_loss=jnp.zeros(count), rises=jnp.zeros(count),
        since_check=jnp.int32(0), window=window, halved_last=jnp.ones(count, bool), best_loss_at_check=loss,
        used=jnp.zeros(count, jnp.int32))

    def body(i: Array, s: dict) -> dict:
        moving = ~(s["fooled"] & settings.early_stop)
        alpha = jnp.where(i > 0, MOMENTUM, 1.0)
        stepped = momentum_step(s["x"], s["previous"], s["grad"], images, s["step_size"], alpha, eps, norm)
        x = select(moving, stepped, s["x"])
        loss, grad, logits = loss_and_grad(x)
        now_fooled = succeeded(logits, labels, targets)
        higher = loss > s["best_loss"]
        s = dict(s, previous=select(moving, s["x"], s["previous"]), x=x, grad=grad, used=s["used"] + moving,
                 adversarial=select(now_fooled & moving, x, s["adversarial"]), fooled=s["fooled"] | now_fooled,
                 adversarial_logits=select(now_fooled & moving, logits, s["adversarial_logits"]),
                 best=select(higher, x, s["best"]), best_grad=select(higher, grad, s["best_grad"]),
                 best_logits=select(higher, logits, s["best_logits"]),
                 best_loss=jnp.where(higher, loss, s["best_loss"]),
                 rises=s["rises"] + (loss > s["last_loss"]), last_loss=loss, since_check=s["since_check"] + 1)
        at_checkpoint = s["since_check"] == s["window"]
        return jax.lax.cond(at_checkpoint, lambda s: checkpoint(s, shrink, shortest), lambda s: s, s)

    s = jax.lax.fori_loop(0, settings.steps, body, state)
    # The logits of the returned images were computed where they were found: no forward pass after the loop.
    final = select(s["fooled"], s["adversarial"], s["best"])
    return final, s["used"], select(s["fooled"], s["adversarial_logits"], s["best_logits"])


RUN = Program(run, "apgd")


def apgd(model: Model, images: Any, labels: Any, *, targets: Any = None, norm: str = "linf",
         eps: float | None = None, steps: int = STEPS, restarts: int = 1, early_stop: bool = True,
         seed: int = 0) -> AttackResult:
    """APGD-CE adversarial examples for a batch: untargeted, or towards `targets` (one class per image).

    images: float (N, H, W, 3) in [0, 1]; labels: (N,) true classes; eps defaults to `EPS[norm]`.
    Each restart starts from another random point of the eps-sphere; per image the best restart is kept.
    """
    eps = EPS[norm] if norm in EPS and eps is None else eps
    if restarts < 1:
        raise MethodOptionError(f"restarts must be at least 1, got {restarts}")
    images, labels, targets = check_attack_request(model, images, labels, targets, eps, norm, steps)
    settings = Settings(np.float32(eps), np.int32(steps), np.bool_(early_stop), norm)
    key = jax.random.key(seed)

    def one(restart: int) -> tuple[Array, Array, Array]:
        start = sphere_start(jax.random.fold_in(key, restart), images, settings.eps, norm)
        return RUN(settings, model, images, labels, targets, start)

    adversarial, used, logits = best_of_restarts(one, restarts, labels, targets)
    return result(images, adversarial, logits, labels, targets, used, norm)
