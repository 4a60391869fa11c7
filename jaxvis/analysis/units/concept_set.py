"""An offline concept-segmentation set, for dissection where Broden cannot be downloaded.

Two kinds of images, written in the simple layout (`jaxvis.data.segmentation`):

- real photos (scikit-image's colour photos, and foolbox's 20 ImageNet photos where
  foolbox is installed), square crops, each pixel labelled with one of Broden's
  eleven colour names.  Broden names colours with van de Weijer et al.'s learned
  colour-naming table (2009), which is not available offline; here each pixel takes
  the nearest of eleven prototype colours in CIELAB -- an approximation, stated as one;
- collages: a photo crop cut into twelve random Voronoi cells, two to four of them
  replaced by scikit-image's texture photos -- brick, grass, gravel (category
  "material") or a checkerboard ("texture", DTD's "chequered") -- so each texture
  pixel is known exactly and covers a small part of the data, as Broden's concepts
  do; every pixel carries a colour name too.

    root = build_concept_set("concepts/", seed=0)
    jaxvis.dissect(model, "features.14", root)

On Broden itself (`broden1_224`, from NetDissect-Lite's `script/dlbroden.sh` where
it can be downloaded), pass its folder instead: `jaxvis.data.segmentation` reads it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from jaxvis.core.files import write_whole
from jaxvis.data.io import center_crop_resize, read_image, save_image
from jaxvis.data.segmentation import concepts_csv

SIZE = 224
# Broden's colour names (its label.csv, category "color") and a prototype sRGB colour for each.
COLOURS = {
    "black": (0, 0, 0), "blue": (40, 90, 200), "brown": (130, 85, 45), "green": (60, 160, 60),
    "grey": (128, 128, 128), "orange": (240, 140, 30), "pink": (240, 160, 190), "purple": (130, 60, 160),
    "red": (210, 40, 40), "white": (255, 255, 255), "yellow": (245, 225, 50),
}
MATERIALS = ("brick", "grass", "gravel")  # scikit-image texture photos
TEXTURES = {"chequered": "checkerboard"}  # concept -> scikit-image sample
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel")


def concept_rows() -> list[tuple[int, str, str]]:
    """(id, name, category) of every concept, ids from 1."""
    names = [(name, "color") for name in COLOURS] + [(name, "material") for name in MATERIALS] + \
        [(name, "texture") for name in TEXTURES]
    return [(index, name, category) for index, (name, category) in enumerate(names, start=1)]


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 1], (..., 3)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_names(image: np.ndarray) -> np.ndarray:
    """Each pixel's colour concept id (1..11, `concept_rows` order): the nearest prototype in CIELAB."""
    prototypes = srgb_to_lab(np.asarray(list(COLOURS.values()), np.float64) / 255)
    lab = srgb_to_lab(np.asarray(image, np.float64))
    distance = ((lab[..., None, :] - prototypes) ** 2).sum(axis=-1)
    return (distance.argmin(axis=-1) + 1).astype(np.uint8)


def photo_sources() -> list[str]:
    """The photos used: scikit-image's, then foolbox's ImageNet samples if foolbox is installed."""
    sources = [f"sample:{name}" for name in PHOTOS]
    spec = importlib.util.find_spec("foolbox")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "data"
        sources += [str(path) for path in sorted(folder.glob("imagenet_*.jpg"))]
    return sources


def crops(image: np.ndarray, rng: np.random.Generator, count: int, size: int = SIZE) -> list[np.ndarray]:
    """The central square crop, then `count - 1` random square crops of half to all of the short side."""
    out = [center_crop_resize(image, size, crop_fraction=1.0)]
    height, width = image.shape[:2]
    for _ in range(count - 1):
        side = int(min(height, width) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        out.append(center_crop_resize(image[top:top + side, left:left + side], size, crop_fraction=1.0))
    return out


def collage(rng: np.random.Generator, textures: dict[int, np.ndarray], background: np.ndarray, cells: int = 12,
            pasted: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """`background` (a photo crop) cut into `cells` random Voronoi cells, `pasted` of them replaced by a
    random crop of a random texture: (image, texture concept id per pixel, 0 on the photo)."""
    size = background.shape[0]
    seeds = rng.uniform(0, size, size=(cells, 2))
    rows, columns = np.mgrid[0:size, 0:size]
    cell = (((rows[..., None] - seeds[:, 0]) ** 2 + (columns[..., None] - seeds[:, 1]) ** 2)).argmin(axis=-1)
    image = background.astype(np.float32).copy()
    labels = np.zeros((size, size), np.uint8)
    for index in rng.choice(cells, size=min(pasted, cells), replace=False):
        concept = int(rng.choice(list(textures)))
        texture = textures[concept]
        top = rng.integers(0, texture.shape[0] - size + 1)
        left = rng.integers(0, texture.shape[1] - size + 1)
        inside = cell == index
        image[inside] = texture[top:top + size, left:left + size][inside]
        labels[inside] = concept
    return image, labels


def _texture(sample: str, size: int) -> np.ndarray:
    image = read_image(f"sample:{sample}")
    if min(image.shape[:2]) < 2 * size:  # small samples (the checkerboard) tiled up
        reps = -(-2 * size // min(image.shape[:2]))
        image = np.tile(image, (reps, reps, 1))
    return image


def build_concept_set(root: str | os.PathLike, *, crops_per_photo: int = 3, collages: int = 48, seed: int = 0,
                      photos: list[str] | None = None, size: int = SIZE) -> Path:
    """Write the concept set under `root` (simple layout) and return `root`; the same seed, the same set."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = concept_rows()
    write_whole(root / "concepts.csv", concepts_csv(rows))
    ids = {name: concept for concept, name, _ in rows}
    backgrounds = []
    for source in photos if photos is not None else photo_sources():
        stem = Path(source.removeprefix("sample:")).stem
        for index, crop in enumerate(crops(read_image(source), rng, crops_per_photo, size)):
            _write(root, f"photo-{stem}-{index}", crop, {"color": colour_names(crop)})
            backgrounds.append(crop)
    textures = {ids[name]: _texture(name, size) for name in MATERIALS}
    textures |= {ids[name]: _texture(sample, size) for name, sample in TEXTURES.items()}
    for index in range(collages):
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        image, material = collage(rng, textures, background, pasted=int(rng.integers(2, 5)))
        _write(root, f"collage-{index:03d}", image, {"color": colour_names(image), "texture": material})
    return root


def _write(root: Path, name: str, image: np.ndarray, masks: dict[str, np.ndarray]) -> None:
    save_image(image, root / "images" / f"{name}.png")
    for layer, mask in masks.items():
        save_image(mask.astype(np.uint8), root / "masks" / name / f"{layer}.png")

