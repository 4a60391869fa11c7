"""Parameterizations and transforms: shapes, ranges, jit/vmap, and what each one is supposed to do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvis.pieces import param as P
from jaxvis.pieces import transforms as T

KEY = jax.random.key(0)


@pytest.mark.parametrize("make", [P.pixel, P.fourier, P.maco])
def test_params_render_batches_in_the_unit_interval(make):
    param = make(40)
    theta = param.init(KEY, 3)
    images = jax.jit(param.render)(theta)
    assert images.shape == (3, 40, 40, 3) and images.dtype == jnp.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    stacked = jax.vmap(lambda k: param.render(param.init(k, 2)))(jax.random.split(KEY, 4))
    assert stacked.shape == (4, 2, 40, 40, 3)


def test_fourier_init_is_lucids_low_contrast_grey_with_1_over_f_spectrum():
    param = P.fourier(64)
    images = param.render(param.init(KEY, 1))
    assert abs(float(images.mean()) - 0.5) < 0.02 and float(images.std()) < 0.05
    logits = jnp.log(images / (1 - images))[0]  # undo the sigmoid
    spectrum = np.abs(np.fft.rfft2(np.asarray(logits[..., 0])))
    assert spectrum[1:4, 1:4].mean() > 5 * spectrum[20:32, 20:32].mean()  # energy at low frequencies


def test_maco_keeps_the_magnitude_and_optimizes_the_phase():
    param = P.maco(32)
    magnitude = P.natural_magnitude(32)
    phase = param.init(KEY, 1)
    spectrum = magnitude * np.exp(1j * np.asarray(phase[0]))
    raw = np.fft.irfft2(spectrum, s=(32, 32))
    inner = (slice(None), slice(None), slice(1, -1))  # the DC and Nyquist columns must be real: excluded
    np.testing.assert_allclose(np.abs(np.fft.rfft2(raw))[inner], magnitude[inner], rtol=1e-3, atol=1e-3)
    other = param.render(param.init(jax.random.key(1), 1))
    assert not np.allclose(param.render(phase), other)  # the phase alone changes the image


def test_shipped_maco_spectrum_is_reproducible_from_the_scikit_image_photos():
    import os

    import skimage.data

    from jaxvis.data.io import read_image

    names = ["astronaut", "chelsea", "coffee", "rocket"]
    photos = [read_image(f"sample:{n}") for n in names]
    photos.append(read_image(os.path.join(os.path.dirname(skimage.data.__file__), "motorcycle_left.png")))
    np.testing.assert_allclose(P.natural_spectrum(photos), P.natural_magnitude(P.SPECTRUM_SIZE), rtol=2e-3, atol=1e-2)
    assert P.natural_magnitude(64).shape == (3, 64, 33)


def test_jitter_translates_with_zeros():
    images = jnp.arange(2 * 6 * 6 * 3, dtype=jnp.float32).reshape(2, 6, 6, 3) + 1
    out = T._translate(images, 2, 1)
    np.testing.assert_array_equal(out[:, 2:, 1:], images[:, :-2, :-1])
    assert float(out[:, :2].max()) == 0 and float(out[:, :, :1].max()) == 0
    shifted = T.jitter(8)(KEY, jnp.ones((1, 16, 16, 3)))
    assert shifted.shape == (1, 16, 16, 3)


def test_roll_and_flip_preserve_content():
    images = jax.random.uniform(KEY, (2, 10, 12, 3))
    rolled = T.roll(3)(jax.random.key(5), images)
    assert np.isclose(float(rolled.sum()), float(images.sum()), rtol=1e-5)
    flipped = [T.flip()(jax.random.key(k), images) for k in range(8)]
    assert any(np.allclose(f, images[:, :, ::-1]) for f in flipped) and any(np.allclose(f, images) for f in flipped)


def test_affine_identity_and_quarter_turn():
    images = jax.random.uniform(KEY, (1, 9, 9, 3))
    np.testing.assert_allclose(T._affine(images, 1.0, 0.0), images, atol=1e-6)
    quarter = T._affine(images, 1.0, np.pi / 2)
    np.testing.assert_allclose(quarter, np.rot90(np.asarray(images), k=1, axes=(1, 2)), atol=1e-5)
    zoomed = T._affine(images, 2.0, 0.0)
    np.testing.assert_allclose(zoomed[0, 4, 4], images[0, 4, 4], atol=1e-6)  # the center stays


def test_color_shift_ranges_match_plug_in_inversion():
    images = jnp.full((64, 4, 4, 3), 0.5)
    shifted = T.color_shift(1.0, 1.0)(KEY, images)
    # x * sigma + mu with mu in (-1, 1) and sigma in (e^-1, e): 0.5 * sigma + mu in (-1 + 0.18, 1 + 1.36)
    assert float(shifted.min()) > -1 + 0.5 / np.e - 1e-6 and float(shifted.max()) < 1 + 0.5 * np.e
    assert float(shifted.std()) > 0.3
    assert np.allclose(shifted[:, 0, 0], shifted[:, 3, 3])  # one shift per image and channel


def test_lucid_preset_shapes_and_jit_vmap():
    images = jax.random.uniform(KEY, (2, 64, 64, 3))
    preset = jax.jit(jax.vmap(T.lucid_standard(224), in_axes=(0, None)))
    out = preset(jax.random.split(KEY, 3), images)
    assert out.shape == (3, 2, 224, 224, 3)
    assert T.lucid_standard(None)(KEY, images).shape == (2, 88, 88, 3)  # padded by 12 on each side
    assert not np.allclose(out[0], out[1])  # every view has its own draw


@pytest.mark.parametrize("scale,degrees", [(1.0, 0.0), (1.1, 10.0), (0.9, -7.0), (1.3, 40.0)])
def test_affine_gather_adjoint_equals_autodiff(scale, degrees):
    images = jax.random.uniform(KEY, (2, 23, 17, 3))
    cotangent = jax.random.normal(jax.random.key(1), (2, 23, 17, 3))
    angle = np.deg2rad(degrees)
    # Compiled whole (op by op, the first case compiled every primitive on its own: 14 s).
    sample = jax.jit(lambda x: jax.vjp(lambda x: T._affine_sample(x, scale, angle), x))
    gather = jax.jit(lambda x: jax.vjp(lambda x: T._affine(x, scale, angle, gather_adjoint=True), x))
    (sampled, autodiff), (gathered, adjoint) = sample(images), gather(images)
    np.testing.assert_allclose(adjoint(cotangent)[0], autodiff(cotangent)[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gathered, sampled)


@pytest.mark.parametrize("source,target", [(152, 224), (224, 152), (56, 70), (97, 64), (8, 8)])
def test_resize_is_jax_image_resize(source, target):
    images = jax.random.uniform(KEY, (2, source, source + 5, 3))
    square = images[:, :, :source]
    expected = jax.image.resize(square, (2, target, target, 3), "linear", antialias=False)
    np.testing.assert_allclose(T.resize_images(square, target), expected, rtol=1e-5, atol=3e-5)  # weights in float64
