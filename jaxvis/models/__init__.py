"""Converted network families.  `ARCHITECTURES` maps every supported name to its `Architecture`.

The names load on first use, so the catalog and the request check (`jaxvis.models.catalog`,
`jaxvis.models.request`) answer without importing jax or flax.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARCHITECTURES", "Architecture", "Model"]


def architectures() -> dict[str, Any]:
    """Every supported architecture by name, in the catalog's order."""
    from jaxvis.models.alexnet import ALEXNET
    from jaxvis.models.dcgan import DCGAN_FACES
    from jaxvis.models.dinov2 import DINOV2_VITS14_FOCUS
    from jaxvis.models.efficientnet import EFFICIENTNET_LITE0
    from jaxvis.models.googlenet import GOOGLENET
    from jaxvis.models.mixer import MIXER_B16_224, RESMLP_12_224
    from jaxvis.models.mobilenet import MOBILENET_V2
    from jaxvis.models.resnet import RESNET18, RESNET50
    from jaxvis.models.vgg import VGG16, VGG19
    from jaxvis.models.vit import VIT_B_16, VIT_SMALL_PATCH16_224

    return {arch.name: arch for arch in (MOBILENET_V2, EFFICIENTNET_LITE0, RESNET18, RESNET50, VGG16, VGG19, ALEXNET,
                                         GOOGLENET, VIT_B_16, VIT_SMALL_PATCH16_224, MIXER_B16_224, RESMLP_12_224,
                                         DINOV2_VITS14_FOCUS, DCGAN_FACES)}


def __getattr__(name: str) -> Any:
    if name == "ARCHITECTURES":
        value = architectures()
    elif name in ("Architecture", "Model"):
        from jaxvis.models import model

        value = getattr(model, name)
    else:
        raise AttributeError(f"module 'jaxvis.models' has no attribute {name!r}")
    globals()[name] = value  # once loaded, an ordinary attribute
    return value
