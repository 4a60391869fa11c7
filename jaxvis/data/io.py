"""Images in and out: float32 HWC arrays in [0, 1] at every public boundary."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import write_whole

SAMPLE_PREFIX = "sample:"


class ImageReadError(JaxvisError, OSError):
    pass


def read_image(source: str | Path) -> np.ndarray:
    """An RGB image as float32 (H, W, 3) in [0, 1] from a file, or `sample:NAME` (chelsea, coffee and brick
    ship with jaxvis; the rest of scikit-image's photos need scikit-image).

    8-bit images of any mode are converted by Pillow (greyscale repeated, a palette looked up, CMYK converted,
    alpha dropped); 16-bit greyscale is scaled from [0, 65535] and floating-point greyscale read as [0, 1], not
    clipped to 8 bits as Pillow's RGB conversion would.  An image over Pillow's decompression-bomb limit is
    refused before it is decoded."""
    if str(source).startswith(SAMPLE_PREFIX):
        return _sample(str(source)[len(SAMPLE_PREFIX):])
    path = Path(source)
    try:
        with Image.open(path) as image:
            return _rgb(image)
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path} has more pixels than Pillow decodes ({2 * Image.MAX_IMAGE_PIXELS}, twice "
                             "PIL.Image.MAX_IMAGE_PIXELS: its guard against decompression bombs); shrink the image "
                             "first (or, trusting the file, raise PIL.Image.MAX_IMAGE_PIXELS in Python).") from None
    except FileNotFoundError:
        raise ImageReadError(f"image {path} does not exist.") from None
    except IsADirectoryError:
        raise ImageReadError(f"image path {path} is a directory, not an image file.") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path} is not an image file Pillow can read (PNG, JPEG, ...).") from None
    except OSError as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


WIDE_GREYSCALE = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I": 65535.0, "F": 1.0}  # mode: full scale


def _rgb(image: Image.Image) -> np.ndarray:
    """An opened image's pixels as float32 RGB in [0, 1]."""
    if image.mode in WIDE_GREYSCALE:
        grey = np.clip(np.asarray(image, np.float32) / WIDE_GREYSCALE[image.mode], 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=-1)
    return to_float(np.asarray(image.convert("RGB")))


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 in [0, 1]."""
    return np.asarray(pixels, np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5, np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A float (H, W, 3) image in [0, 1], or uint8 pixels (H, W, 3) or (H, W), encoded as PNG."""
    pixels = np.asarray(pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels if pixels.dtype == np.uint8 else to_uint8(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """`array` in NumPy's .npy format."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def save_image(image: np.ndarray, path: str | Path) -> Path:
    """Write a float (H, W, 3) image in [0, 1] (or uint8 pixels) as PNG, whole (`jaxvis.core.files.write_whole`),
    creating the folder."""
    path = Path(path)
    write_whole(path, png_bytes(image))
    return path


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float (H, W, 3) image (Pillow, antialiased when shrinking)."""
    planes = [Image.fromarray(np.asarray(image[..., c], np.float32), mode="F") for c in range(3)]
    resized = [np.asarray(p.resize((width, height), Image.BILINEAR)) for p in planes]
    return np.stack(resized, axis=-1).astype(np.float32)


def center_crop_resize(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """ImageNet evaluation preprocessing: shorter side to size/crop_fraction, then the central size x size."""
    height, width = image.shape[:2]
    scale = (size / crop_fraction) / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    image = resize(image, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[top : top + size, left : left + size]


def read_photo(source: str | Path, size: int, min_size: int, what: str = "the model") -> np.ndarray:
    """`read_image`, refused if smaller than `min_size`, then `center_crop_resize`d to size x size."""
    image = read_image(source)
    height, width = image.shape[:2]
    if min(height, width) < min_size:
        raise ImageReadError(
            f"image {source} is {height}x{width}, smaller than the {min_size} px that {what} accepts; "
            "use a larger image."
        )
    return center_crop_resize(image, size, crop_fraction=1.0)


SHIPPED_SAMPLES = Path(__file__).parent / "samples"  # copies of scikit-image's photos (CC0)


def _sample(name: str) -> np.ndarray:
    """A sample photo: one shipped with jaxvis, else scikit-image's of that name."""
    shipped = SHIPPED_SAMPLES / f"{name}.png"
    if name.isidentifier() and shipped.is_file():
        with Image.open(shipped) as image:
            return to_float(np.asarray(image.convert("RGB")))
    try:
        import skimage.data
    except ImportError:
        here = ", ".join(sorted(p.stem for p in SHIPPED_SAMPLES.glob("*.png")))
        raise ImageReadError(
            f"sample:{name} is not shipped with jaxvis (these are: {here}); the others need scikit-image's "
            "photos: pip install 'jaxvis[samples]'."
        ) from None
    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        known = "astronaut, chelsea, coffee, rocket, brick, grass, gravel"
        raise ImageReadError(f"unknown sample image {name!r}; try one of: {known}.")
    pixels = np.asarray(loader())
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return to_float(pixels[..., :3])
