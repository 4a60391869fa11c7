"""Robust accuracy over a data set: clean accuracy, and per eps the share of images the model still
classifies correctly under attack -- optionally also on other models, to measure transfer.

    from jaxvis.methods.attacks import evaluate, pgd, cw
    report = evaluate(model, "photos/", pgd, eps=[1 / 255, 2 / 255, 4 / 255], steps=10)
    print(report.table())
    report.failed[2 / 255]        # the images the attack did not fool at that eps

An image counts as robust at eps when the model gets it right clean and the attack at eps does not
fool it (AutoAttack's definition: an image misclassified clean is never robust). A bounded attack
that sweeps eps (fgsm, pgd, apgd: `eps_sweep`) runs every eps of a batch in one compiled program. A
minimal-perturbation attack (cw, lbfgs: no eps) runs once, and an image is robust at eps where it found
no adversarial image of norm ≤ eps (the L2 norm).

`transfer_to`: the adversarial images are also classified by these models (Szegedy et al. 2013, Sec.
4.2: adversarial examples made on one network fool others). Per model and eps: its accuracy on them,
and the transfer rate -- of the images the source attack fooled and the other model gets right clean,
the share the other model now gets wrong.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.core.errors import MethodOptionError
from jaxvis.core.progress import progress_bar
from jaxvis.data.datasets import ImageBatch, Stream, stream
from jaxvis.engine.run_config import RunConfig
from jaxvis.methods.attacks.common import AttackResult, eps_text
from jaxvis.models.model import Model, logits

Attack = Callable[..., AttackResult]


@dataclass
class Counts:
    """Per-eps tallies of one model on the adversarial images."""

    correct: int = 0  # classified right under attack
    fooled_by_source: int = 0  # of those the source attack fooled and this model gets right clean ...
    transferred: int = 0  # ... how many this model now gets wrong


@dataclass
class Evaluation:
    """What `evaluate` measured; accuracies are fractions of `total` (the images read)."""

    model: str
    attack: str
    eps: tuple[float, ...]
    total: int = 0
    clean_correct: int = 0
    robust: dict[float, int] = field(default_factory=dict)
    failed: dict[float, list[Path]] = field(default_factory=dict)  # right clean and not fooled at eps
    transfer: dict[str, dict[float, Counts]] = field(default_factory=dict)
    transfer_clean_correct: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct / self.total if self.total else 0.0

    def robust_accuracy(self, eps: float) -> float:
        return self.robust[eps] / self.total if self.total else 0.0

    def transfer_rate(self, other: str, eps: float) -> float:
        counts = self.transfer[other][eps]
        return counts.transferred / counts.fooled_by_source if counts.fooled_by_source else float("nan")

    def table(self) -> str:
        """A Markdown table: eps, robust accuracy, and per transfer model its accuracy and transfer rate."""
        others = list(self.transfer)
        head = ["eps", f"{self.model} robust acc."]
        for other in others:
            head += [f"{other} acc.", f"transfer to {other}"]
        rows = [head, ["---"] * len(head), ["clean", _percent(self.clean_accuracy)]
                + sum(([_percent(self.transfer_clean_correct[o] / max(self.total, 1)), ""] for o in others), [])]
        for eps in self.eps:
            row = [eps_text(eps), _percent(self.robust_accuracy(eps))]
            for other in others:
                counts = self.transfer[other][eps]
                rate = self.transfer_rate(other, eps)
                row += [_percent(counts.correct / max(self.total, 1)),
                        f"{_percent(rate)} ({counts.transferred}/{counts.fooled_by_source})"]
            rows.append(row)
        return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _percent(value: float) -> str:
    return "–" if np.isnan(value) else f"{100 * value:.1f}%"


def evaluate(model: Model, dataset: str | os.PathLike | Stream | Iterable[ImageBatch], attack: Attack,
             eps: Sequence[float], *, batch_size: int = 16, size: int | None = None, limit: int | None = None,
             transfer_to: Sequence[Model] = (), progress: bool = True, **attack_options) -> Evaluation:
    """Clean and robust accuracy of `model` on a labelled folder (`jaxvis.data.datasets` layouts) or a stream of
    batches, under `attack` (an attack function of `jaxvis.methods.attacks`) at each eps; `attack_options` go to it.

    The images are read `size` px square (default: the model's input size), `batch_size` at a time, and
    each batch is attacked as a whole; a short last batch is padded with copies of its first image (every
    attack here treats images independently), so one compiled program serves every batch."""
    eps = tuple(float(e) for e in eps)
    bounded = "eps" in inspect.signature(attack).parameters
    if not eps:
        raise MethodOptionError("eps: give at least one perturbation budget, e.g. eps=[2 / 255]")
    if "targets" in attack_options or "eps" in attack_options:
        raise MethodOptionError("evaluate runs untargeted attacks at each of `eps`; leave targets and eps out of "
                                "the attack's options")
    norm = attack_options.get("norm", "linf" if bounded else "l2")
    if not bounded and norm != "l2":
        raise MethodOptionError(f"{attack.__name__} minimizes the L2 norm; eps is read as an L2 radius")
    if "config" in inspect.signature(attack).parameters and "config" not in attack_options:
        attack_options = dict(attack_options, config=RunConfig(progress=False))  # this bar counts the images
    batches = dataset if not isinstance(dataset, (str, os.PathLike)) else stream(
        dataset, size or model.input_size, batch_size, limit=limit)
    report = Evaluation(model.name, attack.__name__, eps)
    for other in transfer_to:
        report.transfer[other.name] = {e: Counts() for e in eps}
        report.transfer_clean_correct[other.name] = 0
    report.robust = {e: 0 for e in eps}
    report.failed = {e: [] for e in eps}
    total = getattr(batches, "total", None)
    bar = progress_bar(progress, total, f"{attack.__name__} on {model.name}", unit="img")
    started = time.perf_counter()
    full = None
    for batch in batches:
        full = full or len(batch.labels)
        _evaluate_batch(report, model, batch, full, attack, bounded, attack_options, transfer_to)
        bar.update(len(batch.labels))
        bar.set_postfix_str(f"clean {_percent(report.clean_accuracy)}, robust@{eps_text(eps[-1])} "
                            f"{_percent(report.robust_accuracy(eps[-1]))}")
    bar.close()
    report.seconds = time.perf_counter() - started
    report.skipped = list(getattr(batches, "skipped", []))
    if report.total == 0:
        raise MethodOptionError("the data set held no readable images" + (
            f" ({len(report.skipped)} skipped: {report.skipped[0][1]})" if report.skipped else ""))
    return report


def self_labelled(model: Model, sources: Sequence[str], size: int | None = None, batch_size: int = 16
                  ) -> list[ImageBatch]:
    """Photos without labels (files or `sample:NAME`) as batches labelled with the model's own clean
    predictions: robust accuracy then measures how often the attack moves the model off its own answer
    (clean accuracy is 100% by construction -- say so wherever the numbers are shown)."""
    from jaxvis.data.io import center_crop_resize, read_image

    images = np.stack([center_crop_resize(read_image(source), size or model.input_size) for source in sources])
    images = images.astype(np.float32)
    labels = logits(model, images).argmax(-1).astype(np.int32)
    return [ImageBatch(images[i:i + batch_size], labels[i:i + batch_size],
                       tuple(Path(source) for source in sources[i:i + batch_size]))
            for i in range(0, len(sources), batch_size)]


def _evaluate_batch(report: Evaluation, model: Model, batch: ImageBatch, full: int, attack: Attack,
                    bounded: bool, options: dict, transfer_to: Sequence[Model]) -> None:
    count = len(batch.labels)
    padded_images, padded_labels = _padded(batch.images, full), _padded(batch.labels, full)
    run = lambda **eps: attack(model, padded_images, padded_labels, **eps, **options)  # noqa: E731
    images, labels = batch.images, batch.labels
    right = _predicted(model, images, full) == labels
    report.total += len(labels)
    report.clean_correct += int(right.sum())
    others_right = {other.name: _predicted(other, images, full) == labels for other in transfer_to}
    for other in transfer_to:
        report.transfer_clean_correct[other.name] += int(others_right[other.name].sum())
    minimal = None if bounded else _first(run(), count)
    outcomes = _bounded_outcomes(run, report.eps, getattr(attack, "eps_sweep", False)) if bounded else {}
    for eps in report.eps:
        if bounded:
            outcome = _first(outcomes[eps], count)
            fooled, adversarial = outcome.success, outcome.images
        else:
            fooled = minimal.success & (minimal.norm <= eps)
            adversarial = np.where(fooled[:, None, None, None], minimal.images, images)
        robust = right & ~fooled
        report.robust[eps] += int(robust.sum())
        report.failed[eps] += [path for path, r in zip(batch.paths, robust) if r]
        for other in transfer_to:
            now_right = _predicted(other, adversarial, full) == labels
            counts = report.transfer[other.name][eps]
            counts.correct += int(now_right.sum())
            source_fooled = right & fooled & others_right[other.name]
            counts.fooled_by_source += int(source_fooled.sum())
            counts.transferred += int((source_fooled & ~now_right).sum())


def _bounded_outcomes(run: Callable[..., Any], eps: tuple[float, ...], sweep: bool) -> dict[float, AttackResult]:
    """The attack at each eps: as one sweep (one program for all) where the attack takes a list, else one by one."""
    if sweep and len(eps) > 1:
        return dict(zip(eps, run(eps=list(eps))))
    return {value: run(eps=value) for value in eps}


def _predicted(model: Model, images: np.ndarray, full: int) -> np.ndarray:
    """`model`'s class for each image, run as a batch padded to `full` so one compiled program serves every batch."""
    return logits(model, _padded(images, full)).argmax(-1)[: len(images)]


def _padded(values: np.ndarray, count: int) -> np.ndarray:
    """`values` with copies of its first entry appended up to `count` entries."""
    extra = count - len(values)
    return values if extra <= 0 else np.concatenate([values, np.repeat(values[:1], extra, axis=0)])


def _first(outcome: AttackResult, count: int) -> AttackResult:
    return AttackResult(outcome.images[:count], outcome.success[:count], outcome.norm[:count],
                        outcome.steps[:count], outcome.labels[:count], None, outcome.prediction[:count],
                        outcome.norm_name)


