"""Dataset examples: the images that most excite a unit -- and, as a control, a random direction.

Szegedy et al. 2013 (§3) found that the images maximizing a random direction of
a layer look as semantically coherent as a unit's; Olah et al. 2017 ("Feature
Visualization", the "dataset examples" section) show them next to optimized
images.  From a `survey`, `example_strip` draws one row per unit or direction:
each top image with the activation map laid over it (upsampled bilinearly,
the rest darkened), and under it, for layers with spatial extent, the crop
around the peak at the size of one map cell times `CROP_CELLS`.
"""

from __future__ import annotations

import numpy as np

from jaxvis.analysis.units.survey import Survey
from jaxvis.data.io import resize

CROP_CELLS = 3  # the crop around a peak spans this many cells of the activation map
DARKEST = 0.25  # brightness where a unit is silent


def overlay(image: np.ndarray, activation: np.ndarray, peak: float | None = None) -> np.ndarray:
    """`image` darkened where `activation` (h, w; upsampled bilinearly to the image) is low: full brightness
    at `peak` (default: the map's own) and above, `DARKEST` at zero and below (signed maps, e.g. residual
    sums, go dark where negative). Pass one `peak` to compare maps on one scale."""
    height, width = image.shape[:2]
    level = resize(np.repeat(activation[..., None], 3, axis=-1).astype(np.float32), height, width)[..., 0]
    peak = float(level.max()) if peak is None else float(peak)
    level = np.clip(level / peak, 0, 1) if peak > 0 else np.ones_like(level)
    return image * (DARKEST + (1 - DARKEST) * level[..., None])


def peak_crop(image: np.ndarray, position: tuple[int, int], map_shape: tuple[int, int], out: int) -> np.ndarray:
    """The square around a map cell's centre, `CROP_CELLS` cells wide, resized to out x out."""
    height, width = image.shape[:2]
    cell = max(height / map_shape[0], width / map_shape[1])
    side = int(min(height, width, max(8, round(CROP_CELLS * cell))))
    row = (position[0] + 0.5) * height / map_shape[0]
    column = (position[1] + 0.5) * width / map_shape[1]
    top = int(np.clip(round(row - side / 2), 0, height - side))
    left = int(np.clip(round(column - side / 2), 0, width - side))
    return resize(image[top:top + side, left:left + side], out, out)


def example_strip(survey: Survey, index: int, images: dict[int, np.ndarray], directions: bool = False,
                  count: int | None = None) -> np.ndarray:
    """The top images of unit (or direction) `index` side by side, overlaid; crops around the peaks in a
    second row when the layer has spatial extent.  `images`: data set index -> the image as surveyed."""
    top = survey.directions_top if directions else survey.top
    slots = [s for s in range(top.images.shape[1]) if int(top.images[index, s]) >= 0][:count]
    if not slots:
        raise ValueError(f"{'direction' if directions else 'unit'} {index} has no top images yet")
    map_shape = tuple(top.maps.shape[2:])
    tiles = [overlay(images[int(top.images[index, s])], np.asarray(top.maps[index, s])) for s in slots]
    rows = [np.concatenate(tiles, axis=1)]
    if map_shape != (1, 1):
        size = tiles[0].shape[0]
        crops = [peak_crop(images[int(top.images[index, s])], tuple(np.asarray(top.positions[index, s])),
                           map_shape, size) for s in slots]
        rows.append(np.concatenate(crops, axis=1))
    return np.concatenate(rows, axis=0)


def needed_images(survey: Survey, units: list[int], directions: list[int], count: int) -> list[int]:
    """The data set indices a set of strips shows (read them once)."""
    wanted = {int(i) for u in units for i in np.asarray(survey.top.images[u, :count]) if i >= 0}
    wanted |= {int(i) for d in directions for i in np.asarray(survey.directions_top.images[d, :count]) if i >= 0}
    return sorted(wanted)
