"""What every gradient attack shares: the checked request, the loss, the norms and the per-image result.

An attack takes float NHWC images in [0, 1] (the model normalizes them itself,
as every jaxvis model does) and integer labels; targeted attacks also take one
target class per image. Whatever differs between calls -- eps, step size, step
count, the random key -- is an argument of the compiled program, not part of
it, so another eps or step count runs the program already compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.errors import InvalidImageError, MethodOptionError
from jaxvis.models.model import Model, check_image_shape

Array = jax.Array
NORMS = ("linf", "l2")


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


def check_attack_request(model: Model, images: Any, labels: Any, targets: Any, eps: float, norm: str,
                         steps: int = 1, step_size: float | None = None) -> tuple[Array, Array, Array | None]:
    """The images, labels and targets as arrays, or a clear error about what is wrong with them."""
    if norm not in NORMS:
        raise MethodOptionError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    images = np.asarray(images)
    check_image_shape(images.shape, images.dtype, model.arch)
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise InvalidImageError(f"attacks take images in [0, 1]; these range over [{low:.3g}, {high:.3g}]. "
                                "Divide 8-bit images by 255 (the model normalizes them itself).")
    largest = 1.0 if norm == "linf" else float(np.sqrt(np.prod(images.shape[1:])))
    if not 0.0 < eps <= largest:
        raise MethodOptionError(f"eps must be in (0, {largest:.4g}] for the {norm} norm on these images; got {eps}"
                                + (" (write 8/255 for 8 intensity levels)" if norm == "linf" and eps > 1 else ""))
    if steps < 1:
        raise MethodOptionError(f"steps must be at least 1, got {steps}")
    if step_size is not None and not step_size > 0:
        raise MethodOptionError(f"the step size must be positive, got {step_size}")
    labels = _classes(labels, len(images), model.arch.num_classes, "labels")
    if targets is None:
        return jnp.asarray(images, jnp.float32), jnp.asarray(labels), None
    targets = _classes(targets, len(images), model.arch.num_classes, "targets")
    same = np.flatnonzero(targets == labels)
    if same.size:
        raise MethodOptionError(f"image {int(same[0])}'s target is its true label {int(labels[same[0]])}: a targeted "
                                "attack needs another class (or leave targets out for an untargeted attack)")
    return jnp.asarray(images, jnp.float32), jnp.asarray(labels), jnp.asarray(targets)


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


def succeeded(logits: Array, labels: Array, targets: Array | None) -> Array:
    prediction = jnp.argmax(logits, axis=-1)
    return prediction == targets if targets is not None else prediction != labels


def per_image_norm(delta: Array, norm: str) -> Array:
    flat = delta.reshape(delta.shape[0], -1)
    return jnp.abs(flat).max(axis=1) if norm == "linf" else jnp.sqrt((flat * flat).sum(axis=1))


def result(clean: Array, adversarial: Array, logits: Array, labels: Array, targets: Array | None, steps: Array,
           norm: str) -> AttackResult:
    """The per-image record of a finished attack, from the adversarial images and their logits."""
    return AttackResult(
        images=np.asarray(adversarial, np.float32),
        success=np.asarray(succeeded(logits, labels, targets)),
        norm=np.asarray(per_image_norm(adversarial - clean, norm)),
        steps=np.asarray(steps),
        labels=np.asarray(labels),
        targets=None if targets is None else np.asarray(targets),
        prediction=np.asarray(jnp.argmax(logits, axis=-1)),
        norm_name=norm,
    )
