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

from jaxvis.core.structure import piece
from jaxvis.pieces.param import Param

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


def sphere_start(key: Array, clean: Array, eps: Array, norm: str, guard: float = 1e-12) -> Array:
    """APGD's random start (Croce & Hein's code): a uniform (L-inf) or Gaussian (L2) direction scaled onto the
    eps-sphere, then into [0, 1]."""
    if norm == "linf":
        direction = 2.0 * jax.random.uniform(key, clean.shape, clean.dtype) - 1.0
        length = per_image_norm(direction, "linf")
    else:
        direction = jax.random.normal(key, clean.shape, clean.dtype)
        length = per_image_norm(direction, "l2") + guard
    return jnp.clip(clean + eps * direction / length[:, None, None, None], 0.0, 1.0)


STARTS = {"uniform": random_start, "sphere": sphere_start}


@piece(data=("clean", "eps", "random_start"))
class EpsBall(Param):
    """The adversarial images themselves (batch, H, W, 3), kept within `eps` of `clean` in the norm."""

    clean: Any  # (batch, H, W, 3) in [0, 1]
    eps: Any
    random_start: Any  # bool: start at a random point of the ball, else at the clean image
    norm: str = "linf"
    start: str = "uniform"  # the random start: in the ball (PGD) or on its sphere (APGD)
    keep_in_ball: bool = True  # project after every update (False: the update projects itself, as APGD's does)
    name = "eps_ball"

    @property
    def size(self) -> int:  # type: ignore[override]
        return int(self.clean.shape[-2])

    def init(self, key: Array, batch: int) -> Array:
        if batch != self.clean.shape[0]:
            raise ValueError(f"an eps-ball holds {self.clean.shape[0]} clean images, asked for a batch of {batch}")
        clean = jnp.asarray(self.clean)
        return jnp.where(self.random_start, STARTS[self.start](key, clean, self.eps, self.norm), clean)

    def render(self, theta: Array) -> Array:
        return theta

    def project(self, theta: Array) -> Array:
        return project(theta, self.clean, self.eps, self.norm) if self.keep_in_ball else theta


def eps_ball(clean: Any, eps: float, norm: str = "linf", random_start: bool = True, start: str = "uniform",
             keep_in_ball: bool = True) -> EpsBall:
    """The ball of radius `eps` around `clean` (H, W, 3) or (batch, H, W, 3) in [0, 1] (float64 stays float64)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if start not in STARTS:
        raise ValueError(f"unknown start {start!r}; choose one of {', '.join(STARTS)}")
    clean = np.asarray(clean)  # on the host: nothing compiles to build one
    clean = clean if clean.dtype in (np.float32, np.float64) else clean.astype(np.float32)
    return EpsBall(clean if clean.ndim == 4 else clean[None], np.asarray(eps, clean.dtype), np.bool_(random_start),
                   norm, start, keep_in_ball)
