"""Neural style transfer (Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016).

    x* = argmin_x  w_c · mean (F_c(x) − F_c(content))²  +  w_s · Σ_l mean (G_l(x) − G_l(style))²

with F_l the activations of layer l and G_l = F_l F_lᵀ / (C·H·W) their Gram matrix.
Defaults follow PyTorch's "Neural Transfer Using PyTorch" tutorial of the method
(w_c = 1, w_s = 1e6, L-BFGS from the content image, 300 steps; VGG-19 conv1_1,
conv2_1, conv3_1, conv4_1, conv5_1 for style, conv4_2 for content, and Gatys et al.'s
max-pool → average-pool replacement).

For networks other than VGG, Mordvintsev et al. 2018 ("Differentiable Image
Parameterizations", §3) show that optimizing a decorrelated Fourier image under
random transformations makes style transfer work; `param="fourier"` does that
the way Lucid's notebook does: the optimized, content and style images go
through the network as one batch, so every random transform hits all three alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import JaxvisError, MethodOptionError, UnknownLayerError
from jaxvis.core.structure import piece
from jaxvis.engine.optimize import Result
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, StageBuilder, StageCallback, run_stages
from jaxvis.engine.sweeps import Grid, refuse_lists
from jaxvis.models.model import Model, apply, check_images
from jaxvis.pieces import objectives
from jaxvis.pieces.objectives import Acts, Objective, term
from jaxvis.pieces.optimizers import adam, lbfgs
from jaxvis.pieces.param import Param, clamped, fourier
from jaxvis.pieces.transforms import Transform, identity, lucid_standard, resize_images

CONTENT_WEIGHT = 1.0  # tutorial: content_weight=1
STYLE_WEIGHT = {"pixel": 1e6, "fourier": 1e3}  # pixel: the tutorial's 1000000; fourier: chosen here (see below)
LBFGS_STEPS = 300  # tutorial: num_steps=300
ADAM_STEPS = 512
ADAM_LEARNING_RATE = {"pixel": 0.02, "fourier": 0.05}  # fourier: Lucid's render_vis default

# (style layers, content layer) per network; VGG's are Gatys et al.'s conv1_1..conv5_1 / conv4_2.
LAYERS: dict[str, tuple[tuple[str, ...], str]] = {
    "vgg19": (("features.0", "features.5", "features.10", "features.19", "features.28"), "features.21"),
    "vgg16": (("features.0", "features.5", "features.10", "features.17", "features.24"), "features.19"),
    "mobilenet_v2": (("features.1", "features.3", "features.6", "features.10", "features.13"), "features.10"),
    "efficientnet_lite0": (("conv_stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3"), "blocks.3"),
    "resnet18": (("relu", "layer1", "layer2", "layer3", "layer4"), "layer3"),
    "resnet50": (("relu", "layer1", "layer2", "layer3", "layer4"), "layer3"),
    # ViT: the tokens as each block reads them (after its first LayerNorm: O(1) like VGG's ReLU maps; the
    # residual stream itself is ~0.1 under DINOv2's LayerScale), spread over the depth like conv1_1..conv5_1.
    "dinov2_vits14_focus": (tuple(f"backbone.encoder.layer.{i}.norm1" for i in (1, 3, 5, 7, 9)),
                            "backbone.encoder.layer.6.norm1"),
}


class StyleLayersError(JaxvisError, ValueError):
    pass


@dataclass(frozen=True)
class StyleTransfer:
    """What to match: layers and weights (content and style images come with each call)."""

    style_layers: tuple[str, ...]
    content_layer: str
    content_weight: float = CONTENT_WEIGHT
    style_weight: float = STYLE_WEIGHT["pixel"]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    def losses(self, acts, content_acts, style_acts) -> tuple[jax.Array, jax.Array]:
        """(content loss, style loss) of one image's activations against the references', unweighted."""
        content = jnp.mean(jnp.square(acts[self.content_layer] - content_acts[self.content_layer]))
        style = sum(jnp.mean(jnp.square(gram(acts[layer]) - gram(style_acts[layer]))) for layer in self.style_layers)
        return content, style

    def objective(self) -> Objective:
        """Acts of the batch [x, content, style] -> −(weighted content loss + weighted style loss)."""
        return Objective(term(_style_transfer, spec=replace(self, content_weight=0.0, style_weight=0.0)),
                         (self.content_weight, self.style_weight), frozenset(self.layers), "style_transfer")


def _style_transfer(weights: tuple, acts: Acts, *, spec: StyleTransfer) -> jax.Array:
    content_weight, style_weight = weights
    pick = lambda k: {layer: acts[layer][k : k + 1] for layer in spec.layers}  # noqa: E731
    content, style = spec.losses(pick(0), pick(1), pick(2))
    return -(content_weight * content + style_weight * style)


def gram(x: jax.Array) -> jax.Array:
    """F Fᵀ / (C·H·W) per image (the tutorial's `gram_matrix`)."""
    return objectives.gram(x) / x.shape[-1]


def default_layers(model: Model) -> tuple[tuple[str, ...], str]:
    if model.name not in LAYERS:
        raise StyleLayersError(
            f"jaxvis has no default style/content layers for {model.name}; pass style_layers and content_layer "
            f"(CLI: --style-layers A,B,C --content-layer D); `jaxvis layers {model.name}` lists the names."
        )
    return LAYERS[model.name]


def with_average_pooling(model: Model) -> Model:
    """VGG with every max pool replaced by an average pool (Gatys et al. §2); other networks unchanged."""
    if model.arch.family != "cnn" or not model.name.startswith("vgg"):
        return model
    from jaxvis.models.vgg import average_pooling

    return replace(model, arch=average_pooling(model.arch))


@piece(data=("base", "content", "style"))
class Stacked(Param):
    """`base` whose render is the batch [x, content, style]: transforms then treat all three alike."""

    base: Any
    content: jax.Array
    style: jax.Array
    name = "stacked"

    @property
    def size(self) -> int:
        return self.base.size

    def init(self, key: jax.Array, batch: int) -> Any:
        return self.base.init(key, batch)

    def render(self, theta: Any) -> jax.Array:
        return jnp.concatenate([self.base.render(theta), self.content, self.style])

    def project(self, theta: Any) -> Any:
        return self.base.project(theta)


def stacked(param: Param, content: jax.Array, style: jax.Array) -> Param:
    return Stacked(param, jnp.asarray(content), jnp.asarray(style))


def transfer_style(
    model: Model,
    content: np.ndarray,
    style: np.ndarray,
    *,
    style_layers: Sequence[str] | None = None,
    content_layer: str | None = None,
    content_weight: float | list[float] = CONTENT_WEIGHT,
    style_weight: float | list[float] | None = None,
    param: str = "auto",
    optimizer: str = "auto",
    steps: int | None = None,
    learning_rate: float | list[float] | None = None,
    pyramid: int = 1,
    average_pool: bool = True,
    seed: int | None = None,
    progress: bool | None = None,
    config: RunConfig | None = None,
    on_stage: StageCallback | None = None,
) -> Result:
    """Paint `content` (H, W, 3) in the style of `style` (resized to H × W); images (1, 1, H, W, 3).

    param: "pixel" (Gatys; starts from the content image), "fourier" (decorrelated Fourier
        image under Lucid's transforms) or "auto" (pixel for VGG, fourier otherwise).
    optimizer: "lbfgs" (optax.lbfgs with its zoom line search), "adam" or "auto"
        (L-BFGS for pixels, Adam for Fourier).
    style_weight: default 1e6 for pixels (the tutorial's); 1e3 for Fourier, which starts
        from noise rather than the content image: on MobileNetV2 (chelsea + brick, 128 px,
        256 Adam steps) 1e4 already washed the cat out to grey, 1e5 erased it.
    pyramid: levels of an image pyramid (pixel only): solve at 1/2^(levels-1) of the
        size first, each level starting from the previous result upsampled.
    A sweep: content_weight, style_weight and (with Adam) learning_rate given as lists run every combination
    in one program per level, an image per cell (`result.with_grid_axes(result.images)`: grid axes first).
    """
    refuse_lists(param=param, optimizer=optimizer, steps=steps, pyramid=pyramid, average_pool=average_pool)
    param = resolved_param(model.name, param)
    defaults = default_layers(model) if style_layers is None or content_layer is None else None
    grid = Grid.of(content_weight=content_weight,
                   style_weight=style_weight if style_weight is not None else STYLE_WEIGHT.get(param, 1e6),
                   learning_rate=learning_rate or ADAM_LEARNING_RATE.get(param, 0.0))
    spec = StyleTransfer(tuple(style_layers or defaults[0]), content_layer or defaults[1])
    unknown = sorted(set(spec.layers) - set(model.layers))
    if unknown:
        raise UnknownLayerError(unknown, model.name, model.layers)
    optimizer = ("lbfgs" if param == "pixel" else "adam") if optimizer == "auto" else optimizer
    if param not in ("pixel", "fourier") or optimizer not in ("lbfgs", "adam"):
        raise MethodOptionError(f"param must be pixel|fourier|auto and optimizer lbfgs|adam|auto; got {param!r}, {optimizer!r}")
    if optimizer == "lbfgs" and "learning_rate" in grid.axes:
        raise MethodOptionError("learning_rate is Adam's (L-BFGS has a line search): sweep it with optimizer='adam'")
    if pyramid > 1 and param != "pixel":
        raise MethodOptionError("an image pyramid needs param='pixel' (a Fourier image has no coarse-to-fine start)")
    if average_pool:
        model = with_average_pooling(model)
    content = check_images(np.asarray(content, np.float32)[None], model.arch)
    height, width = content.shape[1:3]
    if height != width:
        raise MethodOptionError(f"style transfer takes a square content image; got {height}x{width} (crop it first)")
    style = resize_images(jnp.asarray(np.asarray(style, np.float32)[None]), height)
    steps = steps or (LBFGS_STEPS if optimizer == "lbfgs" else ADAM_STEPS)
    robust: Transform = lucid_standard(None) if param == "fourier" else identity()

    def level(index: int) -> StageBuilder:
        size = height // 2 ** (pyramid - 1 - index)

        def build(key: jax.Array, previous: Result | None) -> Stage:
            level_content, level_style = resize_images(jnp.asarray(content), size), resize_images(style, size)
            base = fourier(size) if param == "fourier" else clamped(size)
            init = None
            if param == "pixel":  # from the content image, or each cell from its own previous level
                start = level_content if previous is None else resize_images(jnp.asarray(previous.images[:, 0]), size)
                init = start[:, None]
            return Stage(
                f"level_{size}px",
                grid.per_cell(lambda content_weight, style_weight, **_: replace(
                    spec, content_weight=content_weight, style_weight=style_weight).objective()),
                param=stacked(base, level_content, level_style), init=init, transform=robust,
                optimizer=grid.per_cell(lambda learning_rate, **_: lbfgs() if optimizer == "lbfgs" else
                                        adam(learning_rate)),
                steps=steps, chunk=50,
            )

        return build

    result = run_stages(model, [level(i) for i in range(pyramid)], config=run_config(config, seed, progress),
                        on_stage=on_stage)
    return replace(result, images=result.images[:, :1], grid=grid.shape)  # x, without the content and style images


def resolved_param(model_name: str, param: str) -> str:
    """`auto` made concrete: pixels for VGG (Gatys's setting), Fourier otherwise."""
    return ("pixel" if model_name.startswith("vgg") else "fourier") if param == "auto" else param


def style_losses(model: Model, image: np.ndarray, content: np.ndarray, style: np.ndarray,
                 style_layers: Sequence[str] | None = None, content_layer: str | None = None,
                 average_pool: bool = True) -> dict[str, float]:
    """Unweighted content and style losses of `image` (H, W, 3) against `content` and `style` (resized)."""
    defaults = default_layers(model) if style_layers is None or content_layer is None else None
    spec = StyleTransfer(tuple(style_layers or defaults[0]), content_layer or defaults[1])
    model = with_average_pooling(model) if average_pool else model
    size = image.shape[0]
    batch = jnp.stack([jnp.asarray(image), resize_images(jnp.asarray(content)[None], size)[0],
                       resize_images(jnp.asarray(style)[None], size)[0]])
    acts = apply(model, batch, capture=spec.layers)
    content_loss, style_loss = spec.losses(*({k: v[i : i + 1] for k, v in acts.items()} for i in range(3)))
    return {"content": float(content_loss), "style": float(style_loss)}
