"""Unit interventions for `model(..., edit={layer: ...})`: remove units or set them, everywhere or in a region.

GAN Dissection's intervention (Bau et al., ICLR 2019, §3.2) on a layer's maps r (N, H, W, C):

    r' = (1 - m) ⊙ r + m ⊙ v,    m[h, w, c] = units[c] · region[h, w]

`units` (C,) selects units (0/1, or soft weights), `values` (C,) is what they are set to (zeros:
removal), `region` is a mask (H', W') shared by the batch or one per image (N, H', W'), at any
resolution (usually the image's), brought to the layer's (H, W) grid as each cell's covered share --
so a stroke painted on a 64 x 64 image edits the 16 x 16 cells it covers, partly where it covers
them partly. The three are
arrays of a pytree (`UnitEdit`; the layer's name is its static part), not constants of a program:
one compiled program serves every unit set, value and region of the same shapes.

    from jaxvis.pieces.edits import UnitEdit
    edit = UnitEdit.removing("main.8", [3, 17], 128)
    images = generator(z, edit=edit.for_model())
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import JaxvisError
from jaxvis.core.structure import piece

Array = jax.Array


class EditError(JaxvisError, ValueError):
    """An edit that does not fit its layer (units out of range, an empty region, a region of the wrong shape)."""


@piece(data=("units", "values", "region"))
class UnitEdit:
    units: Array  # (C,) in [0, 1]: which units
    values: Array  # (C,): what they become
    region: Array  # (H', W') or (N, H', W') in [0, 1]: where ((1, 1) of ones: everywhere)
    layer: str

    @classmethod
    def removing(cls, layer: str, units: Sequence[int], width: int, region: np.ndarray | None = None,
                 per_image: bool = False) -> "UnitEdit":
        """`units` of `layer` (`width` units) set to zero, inside `region` or everywhere."""
        return cls.setting(layer, units, width, np.zeros(width, np.float32), region, per_image)

    @classmethod
    def setting(cls, layer: str, units: Sequence[int], width: int, values: np.ndarray,
                region: np.ndarray | None = None, per_image: bool = False) -> "UnitEdit":
        """`units` of `layer` set to `values` (C,), inside `region` (one per image with `per_image`) or everywhere."""
        return cls(jnp.asarray(unit_mask(units, width)), jnp.asarray(values, jnp.float32),
                   jnp.asarray(checked_region(region, per_image)), layer)

    def for_model(self) -> dict:
        """The `edit=` argument of a model call."""
        return {self.layer: lambda x: apply_edit(self, x)}


def unit_mask(units: Sequence[int], width: int) -> np.ndarray:
    """(width,) 1.0 at `units`, or `EditError` naming the valid range."""
    units = np.asarray(list(units), np.int64)
    bad = units[(units < 0) | (units >= width)]
    if bad.size:
        raise EditError(f"unit {int(bad[0])} is out of range: the layer has {width} units (0-{width - 1}).")
    mask = np.zeros(width, np.float32)
    mask[units] = 1
    return mask


def checked_region(region: np.ndarray | None, per_image: bool = False) -> np.ndarray:
    """A region as float (H, W) in [0, 1] -- or (N, H, W) with `per_image` -- (None: one cell, everywhere);
    an 8-bit mask is scaled, a colour mask image read by its brightest channel; empty or misshapen ones refused."""
    if region is None:
        return np.ones((1, 1), np.float32)
    region = np.asarray(region, np.float32)
    if region.max(initial=0) > 1:
        region = region / 255  # an 8-bit mask image
    if not per_image and region.ndim == 3 and region.shape[-1] in (1, 3, 4):
        region = region[..., 0] if region.shape[-1] == 1 else region[..., :3].max(axis=-1)
    if region.ndim != 2 + per_image:
        raise EditError(f"a region is a mask {'(N, H, W)' if per_image else '(H, W)'}; got shape {region.shape}.")
    flat = region.reshape(len(region), -1) if per_image else region.reshape(1, -1)
    if not flat.any(axis=1).all():
        raise EditError("the region is empty (no pixel is set): paint where the edit should apply.")
    return np.clip(region, 0, 1)


def layer_mask(edit: UnitEdit, height: int, width: int) -> Array:
    """m (H, W, C) or (N, H, W, C): the region on the layer's grid (`on_grid`), times the units."""
    return jnp.clip(on_grid(edit.region, height, width), 0, 1)[..., None] * edit.units


def on_grid(region: Array, height: int, width: int) -> Array:
    """A region (..., H', W') on a (height, width) grid: each cell's covered share (the block mean) where H', W'
    are multiples of the grid, else a linear resize (antialiased when shrinking)."""
    rows, columns = region.shape[-2:]
    if (rows, columns) == (height, width):
        return region
    if rows % height == 0 and columns % width == 0:
        blocks = region.reshape(*region.shape[:-2], height, rows // height, width, columns // width)
        return blocks.mean(axis=(-3, -1))
    return jax.image.resize(region, (*region.shape[:-2], height, width), "linear", antialias=True)


def apply_edit(edit: UnitEdit, x: Array) -> Array:
    """r' = (1 - m) r + m v on maps (N, H, W, C) or vectors (N, C) (module docstring)."""
    if x.shape[-1] != edit.units.shape[0]:
        raise EditError(f"the edit is for {edit.units.shape[0]} units but the layer has {x.shape[-1]}.")
    if x.ndim == 2:
        return x * (1 - edit.units) + edit.units * edit.values
    if x.ndim != 4:
        raise EditError(f"unit edits apply to maps (N, H, W, C) or vectors (N, C), not shape {x.shape}.")
    mask = layer_mask(edit, x.shape[1], x.shape[2])
    return x * (1 - mask) + mask * edit.values


@piece(data=("scale", "shift"))
class AffineEdit:
    """r' = scale ⊙ r + shift on a layer's maps: any sequence of unit edits folded into one (GANPaint's
    strokes), so one compiled program serves every stack of strokes."""

    scale: Array  # (H, W, C)
    shift: Array  # (H, W, C)
    layer: str

    @classmethod
    def composed(cls, layer: str, edits: Sequence[UnitEdit], height: int, width: int, units: int) -> "AffineEdit":
        """The unit edits of `layer` applied in order, as one: each r <- (1 - m) r + m v (folded in NumPy on the
        host: a stroke costs no dispatch of small programs)."""
        scale, shift = np.ones((height, width, units), np.float32), np.zeros((height, width, units), np.float32)
        for edit in edits:
            region = np.clip(np.asarray(on_grid(np.asarray(edit.region, np.float32), height, width)), 0, 1)
            mask = region[..., None] * np.asarray(edit.units)
            scale, shift = scale * (1 - mask), shift * (1 - mask) + mask * np.asarray(edit.values)
        return cls(jnp.asarray(scale), jnp.asarray(shift), layer)

    def for_model(self) -> dict:
        return {self.layer: lambda x: x * self.scale + self.shift}
