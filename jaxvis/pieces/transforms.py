"""Random image transforms for transformation robustness, each a pure `(key, images) -> images`.

`images` is a batch (B, H, W, 3) in [0, 1]; one random draw per call (the
engine gives every unit and every ensemble view its own key).  Every transform
is a small frozen dataclass registered as a pytree (`jaxvis.core.structure.piece`):
its kind and sizes are the compiled program's structure, its strengths (jitter
distance, ColorShift's ranges, padding value) runtime values, so runs that differ
only in those share one program; any function `(key, images) -> images` of your
own works too.  All
output shapes are static, so transforms run under `jit` and `vmap`: where
Lucid's random scale changes the image size, ours zooms about the center at a
fixed size (the content's scale relative to the network changes the same way).

    augment = compose(pad(12), jitter(8), random_scale_rotate(...), jitter(4))
    views = augment(key, images)

Shifts and resampling are written so that their backward pass is a gather
too (an exact adjoint), never the scatter-add that autodiff makes of a gather
with traced indices: scatters compile and run slowly on CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.structure import piece
from jaxvis.models.ops import avg_pool2d

Array = jax.Array
Transform = Callable[[Array, Array], Array]


@piece(data=("transforms",))
class Compose:
    transforms: tuple[Transform, ...]

    def __call__(self, key: Array, images: Array) -> Array:
        for transform, subkey in zip(self.transforms, jax.random.split(key, max(len(self.transforms), 1))):
            images = transform(subkey, images)
        return images


def compose(*transforms: Transform) -> Transform:
    """Apply `transforms` in order, each with its own key (identities are dropped)."""
    kept = tuple(as_piece(t) for t in transforms if not isinstance(t, Identity))
    return Compose(kept) if kept else Identity()


@piece
class Function:
    """A transform that is a function of your own: part of the program's structure (it has no runtime values)."""

    function: Transform

    def __call__(self, key: Array, images: Array) -> Array:
        return self.function(key, images)


def as_piece(transform: Transform) -> Transform:
    """`transform` as a pytree whose numbers (jitter distance, ColorShift's ranges, ...) are runtime values, so
    runs that differ only in them share one compiled program; a function of your own becomes a `Function`."""
    if not callable(transform):
        raise TypeError(f"a transform must be a function (key, images) -> images, got {type(transform).__name__}")
    return Function(transform) if jax.tree_util.all_leaves([transform]) else transform


@piece
class Identity:
    def __call__(self, key: Array, images: Array) -> Array:
        return images


def identity() -> Transform:
    return Identity()


@piece(data=("value",))
class Pad:
    """Constant padding on every side (Lucid: 12 px of 0.5 grey)."""

    width: int
    value: float = 0.5

    def __call__(self, key: Array, images: Array) -> Array:
        w = self.width
        return jnp.pad(images, ((0, 0), (w, w), (w, w), (0, 0)), constant_values=self.value)


def pad(width: int, value: float = 0.5) -> Transform:
    return Pad(width, value)


@piece(data=("distance",))
class Jitter:
    """Translate by (dy, dx) uniform in [0, distance), filling with zeros (Lucent's `jitter`, kornia translate)."""

    distance: int

    def __call__(self, key: Array, images: Array) -> Array:
        dy, dx = jax.random.randint(key, (2,), 0, self.distance)
        return translate(images, dy, dx)


def jitter(distance: int) -> Transform:
    return Jitter(distance)


@piece(data=("distance",))
class Roll:
    """Circular shift by (dy, dx) uniform in [-distance, distance] (Plug-In Inversion's and DeepDream's jitter)."""

    distance: int

    def __call__(self, key: Array, images: Array) -> Array:
        dy, dx = jax.random.randint(key, (2,), -self.distance, self.distance + 1)
        return roll_images(images, dy, dx)


def roll(distance: int) -> Transform:
    return Roll(distance)


@piece(data=("scales",))
class RandomScaleRotate:
    """Zoom and rotate about the center by a scale and an angle drawn from the tables, bilinear, zeros outside
    (kornia's rotate); both about the center, so they commute, and done as one resampling.  The scales are
    runtime values (a sweep over Lucid's scale range is one program); the angles and the table sizes are
    structure, and so is `gather_adjoint` (whether every draw stays within the reach of the gather adjoint)."""

    scales: tuple[float, ...] = (1.0,)
    degrees: tuple[float, ...] = (0.0,)
    gather_adjoint: bool = True

    def __call__(self, key: Array, images: Array) -> Array:
        k_scale, k_angle = jax.random.split(key)
        scale = jnp.asarray(self.scales, jnp.float32)[jax.random.randint(k_scale, (), 0, len(self.scales))]
        angle = jnp.deg2rad(jnp.asarray(self.degrees, jnp.float32))[jax.random.randint(k_angle, (), 0, len(self.degrees))]
        return _affine(images, scale, angle, self.gather_adjoint)


def reach(scales: Sequence[float], degrees: Sequence[float]) -> float:
    """The largest scale * (|cos| + |sin|) over the draws: how far a sampled pixel can stray."""
    radians = np.deg2rad(np.asarray(degrees, np.float64))
    return float(max(scales) * np.max(np.abs(np.cos(radians)) + np.abs(np.sin(radians))))


def random_scale_rotate(scales: Sequence[float], degrees: Sequence[float]) -> Transform:
    return RandomScaleRotate(tuple(float(s) for s in scales), tuple(float(d) for d in degrees),
                             reach(scales, degrees) < 2.0)


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom about the center by a factor drawn from `scales`, bilinear, at a fixed size."""
    return random_scale_rotate(scales, [0.0])


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate about the center by an angle drawn from `degrees`, bilinear, zeros outside (kornia's rotate)."""
    return random_scale_rotate([1.0], degrees)


@piece
class Flip:
    """Horizontal flip with probability 1/2."""

    def __call__(self, key: Array, images: Array) -> Array:
        return jnp.where(jax.random.bernoulli(key), images[:, :, ::-1], images)


def flip() -> Transform:
    return Flip()


@piece(data=("mean_range", "log_std_range"))
class ColorShift:
    """Plug-In Inversion's ColorShift: per image and channel x * sigma + mu, mu ~ U(-a, a), sigma = exp(U(-b, b))."""

    mean_range: float = 1.0
    log_std_range: float = 1.0

    def __call__(self, key: Array, images: Array) -> Array:
        k_mu, k_sigma = jax.random.split(key)
        shape = (images.shape[0], 1, 1, images.shape[-1])
        mu = jax.random.uniform(k_mu, shape, images.dtype, -self.mean_range, self.mean_range)
        sigma = jnp.exp(jax.random.uniform(k_sigma, shape, images.dtype, -self.log_std_range, self.log_std_range))
        return images * sigma + mu


def color_shift(mean_range: float = 1.0, log_std_range: float = 1.0) -> Transform:
    return ColorShift(mean_range, log_std_range)


@piece
class CenterCrop:
    size: int

    def __call__(self, key: Array, images: Array) -> Array:
        top, left = (images.shape[1] - self.size) // 2, (images.shape[2] - self.size) // 2
        return images[:, top : top + self.size, left : left + self.size]


def center_crop(size: int) -> Transform:
    return CenterCrop(size)


@piece
class AvgPool:
    """Average-pool by `factor` (DeepInversion's low-resolution stage: `AvgPool2d(kernel_size=2)`)."""

    factor: int

    def __call__(self, key: Array, images: Array) -> Array:
        return avg_pool2d(images, self.factor)


def avg_pool(factor: int) -> Transform:
    return AvgPool(factor)


@piece
class Tiles:
    """Cut images larger than `limit` into a batch of equal tiles of at most `limit` px (edge-padded).

    The tiles go through the network as one batch; since an objective averaged over
    tiles is a sum of per-tile objectives, its gradient is each tile's own gradient
    stitched back together (DeepDream's tiled processing of large images).
    """

    limit: int

    def __call__(self, key: Array, images: Array) -> Array:
        b, h, w, c = images.shape
        rows, cols = -(-h // self.limit), -(-w // self.limit)
        if rows == cols == 1:
            return images
        th, tw = -(-h // rows), -(-w // cols)
        padded = jnp.pad(images, ((0, 0), (0, rows * th - h), (0, cols * tw - w), (0, 0)), mode="edge")
        grid = padded.reshape(b, rows, th, cols, tw, c).transpose(0, 1, 3, 2, 4, 5)
        return grid.reshape(b * rows * cols, th, tw, c)


def tiles(limit: int) -> Transform:
    return Tiles(limit)


@piece
class Resize:
    """Bilinear resize to size x size (Lucent upsamples images smaller than 224 before the model)."""

    size: int

    def __call__(self, key: Array, images: Array) -> Array:
        return resize_images(images, self.size)


def resize(size: int) -> Transform:
    return Resize(size)


def resize_images(images: Array, size: int) -> Array:
    """`jax.image.resize(images, (B, size, size, C), "linear", antialias=False)`, as two small matrix products."""
    height, width = images.shape[1:3]
    if (height, width) == (size, size):
        return images
    rows, cols = _resize_matrix(height, size), _resize_matrix(width, size)
    return jnp.einsum("ph,bhwc,qw->bpqc", rows, images, cols)


@lru_cache(maxsize=64)
def _resize_matrix(source: int, target: int) -> np.ndarray:
    """The (target, source) weights of jax.image.resize's linear kernel without antialiasing, in NumPy.

    As `jax._src.image.scale._compute_weight_mat`: sample at (p + 0.5) · source/target − 0.5,
    triangle weights, normalized over the input, zero for samples outside [−0.5, source − 0.5].
    """
    sample = (np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(sample[:, None] - np.arange(source)[None, :]))
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps, weights / np.where(total == 0, 1, total), 0.0)
    inside = (sample >= -0.5) & (sample <= source - 0.5)
    return np.where(inside[:, None], weights, 0.0).astype(np.float32)


def lucid_standard(model_size: int | None = 224, jitter_distance: int = 8, scale_spread: float = 0.1) -> Transform:
    """Lucid/Lucent's `standard_transforms` (pad 12 with 0.5, jitter 8, scale 0.9-1.1 in 11 steps,
    rotate -10..10 degrees plus five extra 0s, jitter 4), then Lucent's resize to the model size.

    jitter_distance: the first jitter's (Lucid's 8); scale_spread: the scales run 1 ± spread in 11 steps
    (Lucid's 0.1).  Both are runtime values: runs that differ only in them share one program."""
    steps = [
        pad(12),
        jitter(jitter_distance),
        random_scale_rotate([1 + scale_spread * (i - 5) / 5 for i in range(11)], list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    ]
    return compose(*steps, *([resize(model_size)] if model_size else []))


# --- shifts with gather adjoints -------------------------------------------------------------------


def translate(images: Array, dy: Array, dx: Array) -> Array:
    """Shift content down/right by (dy, dx) pixels, zeros entering from the edges (adjoint: the opposite shift)."""
    return _translate(images, jnp.asarray(dy, jnp.int32), jnp.asarray(dx, jnp.int32))


@jax.custom_vjp
def _translate(images: Array, dy: Array, dx: Array) -> Array:
    height, width = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (height, height), (width, width), (0, 0)))
    return jax.lax.dynamic_slice(padded, (0, height - dy, width - dx, 0), images.shape)


def _translate_fwd(images, dy, dx):
    return _translate(images, dy, dx), (dy, dx)


def _translate_bwd(residuals, grad):
    dy, dx = residuals
    return _translate(grad, -dy, -dx), None, None


_translate.defvjp(_translate_fwd, _translate_bwd)


def roll_images(images: Array, dy: Array, dx: Array) -> Array:
    """`jnp.roll(images, (dy, dx), axis=(1, 2))` whose backward is the opposite roll."""
    return _roll(images, jnp.asarray(dy, jnp.int32), jnp.asarray(dx, jnp.int32))


@jax.custom_vjp
def _roll(images: Array, dy: Array, dx: Array) -> Array:
    height, width = images.shape[1:3]
    tiled = jnp.tile(images, (1, 2, 2, 1))
    return jax.lax.dynamic_slice(tiled, (0, (-dy) % height, (-dx) % width, 0), images.shape)


def _roll_fwd(images, dy, dx):
    return _roll(images, dy, dx), (dy, dx)


def _roll_bwd(residuals, grad):
    dy, dx = residuals
    return _roll(grad, -dy, -dx), None, None


_roll.defvjp(_roll_fwd, _roll_bwd)


# --- bilinear zoom and rotation ----------------------------------------------------------------------


def _affine(images: Array, scale: Array | float, angle: Array | float, gather_adjoint: bool = False) -> Array:
    """Zoom by `scale` and rotate by `angle` about the center; bilinear, zeros outside, same size.

    gather_adjoint: every draw's `reach` is below 2, so the backward pass can be `_affine_adjoint` (a gather;
    autodiff would make a slower scatter-add).
    """
    if gather_adjoint:
        return _affine_with_adjoint(images, jnp.asarray(scale, jnp.float32), jnp.asarray(angle, jnp.float32))
    return _affine_sample(images, scale, angle)


def _source(ys: Array, xs: Array, center: tuple[float, float], scale: Array, angle: Array) -> tuple[Array, Array]:
    """Where output pixel (ys, xs) reads from: inverse rotation (positive angles turn the content
    counterclockwise, as kornia's), then inverse zoom, about `center`."""
    (cy, cx), cos, sin = center, jnp.cos(angle), jnp.sin(angle)
    return ((ys - cy) * cos + (xs - cx) * sin) / scale + cy, (-(ys - cy) * sin + (xs - cx) * cos) / scale + cx


def _grid(height: int, width: int) -> tuple[Array, Array]:
    return jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")


def _affine_sample(images: Array, scale: Array | float, angle: Array | float) -> Array:
    height, width = images.shape[1:3]
    center = ((height - 1) / 2.0, (width - 1) / 2.0)
    src_y, src_x = _source(*_grid(height, width), center, scale, angle)
    return jax.vmap(lambda image: _bilinear(image, src_y, src_x))(images)


@jax.custom_vjp
def _affine_with_adjoint(images: Array, scale: Array, angle: Array) -> Array:
    return _affine_sample(images, scale, angle)


def _affine_fwd(images: Array, scale: Array, angle: Array):
    return _affine_sample(images, scale, angle), (scale, angle)


def _affine_adjoint(residuals, grad: Array):
    """The exact transpose of bilinear sampling, as a gather: input pixel p collects
    w(q -> p) * grad[q] from the output pixels q whose source lies within one pixel of p;
    those lie within 2 pixels of the inverse image of p when scale * (|cos| + |sin|) < 2."""
    scale, angle = residuals
    height, width = grad.shape[1:3]
    center = ((height - 1) / 2.0, (width - 1) / 2.0)
    ys, xs = _grid(height, width)
    (cy, cx), cos, sin = center, jnp.cos(angle), jnp.sin(angle)
    base_y = jnp.floor(scale * ((ys - cy) * cos - (xs - cx) * sin) + cy)
    base_x = jnp.floor(scale * ((ys - cy) * sin + (xs - cx) * cos) + cx)
    total = jnp.zeros_like(grad)
    for dy in (-1, 0, 1, 2):
        for dx in (-1, 0, 1, 2):
            qy, qx = base_y + dy, base_x + dx
            sy, sx = _source(qy, qx, center, scale, angle)
            weight = jnp.maximum(0.0, 1 - jnp.abs(sy - ys)) * jnp.maximum(0.0, 1 - jnp.abs(sx - xs))
            inside = (qy >= 0) & (qy <= height - 1) & (qx >= 0) & (qx <= width - 1)
            values = grad[:, jnp.clip(qy, 0, height - 1).astype(jnp.int32), jnp.clip(qx, 0, width - 1).astype(jnp.int32)]
            total = total + jnp.where(inside, weight, 0.0)[None, ..., None] * values
    return total, jnp.zeros_like(scale), jnp.zeros_like(angle)


_affine_with_adjoint.defvjp(_affine_fwd, _affine_adjoint)


def _patches(image: Array, starts: Array, size: int) -> Array:
    """The size x size patches of an (H, W, C) image whose top-left corners are `starts` (..., 2): one gather."""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(starts.ndim - 1, starts.ndim, starts.ndim + 1),
                                          collapsed_slice_dims=(), start_index_map=(0, 1))
    return jax.lax.gather(image, starts, dims, (size, size, image.shape[-1]),
                          mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _bilinear(image: Array, y: Array, x: Array) -> Array:
    """Sample an (H, W, C) image at fractional coordinates, zero outside: one gather of 2 x 2 patches."""
    height, width = image.shape[:2]
    y0, x0 = jnp.floor(y), jnp.floor(x)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    overlaps = (y0 >= -1) & (y0 <= height - 1) & (x0 >= -1) & (x0 <= width - 1)  # the 2 x 2 patch touches the image
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)))
    starts = jnp.stack([jnp.clip(y0 + 1, 0, height), jnp.clip(x0 + 1, 0, width)], axis=-1).astype(jnp.int32)
    patch = _patches(padded, starts, 2)  # (..., 2, 2, C)
    top = patch[..., 0, 0, :] * (1 - fx) + patch[..., 0, 1, :] * fx
    bottom = patch[..., 1, 0, :] * (1 - fx) + patch[..., 1, 1, :] * fx
    return jnp.where(overlaps[..., None], top * (1 - fy) + bottom * fy, 0.0)
