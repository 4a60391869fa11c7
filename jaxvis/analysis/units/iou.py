"""Per-unit, per-concept intersection and union counts: the tally of network dissection.

Bau, Zhou, Khosla, Oliva & Torralba, "Network Dissection", CVPR 2017 (and
NetDissect-Lite's `tally`): each unit's activation map is upsampled bilinearly
to the segmentation's size and thresholded at the unit's top-quantile level
T_u; then, over the whole data set,

    both[u, c]      = #pixels where the unit is on and concept c is labelled
    activated[u, k] = #pixels where the unit is on, in images that label some concept of category k
    labelled[c]     = #pixels labelled c
    IoU[u, c]       = both / (activated[u, category(c)] + labelled[c] - both)

A pixel may carry several concepts (one per label layer: Broden's colour,
object, part and material maps); image-level labels (scene, texture) are label
layers filled with one concept.  Counts only add, so tallies of batches,
devices and hosts merge exactly.  The union counts activated pixels only in
images that annotate the category (Broden's images come from data sets that
label different categories); NetDissect-Lite narrows this further to images
where the activated region touches a label of the category.

Concept indices are global (0 = no concept); a batch is tallied over only the
concepts it contains (`compact`), so a data set with a thousand concepts costs
per batch what its few present concepts cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.structure import piece

Array = jax.Array
UNIT_CHUNK = 32  # units upsampled at once: bounds memory at B x S x S x 32 floats


@piece(data=("both", "activated", "labelled"))
class Tally:
    """both (U, C) and labelled (C,) indexed by global concept (column 0: no concept, stays 0);
    activated (U, K) by category.  int32 counts."""

    both: Array
    activated: Array
    labelled: Array


def init(units: int, concepts: int, categories: int) -> Tally:
    """A zero tally for `concepts` concept indices (0 included) in `categories` categories."""
    return Tally(jnp.zeros((units, concepts), jnp.int32), jnp.zeros((units, categories), jnp.int32),
                 jnp.zeros((concepts,), jnp.int32))


def compact(labels: np.ndarray, minimum: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(labels renumbered 1..n over the concepts present, 0 kept; the global id of each new number,
    index 0 -> 0, padded with 0 to a power of two >= `minimum` so few program shapes arise)."""
    present = np.unique(labels)
    present = present[present != 0]
    size = max(minimum, 1 << int(np.ceil(np.log2(len(present) + 1))))
    ids = np.zeros(size, np.int32)
    ids[1:len(present) + 1] = present
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[labels].astype(np.int32), ids


def update(tally: Tally, acts: Array, thresholds: Array, labels: Array, ids: Array, category: Array,
           valid: Array) -> Tally:
    """Fold in a batch.

    acts (B, h, w, U) the layer's activations; thresholds (U,); labels (B, L, S, S) compact concept
    numbers (`compact`) in L label layers; ids (n,) their global ids; category (C,) each global
    concept's category index; valid (B,) False for padding images.
    """
    batch, _, _, units = acts.shape
    size = labels.shape[-2:]
    used = ids[1:] > 0
    numbers = jnp.where(used, jnp.arange(1, ids.shape[0]), -1)  # the compact numbers in use; -1 never matches
    onehot = (labels[..., None] == numbers).any(axis=1) & valid[:, None, None, None]  # (B, S, S, n-1)
    onehot = onehot.reshape(batch, -1, numbers.shape[0]).astype(jnp.float32)  # (B, S·S, n-1)
    categories = tally.activated.shape[1]
    in_category = jax.nn.one_hot(category[ids[1:]], categories) * used[:, None]  # (n-1, K)
    annotated = (onehot.sum(axis=1) @ in_category > 0).astype(jnp.float32)  # (B, K)

    def chunk(args):
        acts_chunk, thresholds_chunk = args  # (B, h, w, c), (c,)
        upsampled = jax.image.resize(acts_chunk, (batch, *size, UNIT_CHUNK), "bilinear")
        on = (upsampled > thresholds_chunk).reshape(batch, -1, UNIT_CHUNK).astype(jnp.float32)  # (B, S·S, c)
        both_chunk = jnp.einsum("bpu,bpc->uc", on, onehot)
        activated_chunk = on.sum(axis=1).T @ annotated
        return both_chunk, activated_chunk

    padded = -units % UNIT_CHUNK
    acts = jnp.pad(acts, ((0, 0), (0, 0), (0, 0), (0, padded)))
    thresholds = jnp.pad(thresholds.astype(acts.dtype), (0, padded), constant_values=jnp.inf)
    groups = acts.shape[-1] // UNIT_CHUNK
    both, activated = jax.lax.map(chunk, (acts.reshape(*acts.shape[:3], groups, UNIT_CHUNK).transpose(3, 0, 1, 2, 4),
                                          thresholds.reshape(groups, UNIT_CHUNK)))
    both = both.reshape(-1, both.shape[-1])[:units]
    activated = activated.reshape(-1, categories)[:units]
    counts = lambda x: jnp.round(x).astype(jnp.int32)  # noqa: E731  (float sums of 0/1 are exact per batch)
    return Tally(
        both=tally.both.at[:, ids[1:]].add(counts(both) * used),
        activated=tally.activated + counts(activated),
        labelled=tally.labelled.at[ids[1:]].add(counts(onehot.sum(axis=(0, 1))) * used),
    )


def merge(first: Tally, second: Tally) -> Tally:
    return jax.tree_util.tree_map(jnp.add, first, second)


def iou(tally: Tally, category: np.ndarray) -> np.ndarray:
    """IoU[u, c] (U, C) float64; 0 where the union is empty and for column 0."""
    both = np.asarray(tally.both, np.float64)
    union = np.asarray(tally.activated, np.float64)[:, category] + np.asarray(tally.labelled, np.float64) - both
    out = np.divide(both, union, out=np.zeros_like(both), where=union > 0)
    out[:, 0] = 0.0
    return out
