"""Unit ablation (Bau, Zhu, Lapedriza, Zhou & Torralba, "Understanding the role of individual units in a
deep neural network", PNAS 2020, the classifier section): remove units, watch per-class accuracy.

    1. for each ablation m (a 0/1 mask over the layer's units; m = 0 the unablated model):
       per-class accuracy with the masked units set to zero -- streamed over the data set,
       the layer computed once per batch and every mask run through the rest of the network
       in the same program (the "whole ablation matrix in one sweep");
    2. rank the units for a class by the drop in its accuracy when each is removed alone
       (ties, common on small data sets, broken by the drop in the class's mean logit);
    3. the curve: the class's accuracy as its top-k units are removed, against k random units
       (seeded) and against the mean accuracy of every other class.

Labelled data (`jaxvis.data.datasets`: class folders or NAME_LABEL files) gives accuracy;
unlabelled images give *agreement with the unablated model's predictions* (each image's
class is the one the intact model predicts), and every result says which it is.

    ranking = jaxvis.analysis.units.ablate.rank_units(model, "features.14", "photos/", "espresso")
    curve = jaxvis.analysis.units.ablate.curve(model, "features.14", "photos/", "espresso", ranking)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.analysis.units import stream
from jaxvis.analysis.units.survey import BATCH, layer_map_shape
from jaxvis.core.errors import UnitRangeError
from jaxvis.core.structure import piece
from jaxvis.data.datasets import DatasetError, LabelledImage, Stream, labelled_images, unlabelled_images
from jaxvis.data.imagenet import class_index, class_names
from jaxvis.models.model import Model

Array = jax.Array
KS = (1, 2, 4, 8, 16, 32, 64)  # units removed along the curve (those up to the layer's width)
MASK_CHUNK = 8  # ablations run through the network at once (bounds memory)
ACCURACY = "accuracy"
AGREEMENT = "agreement with the unablated model"


@piece(data=("keep",))
class Ablations:
    keep: Array  # (M, U) 1 keeps a unit, 0 removes it; row 0 is all ones (the unablated model)
    layer: str


@piece(data=("correct", "total", "class_logit"))
class Counts:
    """Per ablation m and class c, over the images of class c: correct[m, c] how many are classified c,
    class_logit[m, c] the sum of their class-c logits; total[c] how many there are."""

    correct: Array
    total: Array
    class_logit: Array

    def accuracy(self) -> np.ndarray:
        """(M, classes); NaN for classes without images."""
        total = np.asarray(self.total, np.float64)
        return np.divide(np.asarray(self.correct, np.float64), total, out=np.full(self.correct.shape, np.nan),
                         where=total > 0)

    def mean_logit(self) -> np.ndarray:
        total = np.asarray(self.total, np.float64)
        return np.divide(np.asarray(self.class_logit, np.float64), total,
                         out=np.full(self.class_logit.shape, np.nan), where=total > 0)


def ablation_step(model: Model, spec: Ablations, counts: Counts, images: Array, labels: Array,
                  valid: Array) -> Counts:
    acts = model(images, capture=spec.layer)[spec.layer]

    def under(keep: Array) -> Array:  # the edit ignores its input: only the layers after `layer` run
        return model(images, edit={spec.layer: lambda _: acts * keep.astype(acts.dtype)})

    logits = jax.lax.map(under, spec.keep, batch_size=MASK_CHUNK)  # (M, B, classes)
    classes = logits.shape[-1]
    truth = jnp.where(labels >= 0, labels, jnp.argmax(logits[0], axis=-1))  # unlabelled: the intact prediction
    member = jax.nn.one_hot(truth, classes) * valid[:, None]  # (B, classes)
    right = (jnp.argmax(logits, axis=-1) == truth).astype(jnp.float32)  # (M, B)
    return Counts(
        correct=counts.correct + jnp.round(right @ member).astype(jnp.int32),
        total=counts.total + jnp.round(member.sum(axis=0)).astype(jnp.int32),
        class_logit=counts.class_logit + jnp.einsum("mbc,bc->mc", logits, member),
    )


@dataclass(frozen=True)
class Images:
    items: list[LabelledImage]
    metric: str  # ACCURACY or AGREEMENT


def ablation_images(data: Any) -> Images:
    """A labelled folder (accuracy), else a plain folder of images (agreement), or `Images` as given."""
    if isinstance(data, Images):
        return data
    if isinstance(data, Stream):
        items = list(data.items)
    elif isinstance(data, (str, os.PathLike)):
        try:
            items = labelled_images(data)
        except DatasetError:
            return Images(unlabelled_images(data), AGREEMENT)
    else:
        items = list(data)
    labelled = all(item.label >= 0 for item in items)
    return Images(items, ACCURACY if labelled else AGREEMENT)


def ablation_counts(model: Model, layer: str, data: Any, keep: np.ndarray, *, size: int | None = None,
                    batch_size: int = BATCH, progress: bool = True) -> tuple[Counts, str]:
    """Counts for each ablation in `keep` (M, U), over `data` (`ablation_images`), and the metric's name."""
    size = size or model.input_size
    images = ablation_images(data)
    batch_size = stream.device_batch(batch_size)
    classes = model.arch.num_classes

    def batches(first: int):
        reader = Stream(images.items[first * batch_size:], size, batch_size)
        return stream.batched(reader, lambda b: (b.images, b.labels))

    keep = np.concatenate([np.ones((1, keep.shape[1]), np.float32), np.asarray(keep, np.float32)])
    counts = Counts(jnp.zeros((len(keep), classes), jnp.int32), jnp.zeros((classes,), jnp.int32),
                    jnp.zeros((len(keep), classes), jnp.float32))
    done = stream.run(ablation_step, "unit ablation", model, Ablations(jnp.asarray(keep), layer), counts, batches,
                      batch_size=batch_size, total=len(images.items), progress=progress)
    counts = jax.device_get(done.state)
    return Counts(counts.correct[1:], counts.total, counts.class_logit[1:]), images.metric


def removing(units: Sequence[int], width: int) -> np.ndarray:
    """The keep-mask (width,) that removes `units`."""
    keep = np.ones(width, np.float32)
    keep[list(units)] = 0
    return keep


def check_units(units: Sequence[int], width: int, layer: str) -> None:
    bad = [u for u in units if not 0 <= int(u) < width]
    if bad:
        raise UnitRangeError(f"{layer} has units 0..{width - 1}; got {bad[:5]}.")


@dataclass(frozen=True)
class Effect:
    """Per-class accuracy (or agreement) before and after removing `units`."""

    units: tuple[int, ...]
    metric: str
    before: np.ndarray  # (classes,) NaN where the data has no image of the class
    after: np.ndarray
    images: np.ndarray  # (classes,) images per class

    def changed(self, limit: int = 10) -> list[tuple[str, float, float, int]]:
        """(class, before, after, images) for the classes that changed most."""
        drop = np.nan_to_num(self.before - self.after)
        order = [c for c in np.argsort(-np.abs(drop), kind="stable") if self.images[c] > 0][:limit]
        return [(class_names()[c], float(self.before[c]), float(self.after[c]), int(self.images[c])) for c in order]


def ablate(model: Model, layer: str, units: Sequence[int], data: Any, **options: Any) -> Effect:
    """Zero `units` of `layer` and measure every class's accuracy (or agreement) on `data`."""
    width = layer_map_shape(model, layer, options.get("size") or model.input_size)[-1]
    check_units(units, width, layer)
    keep = np.stack([np.ones(width, np.float32), removing(units, width)])
    counts, metric = ablation_counts(model, layer, data, keep, **options)
    accuracy = counts.accuracy()
    return Effect(tuple(int(u) for u in units), metric, accuracy[0], accuracy[1], np.asarray(counts.total))


@dataclass(frozen=True)
class Ranking:
    """A layer's units ordered by how much removing each alone hurts one class."""

    layer: str
    target: int  # the class
    metric: str
    units: np.ndarray  # unit indices, most important first
    accuracy_drop: np.ndarray  # per unit (index = unit)
    logit_drop: np.ndarray
    baseline: float  # the class's accuracy with every unit
    images: int  # images of the class in the data

    def top(self, k: int) -> list[int]:
        return [int(u) for u in self.units[:k]]


def target_class(label: str | int, model: Model) -> int:
    return class_index(label, model.arch.num_classes)


def rank_units(model: Model, layer: str, data: Any, label: str | int, **options: Any) -> Ranking:
    """Remove each unit of `layer` alone (one sweep) and rank them by the drop of class `label`."""
    target = target_class(label, model)
    width = layer_map_shape(model, layer, options.get("size") or model.input_size)[-1]
    keep = np.concatenate([np.ones((1, width), np.float32), 1 - np.eye(width, dtype=np.float32)])
    counts, metric = ablation_counts(model, layer, data, keep, **options)
    images = int(counts.total[target])
    if images == 0:
        raise DatasetError(f"no image of class {class_names()[target]!r} ({target}) in the data"
                           + (" (as the unablated model classifies them)" if metric == AGREEMENT else "")
                           + "; ranking units for it needs some.")
    accuracy, logit = counts.accuracy()[:, target], counts.mean_logit()[:, target]
    accuracy_drop, logit_drop = accuracy[0] - accuracy[1:], logit[0] - logit[1:]
    order = np.lexsort((-logit_drop, -accuracy_drop))  # by accuracy drop, then by logit drop
    return Ranking(layer, target, metric, order, accuracy_drop, logit_drop, float(accuracy[0]), images)


@dataclass(frozen=True)
class Curve:
    """The class's accuracy as k of its most important units are removed, against k random units,
    and the mean accuracy of the other classes (with images) under each."""

    ks: tuple[int, ...]
    metric: str
    target_top: np.ndarray  # (len(ks),)
    target_random: np.ndarray
    others_top: np.ndarray
    others_random: np.ndarray


def curve(model: Model, layer: str, data: Any, ranking: Ranking, ks: Sequence[int] = KS, seed: int = 0,
          **options: Any) -> Curve:
    """Accuracy of `ranking.target` with its top-k units removed, and with k random units removed."""
    width = len(ranking.accuracy_drop)
    ks = tuple(k for k in ks if 0 < k <= width)
    rng = np.random.default_rng(seed)
    top = [removing(ranking.top(k), width) for k in ks]
    shuffled = rng.permutation(width)
    random = [removing(shuffled[:k], width) for k in ks]
    counts, metric = ablation_counts(model, layer, data, np.stack([np.ones(width, np.float32), *top, *random]),
                                     **options)
    accuracy = counts.accuracy()
    others = np.asarray(counts.total) > 0
    others[ranking.target] = False
    rest = np.nanmean(accuracy[:, others], axis=1) if others.any() else np.full(len(accuracy), np.nan)
    n = len(ks)
    return Curve((0, *ks), metric,
                 np.r_[accuracy[0, ranking.target], accuracy[1:1 + n, ranking.target]],
                 np.r_[accuracy[0, ranking.target], accuracy[1 + n:, ranking.target]],
                 np.r_[rest[0], rest[1:1 + n]], np.r_[rest[0], rest[1 + n:]])
