"""Per-unit quantiles of activations over a data set, streamed in a mergeable sketch.

A logarithmic histogram (the DDSketch of Masson, Rim & Lee, VLDB 2019): a value
x with |x| > `floor` falls in bucket i = ceil(log_gamma(|x| / floor)) on its
sign's side, gamma = (1 + alpha) / (1 - alpha); |x| <= floor in the middle
bucket.  Counts only add, so sketches of batches, devices and hosts merge
exactly (`merge` is `+`), in any order.  A quantile is read as the bucket that
holds the value of that rank, returned as the bucket's centre
2·floor·gamma^i / (gamma + 1): for every quantile

    |estimate - exact| <= alpha · |exact| + floor,

exact being NumPy's `np.quantile(values, q, method="inverted_cdf")` (the
smallest value with at least a fraction q of the values at or below it).
Magnitudes above `ceiling` count in the outermost bucket (read back as
±ceiling).  Defaults: alpha 0.005 (0.5% relative error), floor 1e-6, ceiling
1e6: 2 x 2764 + 1 buckets per unit, int32 counts (up to 2^31 - 1 values in one
bucket).

NetDissect takes each unit's threshold at its top 0.005 quantile
(`np.percentile(features, 99.5)` over all images and positions); here it is
`quantile(sketch, 0.995)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.structure import piece

Array = jax.Array
ALPHA = 0.005
FLOOR = 1e-6
CEILING = 1e6


@piece(data=("counts",))
class Sketch:
    """counts (U, 2·buckets + 1): negative magnitudes descending, zero, positive ascending."""

    counts: Array
    alpha: float = ALPHA
    floor: float = FLOOR
    ceiling: float = CEILING

    @property
    def buckets(self) -> int:
        return bucket_count(self.alpha, self.floor, self.ceiling)

    @property
    def total(self) -> Array:
        """How many values each unit has seen, (U,)."""
        return self.counts.sum(axis=1)


def bucket_count(alpha: float, floor: float, ceiling: float) -> int:
    """Buckets on each side of zero needed to reach `ceiling`."""
    return math.ceil(math.log(ceiling / floor) / math.log(_gamma(alpha)))


def _gamma(alpha: float) -> float:
    return (1 + alpha) / (1 - alpha)


def init(units: int, alpha: float = ALPHA, floor: float = FLOOR, ceiling: float = CEILING) -> Sketch:
    if not 0 < alpha < 1 or not 0 < floor < ceiling:
        raise ValueError(f"need 0 < alpha < 1 and 0 < floor < ceiling; got alpha={alpha}, floor={floor}, "
                         f"ceiling={ceiling}")
    return Sketch(jnp.zeros((units, 2 * bucket_count(alpha, floor, ceiling) + 1), jnp.int32), alpha, floor,
                  ceiling)


def bucket_of(sketch: Sketch, values: Array) -> Array:
    """The bucket index of each value (same shape)."""
    side = sketch.buckets
    magnitude = jnp.abs(values.astype(jnp.float32))
    level = jnp.ceil(jnp.log(jnp.maximum(magnitude, sketch.floor) / sketch.floor) / math.log(_gamma(sketch.alpha)))
    level = jnp.where(magnitude > sketch.floor, jnp.clip(level, 1, side), 0).astype(jnp.int32)
    return side + jnp.sign(values).astype(jnp.int32) * level


def update(sketch: Sketch, acts: Array, valid: Array) -> Sketch:
    """Count every value of a batch: `acts` (B, ..., U) with units last, `valid` (B,) False for padding."""
    units = acts.shape[-1]
    flat = acts.reshape(acts.shape[0], -1, units)
    weight = jnp.broadcast_to(valid[:, None, None], flat.shape).astype(jnp.int32)
    unit = jnp.broadcast_to(jnp.arange(units), flat.shape)
    counts = sketch.counts.at[unit.ravel(), bucket_of(sketch, flat).ravel()].add(weight.ravel())
    return Sketch(counts, sketch.alpha, sketch.floor, sketch.ceiling)


def merge(first: Sketch, second: Sketch) -> Sketch:
    if (first.alpha, first.floor, first.ceiling) != (second.alpha, second.floor, second.ceiling):
        raise ValueError("sketches with different alpha, floor or ceiling cannot be merged")
    return Sketch(first.counts + second.counts, first.alpha, first.floor, first.ceiling)


def quantile(sketch: Sketch, q: float) -> np.ndarray:
    """Each unit's q-quantile, (U,) float64 (see the module docstring for the error bound)."""
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile must lie in [0, 1], got {q}")
    counts = np.asarray(sketch.counts, np.int64)
    total = counts.sum(axis=1)
    if (total == 0).any():
        raise ValueError(f"{int((total == 0).sum())} units have no values yet; update the sketch first")
    rank = np.maximum(np.ceil(q * total), 1)  # the rank-th smallest value (1-based)
    bucket = (np.cumsum(counts, axis=1) >= rank[:, None]).argmax(axis=1)
    return centre(sketch, bucket)


def centre(sketch: Sketch, bucket: np.ndarray) -> np.ndarray:
    """The value a bucket stands for (within alpha of every value in it)."""
    gamma = _gamma(sketch.alpha)
    level = bucket - sketch.buckets
    magnitude = 2 * sketch.floor * gamma ** np.abs(level).astype(np.float64) / (gamma + 1)
    return np.where(level == 0, 0.0, np.sign(level) * np.minimum(magnitude, sketch.ceiling))
