"""The streaming unit statistics (top-k, quantile sketch, IoU tally) against brute-force NumPy/torch.

Each test would fail under a named mutation: top-k taking the mean instead of the max or
the wrong peak position; the sketch reading the wrong bucket (off by one) or dropping the
padding mask; the tally without the bilinear upsampling (or with torch's align_corners=True
geometry), or with the union over all images instead of those that annotate the category.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import brute_force_tally
from jaxvis.analysis.units import iou, quantiles, topk


def batches_of(values: np.ndarray, batch: int):
    """(acts, ids, valid) per batch, the last padded with zeros and marked invalid."""
    for start in range(0, len(values), batch):
        chunk = values[start:start + batch]
        pad = batch - len(chunk)
        ids = np.arange(start, start + batch)
        valid = np.arange(batch) < len(chunk)
        yield np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)]), ids, valid


def test_topk_is_the_brute_force_top_k_with_peak_positions_and_maps():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(37, 5, 6, 4)).astype(np.float32)
    state = topk.init(units=4, k=7, map_shape=(5, 6))
    step = jax.jit(topk.update)
    for chunk, ids, valid in batches_of(acts, 8):
        state = step(state, jnp.asarray(chunk), jnp.asarray(ids), jnp.asarray(valid))
    peaks = acts.reshape(37, -1, 4).max(axis=1)  # (N, U)
    for unit in range(4):
        order = np.argsort(-peaks[:, unit], kind="stable")[:7]
        np.testing.assert_array_equal(np.asarray(state.images[unit]), order)
        np.testing.assert_allclose(np.asarray(state.values[unit]), peaks[order, unit])
        for slot, image in enumerate(order):
            row, column = np.unravel_index(np.argmax(acts[image, :, :, unit]), (5, 6))
            assert tuple(np.asarray(state.positions[unit, slot])) == (row, column)
            np.testing.assert_array_equal(np.asarray(state.maps[unit, slot]), acts[image, :, :, unit])


def test_topk_merge_of_two_halves_equals_one_pass():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(32, 3, 3, 5)).astype(np.float32)
    ids, valid = np.arange(32), np.ones(32, bool)
    whole = topk.update(topk.init(5, 4, (3, 3)), acts, ids, valid)
    first = topk.update(topk.init(5, 4, (3, 3)), acts[:16], ids[:16], valid[:16])
    second = topk.update(topk.init(5, 4, (3, 3)), acts[16:], ids[16:], valid[16:])
    merged = topk.merge(second, first)  # order does not matter (no ties in continuous data)
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(merged)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_random_directions_are_unit_norm_and_seeded():
    first = topk.directions(jax.random.key(3), 16, 5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(first), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(topk.directions(jax.random.key(3), 16, 5)))
    assert not np.allclose(np.asarray(first), np.asarray(topk.directions(jax.random.key(4), 16, 5)))
    acts = np.random.default_rng(0).normal(size=(2, 3, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(topk.project(acts, first)), acts @ np.asarray(first).T, rtol=1e-5)


def activation_like_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Three units: post-ReLU (half zeros), log-normal over 6 decades, signed normal."""
    relu = np.maximum(rng.normal(size=n), 0)
    spread = rng.lognormal(0, 3, size=n)
    signed = rng.normal(0, 5, size=n)
    return np.stack([relu, spread, signed], axis=-1).astype(np.float32)


@pytest.mark.parametrize("q", [0.0, 0.01, 0.25, 0.5, 0.9, 0.995, 0.999, 1.0])
def test_quantiles_within_the_stated_relative_error_of_exact(q):
    values = activation_like_values(np.random.default_rng(2), 20_000).reshape(100, 10, 20, 3)
    sketch = quantiles.init(3)
    step = jax.jit(quantiles.update)
    for chunk, _, valid in batches_of(values, 16):
        sketch = step(sketch, jnp.asarray(chunk), jnp.asarray(valid))
    assert np.asarray(sketch.total).tolist() == [20_000] * 3  # padding images were not counted
    exact = np.quantile(values.reshape(-1, 3), q, axis=0, method="inverted_cdf")
    estimate = quantiles.quantile(sketch, q)
    bound = sketch.alpha * np.abs(exact) + sketch.floor
    assert np.all(np.abs(estimate - exact) <= bound), (q, estimate, exact)


def test_quantile_sketches_merge_exactly():
    values = activation_like_values(np.random.default_rng(3), 4_000).reshape(40, 100, 3)
    valid = np.ones(40, bool)
    whole = quantiles.update(quantiles.init(3), values, valid)
    parts = [quantiles.update(quantiles.init(3), values[i:i + 10], valid[i:i + 10]) for i in range(0, 40, 10)]
    merged = parts[0]
    for part in parts[1:]:
        merged = quantiles.merge(merged, part)
    np.testing.assert_array_equal(np.asarray(whole.counts), np.asarray(merged.counts))


def test_tally_matches_the_definition_with_bilinear_upsampling():
    rng = np.random.default_rng(4)
    batch, units, concepts, categories = 6, 40, 7, 2  # 40 units: two unit chunks, one padded
    acts = rng.normal(size=(batch, 4, 4, units)).astype(np.float32)
    thresholds = rng.normal(0.5, 0.2, size=units).astype(np.float32)
    labels = np.zeros((batch, 2, 16, 16), np.int32)
    labels[:, 0] = rng.integers(1, 4, size=(batch, 16, 16))  # layer 0: concepts 1-3 (category 0) everywhere
    labels[:3, 1, :8] = rng.integers(4, 7, size=(3, 8, 16))  # layer 1: concepts 4-6 (category 1), 3 images
    category = np.array([0, 0, 0, 0, 1, 1, 1])
    numbered, ids = iou.compact(labels)
    tally = iou.update(iou.init(units, concepts, categories), acts, thresholds, numbered, ids, category,
                       np.ones(batch, bool))
    both, activated, labelled = brute_force_tally(acts, thresholds, labels, category, concepts, categories)
    np.testing.assert_array_equal(np.asarray(tally.both), both)
    np.testing.assert_array_equal(np.asarray(tally.activated), activated)
    np.testing.assert_array_equal(np.asarray(tally.labelled), labelled)
    expected = both / (activated[:, category] + labelled - both)
    expected[:, 0] = 0
    np.testing.assert_allclose(iou.iou(tally, category), expected)


def test_tally_ignores_padding_and_sums_over_batches():
    rng = np.random.default_rng(5)
    acts = rng.normal(size=(4, 2, 2, 3)).astype(np.float32)
    labels = rng.integers(0, 5, size=(4, 1, 6, 6)).astype(np.int32)
    category = np.zeros(5, int)
    thresholds = np.zeros(3, np.float32)

    def tally(a, lab, valid):
        numbered, ids = iou.compact(lab)
        return iou.update(iou.init(3, 5, 1), a, thresholds, numbered, ids, category, valid)

    whole = tally(acts, labels, np.ones(4, bool))
    halves = iou.merge(tally(acts[:2], labels[:2], np.ones(2, bool)), tally(acts[2:], labels[2:], np.ones(2, bool)))
    padded = tally(np.concatenate([acts, acts[:2]]), np.concatenate([labels, labels[:2]]),
                   np.arange(6) < 4)
    for other in (halves, padded):
        for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(other)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
