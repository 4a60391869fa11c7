"""ImageNet-1k class names (torchvision's list), WordNet synset ids, and lookup by name, synset or index."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib import resources

import numpy as np

from jaxvis.core.errors import JaxvisError, nearest


class UnknownClassError(JaxvisError, ValueError):
    pass


class NoClassifierError(JaxvisError, ValueError):
    """A class-based method asked of a network without a classification head."""


def require_classifier(name: str, num_classes: int, what: str) -> None:
    """Refuse `what` (a method that needs class scores) on a network without a classification head."""
    if num_classes <= 0:
        raise NoClassifierError(
            f"{what} needs a classification head, and {name} has none (its output is not class scores). "
            f"Methods that read its layers work: visualize, dream, reconstruct, style, dissect, examples, and "
            f"jaxvis.methods.attacks.pgd_objective (e.g. moving a saliency map); `jaxvis layers {name}` lists the layers.")


@functools.cache
def class_names() -> tuple[str, ...]:
    text = resources.files("jaxvis").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


@functools.cache
def synsets() -> tuple[str, ...]:
    """The 1000 WordNet ids (`"n01440764"`, ...) in class-index order (timm's imagenet_synsets.txt)."""
    text = resources.files("jaxvis").joinpath("data/imagenet_synsets.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


_SYNSET = re.compile(r"n\d{8}")


def class_index(label: str | int, num_classes: int = 1000) -> int:
    """An ImageNet class from its index (`207`, `"207"`), synset id (`"n02099601"`) or name
    (`"golden retriever"`), case-insensitive."""
    if isinstance(label, int) or str(label).strip().isdigit():
        return _checked(int(label), num_classes)
    wanted = str(label).strip().lower()
    if _SYNSET.fullmatch(wanted):
        if wanted not in synsets():
            raise UnknownClassError(
                f"{label!r} is not one of the 1000 ImageNet-1k synset ids (jaxvis/data/imagenet_synsets.txt)."
            )
        return _checked(synsets().index(wanted), num_classes)
    names = [name.lower() for name in class_names()]
    if wanted in names:
        return names.index(wanted)
    hint = nearest(wanted, names)
    raise UnknownClassError(
        f"unknown ImageNet class {label!r}." + (f" Did you mean {', '.join(hint)}?" if hint else "")
    )


def _checked(index: int, num_classes: int) -> int:
    if not 0 <= index < num_classes:
        raise UnknownClassError(f"class index {index} is out of range: valid indices are 0..{num_classes - 1}.")
    return index


def class_indices(labels: Sequence[str | int], num_classes: int = 1000) -> np.ndarray:
    """`class_index` of each label, as an int32 array."""
    return np.asarray([class_index(label, num_classes) for label in labels], np.int32)
