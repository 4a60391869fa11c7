"""A generator's sampled concept data set: (z, image, masks), cached, reproducible, streamed like any data set.

    data = sample_concepts(generator, 512, seed=0)     # generates and segments what is not cached yet
    jaxvis.dissect(generator, "main.8", data)          # the classifier dissection's code, inputs are z

Sample i's latent is drawn from `numpy.random.default_rng([seed, i])` (standard normal), so a
sample does not depend on how many were asked for, and a larger request extends a smaller one.
Each image is segmented by `jaxvis.analysis.gan.faces` (part labels) and named by colour per pixel
(Broden's eleven colour names, `jaxvis.analysis.units.concept_set.colour_names`). The set is written in
the simple layout of `jaxvis.data.segmentation` -- `images/000000.png`, `masks/000000/part.png` and
`color.png`, `concepts.csv` -- with `latents.npy`, under
`$JAXVIS_CACHE/gan/NAME-<weights digest>/seed<seed>/`; samples are written as they are made, so an
interrupted run keeps them and the next one goes on from there.

`GeneratedConcepts` streams batches whose inputs are the latents (the generator's input) and
whose labels are the masks of the images it drew, so `survey`, `dissect` and the atlas run on
a generator unchanged; their `paths` are the drawn images, for pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxvis.analysis.gan import faces
from jaxvis.analysis.units.concept_set import COLOURS, colour_names
from jaxvis.analysis.units.stream import pad_batch
from jaxvis.core.progress import progress_bar
from jaxvis.core.structure import digest
from jaxvis.data.datasets import DatasetError
from jaxvis.core.files import write_whole
from jaxvis.data.io import npy_bytes, save_image
from jaxvis.data.segmentation import ConceptDataset, Concepts, SegmentedImage, concepts_csv
from jaxvis.models.model import Model, apply

LAYERS = ("color", "part")  # mask files per sample, in the order the data set reads them
BATCH = 64


class NotAGeneratorError(DatasetError):
    """A generator method was given a network that takes images."""


class UnknownConceptError(DatasetError):
    """A concept the data set does not label."""


class GeneratedConcepts(ConceptDataset):
    """A sampled concept data set of a generator: each item's input is its latent vector."""

    def __init__(self, root: Path, concepts: Concepts, items: list[SegmentedImage], latents: np.ndarray,
                 generator: str, seed: int):
        super().__init__(root, "simple", concepts, items)
        self.latents, self.generator, self.seed = latents, generator, seed
        self._latent_of = {item.image: latent for item, latent in zip(self.items, latents)}

    def _read(self, item: SegmentedImage, size: int, seg_size: int, layers: int):
        read = super()._read(item, size, seg_size, layers)
        return None if read is None else (self._latent_of[item.image], read[1])

    def images(self, indices: Any) -> np.ndarray:
        """The drawn images of samples `indices`, float (N, H, W, 3) in [0, 1], as stored (8-bit PNG)."""
        return np.stack([np.asarray(Image.open(self.items[i].image).convert("RGB"), np.float32) / 255
                         for i in np.atleast_1d(indices)])

    def labels(self, index: int, layer: str = "part") -> np.ndarray:
        """Sample `index`'s label map of `layer` ("part" or "color"), concept ids at the image's size."""
        return np.asarray(Image.open(self.items[index].layers[LAYERS.index(layer)]))

    def detected(self) -> np.ndarray:
        """(N,) whether the face detector found the face of each sample (else it has no part labels)."""
        return np.asarray([self.labels(i).any() for i in range(len(self))])


def concept_rows() -> list[tuple[int, str, str]]:
    """(id, name, category): the face parts (ids 1-7, `faces.PARTS`), then Broden's colour names."""
    names = [(part, "part") for part in faces.PARTS] + [(colour, "color") for colour in COLOURS]
    return [(index, name, category) for index, (name, category) in enumerate(names, start=1)]


def latents(count: int, size: int, seed: int, first: int = 0) -> np.ndarray:
    """Samples first..count-1's latent vectors: sample i's from `default_rng([seed, i])`."""
    return np.stack([np.random.default_rng([seed, i]).standard_normal(size) for i in range(first, count)]
                    ).astype(np.float32).reshape(count - first, size)


def default_root(generator: Model, seed: int) -> Path:
    from jaxvis.core.cache_dirs import gan_dir

    return gan_dir() / f"{generator.name}-{digest(generator.variables)}" / f"seed{seed}"


def require_generator(model: Model, what: str) -> None:
    if not model.arch.is_generator:
        raise NotAGeneratorError(f"{what} needs a generator (a network drawing images from latent vectors); "
                                 f"{model.name} takes images. Generators here: dcgan_faces.")


def sample_concepts(generator: Model, count: int, *, seed: int = 0, root: str | Path | None = None,
                    batch_size: int = BATCH, progress: bool = True) -> GeneratedConcepts:
    """The first `count` samples of `generator` from `seed`, with their masks (module docstring)."""
    require_generator(generator, "a sampled concept data set")
    if not isinstance(count, int) or count < 1:
        raise DatasetError(f"count must be a positive integer, got {count!r}")
    faces.landmark_model()  # the segmenter is installed, before anything is generated
    root = Path(root) if root is not None else default_root(generator, seed)
    z = latents(count, generator.arch.latent_size, seed)
    items = [SegmentedImage(root / "images" / f"{i:06d}.png",
                             tuple(root / "masks" / f"{i:06d}" / f"{layer}.png" for layer in LAYERS))
             for i in range(count)]
    missing = [i for i, item in enumerate(items) if not all(p.exists() for p in (item.image, *item.layers))]
    _write_concepts(root)
    bar = progress_bar(progress and bool(missing), len(missing), f"sampling {generator.name}", unit="img")
    try:
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            drawn = np.asarray(apply(generator, pad_batch(z[chunk], batch_size)))[:len(chunk)]
            for index, image in zip(chunk, drawn):
                _write_sample(items[index], image)
                bar.update(1)
    finally:
        bar.close()
    write_whole(root / "latents.npy", npy_bytes(z))
    rows = concept_rows()
    names = ("-",) + tuple(name for _, name, _ in rows)
    categories = tuple(dict.fromkeys(category for _, _, category in rows))
    category = np.asarray([0] + [categories.index(c) for _, _, c in rows], np.int32)
    return GeneratedConcepts(root, Concepts(names, categories, category), items, z, generator.name, seed)


def _write_concepts(root: Path) -> None:
    write_whole(root / "concepts.csv", concepts_csv(concept_rows()))


def _write_sample(item: SegmentedImage, image: np.ndarray) -> None:
    """The image (8-bit PNG) and its masks, segmented from the 8-bit image; the image is written last, so a
    sample whose image exists is complete."""
    stored = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8).astype(np.float32) / 255
    parts = faces.segment(stored).labels
    colours = colour_names(stored) + len(faces.PARTS)
    for layer, labels in zip(LAYERS, (colours, parts)):
        save_image(labels.astype(np.uint8), item.layers[LAYERS.index(layer)])
    save_image(stored, item.image)
