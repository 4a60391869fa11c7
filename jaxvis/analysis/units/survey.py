"""One pass over a data set that every unit study starts from: each unit's top images and quantiles.

For a layer, `survey` streams the images once and keeps, per unit, the top-k
images (value, position and map of the peak: `topk`) and a quantile sketch of
all its activations (`quantiles`); with `directions=N`, the same top-k for N
random unit-norm directions of the layer's channel space, seeded (Szegedy et
al. 2013, §3).  Dissection thresholds units at a quantile of this pass; the
dataset-examples page and the unit atlas show its top images.

    found = jaxvis.analysis.units.survey(model, "features.14", "photos/", k=9, directions=8)
    found.top.images[unit]          # indices into found.paths, best first
    found.quantile(0.995)           # (units,) each unit's top-0.5% level
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.analysis.units import quantiles, stream, topk
from jaxvis.core.checkpoints import Checkpoints, fingerprint
from jaxvis.core.errors import JaxvisError, UnknownLayerError
from jaxvis.core.structure import piece
from jaxvis.data.datasets import DatasetError, LabelledImage, Stream, unlabelled_images
from jaxvis.data.segmentation import ConceptDataset, read_concepts
from jaxvis.models.model import Model
from jaxvis.pieces.tokens import grid_side, patch_grid

Array = jax.Array
K = 16  # top images kept per unit
BATCH = 32


class LayerShapeError(JaxvisError, ValueError):
    """A layer whose activations a unit statistic cannot read (e.g. no spatial extent for dissection)."""


@piece(data=("directions",))
class Spec:
    directions: Array  # (D, C) unit-norm directions; D may be 0
    layer: str
    k: int
    alpha: float = quantiles.ALPHA


@piece(data=("units", "directions", "sketch"))
class State:
    units: topk.TopK
    directions: topk.TopK
    sketch: quantiles.Sketch


def unit_maps(acts: Array) -> Array:
    """A layer's activations as (B, H, W, units): conv maps as they are; transformer tokens (B, [1 +] h·w, D)
    as maps on their patch grid, the CLS token left out (`tokens.patch_grid`); other tokens (B, T, D) as
    T x 1 maps; pooled vectors (B, D) as 1 x 1 maps."""
    if acts.ndim == 4:
        return acts
    if acts.ndim == 3:
        return patch_grid(acts) if grid_side(acts.shape[1]) else acts[:, :, None, :]
    if acts.ndim == 2:
        return acts[:, None, None, :]
    raise LayerShapeError(f"activations of shape {acts.shape} are not maps, tokens or vectors")


def survey_step(model: Model, spec: Spec, state: State, images: Array, ids: Array, valid: Array) -> State:
    acts = unit_maps(model(images, capture=spec.layer)[spec.layer])
    along = topk.project(acts, spec.directions)
    return State(
        units=topk.update(state.units, acts, ids, valid),
        directions=topk.update(state.directions, along, ids, valid),
        sketch=quantiles.update(state.sketch, acts, valid),
    )


@dataclass(frozen=True)
class Survey:
    layer: str
    paths: tuple[Path, ...]  # the data set's images; top-k image indices point here
    top: topk.TopK  # per unit
    directions_top: topk.TopK  # per random direction
    directions: np.ndarray  # (D, C)
    sketch: quantiles.Sketch
    images_per_s: float
    seconds: float
    size: int  # images were read at size x size ...
    whole: bool  # ... resized whole (concept data sets) or centre-cropped (folders of photos)

    def quantile(self, q: float) -> np.ndarray:
        return quantiles.quantile(self.sketch, q)

    def read(self, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """The data set's images `indices` as the survey saw them."""
        from jaxvis.data.io import center_crop_resize, read_image, resize

        out = {}
        for index in indices:
            image = read_image(self.paths[index])
            out[index] = resize(image, self.size, self.size) if self.whole else center_crop_resize(image, self.size)
        return out


def layer_map_shape(model: Model, layer: str, size: int) -> tuple[int, int, int]:
    """(H, W, units) of `layer`'s activation maps at input `size` (`unit_maps`' reading)."""
    shapes = model.layer_shapes(size)
    if layer not in shapes:
        raise UnknownLayerError([layer], model.name, list(shapes))
    shape = shapes[layer][1:]
    if len(shape) == 2 and grid_side(shape[0]):
        side = grid_side(shape[0])[1]
        return side, side, shape[1]
    return {3: shape, 2: (shape[0], 1, shape[1]), 1: (1, 1, shape[0])}[len(shape)]


def image_source(data: Any) -> ConceptDataset | list[LabelledImage]:
    """A folder (concept layout if it has one, else every image in it), a `ConceptDataset`, a `Stream`,
    or a list of image paths."""
    if isinstance(data, ConceptDataset):
        return data
    if isinstance(data, Stream):
        return list(data.items)
    if isinstance(data, (str, os.PathLike)):
        root = Path(data)
        if (root / "index.csv").exists() or (root / "concepts.csv").exists():
            return read_concepts(root)
        return unlabelled_images(root)
    items = [item if isinstance(item, LabelledImage) else LabelledImage(Path(item), -1) for item in data]
    if not items:
        raise DatasetError("no images given")
    return items


def image_batches(source: ConceptDataset | list[LabelledImage], size: int, batch_size: int):
    """`first batch -> batches of (images, indices)` over a source (`image_source`), with its paths."""
    if isinstance(source, ConceptDataset):
        def batches(first: int) -> Iterable[tuple]:
            reader = source.stream(size, 1, batch_size, labels=False, start=first * batch_size)
            return stream.batched(reader, lambda b: (b.images, b.indices))
        return batches, tuple(item.image for item in source.items)
    index_of = {item.path: index for index, item in reversed(list(enumerate(source)))}

    def batches(first: int) -> Iterable[tuple]:
        reader = Stream(source[first * batch_size:], size, batch_size)
        return stream.batched(reader, lambda b: (b.images, np.asarray([index_of[p] for p in b.paths], np.int32)))
    return batches, tuple(item.path for item in source)


def survey(model: Model, layer: str, data: Any, *, k: int = K, directions: int = 0, seed: int = 0,
           size: int | None = None, batch_size: int = BATCH, progress: bool = True,
           checkpoint_dir: str | os.PathLike | None = None, every: int = 50, keep_finished: bool = False) -> Survey:
    """Stream `data` (`image_source`) once through `model` up to `layer`; see the module docstring.

    checkpoint_dir: keep the stream's state there every `every` batches, and continue from it; once finished
    it is removed, unless `keep_finished` (a caller with more to do after the survey removes it itself)."""
    size = size or model.input_size
    height, width, units = layer_map_shape(model, layer, size)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (top images per unit) must be a positive integer, got {k!r}")
    source = image_source(data)
    batch_size = stream.device_batch(batch_size)
    batches, paths = image_batches(source, size, batch_size)
    chosen = topk.directions(jax.random.key(seed), units, directions) if directions else jnp.zeros((0, units))
    spec = Spec(chosen, layer, k)
    state = State(topk.init(units, k, (height, width)), topk.init(directions, k, (height, width)),
                  quantiles.init(units))
    store = None
    if checkpoint_dir is not None:
        config = fingerprint(model=model.name, weights=model.variables, layer=layer, k=k, directions=directions,
                             seed=seed, size=size, batch_size=batch_size, images=[str(p) for p in paths])
        store = Checkpoints(checkpoint_dir, config)
    done = stream.run(survey_step, "unit survey", model, spec, state, batches, batch_size=batch_size,
                      total=len(paths), progress=progress, checkpoints=store, every=every)
    if store is not None and not keep_finished:
        store.remove()  # finished: nothing left to resume
    found = jax.device_get(done.state)
    return Survey(layer, paths, found.units, found.directions, np.asarray(chosen), found.sketch,
                  done.images_per_s, done.seconds, size, isinstance(source, ConceptDataset))
