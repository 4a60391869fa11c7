"""The methods of the papers on the real MobileNetV2, at small budgets: they must do what they promise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis
from jaxvis.core.errors import InvalidImageError
from jaxvis.data.imagenet import UnknownClassError
from jaxvis.data.io import ImageReadError, center_crop_resize, read_image, read_photo
from jaxvis.methods import UnknownMethodError, dream, invert, reconstruct, style_losses, transfer_style
from jaxvis.methods.pii import stage_sizes
from jaxvis.models.statistics import NoBatchNormError, batchnorm_inputs
from jaxvis.pieces.objectives import batchnorm_statistics
from jaxvis.pieces.transforms import tiles
from helpers import forward, planted_model


def top5(model, images: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(forward(model, images)), axis=1)[:, :5]


# --- Plug-In Inversion -----------------------------------------------------------------------------


def test_pii_images_are_classified_as_their_targets(mobilenet):
    classes = [1, 130, 309, 980]  # goldfish, flamingo, bee, volcano
    seen = []
    result = invert(mobilenet, classes, method="pii", size=128, steps=100, ensemble=4, progress=False,
                    on_stage=lambda label, images: seen.append((label, images.shape)))
    assert seen == [(f"stage_{size}px", (4, 1, size, size, 3)) for size in stage_sizes(128)]
    images = result.images[:, 0]
    assert images.shape == (4, 128, 128, 3) and images.min() >= 0.0 and images.max() <= 1.0
    hits = [c in t for c, t in zip(classes, top5(mobilenet, images))]
    assert sum(hits) >= 3, hits


# --- DeepInversion ---------------------------------------------------------------------------------


def test_batchnorm_prior_prefers_real_photos_to_noise(mobilenet, photos):
    stats = batchnorm_inputs(mobilenet)
    assert len(stats) == 52 and stats[0].batchnorm == "features.0.1" and stats[0].layer == "features.0.0"
    prior = batchnorm_statistics(stats)
    measure = jax.jit(lambda m, x: prior(m(x, capture=list(prior.layers))))
    noise = np.random.default_rng(0).random(photos.shape).astype(np.float32)
    assert float(measure(mobilenet, photos)) < 0.5 * float(measure(mobilenet, noise))


def test_deepinversion_matches_batchnorm_statistics_and_targets(mobilenet):
    classes = [1, 980, 309]
    budget = dict(size=96, resolutions=((2, 30), (1, 60)), progress=False)
    result = invert(mobilenet, classes, method="deepinversion", **budget)
    without_prior = invert(mobilenet, classes, method="deepinversion", r_feature=0.0, **budget)
    images = result.images[:, 0]
    assert images.shape == (3, 96, 96, 3) and images.min() >= 0.0 and images.max() <= 1.0
    prior = batchnorm_statistics(batchnorm_inputs(mobilenet))
    measure = jax.jit(lambda m, x: prior(m(x, capture=list(prior.layers))))
    assert float(measure(mobilenet, images)) < 0.85 * float(measure(mobilenet, without_prior.images[:, 0]))
    assert result.history[-1, 0] > result.history[0, 0] + 3.0
    log_probs = jax.nn.log_softmax(forward(mobilenet, images), axis=-1)
    assert float(np.mean(np.asarray(log_probs)[np.arange(3), classes])) > np.log(1e-3) + 1.0  # e x chance


def test_deepinversion_objective_is_the_references_loss_computed_in_numpy(mobilenet):
    """−(CE + 0.05 Σ w_l (‖σ²_l − σ̄²_l‖ + ‖μ_l − μ̄_l‖) + 1e-4 TV_l2 + 0 TV_l1 + 1e-5 mean ‖x_b‖), as in
    NVlabs' `get_images` / `get_image_prior_losses` / `DeepInversionFeatureHook`."""
    from jaxvis.methods.deepinversion import DEFAULTS, deepinversion_objective
    from jaxvis.models.model import apply
    from jaxvis.pieces.objectives import INPUT

    targets = np.asarray([1, 980, 309])
    objective = deepinversion_objective(mobilenet, targets)
    images = np.random.default_rng(0).random((3, 64, 64, 3)).astype(np.float32)
    acts = apply(mobilenet, jnp.asarray(images), capture=tuple(sorted(objective.model_layers)))
    value = float(objective({**acts, INPUT: jnp.asarray(images)}))

    logits = np.asarray(acts["logits"], np.float64)
    peak = logits.max(1, keepdims=True)
    log_probs = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
    cross_entropy = -log_probs[np.arange(3), targets].mean()
    r_feature = 0.0
    for k, entry in enumerate(batchnorm_inputs(mobilenet)):
        x = np.asarray(acts[entry.layer], np.float64).reshape(-1, np.shape(acts[entry.layer])[-1])
        r_feature += (10.0 if k == 0 else 1.0) * (np.linalg.norm(x.var(0) - np.asarray(entry.var))
                                                 + np.linalg.norm(x.mean(0) - np.asarray(entry.mean)))
    x = (images.astype(np.float64) - np.asarray(mobilenet.arch.mean)) / np.asarray(mobilenet.arch.std)
    x = x.transpose(0, 3, 1, 2)  # the reference's NCHW, to index its diffs literally
    diffs = [x[:, :, :, :-1] - x[:, :, :, 1:], x[:, :, :-1, :] - x[:, :, 1:, :], x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
             x[:, :, :-1, :-1] - x[:, :, 1:, 1:]]
    tv_l2 = sum(np.sqrt((d**2).sum()) for d in diffs)
    l2 = np.sqrt((x.reshape(3, -1) ** 2).sum(1)).mean()
    loss = cross_entropy + DEFAULTS.r_feature * r_feature + 1e-4 * tv_l2 + 0.0 + 1e-5 * l2
    assert value == pytest.approx(-loss, rel=1e-4)


def test_deepinversion_refuses_a_network_without_batchnorm():
    """On `helpers.planted_model`: a tiny classifier without BatchNorm."""
    with pytest.raises(NoBatchNormError, match="planted.*no BatchNorm.*pii"):
        invert(planted_model(), [1], method="deepinversion")


# --- DeepDream -------------------------------------------------------------------------------------


def test_deepdream_raises_the_layer_objective_above_the_input(mobilenet):
    image = center_crop_resize(read_image("sample:chelsea"), 160)
    result = dream(mobilenet, image, "features.10", octaves=2, steps=8, progress=False)
    dreamed = result.images[0, 0]
    energy = jax.jit(lambda m, x: jnp.mean(jnp.square(m(x, capture="features.10")["features.10"])))
    assert float(energy(mobilenet, dreamed[None])) > 1.5 * float(energy(mobilenet, image[None]))
    assert 0.005 < np.abs(dreamed - image).mean() < 0.2  # dreamed into the photo, not replacing it


def test_deepdream_in_tiles_on_several_layers(mobilenet):
    image = center_crop_resize(read_image("sample:coffee"), 128)
    layers = ["features.6", "features.10"]
    result = dream(mobilenet, image, layers, octaves=2, steps=5, tile_size=64, progress=False)
    assert result.images.shape == (1, 1, 128, 128, 3)
    assert result.history[-1, 0] > result.history[0, 0]


def test_tiles_cut_large_images_into_a_batch_and_leave_small_ones():
    images = jnp.arange(2 * 10 * 7 * 3, dtype=jnp.float32).reshape(2, 10, 7, 3)
    cut = tiles(4)(None, images)
    assert cut.shape == (2 * 3 * 2, 4, 4, 3)
    np.testing.assert_array_equal(cut[0], images[0, :4, :4])
    np.testing.assert_array_equal(cut[1], images[0, :4][:, [4, 5, 6, 6]])  # edge-padded to 8 columns
    assert tiles(16)(None, images) is images


def test_dream_refuses_octaves_smaller_than_the_model_accepts(mobilenet):
    with pytest.raises(ValueError, match="smallest of 4 octaves.*below the 32 px"):
        dream(mobilenet, np.zeros((60, 60, 3), np.float32), "features.10", progress=False)


# --- feature inversion -----------------------------------------------------------------------------


def test_feature_inversion_reconstructs_several_images_in_parallel(mobilenet):
    originals = np.stack([center_crop_resize(read_image(f"sample:{n}"), 96) for n in ("chelsea", "coffee")])
    result = reconstruct(mobilenet, originals, "features.6", steps=400, progress=False)
    assert result.images.shape == (2, 1, 96, 96, 3)
    assert np.all(result.history[-1] > result.history[0])

    def coarse_correlation(a, b):  # on 12 x 12 blocks: the layout, not the pixel noise
        blocks = lambda x: x.reshape(12, 8, 12, 8, 3).mean(axis=(1, 3)).ravel()  # noqa: E731
        return np.corrcoef(blocks(a), blocks(b))[0, 1]

    for k, rebuilt in enumerate(result.images[:, 0]):  # each from its own photo's activations, not the other's
        own, other = coarse_correlation(rebuilt, originals[k]), coarse_correlation(rebuilt, originals[1 - k])
        assert own > 0.3 and own > other + 0.1, (k, own, other)


# --- style transfer --------------------------------------------------------------------------------


def test_style_transfer_objective_is_gatys_loss_computed_in_numpy():
    """−(w_c · mean (F_c(x) − F_c(content))² + w_s · Σ_l mean (G_l(x) − G_l(style))²), G = F Fᵀ / (C·H·W)
    (PyTorch's neural-transfer tutorial: `gram_matrix`, `F.mse_loss`)."""
    from jaxvis.methods.style import StyleTransfer

    rng = np.random.default_rng(0)
    acts = {"a": rng.normal(size=(3, 6, 5, 4)).astype(np.float32), "b": rng.normal(size=(3, 3, 2, 8)).astype(np.float32)}
    spec = StyleTransfer(("a", "b"), "b", content_weight=2.0, style_weight=1e3)
    value = float(spec.objective()({k: jnp.asarray(v) for k, v in acts.items()}))

    def gram(f):  # one image (H, W, C) -> (C, C)
        flat = f.reshape(-1, f.shape[-1]).astype(np.float64).T  # (C, H*W), the tutorial's view(b, c*d)
        return flat @ flat.T / flat.size

    content = np.mean((acts["b"][0].astype(np.float64) - acts["b"][1]) ** 2)
    style = sum(np.mean((gram(acts[layer][0]) - gram(acts[layer][2])) ** 2) for layer in ("a", "b"))
    assert value == pytest.approx(-(2.0 * content + 1e3 * style), rel=1e-5)


def test_style_transfer_lowers_the_gram_loss_tenfold_with_bounded_content_loss(mobilenet):
    content = center_crop_resize(read_image("sample:chelsea"), 96)
    style = center_crop_resize(read_image("sample:brick"), 96)
    result = transfer_style(mobilenet, content, style, param="pixel", optimizer="lbfgs", steps=40, progress=False)
    image = result.images[0, 0]
    start = style_losses(mobilenet, content, content, style)
    end = style_losses(mobilenet, image, content, style)
    stylish = style_losses(mobilenet, style, content, style)
    assert end["style"] < start["style"] / 10
    assert end["content"] < 0.85 * stylish["content"]  # still closer to the content than the style image is


def test_style_transfer_with_fourier_and_adam_on_given_layers(mobilenet):
    content = center_crop_resize(read_image("sample:chelsea"), 96)
    style = center_crop_resize(read_image("sample:gravel"), 96)
    layers = ["features.2", "features.4"]
    result = transfer_style(mobilenet, content, style, style_layers=layers, content_layer="features.4",
                            param="fourier", steps=40, progress=False)
    assert result.history[-1, 0] > result.history[0, 0]
    with pytest.raises(jaxvis.UnknownLayerError, match="features.99"):
        transfer_style(mobilenet, content, style, style_layers=["features.99"], content_layer="features.4")


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("classes", "error", "message"),
    [(["goldfsh"], UnknownClassError, "Did you mean goldfish"), ([1000], UnknownClassError, "0..999")],
)
def test_bad_classes_are_refused_before_any_work(mobilenet, classes, error, message):
    for method in ("pii", "deepinversion", "logit"):
        with pytest.raises(error, match=message):
            invert(mobilenet, classes, method=method)


def test_unknown_method_names_the_valid_ones(mobilenet):
    with pytest.raises(UnknownMethodError, match="Did you mean pii"):
        invert(mobilenet, [1], method="pi")


def test_pii_refuses_a_size_whose_first_stage_is_too_small(mobilenet):
    with pytest.raises(InvalidImageError, match="starts at 2·\\(64//8\\) = 16 px.*size >= 128"):
        invert(mobilenet, [1], method="pii", size=64)


def test_photos_must_be_readable_and_large_enough(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match="not an image file"):
        read_photo(text, 96, 32)
    from jaxvis.data.io import save_image

    tiny = save_image(np.zeros((20, 30, 3), np.float32), tmp_path / "tiny.png")
    with pytest.raises(ImageReadError, match="20x30, smaller than the 32 px that mobilenet_v2 accepts"):
        read_photo(tiny, 96, 32, "mobilenet_v2")
    assert read_photo("sample:coffee", 64, 32).shape == (64, 64, 3)


def test_vgg_average_pooling_keeps_names_and_shapes():
    from jaxvis.models.model import layer_shapes
    from jaxvis.models.vgg import VGG19, average_pooling

    pooled = average_pooling(VGG19)
    assert layer_shapes(pooled, 64) == layer_shapes(VGG19, 64)
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    from jaxvis.models.layers import AvgPool2d
    from jaxvis.models.probe import Probe

    pooled_x = AvgPool2d(2).apply({}, x, Probe(need_output=True))
    np.testing.assert_allclose(np.asarray(pooled_x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
