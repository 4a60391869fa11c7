"""Concept-segmentation data sets, streamed: images with per-pixel concept labels, for network dissection.

Two layouts are read (`read_concepts(root)` tells them apart):

(a) Broden (Bau et al. 2017; what NetDissect and NetDissect-Lite dissect with)::

        index.csv        image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
        label.csv        number,name,category,frequency,coverage,syns
        category.csv     name,first,last,count,frequency
        c_color.csv ...  code,number,name,frequency,coverage      (one per category)
        images/...       the photos and their label PNGs (concept = R + 256·G)

    A category cell of `index.csv` lists label PNGs (pixel labels) or concept
    numbers (image-level labels: scene, texture), `;`-separated.  A concept's
    category is its primary one: the category where its coverage is largest
    (NetDissect-Lite's `primary_categories_per_index`).

(b) a simple layout::

        concepts.csv     id,name,category          (ids from 1; 0 means "no concept")
        images/NAME.jpg
        masks/NAME.png   one label map: a pixel's value is its concept id (or R + 256·G in colour PNGs)
        masks/NAME/*.png several label maps, e.g. one per category (a pixel may carry one concept in each)

    A mask has its image's size (else an error naming both files); a concept id not
    in `concepts.csv` is an error naming the mask.

Images are resized whole (no crop) to `size` x `size`, label maps (nearest) to
`seg_size` x `seg_size`; an image or mask that cannot be read is reported and
skipped, never fatal.

    data = jaxvis.data.segmentation.read_concepts("broden1_224")
    for batch in data.stream(size=224, seg_size=112, batch_size=32):
        batch.images (N, 224, 224, 3), batch.labels (N, L, 112, 112) int32, batch.indices
"""

from __future__ import annotations

import csv
import io
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jaxvis.data.datasets import IMAGE_EXTENSIONS, DatasetError, prefetched
from jaxvis.data.io import ImageReadError, read_image, resize

NO_CONCEPT = "-"


@dataclass(frozen=True)
class Concepts:
    """names[i] is concept i's name (names[0] = "-", no concept); category[i] indexes `categories`."""

    names: tuple[str, ...]
    categories: tuple[str, ...]
    category: np.ndarray  # (C,) int

    def __len__(self) -> int:
        return len(self.names)

    def category_of(self, concept: int) -> str:
        return self.categories[int(self.category[concept])]


@dataclass(frozen=True)
class SegmentedImage:
    image: Path
    layers: tuple[Path | int, ...]  # label maps (PNG), or a concept id labelling the whole image


@dataclass(frozen=True)
class SegmentationBatch:
    images: np.ndarray  # float32 (N, size, size, 3) in [0, 1]
    labels: np.ndarray  # int32 (N, L, seg_size, seg_size): concept ids, 0 = none
    indices: np.ndarray  # int32 (N,): positions in the data set's `items`
    paths: tuple[Path, ...]


class ConceptDataset:
    """A concept-segmentation data set; each `stream` reads the files again (bounded prefetch)."""

    def __init__(self, root: Path, layout: str, concepts: Concepts, items: Sequence[SegmentedImage]):
        self.root, self.layout, self.concepts, self.items = root, layout, concepts, tuple(items)
        self.layers = max(len(item.layers) for item in self.items)
        self.skipped: list[tuple[Path, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.items)

    def stream(self, size: int, seg_size: int, batch_size: int, prefetch: int = 2, start: int = 0,
               limit: int | None = None, labels: bool = True) -> Iterator[SegmentationBatch]:
        """Batches of the items from `start` (the first `limit` of them); `labels=False` reads the
        images only (`labels` then has no layers)."""
        for name, value in (("size", size), ("seg_size", seg_size), ("batch_size", batch_size),
                            ("prefetch", prefetch)):
            if not isinstance(value, int) or value < 1:
                raise DatasetError(f"{name} must be a positive integer, got {value!r}.")
        items = list(enumerate(self.items))[start:][:limit]
        layers = self.layers if labels else 0
        return prefetched(lambda stop: self._batches(items, size, seg_size, batch_size, layers, stop), prefetch)

    def _batches(self, items, size, seg_size, batch_size, layers, stop) -> Iterator[SegmentationBatch]:
        chunk = []
        for index, item in items:
            if stop.is_set():
                return
            read = self._read(item, size, seg_size, layers)
            if read is not None:
                chunk.append((index, item, *read))
            if len(chunk) == batch_size:
                yield _batch(chunk)
                chunk = []
        if chunk:
            yield _batch(chunk)

    def _read(self, item: SegmentedImage, size: int, seg_size: int, layers: int):
        try:
            image = read_image(item.image)
        except ImageReadError as err:
            return self._skip(item.image, str(err))
        labels = np.zeros((layers, seg_size, seg_size), np.int32)
        for layer, source in enumerate(item.layers[:layers]):
            if isinstance(source, int):
                labels[layer] = source
                continue
            try:
                label_map = read_label_map(source)
            except ImageReadError as err:
                return self._skip(source, str(err))
            if self.layout == "simple" and label_map.shape != image.shape[:2]:
                raise DatasetError(f"mask {source} is {label_map.shape[1]}x{label_map.shape[0]} but its image "
                                   f"{item.image} is {image.shape[1]}x{image.shape[0]}; a mask must have its "
                                   "image's size.")
            self._check_ids(label_map, source)
            labels[layer] = _nearest(label_map, seg_size)
        return resize(image, size, size), labels

    def _check_ids(self, label_map: np.ndarray, source: Path) -> None:
        unknown = np.unique(label_map[(label_map < 0) | (label_map >= len(self.concepts))])
        if unknown.size:
            listing = "concepts.csv" if self.layout == "simple" else "label.csv"
            raise DatasetError(f"mask {source} has concept ids {unknown[:10].tolist()} that {listing} does not "
                               f"list (known: 1..{len(self.concepts) - 1}).")

    def _skip(self, path: Path, reason: str) -> None:
        with self._lock:
            if all(path != seen for seen, _ in self.skipped):
                self.skipped.append((path, reason))
                print(f"jaxvis: skipped {path}: {reason}", file=sys.stderr, flush=True)
        return None


def _batch(chunk) -> SegmentationBatch:
    return SegmentationBatch(
        images=np.stack([image for _, _, image, _ in chunk]).astype(np.float32, copy=False),
        labels=np.stack([labels for _, _, _, labels in chunk]),
        indices=np.asarray([index for index, _, _, _ in chunk], np.int32),
        paths=tuple(item.image for _, item, _, _ in chunk),
    )


def read_label_map(path: Path) -> np.ndarray:
    """A label PNG as int32 (H, W): its value, or R + 256·G for a colour PNG (Broden's encoding)."""
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA"):
                pixels = np.asarray(image.convert("RGB"), np.int32)
                return pixels[..., 0] + 256 * pixels[..., 1]
            return np.asarray(image, np.int32)
    except FileNotFoundError:
        raise ImageReadError(f"label map {path} does not exist.") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"label map {path} has more pixels than Pillow decodes (its guard against "
                             "decompression bombs).") from None
    except OSError as err:
        raise ImageReadError(f"cannot read label map {path}: {err}") from err


def _nearest(label_map: np.ndarray, size: int) -> np.ndarray:
    if label_map.shape == (size, size):
        return label_map
    return np.asarray(Image.fromarray(label_map.astype(np.int32), mode="I").resize((size, size), Image.NEAREST))


# --- reading the layouts -------------------------------------------------------------------------------

_LAYOUTS = ("Accepted layouts: Broden (index.csv, label.csv, c_*.csv, images/) or the simple one "
            "(concepts.csv with id,name,category; images/NAME.jpg; masks/NAME.png or masks/NAME/*.png).")


def read_concepts(root: str | os.PathLike) -> ConceptDataset:
    """The concept-segmentation data set under `root`, in whichever layout it has (module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder. {_LAYOUTS}")
    if (root / "index.csv").exists():
        return read_broden(root)
    if (root / "concepts.csv").exists():
        return read_simple(root)
    raise DatasetError(f"{root} has neither index.csv (Broden) nor concepts.csv (the simple layout). {_LAYOUTS}")


def _rows(path: Path, needed: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            missing = [name for name in needed if name not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                   f"(has: {', '.join(reader.fieldnames or [])}).")
            return list(reader)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing. {_LAYOUTS}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path} is not a UTF-8 CSV file ({error}).") from None


def _integer(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{where}: {value!r} is not an integer.") from None


def _number(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DatasetError(f"{where}: {value!r} is not a number.") from None


def concepts_csv(rows: Sequence[tuple[int, str, str]]) -> bytes:
    """The simple layout's `concepts.csv` for (id, name, category) rows, as `read_simple` reads it."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["id", "name", "category"])
    writer.writerows(rows)
    return text.getvalue().encode()


def read_simple(root: Path) -> ConceptDataset:
    rows = _rows(root / "concepts.csv", ("id", "name", "category"))
    ids = [_integer(row["id"], f"{root / 'concepts.csv'}, column id") for row in rows]
    if not rows or min(ids) < 1 or len(set(ids)) != len(ids):
        raise DatasetError(f"{root / 'concepts.csv'}: ids must be distinct integers from 1 (0 means no concept).")
    categories = tuple(dict.fromkeys(row["category"] for row in rows))
    names = [NO_CONCEPT] * (max(ids) + 1)
    category = np.zeros(max(ids) + 1, np.int32)
    for concept, row in zip(ids, rows):
        names[concept] = row["name"]
        category[concept] = categories.index(row["category"])
    images = sorted(path for path in (root / "images").glob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise DatasetError(f"no images in {root / 'images'}. {_LAYOUTS}")
    items = [SegmentedImage(image, _masks_of(root, image)) for image in images]
    return ConceptDataset(root, "simple", Concepts(tuple(names), categories, category), items)


def _masks_of(root: Path, image: Path) -> tuple[Path, ...]:
    single = root / "masks" / f"{image.stem}.png"
    if single.exists():
        return (single,)
    several = sorted((root / "masks" / image.stem).glob("*.png"))
    if not several:
        raise DatasetError(f"image {image} has no mask: expected {single} or PNGs in {root / 'masks' / image.stem}/.")
    return tuple(several)


def read_broden(root: Path) -> ConceptDataset:
    categories = tuple(row["name"] for row in _rows(root / "category.csv", ("name",)))
    labels = _rows(root / "label.csv", ("number", "name"))
    numbers = [_integer(row["number"], f"{root / 'label.csv'}, column number") for row in labels]
    if not numbers or min(numbers) < 0:
        raise DatasetError(f"{root / 'label.csv'}: concept numbers must be integers from 0, one per row.")
    size = max(numbers) + 1
    names = [NO_CONCEPT] * size
    for number, row in zip(numbers, labels):
        names[number] = row["name"]
    coverage = np.zeros((size, len(categories)))
    for k, name in enumerate(categories):
        listing = root / f"c_{name}.csv"
        for row in _rows(listing, ("number", "coverage")):
            number = _integer(row["number"], f"{listing}, column number")
            if not 0 <= number < size:
                raise DatasetError(f"{listing}: concept {number} is not in {root / 'label.csv'} (0..{size - 1}).")
            coverage[number, k] = _number(row["coverage"] or "0", f"{listing}, column coverage")
    category = coverage.argmax(axis=1).astype(np.int32)  # the primary category (first on ties)
    index = _rows(root / "index.csv", ("image", "sh", "sw"))
    items = []
    for row in index:
        layers: list[Path | int] = []
        for name in categories:
            for entry in filter(None, (row.get(name) or "").split(";")):
                layers.append(int(entry) if entry.isdigit() else root / "images" / entry)
        if layers:
            items.append(SegmentedImage(root / "images" / row["image"], tuple(layers)))
    if not items:
        raise DatasetError(f"{root / 'index.csv'} lists no image with labels.")
    return ConceptDataset(root, "broden", Concepts(tuple(names), categories, category), items)
