"""ImageNet-1k class names (torchvision's list) and lookup by name or index."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

import numpy as np

from jaxvis.errors import JaxvisError, nearest


class UnknownClassError(JaxvisError, ValueError):
    pass


@functools.cache
def class_names() -> tuple[str, ...]:
    text = resources.files("jaxvis").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def class_index(label: str | int, num_classes: int = 1000) -> int:
    """An ImageNet class from its index (`207`, `"207"`) or name (`"golden retriever"`, case-insensitive)."""
    if isinstance(label, int) or str(label).strip().isdigit():
        index = int(label)
        if not 0 <= index < num_classes:
            raise UnknownClassError(f"class index {index} is out of range: valid indices are 0..{num_classes - 1}.")
        return index
    names = [name.lower() for name in class_names()]
    wanted = str(label).strip().lower()
    if wanted in names:
        return names.index(wanted)
    hint = nearest(wanted, names)
    raise UnknownClassError(
        f"unknown ImageNet class {label!r}." + (f" Did you mean {', '.join(hint)}?" if hint else "")
    )


def class_indices(labels: Sequence[str | int], num_classes: int = 1000) -> np.ndarray:
    """`class_index` of each label, as an int32 array."""
    return np.asarray([class_index(label, num_classes) for label in labels], np.int32)
