"""A perturbation within an eps-ball around a clean image: what a bounded attack optimizes, as a `Param`.

    θ_0 = x + uniform noise in the ball (a random start), or x
    render(θ) = θ;   after every update θ ← Proj_{B(x, eps) ∩ [0,1]}(θ)

Madry et al.'s PGD in the L-infinity and L2 norms (ICLR 2018); the L2 random
start is torchattacks 3.5.1's (`PGDL2`): a Gaussian direction scaled to a radius
uniform in [0, eps].  The clean image, eps and whether to start at random are
runtime values (pytree leaves); the norm is structure.  In the engine each unit
(an image) holds its own clean image, and a sweep gives each cell its own eps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.param import Param
from jaxvis.structure import piece

Array = jax.Array
NORMS = ("linf", "l2")


def per_image_norm(delta: Any, norm: str) -> Any:
    """Per image (leading axis): the L-inf or L2 norm. NumPy in, NumPy out (no compile); jax in, jax out."""
    flat = delta.reshape(delta.shape[0], -1)
    return abs(flat).max(axis=1) if norm == "linf" else ((flat * flat).sum(axis=1)) ** 0.5


def project(adversarial: Array, clean: Array, eps: Array, norm: str) -> Array:
    """Back into the eps-ball around `clean` (per image) and into [0, 1]."""
    delta = adversarial - clean
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        delta = delta * jnp.minimum(1.0, eps / per_image_norm(delta, "l2"))[:, None, None, None]
    return jnp.clip(clean + delta, 0.0, 1.0)


def random_start(key: Array, clean: Array, eps: Array, norm: str) -> Array:
    """A random point of the ball: uniform in L-inf; in L2 a Gaussian direction at a radius uniform in [0, eps]."""
    if norm == "linf":
        delta = jax.random.uniform(key, clean.shape, minval=-eps, maxval=eps)
    else:
        direction_key, radius_key = jax.random.split(key)
        delta = jax.random.normal(direction_key, clean.shape)
        radius = jax.random.uniform(radius_key, (clean.shape[0],)) * eps
        delta = delta * (radius / per_image_norm(delta, "l2"))[:, None, None, None]
    return jnp.clip(clean + delta, 0.0, 1.0)


@piece(data=("clean", "eps", "random_start"))
class EpsBall(Param):
    """The adversarial images themselves (batch, H, W, 3), kept within `eps` of `clean` in the norm."""

    clean: Any  # (batch, H, W, 3) in [0, 1]
    eps: Any
    random_start: Any  # bool: start at a random point of the ball, else at the clean image
    norm: str = "linf"
    name = "eps_ball"

    @property
    def size(self) -> int:  # type: ignore[override]
        return int(self.clean.shape[-2])

    def init(self, key: Array, batch: int) -> Array:
        if batch != self.clean.shape[0]:
            raise ValueError(f"an eps-ball holds {self.clean.shape[0]} clean images, asked for a batch of {batch}")
        clean = jnp.asarray(self.clean, jnp.float32)
        return jnp.where(self.random_start, random_start(key, clean, self.eps, self.norm), clean)

    def render(self, theta: Array) -> Array:
        return theta

    def project(self, theta: Array) -> Array:
        return project(theta, self.clean, self.eps, self.norm)


def eps_ball(clean: Any, eps: float, norm: str = "linf", random_start: bool = True) -> EpsBall:
    """The ball of radius `eps` around `clean` (H, W, 3) or (batch, H, W, 3) in [0, 1]."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    clean = np.asarray(clean, np.float32)  # on the host: nothing compiles to build one
    return EpsBall(clean if clean.ndim == 4 else clean[None], np.float32(eps), np.bool_(random_start), norm)
