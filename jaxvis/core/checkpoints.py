"""Saving and resuming an optimization, and refusing to resume a different one.

A run's *fingerprint* is everything that decides its images: the model and a
digest of its weights, the objective (its structure and its numbers: units,
targets, weights), the parameterization, the transforms, the optimizer and its
hyperparameters, steps, batch, ensemble, seed, ReLU redirection and a given
start.  It is saved next to the orbax checkpoints; resuming compares it field
by field and names what changed (`optimizer.learning_rate: 0.05 -> 0.2`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.errors import JaxvisError
from jaxvis.core.run_state import differences, saved_steps
from jaxvis.core.structure import describe, digest

FINGERPRINT = "config.json"


class ResumeMismatchError(JaxvisError):
    """A checkpoint belongs to a run that differs from the one asked for."""


def fingerprint(**parts: Any) -> dict[str, Any]:
    """The run's parts described (`structure.describe`) and flattened to dotted keys."""
    return _flatten(describe(parts))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}{index}."))
        return out or {prefix[:-1]: []}
    return {prefix[:-1]: value}


class Checkpoints:
    """Orbax checkpoints of the optimization state under `directory/step_N`, with the run's fingerprint."""

    def __init__(self, directory: str | Path, config: dict[str, Any]):
        self.directory, self.config = Path(directory), config

    def save(self, step: int, state: Any, history: np.ndarray) -> None:
        import orbax.checkpoint as ocp

        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / FINGERPRINT).write_text(json.dumps(self.config, indent=1))
        target = (self.directory / f"step_{step}").resolve()
        checkpointer = ocp.StandardCheckpointer()
        leaves = [_storable(leaf) for leaf in jax.device_get(jax.tree_util.tree_leaves(state))]  # see `latest`
        checkpointer.save(target, {"state": leaves, "history": history, "step": step}, force=True)
        checkpointer.wait_until_finished()
        for old in self.steps()[:-2]:  # keep the two newest
            shutil.rmtree(self.directory / f"step_{old}", ignore_errors=True)

    def check(self) -> None:
        """Raise `ResumeMismatchError` naming the differences if the saved run is another one."""
        path = self.directory / FINGERPRINT
        if not self.steps() or not path.exists():
            return
        saved = json.loads(path.read_text())
        changed = differences(saved, self.config)
        if changed:
            raise ResumeMismatchError(
                f"the checkpoint in {self.directory} is from a different run; what changed:\n  "
                + "\n  ".join(changed)
                + "\nrun it as it was to continue it, or start afresh (--fresh; in Python resume=False), or use "
                  "another --out."
            )

    def latest(self, abstract_state: Any, history_shape: tuple[int, int]) -> tuple[Any, np.ndarray, int] | None:
        """(state, history, steps done) of the newest checkpoint, or None if there is none."""
        import orbax.checkpoint as ocp

        steps = self.steps()
        if not steps:
            return None
        self.check()
        leaves, structure = jax.tree_util.tree_flatten(abstract_state)
        target = {"state": [_storable(leaf) for leaf in leaves], "history": np.zeros(history_shape, np.float32),
                  "step": 0}
        restored = ocp.StandardCheckpointer().restore((self.directory / f"step_{steps[-1]}").resolve(), target)
        print(f"jaxvis: resuming from {self.directory / f'step_{steps[-1]}'}", file=sys.stderr)
        state = jax.tree_util.tree_unflatten(structure, [
            jnp.zeros(want.shape, want.dtype) if _empty(want) else jnp.asarray(got)
            for want, got in zip(leaves, restored["state"])])
        return state, np.asarray(restored["history"]), int(restored["step"])

    def remove(self) -> None:
        """Delete the checkpoints (a finished run needs them no more)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def steps(self) -> list[int]:
        return saved_steps(self.directory)


def _empty(leaf: Any) -> bool:
    return int(np.prod(np.shape(leaf))) == 0


def _storable(leaf: Any) -> Any:
    """orbax refuses zero-size arrays: such a leaf is saved as one zero (and rebuilt from its shape)."""
    if not _empty(leaf):
        return leaf
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((1,), leaf.dtype)
    return np.zeros(1, np.asarray(leaf).dtype)


__all__ = ["Checkpoints", "ResumeMismatchError", "differences", "digest", "fingerprint"]
