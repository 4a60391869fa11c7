"""Unit ablation: the one-sweep ablation matrix against separate forward passes, agreement vs accuracy.

Mutations that fail here: an edit that zeroes the wrong axis (units vs positions), counting
padding images, ranking by the smallest drop, labelled data read as unlabelled (or back).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import planted_model
from jaxvis.analysis.units import ablate
from jaxvis.analysis.units.concept_set import build_concept_set
from jaxvis.core.errors import UnitRangeError
from jaxvis.data.datasets import LabelledImage, Stream
from jaxvis.data.imagenet import UnknownClassError


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = build_concept_set(tmp_path_factory.mktemp("ablate"), photos=["sample:coffee", "sample:chelsea",
                             "sample:astronaut"], crops_per_photo=3, collages=2, size=96)
    return root / "images"


def test_ablating_a_planted_unit_changes_only_what_flows_through_it(photos):
    """The planted model's logits are the spatial means of its three `pool` units: removing unit 0
    sets logit 0 to zero and leaves logits 1 and 2 as they were (NumPy on the captured maps)."""
    model = planted_model()
    items = [LabelledImage(p, -1) for p in sorted(photos.iterdir())]
    images = np.concatenate([b.images for b in Stream(items, 64, len(items))])
    pooled = np.asarray(model(images, capture="pool")["pool"]).mean(axis=(1, 2))  # (N, 3) = the logits
    ablated = pooled.copy()
    ablated[:, 0] = 0
    effect = ablate.ablate(model, "pool", [0], items, size=64, batch_size=4, progress=False)
    assert effect.metric == ablate.AGREEMENT
    truth = pooled.argmax(1)
    for c in range(3):
        members = truth == c
        assert effect.images[c] == members.sum()
        if members.any():
            assert effect.before[c] == 1.0  # agreement of the intact model with itself
            np.testing.assert_allclose(effect.after[c], (ablated[members].argmax(1) == c).mean())


def test_single_unit_sweep_matches_separate_forward_passes(tiny_cnn, photos):
    """The sweep's mechanics on the tiny CNN (`helpers.tiny_cnn`), for the class it predicts most often here."""
    paths = sorted(photos.iterdir())
    items = [LabelledImage(p, -1) for p in [p for p in paths if "coffee" in p.name] + paths[:2]]
    images = np.concatenate([b.images for b in Stream(items, 96, len(items))])
    intact = np.asarray(tiny_cnn(images))
    target = int(np.bincount(intact.argmax(1)).argmax())
    ranking = ablate.rank_units(tiny_cnn, "features.8", items, target, size=96, batch_size=4, progress=False)
    predicted = intact.argmax(1) == target
    assert ranking.images == predicted.sum() > 0 and ranking.metric == ablate.AGREEMENT
    for unit in [int(ranking.units[0]), int(ranking.units[-1]), 7]:
        def zero(x, unit=unit):
            return x.at[..., unit].set(0.0)

        logits = np.asarray(tiny_cnn(images, edit={"features.8": zero}))
        drop = (intact[predicted, target] - logits[predicted, target]).mean()
        np.testing.assert_allclose(ranking.logit_drop[unit], drop, rtol=1e-3, atol=1e-4)
    ordered = [(ranking.accuracy_drop[u], ranking.logit_drop[u]) for u in ranking.units]
    assert ordered == sorted(ordered, reverse=True)  # by accuracy drop, ties by logit drop


def test_labelled_folder_gives_accuracy_and_the_curve_has_its_points(mobilenet, tmp_path):
    from jaxvis.data.io import center_crop_resize, read_image, save_image

    save_image(center_crop_resize(read_image("sample:coffee"), 96), tmp_path / "coffee_967.png")
    save_image(center_crop_resize(read_image("sample:chelsea"), 96), tmp_path / "chelsea_285.png")
    ranking = ablate.rank_units(mobilenet, "features.16", tmp_path, "espresso", size=96, progress=False)
    assert ranking.metric == ablate.ACCURACY and ranking.images == 1
    curve = ablate.curve(mobilenet, "features.16", tmp_path, ranking, ks=(1, 4, 160, 500), size=96,
                         progress=False)
    assert curve.ks == (0, 1, 4, 160)  # k beyond the layer's 160 units dropped
    assert curve.target_top[0] == curve.target_random[0] == ranking.baseline
    assert curve.target_top[-1] == curve.target_random[-1]  # all 160 removed either way


def test_bad_ablation_requests(mobilenet, photos):
    with pytest.raises(UnknownClassError, match="Did you mean espresso"):
        ablate.rank_units(mobilenet, "features.16", photos, "expresso", size=96, progress=False)
    with pytest.raises(UnitRangeError, match="units 0..159"):
        ablate.ablate(mobilenet, "features.16", [3, 160], photos, size=96, progress=False)
