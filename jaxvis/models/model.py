"""`Model`: converted weights plus a pure forward with named captures and edits.

    logits = model(images)                                   # float NHWC in [0, 1]
    acts = model(images, capture=["features.14", "logits"])  # {name: activation}
    acts = model(images, capture=[...], edit={"features.14": fn})
    faces = generator(z)                                     # a generator: latents (N, Z) -> NHWC in [0, 1]

A model is a pytree (its variables are the leaves; the architecture and fast
paths are static), so it can be passed through `jax.jit`, closed over, and
used under `jax.grad` and `jax.vmap`.  Activations keep the layout of the
computation: NHWC for conv features, (N, tokens, dim) for transformers and
mixers, (N, features) after pooling.  The final output is named
`arch.output`: `"logits"` for classifiers (and the saliency model), `"image"`
for a generator.

A generator (`Architecture.latent_size` > 0, e.g. `jaxvis.models.dcgan`) takes
a batch of latent vectors instead of images and gives images in [0, 1]; any
Flax module `module(z, probe)` that taps its layers plugs in the same way (see
`jaxvis/models/dcgan.py`), and captures and edits work on its layers as on a
classifier's.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from converters.namings import Naming
from converters.resolve import WeightSource
from jaxvis.core.cache_dirs import cache_dir
from jaxvis.core.errors import InvalidImageError, InvalidLatentError, UnknownLayerError
from jaxvis.core.files import write_whole
from jaxvis.core.programs import Program, source_digest
from jaxvis.core.structure import describe, piece
from jaxvis.models.ops import FastPaths
from jaxvis.models.probe import Edit, Probe, StopForward
from jaxvis.models.request import check_image_size

Array = jax.Array
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
OUTPUT = "logits"


@dataclass(frozen=True)
class Architecture:
    """Everything static about a network: how to build it, feed it, and find its weights."""

    name: str
    family: str  # "cnn", "vit" or "mlp"
    source: str  # the library whose state_dict naming the model mirrors
    build: Callable[[], nn.Module]
    min_size: int  # smallest square input the network accepts
    input_size: int = 224
    fixed_size: bool = False  # transformers/mixers: only `input_size` (fixed token count)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000
    pretrained: tuple[WeightSource, ...] = ()
    ignore_keys: tuple[str, ...] = ()  # state_dict prefixes that are known and unused
    namings: tuple[Naming, ...] = ()  # foreign state_dict namings recognised and translated
    default_layer: str = ""  # a middle layer worth visualizing first (`jaxvis visualize NAME`)
    latent_size: int = 0  # > 0: a generator, fed latent vectors (N, latent_size) instead of images
    output: str = OUTPUT  # the name of the final output (`"image"` for a generator)

    @property
    def is_generator(self) -> bool:
        return self.latent_size > 0

    @functools.cached_property
    def module(self) -> nn.Module:
        return self.build()


@dataclass(frozen=True)
class Model:
    arch: Architecture
    variables: Any
    fast: FastPaths = field(default_factory=FastPaths.none)

    @property
    def name(self) -> str:
        return self.arch.name

    @property
    def input_size(self) -> int:
        return self.arch.input_size

    @property
    def layers(self) -> list[str]:
        """Every capturable name, in forward order, named like the torch modules; the output (`arch.output`) last."""
        return list(layer_shapes(self.arch, self.arch.input_size))

    def layer_shapes(self, size: int | None = None) -> dict[str, tuple[int, ...]]:
        """`{name: activation shape}` for one image of `size` (default: the model's input size)."""
        return dict(layer_shapes(self.arch, size or self.arch.input_size))

    def with_fast_paths(self, fast: FastPaths | bool) -> "Model":
        """The same weights computed with (True), without (False) or with chosen fast paths."""
        if isinstance(fast, bool):
            fast = FastPaths.for_backend(jax.default_backend()) if fast else FastPaths.none()
        return replace(self, fast=fast)

    def __call__(
        self,
        images: Array,
        capture: Sequence[str] | str | None = None,
        edit: Mapping[str, Edit] | None = None,
        redirect_relu: Array | bool | None = None,
    ) -> Array | dict[str, Array]:
        """Logits, or `{name: activation}` for the names in `capture` (with `edit`s applied in the forward).

        redirect_relu: while true (a traced boolean is fine), ReLU/ReLU6 backpropagate
            Lucid's redirected gradient (lets gradient reach units that are off);
            the forward values are unchanged.
        """
        images = check_inputs(images, self.arch)
        names = [capture] if isinstance(capture, str) else list(capture or [])
        edit = dict(edit or {})
        named = (set(names) | set(edit)) - {self.arch.output}  # the output needs no layer table (an abstract trace)
        unknown = named - set(self.layers) if named else set()
        if unknown:
            raise UnknownLayerError(sorted(unknown), self.name, self.layers)
        probe = Probe(
            capture=names,
            edit=edit,
            fast=self.fast,
            need_output=capture is None or self.arch.output in names or self.arch.output in edit,
            redirect_relu=redirect_relu,
        )
        outputs = forward(self.arch, self.variables, images, probe)
        if capture is None:
            return outputs
        return {name: probe.captured[name] for name in names}


@piece
class Capture:
    """Which layers a forward pass returns (None: the output); static, so each set is its own program."""

    layers: tuple[str, ...] | None = None


def _forward_pass(model: Model, images: Array, capture: Capture) -> Array | dict[str, Array]:
    return model(images, capture=capture.layers)


FORWARD = Program(_forward_pass, "forward pass")


def apply(model: Model, images: Array, capture: tuple[str, ...] | None = None) -> Array | dict[str, Array]:
    """`model(images, capture=...)` compiled, once per model structure, capture and shape (`jaxvis.core.programs`:
    kept on disk too, so a new process loads it)."""
    return FORWARD(model, jnp.asarray(images), Capture(None if capture is None else tuple(capture)))


def logits(model: Model, images: Any) -> np.ndarray:
    """The model's logits for a batch, as a NumPy array (compiled once per shape)."""
    return np.asarray(apply(model, jnp.asarray(images)))


def forward(arch: Architecture, variables: Any, images: Array, probe: Probe) -> Array | None:
    """Run the network under `probe` (whose names `Model.__call__` has checked); None if it stopped early.
    Images are normalized with the architecture's mean and std; a generator's latents go in as they are."""
    x = images
    if not arch.is_generator:
        x = (images - jnp.asarray(arch.mean, images.dtype)) / jnp.asarray(arch.std, images.dtype)
    try:
        return probe.tap(arch.output, arch.module.apply(variables, x, probe))
    except StopForward:
        return None


def default_float() -> np.dtype:
    """float32, or float64 where `jax_enable_x64` is on (parameters are initialised in it)."""
    return jax.dtypes.canonicalize_dtype(np.float64)


@functools.lru_cache(maxsize=64)
def layer_shapes(arch: Architecture, size: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every tapped activation for one image (a generator: one latent; `size` unused),
    traced without computing anything -- once: later processes read the table an earlier one wrote (JSON,
    keyed on the architecture, jaxvis's source, the jax version and the float type)."""
    path = _layer_table_path(arch, size)
    try:
        return {name: tuple(shape) for name, shape in json.loads(path.read_text())}
    except (OSError, ValueError, TypeError):  # none yet, or unreadable: traced (and written) again
        pass
    shapes = _traced_layer_shapes(arch, size)
    try:
        write_whole(path, json.dumps([[name, list(shape)] for name, shape in shapes.items()]).encode())
    except OSError:  # a read-only cache costs a trace per process
        pass
    return shapes


def _layer_table_path(arch: Architecture, size: int) -> Path:
    key = hashlib.sha256(repr((describe(arch), size, source_digest(), jax.__version__,
                               str(default_float()))).encode()).hexdigest()[:24]
    return cache_dir() / "layers" / f"{arch.name}-{size}-{key}.json"


def _traced_layer_shapes(arch: Architecture, size: int) -> dict[str, tuple[int, ...]]:
    probe = Probe(record_shapes=True)
    jax.eval_shape(lambda variables, x: forward(arch, variables, x, probe), variable_shapes(arch),
                   example_input(arch, size))
    return dict(probe.shapes)


def example_input(arch: Architecture, size: int) -> jax.ShapeDtypeStruct:
    """The shape of one input: an image of `size` x `size`, or a generator's latent vector."""
    shape = (1, arch.latent_size) if arch.is_generator else (1, size, size, 3)
    return jax.ShapeDtypeStruct(shape, default_float())


@functools.lru_cache(maxsize=64)
def variable_shapes(arch: Architecture) -> Any:
    """The variable tree of `arch` as shape structs (what a state_dict must fill)."""
    return jax.eval_shape(lambda x: arch.module.init(jax.random.key(0), x, Probe()),
                          example_input(arch, arch.input_size))


def random_variables(arch: Architecture, seed: int = 0) -> Any:
    """Freshly initialised variables (torch's default init for convs and linears)."""
    example = example_input(arch, arch.input_size)
    init = jax.jit(lambda key: arch.module.init(key, jnp.zeros(example.shape, example.dtype), Probe()))
    return init(jax.random.key(seed))


def check_inputs(inputs: Any, arch: Architecture) -> Array:
    """Images (`check_images`), or a generator's latents: float (N, latent_size), else `InvalidLatentError`."""
    if not arch.is_generator:
        return check_images(inputs, arch)
    shape, dtype = tuple(np.shape(inputs)), getattr(inputs, "dtype", None) or np.asarray(inputs).dtype
    if len(shape) != 2 or shape[1] != arch.latent_size:
        hint = " Add a batch axis: z[None]." if shape == (arch.latent_size,) else ""
        raise InvalidLatentError(f"{arch.name} is a generator: it takes latent vectors shaped (N, {arch.latent_size}); "
                                 f"got an array of shape {shape}.{hint}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise InvalidLatentError(f"{arch.name} takes float latents; got dtype {dtype}.")
    return jnp.asarray(inputs)


def check_images(images: Any, arch: Architecture) -> Array:
    """`images` as an array, or `InvalidImageError` unless it is a float NHWC batch the network accepts."""
    dtype = getattr(images, "dtype", None) or np.asarray(images).dtype
    check_image_shape(tuple(np.shape(images)), dtype, arch)
    return jnp.asarray(images)


def check_image_shape(shape: tuple[int, ...], dtype: Any, arch: Architecture) -> None:
    if len(shape) != 4:
        hint = " Add a batch axis: images[None]." if len(shape) == 3 else ""
        raise InvalidImageError(
            f"{arch.name} takes a batch of images shaped (N, H, W, 3); got an array of shape {shape}.{hint}"
        )
    if shape[-1] != 3:
        hint = " It looks like NCHW: use images.transpose(0, 2, 3, 1)." if shape[1] == 3 else ""
        raise InvalidImageError(
            f"{arch.name} takes RGB images with 3 channels last (NHWC); got shape {shape}.{hint}"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise InvalidImageError(
            f"{arch.name} takes float images in [0, 1]; got dtype {dtype}. "
            "Convert with images.astype(np.float32) / 255 for 8-bit images."
        )
    check_image_size(arch, *shape[1:3])


jax.tree_util.register_dataclass(Model, data_fields=["variables"], meta_fields=["arch", "fast"])
