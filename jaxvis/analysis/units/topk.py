"""Per-unit top-k images of a data set, streamed: the k images whose activation peaks highest.

For each unit the state keeps, sorted from the highest down, the peak value
(the maximum over the unit's spatial map), the image's index in the data set,
the (row, column) of the peak and the unit's whole activation map on that image
(to draw it over the image or crop around the peak).  `update` folds one batch
in; `merge` combines two states made from disjoint parts of the data (batches,
devices, hosts): both are exact, because the top k of a union is the top k of
the two top-k lists.  Ties keep the earlier state's image first.

Random directions of the layer's channel space (Szegedy et al. 2013, §3: the
images that excite a random direction look as coherent as a unit's) are units
too: project the activations with `directions` first.

    state = init(units=160, k=16, map_shape=(14, 14))
    state = update(state, acts, image_ids, valid)     # acts (B, H, W, U)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvis.core.structure import piece

Array = jax.Array


@piece(data=("values", "images", "positions", "maps"))
class TopK:
    """values (U, k) float, highest first; images (U, k) int (-1: not filled yet); positions (U, k, 2)
    int (row, column of the peak); maps (U, k, H, W) the unit's activation map on that image."""

    values: Array
    images: Array
    positions: Array
    maps: Array


def init(units: int, k: int, map_shape: tuple[int, int], dtype=jnp.float32) -> TopK:
    return TopK(
        values=jnp.full((units, k), -jnp.inf, dtype),
        images=jnp.full((units, k), -1, jnp.int32),
        positions=jnp.zeros((units, k, 2), jnp.int32),
        maps=jnp.zeros((units, k, *map_shape), dtype),
    )


def update(state: TopK, acts: Array, image_ids: Array, valid: Array) -> TopK:
    """Fold in a batch: `acts` (B, H, W, U), `image_ids` (B,) their indices in the data set, `valid` (B,)
    False for padding images (never chosen)."""
    batch, height, width, units = acts.shape
    flat = acts.reshape(batch, height * width, units)
    peak_at = jnp.argmax(flat, axis=1)  # (B, U)
    peaks = jnp.where(valid[:, None], jnp.max(flat, axis=1), -jnp.inf).T  # (U, B)
    rows, columns = jnp.divmod(peak_at, width)
    candidate = TopK(
        values=peaks.astype(state.values.dtype),
        images=jnp.broadcast_to(image_ids.astype(jnp.int32), (units, batch)),
        positions=jnp.stack([rows, columns], axis=-1).transpose(1, 0, 2).astype(jnp.int32),
        maps=acts.transpose(3, 0, 1, 2).astype(state.maps.dtype),
    )
    return merge(state, candidate)


def merge(first: TopK, second: TopK) -> TopK:
    """The top k of the union of two states (of any k each; the result has `first`'s k)."""
    k = first.values.shape[1]
    joined = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=1), first, second)
    _, chosen = jax.lax.top_k(joined.values, k)  # stable: on ties the lower index (first's) wins
    return jax.tree_util.tree_map(lambda leaf: _take(leaf, chosen), joined)


def _take(leaf: Array, chosen: Array) -> Array:
    index = chosen.reshape(chosen.shape + (1,) * (leaf.ndim - 2))
    return jnp.take_along_axis(leaf, index, axis=1)


def directions(key: Array, channels: int, count: int, dtype=jnp.float32) -> Array:
    """`count` random unit-norm directions of a `channels`-wide space, (count, channels): normal draws
    normalized, so uniform on the sphere."""
    draws = jax.random.normal(key, (count, channels), dtype)
    return draws / jnp.linalg.norm(draws, axis=1, keepdims=True)


def project(acts: Array, directions: Array) -> Array:
    """Activations (..., C) seen along each direction: (..., count)."""
    return acts @ directions.T.astype(acts.dtype)
