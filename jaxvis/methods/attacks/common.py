"""What every gradient attack shares: the checked request, the loss, the norms and the per-image result.

An attack takes float NHWC images in [0, 1] (the model normalizes them itself,
as every jaxvis model does) and integer labels; targeted attacks also take one
target class per image. Whatever differs between calls -- eps, step size, step
count, the random key -- is an argument of the compiled program, not part of
it, so another eps or step count runs the program already compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import InvalidImageError, MethodOptionError
from jaxvis.data.imagenet import require_classifier
from jaxvis.models.model import Model, check_image_shape
from jaxvis.pieces.eps_ball import NORMS, per_image_norm
from jaxvis.pieces.objectives import Objective, term

Array = jax.Array
LOGITS = "logits"  # the classifier's output layer, as the engine captures it


@dataclass(frozen=True)
class AttackResult:
    """Adversarial images and, per image, what the attack achieved."""

    images: np.ndarray  # (N, H, W, 3) float32 in [0, 1]
    success: np.ndarray  # (N,) bool: misclassified (untargeted) or classified as its target (targeted)
    norm: np.ndarray  # (N,) the perturbation's size in the attack's norm
    steps: np.ndarray  # (N,) gradient steps that changed the image (fewer than asked where it stopped early)
    labels: np.ndarray  # (N,) the true classes
    targets: np.ndarray | None  # (N,) the target classes of a targeted attack
    prediction: np.ndarray  # (N,) the model's class for each adversarial image
    norm_name: str = "linf"

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if self.success.size else 0.0


def check_attack_request(model: Model, images: Any, labels: Any, targets: Any, eps: float | None = None,
                         norm: str = "l2", steps: int = 1, step_size: float | None = None
                         ) -> tuple[Array, Array, Array | None]:
    """The images, labels and targets as arrays, or a clear error about what is wrong with them (eps None:
    an attack that minimizes the perturbation instead of bounding it)."""
    require_classifier(model.name, model.arch.num_classes, "a class attack")
    images = check_attack_budget(model, images, eps, norm, steps, step_size)
    labels = _classes(labels, len(images), model.arch.num_classes, "labels")
    if targets is None:
        return jnp.asarray(images, jnp.float32), jnp.asarray(labels), None
    targets = _classes(targets, len(images), model.arch.num_classes, "targets")
    same = np.flatnonzero(targets == labels)
    if same.size:
        raise MethodOptionError(f"image {int(same[0])}'s target is its true label {int(labels[same[0]])}: a targeted "
                                "attack needs another class (or leave targets out for an untargeted attack)")
    return jnp.asarray(images, jnp.float32), jnp.asarray(labels), jnp.asarray(targets)


def check_attack_budget(model: Model, images: Any, eps: float | None, norm: str, steps: int,
                        step_size: float | None) -> np.ndarray:
    """The images as an array once they, the norm, eps, the step count and the step size are valid."""
    if norm not in NORMS:
        raise MethodOptionError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    images = np.asarray(images)
    check_image_shape(images.shape, images.dtype, model.arch)
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise InvalidImageError(f"attacks take images in [0, 1]; these range over [{low:.3g}, {high:.3g}]. "
                                "Divide 8-bit images by 255 (the model normalizes them itself).")
    if eps is not None:
        check_eps(eps, norm, images.shape[1:])
    if steps < 1:
        raise MethodOptionError(f"steps must be at least 1, got {steps}")
    if step_size is not None and not step_size > 0:
        raise MethodOptionError(f"the step size must be positive, got {step_size}")
    return images


def eps_text(eps: float) -> str:
    """An eps as people write it: `2/255` for whole intensity levels, else the number (`0.5`)."""
    levels = eps * 255
    return f"{round(levels)}/255" if abs(levels - round(levels)) < 1e-6 and levels >= 1 else f"{eps:g}"


def check_eps(eps: float, norm: str, image_shape: tuple[int, ...]) -> None:
    """`MethodOptionError` unless eps is a budget the norm allows on images of `image_shape` (H, W, 3) in [0, 1]:
    at most 1 in L-inf, at most the distance from black to white in L2."""
    largest = 1.0 if norm == "linf" else float(np.sqrt(np.prod(image_shape)))
    if not 0.0 < eps <= largest:
        raise MethodOptionError(f"eps must be in (0, {largest:.4g}] for the {norm} norm on these images; got {eps}"
                                + (" (write 8/255 for 8 intensity levels)" if norm == "linf" and eps > 1 else ""))


def _classes(values: Any, count: int, num_classes: int, what: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(values))
    if values.shape != (count,):
        raise MethodOptionError(f"{what} must hold one class per image: {count} images, {what} of shape "
                                f"{values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise MethodOptionError(f"{what} must be class indices (integers), got dtype {values.dtype}")
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise MethodOptionError(f"{what} must be classes 0-{num_classes - 1}; got {int(bad[0])}")
    return values.astype(np.int32)


def cross_entropy(logits: Array, classes: Array) -> Array:
    """Per-image cross-entropy of `logits` (N, C) against `classes` (N,)."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), classes[:, None], axis=1)[:, 0]


def adversarial_loss(logits: Array, labels: Array, targets: Array | None) -> Array:
    """What the attack ascends, per image: the loss of the true class, or minus that of the target."""
    return -cross_entropy(logits, targets) if targets is not None else cross_entropy(logits, labels)


def margin(logits: Array, classes: Array) -> Array:
    """Per image: the logit of `classes` minus the largest other logit (positive while it is the top class)."""
    own = jnp.take_along_axis(logits, classes[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(classes, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return own - others.max(axis=-1)


def select(mask: Array, new: Array, old: Array) -> Array:
    """Per image (the leading axis): `new` where `mask`, else `old` -- how a finished image stops changing."""
    return jnp.where(mask.reshape(-1, *[1] * (new.ndim - 1)), new, old)


NO_BOUND = 1e10  # no successful c found yet (Carlini & Wagner's reference: 1e10, tested as < 1e9)


def search_const(const: Array, lower: Array, upper: Array, success: Array) -> tuple[Array, Array, Array]:
    """One step of the per-image search for the smallest c that succeeds (Carlini & Wagner's reference
    update): after a success c falls to the middle of its bracket; after a failure it rises to the middle,
    or ten-fold while no success bounds it from above."""
    upper = jnp.where(success, jnp.minimum(upper, const), upper)
    lower = jnp.where(success, lower, jnp.maximum(lower, const))
    const = jnp.where(upper < NO_BOUND / 10, (lower + upper) / 2.0, const * 10.0)
    return const, lower, upper


class Search(NamedTuple):
    """Per image, between rounds: c and its bracket, and what the rounds so far found (NumPy, leading axis N)."""

    const: Any
    lower: Any
    upper: Any
    best_distance: Any
    best: Any  # (N, 1, H, W, 3): the parameters of that smallest success (C&W: its w; L-BFGS: the image)
    best_logits: Any  # (N, classes): their logits (before any success: the start's)
    used: Any


def kept_logits(best_logits: Array, logits: Array, improved: Array, step: Array, best_distance: Array) -> Array:
    """The logits of the point a search keeps: the new ones where it improved, or, at a round's first step with
    nothing found yet, the start's (what the clean image returned then is classified as)."""
    take = improved | ((step == 0) & ~(best_distance < NO_BOUND / 10))
    return jnp.where(take, logits, best_logits)


def first_search(initial_const: float, starts: np.ndarray, classes: int) -> Search:
    """Before the first round: c at `initial_const`, unbracketed, nothing found (`starts`: each image's parameters
    to return if nothing is, (N, ...))."""
    count = len(starts)
    return Search(np.full(count, initial_const, np.float32), np.zeros(count, np.float32),
                  np.full(count, NO_BOUND, np.float32), np.full(count, NO_BOUND, np.float32), starts[:, None],
                  np.zeros((count, classes), np.float32), np.zeros(count, np.int32))


def next_search(round_result: Any) -> Search:
    """After a round (a `jaxvis.engine.optimize.Result` whose optimizer state carries `success`, the record and the
    `search` it was given): c moved by its success (`search_const`), the record taken from its last state."""
    state = round_result.opt_state
    given = state.search
    const, lower, upper = (np.asarray(v) for v in search_const(given.const, given.lower, given.upper,
                                                               state.success))
    return Search(const, lower, upper, state.best_distance, state.best, state.best_logits, state.used)


def adversarial_objective(label: Any, target: Any = None, early_stop: Any = True) -> tuple[Objective, Objective]:
    """One image's attack as the engine's pieces: what it ascends (its true class's cross-entropy, or minus its
    target's) and when it stops (positive once the image fools the model, where `early_stop`)."""
    targeted = target is not None
    numbers = (np.int32(label), np.int32(label if target is None else target))
    ascend = Objective(term(_adversarial_loss, targeted=targeted), numbers, frozenset({LOGITS}), "adversarial loss")
    stop = Objective(term(_fooled, targeted=targeted), (*numbers, np.bool_(early_stop)), frozenset({LOGITS}), "fooled")
    return ascend, stop


def with_logits(signal: Objective) -> Objective:
    """`signal`'s value(s) followed by the logits: one watched vector, so that an update keeps the logits of
    the points it keeps (an attack reports them without another forward pass)."""
    return Objective(term(_with_logits, inner=signal.fn), signal.params, signal.layers | {LOGITS},
                     f"{signal.name}, logits")


def _with_logits(params: Any, acts: Any, *, inner: Any) -> Array:
    value = jnp.atleast_1d(inner(params, acts)).astype(jnp.float32)
    return jnp.concatenate([value, acts[LOGITS].mean(axis=0).astype(jnp.float32)])


def logits_report() -> Objective:
    """An engine report of the classifier's logits (batch, classes): what an attack's last pass saw."""
    return Objective(term(_logits), (), frozenset({LOGITS}), "logits")


def _logits(_: Any, acts: Any) -> Array:
    return acts[LOGITS]


def _adversarial_loss(numbers: tuple[Array, Array], acts: Any, *, targeted: bool) -> Array:
    label, target = numbers
    logits = acts[LOGITS]
    count = logits.shape[0]
    return adversarial_loss(logits, jnp.full(count, label), jnp.full(count, target) if targeted else None).mean()


def _fooled(numbers: tuple[Array, Array, Array], acts: Any, *, targeted: bool) -> Array:
    label, target, early_stop = numbers
    logits = acts[LOGITS]
    count = logits.shape[0]
    fooled = succeeded(logits, jnp.full(count, label), jnp.full(count, target) if targeted else None)
    return fooled.mean() * early_stop


def succeeded(logits: Array, labels: Array, targets: Array | None) -> Array:
    """Per image: fooled (untargeted) or classified as its target. NumPy in, NumPy out (no compile)."""
    prediction = logits.argmax(axis=-1)
    return prediction == targets if targets is not None else prediction != labels


def better(logits: Array, best_logits: Array, labels: Array, targets: Array | None) -> Array:
    """Per image: does this restart beat the best so far (success first, then a higher loss)?"""
    won, had = succeeded(logits, labels, targets), succeeded(best_logits, labels, targets)
    higher = adversarial_loss(logits, labels, targets) > adversarial_loss(best_logits, labels, targets)
    return (won & ~had) | ((won == had) & higher)


def best_restart(images: np.ndarray, moved: np.ndarray, final: np.ndarray, labels: np.ndarray,
                 targets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image, the best of the restarts (leading axis): a successful one, else the one with the highest loss."""
    best = (images[0], moved[0], final[0])
    for restart in range(1, len(images)):
        new = (images[restart], moved[restart], final[restart])
        wins = np.asarray(better(jnp.asarray(new[2]), jnp.asarray(best[2]), labels, targets))
        best = tuple(np.asarray(select(wins, jnp.asarray(n), jnp.asarray(b))) for n, b in zip(new, best))
    return best


def budgets(eps: Any, step_size: Any) -> list[tuple[Any, Any]]:
    """The (eps, step size) of each cell: one pair, or a sweep where either is a list (the other shared)."""
    lengths = {len(value) for value in (eps, step_size) if isinstance(value, (list, tuple))}
    if len(lengths) > 1 or 0 in lengths:
        raise MethodOptionError(f"eps and step_size lists must be non-empty and of one length, got {sorted(lengths)}")
    cells = next(iter(lengths), 1)
    pick = lambda value, c: value[c] if isinstance(value, (list, tuple)) else value  # noqa: E731
    return [(pick(eps, c), pick(step_size, c)) for c in range(cells)]


def result(clean: Array, adversarial: Array, logits: Array, labels: Array, targets: Array | None, steps: Array,
           norm: str) -> AttackResult:
    """The per-image record of a finished attack, from the adversarial images and their logits (summarized in
    NumPy: a cold call compiles no small programs for it)."""
    clean, adversarial, logits = (np.asarray(a, np.float32) for a in (clean, adversarial, logits))
    labels, targets = np.asarray(labels), None if targets is None else np.asarray(targets)
    return AttackResult(
        images=adversarial,
        success=succeeded(logits, labels, targets),
        norm=per_image_norm(adversarial - clean, norm),
        steps=np.asarray(steps),
        labels=labels,
        targets=targets,
        prediction=logits.argmax(axis=-1),
        norm_name=norm,
    )
