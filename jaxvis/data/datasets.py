"""Streaming labelled images from a folder, in batches, for evaluation (ImageNet preprocessing).

Two layouts are read (files and folders whose names start with "." are ignored):

(a) ImageFolder style: one sub-folder per class, named by its WordNet synset id,
    its class index, or its class name (underscores read as spaces); the images
    may be anywhere below it::

        val/n01440764/ILSVRC2012_val_00000293.JPEG    -> 0  (tench)
        val/207/dog.jpg                               -> 207
        val/golden_retriever/dog.png                  -> 207

(b) a flat folder of images whose file name ends in `_LABEL`, LABEL being the
    class index written without leading zeros (foolbox's sample photos)::

        photos/imagenet_06_292.jpg                    -> 292
        photos/tiger_cat_282.png                      -> 282

    `img_0001.jpg` or `ILSVRC2012_val_00000001.JPEG` are refused (leading
    zeros: a running number, not a label): put such files in class folders.

(c) any folder of images, unlabelled (`unlabelled_images`: every image below it, label -1),
    for statistics that need no labels (dataset examples, dissection's top images).

    stream = jaxvis.data.datasets.stream("photos/", size=224, batch_size=32)
    for batch in stream:                      # ImageBatch: images (N, 224, 224, 3), labels (N,), paths
        ...
    stream.skipped                            # [(path, reason), ...] for files that could not be read
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from jaxvis.core.errors import JaxvisError
from jaxvis.data.imagenet import UnknownClassError, class_index
from jaxvis.data.io import ImageReadError, center_crop_resize, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_LAYOUTS = (
    "Accepted layouts: (a) one sub-folder per class, named by synset id (n01440764), class index (207) "
    "or class name (golden_retriever); (b) a flat folder of files named NAME_LABEL.jpg (imagenet_06_292.jpg)."
)
_LABEL = re.compile(r".+_(0|[1-9][0-9]*)")
UNLABELLED = -1  # the label of an image in a plain folder
T = TypeVar("T")


class DatasetError(JaxvisError, ValueError):
    """A folder of images that cannot be read as a labelled dataset."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int


@dataclass(frozen=True)
class ImageBatch:
    images: np.ndarray  # float32 (N, H, W, 3) in [0, 1]
    labels: np.ndarray  # int32 (N,)
    paths: tuple[Path, ...]


def labelled_images(root: str | os.PathLike, num_classes: int = 1000) -> list[LabelledImage]:
    """The images under `root` with their class index, in sorted path order (layouts: module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder. {_LAYOUTS}")
    entries = [entry for entry in sorted(root.iterdir()) if not entry.name.startswith(".")]
    folders = [entry for entry in entries if entry.is_dir()]
    files = [entry for entry in entries if _is_image(entry)]
    if folders and files:
        raise DatasetError(
            f"{root} mixes class sub-folders ({folders[0].name}, ...) with images ({files[0].name}, ...). {_LAYOUTS}"
        )
    items = _from_folders(folders, num_classes) if folders else _from_file_names(files, num_classes)
    if not items:
        raise DatasetError(
            f"no images found in {root}: files ending in {', '.join(IMAGE_EXTENSIONS)} (any case) are read. {_LAYOUTS}"
        )
    return items


def unlabelled_images(root: str | os.PathLike) -> list[LabelledImage]:
    """Every image below `root` (any depth, hidden files and folders skipped), sorted, labelled -1."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder of images.")
    items = [LabelledImage(path, UNLABELLED) for path in sorted(root.rglob("*"))
             if _is_image(path) and not _hidden(path, root)]
    if not items:
        raise DatasetError(f"no images found in {root}: files ending in {', '.join(IMAGE_EXTENSIONS)} "
                           "(any case) are read, in any sub-folder.")
    return items


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _from_folders(folders: list[Path], num_classes: int) -> list[LabelledImage]:
    items, owner = [], {}
    for folder in folders:
        label = _folder_label(folder, num_classes)
        if label in owner:
            raise DatasetError(f"folders {owner[label]} and {folder} are both class {label}; merge them.")
        owner[label] = folder
        images = sorted(path for path in folder.rglob("*") if _is_image(path) and not _hidden(path, folder))
        items += [LabelledImage(path, label) for path in images]
    return items


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _folder_label(folder: Path, num_classes: int) -> int:
    try:
        return class_index(folder.name.replace("_", " "), num_classes)
    except UnknownClassError as err:
        raise DatasetError(f"folder {folder} does not name a class: {err} {_LAYOUTS}") from err


def _from_file_names(files: list[Path], num_classes: int) -> list[LabelledImage]:
    items = []
    for path in files:
        match = _LABEL.fullmatch(path.stem)
        if match is None:
            raise DatasetError(
                f"file {path}: its name does not end in _LABEL, a class index without leading zeros. {_LAYOUTS}"
            )
        label = int(match.group(1))
        if label >= num_classes:
            raise DatasetError(f"file {path}: label {label} is out of range: valid indices are 0..{num_classes - 1}.")
        items.append(LabelledImage(path, label))
    return items


def batches(
    items: Iterable[LabelledImage],
    size: int,
    batch_size: int,
    prefetch: int = 2,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[ImageBatch]:
    """Batches of `items` read and `center_crop_resize`d to size x size by a background thread,
    `prefetch` batches ahead.  Files that cannot be read are passed to `on_skip(path, reason)`
    (default: one line on stderr) and left out; every batch but the last has `batch_size` images.
    Any other error in the reader is raised here; closing the iterator early stops the thread."""
    _check_options(size=size, batch_size=batch_size, prefetch=prefetch)
    items = list(items)
    return prefetched(lambda stop: _read_batches(items, size, batch_size, on_skip or _warn, stop), prefetch)


def _check_options(**options: int) -> None:
    for name, value in options.items():
        if not isinstance(value, int) or value < 1:
            raise DatasetError(f"{name} must be a positive integer, got {value!r}.")


def _warn(path: Path, reason: str) -> None:
    print(f"jaxvis: skipped {path}: {reason}", file=sys.stderr, flush=True)


_DONE = object()


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def prefetched(produce: Callable[[threading.Event], Iterator[T]], prefetch: int) -> Iterator[T]:
    """The items of `produce(stop)`, made by a background thread at most `prefetch` ahead.

    An error in `produce` is raised here; closing the iterator early sets `stop` (which `produce`
    should check between items) and waits for the thread.
    """
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    reader = threading.Thread(target=_fill, args=(produce, ready, stop), name="jaxvis-reader", daemon=True)
    reader.start()
    try:
        while (got := ready.get()) is not _DONE:
            if isinstance(got, _Failure):
                raise got.error
            yield got
    finally:
        stop.set()
        reader.join()


def _fill(produce, ready: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in produce(stop):
            if not _put(ready, item, stop):
                return
        _put(ready, _DONE, stop)
    except Exception as err:  # handed to the consumer, which raises it
        _put(ready, _Failure(err), stop)


def _put(ready: queue.Queue, value, stop: threading.Event) -> bool:
    """Put `value` unless the consumer has stopped; False when it has."""
    while not stop.is_set():
        try:
            ready.put(value, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def _read_batches(items, size, batch_size, on_skip, stop: threading.Event) -> Iterator[ImageBatch]:
    chunk: list[tuple[LabelledImage, np.ndarray]] = []
    for item in items:
        if stop.is_set():
            return
        try:
            chunk.append((item, center_crop_resize(read_image(item.path), size)))
        except ImageReadError as err:
            on_skip(item.path, str(err))
        if len(chunk) == batch_size:
            yield _batch(chunk)
            chunk = []
    if chunk:
        yield _batch(chunk)


def _batch(chunk: list[tuple[LabelledImage, np.ndarray]]) -> ImageBatch:
    return ImageBatch(
        images=np.stack([image for _, image in chunk]).astype(np.float32, copy=False),
        labels=np.asarray([item.label for item, _ in chunk], np.int32),
        paths=tuple(item.path for item, _ in chunk),
    )


class Stream:
    """Iterable of `ImageBatch`es of a labelled dataset; each pass reads the files again.

    `total`: the number of images listed; `skipped`: `(path, reason)` of each file that
    could not be read (once per file, however many passes), warned on stderr when first met.
    """

    def __init__(self, items: Iterable[LabelledImage], size: int, batch_size: int, prefetch: int = 2):
        self.items = tuple(items)
        self.size, self.batch_size, self.prefetch = size, batch_size, prefetch
        self.skipped: list[tuple[Path, str]] = []
        _check_options(size=size, batch_size=batch_size, prefetch=prefetch)

    @property
    def total(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ImageBatch]:
        return batches(self.items, self.size, self.batch_size, self.prefetch, on_skip=self._skip)

    def _skip(self, path: Path, reason: str) -> None:
        if all(path != seen for seen, _ in self.skipped):
            self.skipped.append((path, reason))
            _warn(path, reason)


def stream(
    root_or_items: str | os.PathLike | Iterable[LabelledImage],
    size: int,
    batch_size: int,
    prefetch: int = 2,
    limit: int | None = None,
) -> Stream:
    """A `Stream` of the images under a folder (`labelled_images`) or of given items, the first `limit` only."""
    if isinstance(root_or_items, (str, os.PathLike)):
        items = labelled_images(root_or_items)
    else:
        items = list(root_or_items)
    if limit is not None:
        if not isinstance(limit, int) or limit < 0:
            raise DatasetError(f"limit must be a non-negative integer or None, got {limit!r}.")
        items = items[:limit]
    return Stream(items, size, batch_size, prefetch)
