"""The engine: optimize images so that a model's activations maximize an objective.

One optimization step -- render the parameterization, draw `ensemble`
transformed views, run the model, evaluate the objective, backpropagate to the
parameters, apply the optax update -- is one pure function.  It is vmapped over
the units (one image batch per unit, each unit with its own objective index,
key and optimizer state), looped over steps in chunks under a single `jit`
(one compiled program per run: a chunk's step count is a runtime value), and,
with several local devices, sharded along the unit axis.

    result = optimize(model, lambda u: channel("features.14", u), units=jnp.arange(16),
                      param=fourier(128), transform=lucid_standard(), steps=512)
    result.images        # (16, batch, 128, 128, 3)

Determinism: the key of unit k at step t is fold_in(fold_in(step_key(seed), t), k), so the
same seed gives the same images however the run is chunked, resumed or sharded.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.errors import JaxvisError
from jaxvis.models.model import Model
from jaxvis.objectives import INPUT, Objective
from jaxvis.param import Param
from jaxvis.transforms import Transform, identity

Array = jax.Array
ObjectiveFor = Callable[[Array], Objective]  # unit index -> objective


class OptimizationDiverged(JaxvisError, FloatingPointError):
    """The objective became NaN or infinite; `result` holds the images of the last finite step."""

    def __init__(self, step: int, result: "Result"):
        self.step, self.result = step, result
        super().__init__(
            f"the objective became NaN/Inf at step {step} (of units {_nonfinite_units(result)}); "
            f"stopped and kept the images from step {result.steps}. Try a lower learning rate, "
            "a parameterization with a sigmoid (fourier, maco), or fewer steps of ReLU redirection."
        )


@dataclass
class Result:
    images: np.ndarray  # (units, batch, H, W, 3) in [0, 1]
    history: np.ndarray  # (steps, units): the objective (mean over views and batch) at each step
    units: np.ndarray
    steps: int  # steps completed
    timings: dict[str, float] = field(default_factory=dict)
    nonfinite: np.ndarray | None = None  # units whose objective went NaN/Inf, when diverged

    @property
    def objective(self) -> np.ndarray:
        """The objective of each unit at the last completed step."""
        return self.history[self.steps - 1] if self.steps else np.full(len(self.units), np.nan)


class State(NamedTuple):
    theta: Any
    opt_state: Any


def optimize(
    model: Model,
    objective: Objective | ObjectiveFor,
    *,
    param: Param,
    units: Array | np.ndarray | None = None,
    transform: Transform = identity(),
    step_transform: Transform = identity(),
    init: Any = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 512,
    batch: int = 1,
    ensemble: int = 1,
    seed: int = 0,
    chunk: int = 32,
    relu_override_steps: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> Result:
    """Maximize `objective` for each unit; see the module docstring.

    objective: an `Objective`, or a function of a (traced) unit index returning one.
    units: the indices passed to that function (default: one unit, index 0).
    batch: images per unit (the diversity objective compares them).
    ensemble: transformed views per image and step; the objective is averaged over them.
    transform: drawn afresh for every view; step_transform: drawn once per step and unit,
        before the views, so all views share it (Plug-In Inversion's jitter).
    init: the starting parameters, one per unit (leading axis = units), instead of
        `param.init` (a coarse-to-fine stage starts from the previous one's images).
    optimizer: any optax transformation; one with extra arguments (`optax.lbfgs`) is
        given the loss value, gradient and loss function for its line search.
    relu_override_steps: use Lucid's redirected ReLU gradient for the first steps.
    checkpoint_dir / checkpoint_every: save the optimization state with orbax every
        N steps; `resume=True` continues from the latest checkpoint there.
    stop_after: end (as if interrupted) after this many steps; for tests and budgets.
    """
    optimizer = optimizer or optax.adam(0.05)
    objective_for = objective if callable(objective) and not isinstance(objective, Objective) else (lambda _u: objective)
    units = np.asarray([0] if units is None else units)
    if units.ndim != 1 or len(units) == 0:
        raise ValueError(f"units must be a non-empty 1-D array of unit indices, got shape {units.shape}")
    first_objective = objective_for(jnp.asarray(units[0]))
    layers = _check_objective(model, first_objective)
    devices = jax.local_devices()
    padded = _pad_to_multiple(units, len(devices))
    plan = _Plan(objective_for, layers, param, transform, step_transform, optimizer, batch, ensemble, seed,
                 relu_override_steps)
    config = _config(model, first_objective, param, units, steps, batch, ensemble, seed, relu_override_steps)
    if init is not None:
        leading = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree_util.tree_leaves(init)}
        if leading != {len(units)}:
            raise ValueError(f"init must hold one entry per unit (leading axis {len(units)}), got leading axes {leading}")
        config["init"] = _fingerprint(init)
    checkpoints = _Checkpoints(Path(checkpoint_dir), config) if checkpoint_dir else None
    if checkpoint_every and checkpoints is None:
        raise ValueError("checkpoint_every needs checkpoint_dir")
    chunk = max(1, min(checkpoint_every or chunk, steps))

    state, history, done = None, np.zeros((steps, len(padded)), np.float32), 0
    if resume and checkpoints is not None:
        restored = checkpoints.latest(plan.abstract_state(len(padded)), history.shape)
        if restored is not None:
            state, history, done = restored
    if state is None:
        state = plan.init(len(padded)) if init is None else plan.start_from(_pad_leading(init, len(padded)))
    state = _shard(state, devices)
    unit_array = _shard(jnp.asarray(padded), devices)

    # One program per run: the step count of a chunk is a runtime argument, so a last,
    # shorter chunk (401 steps in chunks of 101: 101, 101, 101, 98) does not compile a second time.
    run_chunk = jax.jit(functools.partial(plan.run_steps, chunk=chunk))
    timings: dict[str, float] = {}
    steady = [0.0, 0]  # seconds and steps after the first (compiling) chunk
    last = min(steps, stop_after) if stop_after is not None else steps
    bar = _progress(progress, steps, done, config["objective"])
    while done < last:
        length = min(chunk, last - done)
        start = time.perf_counter()
        new_state, values = run_chunk(model, state, unit_array, jnp.asarray(done), jnp.asarray(length))
        values = np.asarray(values)[:length]  # blocks until the chunk is computed
        elapsed = time.perf_counter() - start
        if "first_chunk_s" not in timings:
            timings["first_chunk_s"] = elapsed  # includes compilation
        else:
            steady[0] += elapsed
            steady[1] += length
            timings["step_s"] = steady[0] / steady[1]
        bad = ~np.isfinite(values)
        if bad.any():
            step = done + int(np.argmax(bad.any(axis=1)))
            result = _result(plan, state, history, units, done, timings)
            result.nonfinite = units[bad.any(axis=0)[: len(units)]]
            bar.close()
            raise OptimizationDiverged(step, result)
        history[done : done + length] = values
        state, done = new_state, done + length
        bar.update(length)
        bar.set_postfix(objective=f"{values[-1][: len(units)].mean():.4g}")
        if checkpoints is not None and checkpoint_every and (done % checkpoint_every == 0 or done == steps):
            checkpoints.save(done, state, history)
    bar.close()
    return _result(plan, state, history, units, done, timings)


@dataclass(frozen=True)
class _Plan:
    """The pure pieces of one run (the model is passed to `run_steps`, not held)."""

    objective_for: ObjectiveFor
    layers: tuple[str, ...]
    param: Param
    transform: Transform
    step_transform: Transform
    optimizer: optax.GradientTransformation
    batch: int
    ensemble: int
    seed: int
    relu_override_steps: int

    def init(self, count: int) -> State:
        init_key = jax.random.split(jax.random.key(self.seed))[0]
        keys = jax.vmap(lambda k: jax.random.fold_in(init_key, k))(jnp.arange(count))
        return self.start_from(jax.vmap(lambda k: self.param.init(k, self.batch))(keys))

    def start_from(self, theta: Any) -> State:
        theta = jax.tree_util.tree_map(jnp.asarray, theta)
        return State(theta, jax.vmap(self.optimizer.init)(theta))

    def abstract_state(self, count: int) -> State:
        return jax.eval_shape(lambda: self.init(count))

    def unit_objective(self, model: Model, theta: Any, unit: Array, key: Array, redirect: Array) -> Array:
        """The objective of one unit's image batch, averaged over `ensemble` transformed views."""
        images = self.param.render(theta)
        objective = self.objective_for(unit)
        step_key, views_key = jax.random.split(key)
        shared = self.step_transform(step_key, images)

        def view(view_key: Array) -> Array:
            acts = model(self.transform(view_key, shared), capture=list(self.layers), redirect_relu=redirect)
            return objective({**acts, INPUT: images})

        return jax.vmap(view)(jax.random.split(views_key, self.ensemble)).mean()

    def step(self, model: Model, state: State, units: Array, t: Array) -> tuple[State, Array]:
        step_key = jax.random.fold_in(jax.random.split(jax.random.key(self.seed))[1], t)
        keys = jax.vmap(lambda k: jax.random.fold_in(step_key, k))(jnp.arange(units.shape[0]))
        redirect = t < self.relu_override_steps if self.relu_override_steps else None

        def unit_step(theta: Any, opt_state: Any, unit: Array, key: Array) -> tuple[Any, Any, Array]:
            loss_fn = lambda th: -self.unit_objective(model, th, unit, key, redirect)
            loss, grads = jax.value_and_grad(loss_fn)(theta)
            if isinstance(self.optimizer, optax.GradientTransformationExtraArgs):
                updates, opt_state = self.optimizer.update(grads, opt_state, theta, value=loss, grad=grads,
                                                           value_fn=loss_fn)
            else:
                updates, opt_state = self.optimizer.update(grads, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            return (self.param.project(theta) if self.param.project else theta), opt_state, loss

        theta, opt_state, losses = jax.vmap(unit_step)(state.theta, state.opt_state, units, keys)
        return State(theta, opt_state), -losses

    def run_steps(self, model: Model, state: State, units: Array, first: Array, count: Array, *,
                  chunk: int) -> tuple[State, Array]:
        """Steps first .. first + count − 1 (count ≤ chunk, a traced value) and their objectives (chunk, units).

        The model is an argument: closing over it would constant-fold the weights.
        """

        def body(i: Array, carry: tuple[State, Array]) -> tuple[State, Array]:
            state, values = carry
            state, value = self.step(model, state, units, first + i)
            return state, values.at[i].set(value)

        values = jnp.zeros((chunk, units.shape[0]), jnp.float32)
        return jax.lax.fori_loop(0, count, body, (state, values))

    def render(self, theta: Any) -> Array:
        return jax.jit(jax.vmap(self.param.render))(theta)


def staged_result(images: np.ndarray, stages: list[Result], units: np.ndarray, timings: dict[str, float]) -> Result:
    """One `Result` for a multi-stage method: the final `images`, the stages' histories end to end."""
    history = np.concatenate([stage.history for stage in stages])
    return Result(np.asarray(images), history, np.asarray(units), len(history), dict(timings))


def _check_objective(model: Model, objective: Objective) -> tuple[str, ...]:
    layers = objective.model_layers
    if not layers:
        raise ValueError(
            f"objective {objective.name!r} reads no layer of {model.name} (only {sorted(objective.layers) or 'nothing'}); "
            "add a term on a layer, e.g. channel('features.14', 7), or `model.layers` for names."
        )
    unknown = sorted(layers - set(model.layers))
    if unknown:
        from jaxvis.errors import UnknownLayerError

        raise UnknownLayerError(unknown, model.name, model.layers)
    return tuple(sorted(layers))


def _pad_leading(tree: Any, count: int) -> Any:
    """Repeat the last entry of every leaf's leading (unit) axis up to `count` entries."""

    def pad(leaf: Any) -> Any:
        leaf = jnp.asarray(leaf)
        return jnp.concatenate([leaf, jnp.repeat(leaf[-1:], count - leaf.shape[0], axis=0)]) if leaf.shape[0] < count else leaf

    return jax.tree_util.tree_map(pad, tree)


def _fingerprint(tree: Any) -> str:
    """A short digest of given starting parameters (a checkpoint resumes only the same start)."""
    import hashlib

    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()[:16]


def _pad_to_multiple(units: np.ndarray, devices: int) -> np.ndarray:
    """Repeat the last unit so the unit axis splits evenly across devices (extra results are dropped)."""
    extra = (-len(units)) % devices
    return np.concatenate([units, np.repeat(units[-1:], extra)]) if extra else units


def _shard(tree: Any, devices: list) -> Any:
    """Split the leading (unit) axis across local devices; a no-op on one device."""
    if len(devices) == 1:
        return tree
    mesh = jax.sharding.Mesh(np.asarray(devices), ("units",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("units"))
    return jax.device_put(tree, sharding)


def _result(plan: _Plan, state: State, history: np.ndarray, units: np.ndarray, done: int, timings: dict) -> Result:
    images = np.asarray(plan.render(state.theta))[: len(units)]
    return Result(images, history[:done, : len(units)].copy(), units, done, dict(timings))


def _nonfinite_units(result: Result) -> str:
    return ", ".join(str(u) for u in (result.nonfinite if result.nonfinite is not None else [])[:10]) or "?"


def _config(model: Model, objective: Objective, param: Param, units: np.ndarray, steps: int, batch: int,
            ensemble: int, seed: int, relu_override_steps: int) -> dict:
    """What must match for a checkpoint to be resumed."""
    return {
        "model": model.name, "objective": objective.name, "param": param.name, "size": param.size,
        "units": [int(u) for u in units], "steps": steps, "batch": batch, "ensemble": ensemble,
        "seed": seed, "relu_override_steps": relu_override_steps,
    }


class _Checkpoints:
    """Orbax checkpoints of the optimization state under `directory/step_N`, with the run's config."""

    def __init__(self, directory: Path, config: dict):
        self.directory, self.config = directory, config

    def save(self, step: int, state: State, history: np.ndarray) -> None:
        import orbax.checkpoint as ocp

        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "config.json").write_text(json.dumps(self.config, indent=1))
        target = (self.directory / f"step_{step}").resolve()
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(target, {"state": jax.device_get(state), "history": history, "step": step}, force=True)
        checkpointer.wait_until_finished()
        for old in self._steps()[:-2]:  # keep the two newest
            shutil.rmtree(self.directory / f"step_{old}", ignore_errors=True)

    def latest(self, abstract: State, history_shape: tuple[int, int]) -> tuple[State, np.ndarray, int] | None:
        import orbax.checkpoint as ocp

        steps = self._steps()
        if not steps:
            return None
        saved = json.loads((self.directory / "config.json").read_text())
        if saved != self.config:
            different = sorted(k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k))
            raise JaxvisError(
                f"the checkpoint in {self.directory} is from a different run (differs in: {', '.join(different)}); "
                "use another --out directory or drop --resume."
            )
        target = {"state": abstract, "history": np.zeros(history_shape, np.float32), "step": 0}
        restored = ocp.StandardCheckpointer().restore((self.directory / f"step_{steps[-1]}").resolve(), target)
        print(f"jaxvis: resuming from {self.directory / f'step_{steps[-1]}'}", file=sys.stderr)
        state = jax.tree_util.tree_map(jnp.asarray, restored["state"])
        return State(*state), np.asarray(restored["history"]), int(restored["step"])

    def _steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name.split("_")[1]) for p in self.directory.glob("step_*") if p.name.split("_")[1].isdigit())


def _progress(enabled: bool, total: int, done: int, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="step", desc=description[:40], leave=False)
