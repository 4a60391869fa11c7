"""Any image file a user points at (issue 35, point 6): it reads as float32 RGB in [0, 1] with the pixels it holds,
or it is refused with `ImageReadError` saying what is wrong -- never another exception, never a hang.

Hypothesis draws images of every mode Pillow writes (greyscale, greyscale with alpha, palette, RGB, RGBA, 1-bit,
16-bit greyscale, floating-point greyscale, CMYK and RGB JPEGs), of any size from 1 x 1 to 1 x 2000 strips, and
then damages some of them (cut at any byte, a byte changed anywhere, or random bytes).  The expected pixels of the
lossless ones are computed here with NumPy from the arrays written (a palette looked up by index, 16-bit scaled
by 65535), not by Pillow's conversion.  Mutations that fail it: `read_image` letting Pillow clip 16-bit or float
greyscale to 8 bits (a 16-bit image read nearly white), and not catching Pillow's decompression-bomb error.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxvis.data.io import ImageReadError, read_image

LOSSLESS = ("L", "LA", "P", "RGB", "RGBA", "1", "I;16", "F")
LOSSY = ("CMYK", "JPEG-RGB")


def encoded(mode: str, height: int, width: int, seed: int) -> tuple[bytes, np.ndarray | None]:
    """An image file's bytes, and the RGB pixels in [0, 1] it holds (None for the lossy JPEGs)."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    if mode == "P":
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        index = rng.integers(0, 256, (height, width), dtype=np.uint8)
        image = Image.fromarray(index, "L").convert("P")
        image.putpalette(palette.ravel().tolist())
        image.save(out, "PNG")
        return out.getvalue(), palette[index] / np.float32(255)
    if mode in ("CMYK", "JPEG-RGB"):
        pixels = rng.integers(0, 256, (height, width, 4 if mode == "CMYK" else 3), dtype=np.uint8)
        Image.fromarray(pixels, "CMYK" if mode == "CMYK" else "RGB").save(out, "JPEG")
        return out.getvalue(), None
    if mode == "I;16":
        grey = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        Image.fromarray(grey).save(out, "PNG")  # mode I;16
        return out.getvalue(), np.repeat((grey / np.float32(65535))[..., None], 3, axis=-1)
    if mode == "F":
        grey = rng.random((height, width), dtype=np.float32)
        Image.fromarray(grey).save(out, "TIFF")  # mode F
        return out.getvalue(), np.repeat(grey[..., None], 3, axis=-1)
    if mode == "1":
        bits = rng.random((height, width)) < 0.5
        Image.fromarray(bits).save(out, "PNG")
        return out.getvalue(), np.repeat(bits[..., None], 3, axis=-1).astype(np.float32)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(out, "PNG")
    colour = np.repeat(pixels[..., :1], 3, axis=-1) if channels <= 2 else pixels[..., :3]  # alpha dropped
    return out.getvalue(), colour / np.float32(255)


sizes = st.one_of(st.tuples(st.integers(1, 40), st.integers(1, 40)), st.tuples(st.just(1), st.integers(1, 2000)),
                  st.tuples(st.integers(1, 2000), st.just(1)))
damage = st.one_of(st.none(), st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
                   st.tuples(st.just("byte"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                   st.tuples(st.just("random"), st.integers(0, 4096)))


def damaged(data: bytes, how: tuple | None, seed: int) -> bytes:
    if how is None:
        return data
    if how[0] == "cut":
        return data[: int(how[1] * len(data))]
    if how[0] == "byte":
        at = int(how[1] * len(data))
        return data[:at] + bytes([how[2]]) + data[at + 1:]
    return np.random.default_rng(seed).bytes(how[1])


@settings(max_examples=300, deadline=None, database=None)
@given(mode=st.sampled_from(LOSSLESS + LOSSY), size=sizes, seed=st.integers(0, 2**16), how=damage)
def test_any_image_file_reads_as_the_pixels_it_holds_or_is_refused_clearly(mode, size, seed, how):
    data, expected = encoded(mode, *size, seed)
    data = damaged(data, how, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except ImageReadError as error:
            assert str(path) in str(error)
            assert how is not None, f"an intact {mode} image was refused: {error}"
            return
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert np.all((image >= 0) & (image <= 1))
    if how is None:
        assert image.shape[:2] == size
        if expected is not None:
            np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    """A 1-bit PNG of 20000 x 20000 pixels (50 KB on disk, 400 million pixels decoded): over twice Pillow's limit."""
    path = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(path)
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageReadError, match="decompression bombs.*shrink the image first"):
        read_image(path)
