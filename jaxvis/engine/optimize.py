"""The engine: optimize images so that a model's activations maximize an objective.

    result = optimize(model, lambda u: channel("features.14", u), units=jnp.arange(16),
                      param=fourier(128), transform=lucid_standard(), steps=512)
    result.images        # (16, batch, 128, 128, 3)

The optimization itself is pure (`jaxvis.engine.plan`: one step vmapped over units,
a compiled loop over a chunk of steps); with several local devices the unit
axis is sharded across them.  Around it, optax-style, each concern wraps the
one before: the compiled chunks, then the NaN policy, the progress bar and
the checkpoint store.  Programs are compiled once per structure and shapes
(`jaxvis.core.programs`), so calls that differ in units, seed, learning rate or
steps reuse them.

Words: a *unit* is one thing optimized for (a channel, a class, a photo to
reconstruct); each unit has a *batch* of images optimized together (the
diversity objective compares them); each image is seen through *ensemble*
randomly transformed *views* per step, the objective averaged over them.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.core.checkpoints import Checkpoints, fingerprint
from jaxvis.core.distributed import host, is_lead, place, process_count
from jaxvis.core.errors import JaxvisError, UnknownLayerError
from jaxvis.core.progress import progress_bar
from jaxvis.core.structure import digest
from jaxvis.engine.memory import check_fits
from jaxvis.engine.plan import (FROM_SEED, FROM_STATE, FROM_THETA, RUN_CHUNK, Inputs, Plan, State, init_state,
                                placeholder_state, stack_plans)
from jaxvis.models.model import Model
from jaxvis.pieces.objectives import INPUT, Objective
from jaxvis.pieces.optimizers import Optimizer, as_optimizer
from jaxvis.pieces.param import Param
from jaxvis.pieces.transforms import Transform, as_piece, identity

Array = jax.Array
ObjectiveFor = Callable[[Array], Objective]  # unit index -> objective
ParamFor = Callable[[Array], Param]  # unit index -> its own parameterization (an attack's clean image)
CHUNK = 32  # steps per call of the compiled loop: progress, checkpoints and NaN checks happen between calls


class OptimizationDiverged(JaxvisError, FloatingPointError):
    """The objective became NaN or infinite; `result` holds the images of the last finite chunk."""

    def __init__(self, step: int, result: "Result"):
        self.step, self.result = step, result
        super().__init__(
            f"the objective became NaN/Inf at step {step} (of units {_unit_list(result.nonfinite)}); "
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
    stages: list["Result"] = field(default_factory=list)  # a multi-stage method's stages, in order
    grid: tuple[int, ...] = ()  # a sweep's grid of cells: entry c·(units per cell) + u is cell c's unit u
    moved: np.ndarray | None = None  # (units,) steps in which each unit moved (fewer where `stop` held it)
    opt_state: Any = None  # each unit's optimizer state at the end (leading axis: units), on the host
    report: np.ndarray | None = None  # (units, ...) each unit's report from the last step (with `report`)
    theta: Any = None  # each unit's final parameters θ (as optimized; see `Optimizer.final`), on the host

    def with_grid_axes(self, array: np.ndarray) -> np.ndarray:
        """`array` (cells × units, ...) as (*grid, units, ...): the grid's axes in front (as is without a grid)."""
        return np.reshape(array, (*self.grid, -1, *np.shape(array)[1:])) if self.grid else array

    @property
    def objective(self) -> np.ndarray:
        """The objective of each unit at the last completed step."""
        return self.history[self.steps - 1] if self.steps else np.full(len(self.units), np.nan)


def optimize(
    model: Model,
    objective: Objective | ObjectiveFor | list,
    *,
    param: Param | ParamFor | list,
    units: Array | np.ndarray | None = None,
    stop: Objective | ObjectiveFor | list | None = None,
    watch: Objective | ObjectiveFor | None = None,
    report: Objective | ObjectiveFor | None = None,
    final_evaluation: bool = False,
    transform: Transform | list[Transform] = identity(),
    step_transform: Transform | list[Transform] = identity(),
    init: Any = None,
    optimizer: Optimizer | optax.GradientTransformation | Callable[[Array], Optimizer] | list | None = None,
    steps: int = 512,
    batch: int = 1,
    ensemble: int = 1,
    seed: int = 0,
    chunk: int = CHUNK,
    relu_override_steps: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    description: str | None = None,
    memory_budget: int | None = None,
) -> Result:
    """Maximize `objective` for each unit; see the module docstring for the words.

    objective: an `Objective`, or a function of a unit index returning one (vmapped over `units`).
    units: the indices passed to that function (default: one unit, index 0).
    param: a `Param`, or a function of a unit index returning each unit's own (built alike; e.g. an
        eps-ball around the unit's clean image).
    stop: per-unit early stop, an objective (or a function of the unit index returning one) evaluated
        on the same forward passes as `objective`: a unit whose stop value is positive does not move
        in that step (an attack's image once it fools the model); `Result.moved` counts the steps moved.
    watch: per unit as `stop`, a value given to an optimizer with extra arguments as `watch=` (APGD's
        "fooled") from the same forward passes.
    report: per unit as `stop`, a value (any shape: an attack's logits) kept from the last step's forward
        pass, in `Result.report`.
    final_evaluation: after the `steps` updates, one more forward pass at the final parameters (no
        backward, no update): the history's last row and the report are those of the images returned.
        The program holds the network once for both (a backward skipped by a `cond`).
    transform: drawn afresh for every view; step_transform: drawn once per step and unit,
        before the views, so all views share it (Plug-In Inversion's jitter).
    init: the starting parameters, one per unit (leading axis = units; in a sweep, one per unit for
        every cell or one per cell × unit), instead of `param.init` (a coarse-to-fine stage starts from
        the previous one's images).
    optimizer: a `jaxvis.pieces.optimizers` optimizer (hyperparameters are runtime values) or any
        optax transformation; default Adam 0.05.  One with extra arguments (`optax.lbfgs`)
        is given the loss value, gradient and loss function for its line search.
    relu_override_steps: use Lucid's redirected ReLU gradient for the first steps.
    checkpoint_dir / checkpoint_every: save the optimization state with orbax every
        N steps; `resume=True` continues from the latest checkpoint there, and refuses
        one of a different run, naming what differs.
    stop_after: end (as if interrupted) after this many steps; for tests and budgets.
    description: the progress bar's label (default: the objective's name).
    memory_budget: bytes one device may hold for the program: a compiled program needing more raises
        `jaxvis.engine.memory.MemoryBudgetError` (saying how many units would fit) before it runs.

    A sweep: any of objective, param, transform, step_transform and optimizer given as a
    list, one per *cell* of a grid (the others shared), runs every cell × unit in the one
    program, each cell exactly as its own run with the same seed would.  The cells must be
    built alike (only runtime values differ).  The result holds cell c's unit u at entry
    c·len(units) + u (`Result.grid` is (cells,); `Result.with_grid_axes` splits it).
    """
    units = _unit_array(units)
    _check_counts(steps=steps, batch=batch, ensemble=ensemble, chunk=chunk)
    cells = cell_count(objective=objective, param=param, transform=transform, step_transform=step_transform,
                       optimizer=optimizer, stop=stop)
    cell = lambda value, c: value[c] if isinstance(value, list) else value  # noqa: E731
    objectives = concatenate_cells([stack_objectives(cell(objective, c), units) for c in range(cells)])
    stops = None if stop is None else concatenate_cells([stack_objectives(cell(stop, c), units) for c in range(cells)])
    watches = None if watch is None else concatenate_cells([stack_objectives(watch, units)] * cells)
    reports = None if report is None else concatenate_cells([stack_objectives(report, units)] * cells)
    layers = _check_layers(model, objectives, stops, watches, reports)
    steps += final_evaluation  # the evaluation is one more (update-less) step of the run
    per_unit_param = any(_is_per_unit(cell(param, c)) or _is_per_unit(cell(optimizer, c)) for c in range(cells))

    def for_unit(value: Any, unit: Any) -> Any:
        return value(np.int32(unit)) if _is_per_unit(value) else value

    shape = () if reports is None else report_shape(model, reports, for_unit(cell(param, 0), units[0]), batch)

    def plan_for(c: int, unit: Any = None) -> Plan:
        return Plan(for_unit(cell(param, c), unit), as_optimizer(for_unit(cell(optimizer, c), unit)),
                    as_piece(cell(transform, c)), as_piece(cell(step_transform, c)), layers, batch, ensemble, chunk,
                    relu_override_steps > 0, final_evaluation=final_evaluation, report_shape=shape)

    if per_unit_param:  # one plan per cell and unit: the params' differing values become per-unit leaves
        plan = stack_plans([plan_for(c, unit) for c in range(cells) for unit in units], 1)
        plans = [plan]
    else:
        plans = [plan_for(c) for c in range(cells)]
        plan = stack_plans(plans, len(units))
    cell_units = np.tile(units, cells)
    count = len(cell_units)  # the entries run; the devices may need a few more (padding)
    devices = jax.devices()  # every process's, under jax.distributed (`jaxvis.core.distributed`)
    positions = _pad_to_multiple(np.arange(len(cell_units)), len(devices))
    plan = _map_swept(plan, lambda values: _shard(_take(values, positions), devices))
    identities = _shard(_unit_identities(cell_units)[positions], devices)
    inputs = Inputs(_shard(_on_device(_take(objectives, positions)), devices), identities, np.int32(seed),
                    np.int32(relu_override_steps),
                    *(None if signal is None else _shard(_on_device(_take(signal, positions)), devices)
                      for signal in (stops, watches, reports)), np.int32(steps - 1))
    if init is not None and cells > 1 and _leading(init) == {len(units)}:  # one start per unit: every cell's
        init = jax.tree_util.tree_map(lambda leaf: np.concatenate([np.asarray(leaf)] * cells), init)
    store = None
    if checkpoint_dir is not None:
        store = Checkpoints(checkpoint_dir, run_fingerprint(model, objectives, plans, units, steps, seed,
                                                           relu_override_steps, init, stops))
    elif checkpoint_every or resume:
        raise ValueError("checkpoint_every and resume need checkpoint_dir")

    timings: dict[str, float] = {}
    begin = _start(plan, inputs, init, positions, devices, steps, store if resume else None, timings)
    last = min(steps, stop_after) if stop_after is not None else steps
    fits = None if memory_budget is None else functools.partial(
        check_fits, budget=memory_budget, units=len(positions), devices=len(devices),
        shared=sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(model.variables)))
    advance = compiled_chunks(plan, model, inputs, timings, fits)
    if begin.images is None and begin.done:  # restored: its images as a run that never stopped renders them
        begin = advance(begin, 0)._replace(reports=None)
    advance = end_when_finished(advance, plan, last)
    advance = stop_on_nonfinite(advance, cell_units, timings)
    bar = progress_bar(progress and is_lead(), steps, description or objectives.name, unit="step", done=begin.done)
    advance = with_progress_bar(advance, bar, len(cell_units))
    if store is not None and checkpoint_every:
        advance = with_checkpoints(advance, store, checkpoint_every, steps, count)

    def keep_on_interrupt(progress: Progress) -> None:
        if process_count() > 1:  # the processes are interrupted at different points: no collective now
            return
        if store is not None and progress.done > begin.done and progress.done not in store.steps() and \
                store.save_or_warn(progress.done, progress.state, progress.history[:, :count], count):
            print(f"jaxvis: saved step {progress.done} of {steps} in {store.directory}", file=sys.stderr)

    try:
        end = drive(advance, begin, last, chunk, checkpoint_every, keep_on_interrupt)
    finally:
        bar.close()
    return replace(_result(end, cell_units, timings), grid=(cells,) if cells > 1 else ())


# --- the run's pieces --------------------------------------------------------------------------------


def stack_objectives(objective: Objective | ObjectiveFor, units: np.ndarray) -> Objective:
    """One objective whose every leaf has a leading unit axis: `objective_for(u)` for each unit, stacked.

    Built on the host (NumPy), one call per unit with the index as a NumPy integer, so
    that nothing is compiled for it; every unit's objective must have the same structure.
    """
    objective_for = objective if callable(objective) and not isinstance(objective, Objective) else (lambda _u: objective)
    built = [objective_for(np.int32(unit)) for unit in units]
    if not all(isinstance(b, Objective) for b in built):
        wrong = next(b for b in built if not isinstance(b, Objective))
        raise TypeError(f"the objective function must return an Objective, got {type(wrong).__name__}")
    structures = [jax.tree_util.tree_structure(b) for b in built]
    if any(structure != structures[0] for structure in structures[1:]):
        odd = next(u for u, structure in zip(units, structures) if structure != structures[0])
        raise ValueError(f"the objective of unit {int(odd)} is built differently from that of unit {int(units[0])}; "
                         "an objective function must build the same terms for every unit (only numbers may differ)")
    leaves = [jax.tree_util.tree_leaves(b) for b in built]
    stacked = [np.stack([np.asarray(unit_leaves[k]) for unit_leaves in leaves]) for k in range(len(leaves[0]))]
    return jax.tree_util.tree_unflatten(structures[0], stacked)


def cell_count(**values: Any) -> int:
    """How many grid cells the arguments given as lists make (1 when none is a list); lists must agree."""
    lengths = {name: len(value) for name, value in values.items() if isinstance(value, list)}
    if any(length == 0 for length in lengths.values()) or len(set(lengths.values())) > 1:
        raise ValueError(f"the swept arguments must be non-empty lists of one length (one entry per grid cell), "
                         f"got lengths {lengths}")
    return next(iter(lengths.values()), 1)


def concatenate_cells(objectives: list[Objective]) -> Objective:
    """The cells' stacked objectives end to end on the unit axis (cell-major); they must be built alike."""
    structures = [jax.tree_util.tree_structure(o) for o in objectives]
    odd = next((c for c, structure in enumerate(structures) if structure != structures[0]), None)
    if odd is not None:
        raise ValueError(f"the objective of grid cell {odd} is built differently from that of cell 0; the cells of "
                         "a sweep may differ only in numbers (weights, targets), not in their terms")
    if len(objectives) == 1:
        return objectives[0]
    return jax.tree_util.tree_map(lambda *leaves: np.concatenate(leaves), *objectives)


def run_fingerprint(model: Model, objectives: Objective, plans: list[Plan], units: np.ndarray, steps: int,
                    seed: int, relu_override_steps: int, init: Any, stops: Objective | None = None
                    ) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed (see `jaxvis.core.checkpoints`)."""
    plan = plans[0]
    pieces = lambda name: getattr(plan, name) if len(plans) == 1 else [getattr(p, name) for p in plans]  # noqa: E731
    return fingerprint(
        model=model.name, weights=digest(model.variables), objective=objectives.name,
        objective_structure=objectives.fn, objective_numbers=digest(objectives.params), units=units.tolist(),
        param=pieces("param"), transform=pieces("transform"), step_transform=pieces("step_transform"),
        optimizer=pieces("optimizer"), steps=steps, batch=plan.batch, ensemble=plan.ensemble, seed=seed,
        relu_override_steps=relu_override_steps,
        init=None if init is None else digest(init),
        random_keys="unit identity",  # before: the unit's position in the call (its draws differ)
        state="theta, opt_state, moved",  # before: without the per-unit step count (it cannot be restored)
        **({} if stops is None else {"stop": {"structure": stops.fn, "numbers": digest(stops.params)}}),
    )


class Progress(NamedTuple):
    state: State
    images: Any  # rendered from `state`: (padded units, batch, H, W, 3)
    history: np.ndarray  # (steps, padded units)
    done: int
    reports: Any = None  # each unit's report from the last step run (with `report`)
    start: int = FROM_STATE  # how the next chunk begins from `state` (`jaxvis.engine.plan.begin`)


Advance = Callable[[Progress, int], Progress]  # run `length` more steps


def drive(advance: Advance, progress: Progress, last: int, chunk: int, checkpoint_every: int,
          interrupted: Callable[[Progress], None] = lambda _: None) -> Progress:
    """Advance in chunks (ending on checkpoint steps) until `last` steps are done.  On an interrupt (Ctrl-C, or
    SIGTERM as the command line turns it into one) `interrupted` gets the last finished chunk's progress (the
    engine saves it where it keeps checkpoints) before the interrupt goes on."""
    try:
        while progress.done < last:
            length = min(chunk, last - progress.done)
            if checkpoint_every:
                length = min(length, checkpoint_every - progress.done % checkpoint_every)
            progress = advance(progress, length)
    except KeyboardInterrupt:
        interrupted(progress)
        raise
    return progress


def compiled_chunks(plan: Plan, model: Model, inputs: Inputs, timings: dict[str, float],
                    fits: Callable[[Any], int | None] | None = None) -> Advance:
    """The pure loop: `length` steps of the compiled chunk program (compile times and step times recorded).
    fits: checks the program's memory before its first run (`jaxvis.engine.memory.check_fits`)."""
    steady = [0.0, 0]  # seconds and steps after the first call

    def advance(progress: Progress, length: int) -> Progress:
        start = time.perf_counter()
        args = (plan, model, inputs, progress.state, np.int32(progress.done), np.int32(length),
                np.int32(progress.start))
        executable, compile_times = RUN_CHUNK.executable(*args)
        if compile_times is not None:
            timings.update(compile_times.as_dict())
        if fits is not None and "program_bytes" not in timings:
            timings["program_bytes"] = fits(executable)
        state, values, images, reports = executable(*args)
        values = host(computed(values))[:length]
        elapsed = time.perf_counter() - start
        if "first_chunk_s" not in timings:
            timings["first_chunk_s"] = elapsed  # includes any compilation
        else:
            steady[0] += elapsed
            steady[1] += length
            timings["step_s"] = steady[0] / steady[1]
        history = progress.history.copy()
        history[progress.done : progress.done + length] = values
        return Progress(state, images, history, progress.done + length, reports)

    return advance


def computed(array: Any, poll_s: float = 0.05) -> Any:
    """`array` once the device has computed it, waited for in short sleeps: Ctrl-C is answered within `poll_s`
    instead of at the end of the chunk (a blocking wait inside XLA holds the interrupt back).  The sleeps start
    at a millisecond and double up to `poll_s`, so a short chunk is not kept waiting for a long sleep's end."""
    sleep = 0.001
    while hasattr(array, "is_ready") and not array.is_ready():
        time.sleep(sleep)
        sleep = min(2 * sleep, poll_s)
    return array


def end_when_finished(advance: Advance, plan: Plan, last: int) -> Advance:
    """Skip to step `last` once every unit's optimizer says it is finished (`Optimizer.finished`: it will not
    move again), the remaining history rows holding the last values -- what those steps would have given."""

    def ended(progress: Progress, length: int) -> Progress:
        after = advance(progress, length)
        finished = plan.optimizer.finished(after.state.opt_state)
        if finished is None or after.done >= last or not np.all(host(finished)):
            return after
        history = after.history.copy()
        history[after.done : last] = history[after.done - 1]
        return after._replace(history=history, done=last)

    return ended


def stop_on_nonfinite(advance: Advance, units: np.ndarray, timings: dict[str, float]) -> Advance:
    """Raise `OptimizationDiverged` (with the last finite images) when an objective becomes NaN/Inf."""

    def guarded(progress: Progress, length: int) -> Progress:
        after = advance(progress, length)
        values = after.history[progress.done : after.done, : len(units)]
        bad = ~np.isfinite(values)
        if bad.any():
            result = _result(progress, units, timings)
            result.nonfinite = units[bad.any(axis=0)]
            raise OptimizationDiverged(progress.done + int(np.argmax(bad.any(axis=1))), result)
        return after

    return guarded


def with_progress_bar(advance: Advance, bar: Any, count: int) -> Advance:
    def shown(progress: Progress, length: int) -> Progress:
        after = advance(progress, length)
        bar.update(after.done - progress.done)
        bar.set_postfix(objective=f"{after.history[after.done - 1, :count].mean():.4g}")
        return after

    return shown


def with_checkpoints(advance: Advance, store: Checkpoints, every: int, steps: int, count: int) -> Advance:
    """Save every `every` steps and at the end: the first `count` entries (the units, not their padding)."""

    def saved(progress: Progress, length: int) -> Progress:
        after = advance(progress, length)
        if after.done % every == 0 or after.done == steps:
            store.save_or_warn(after.done, after.state, after.history[:, :count], count)
        return after

    return saved


# --- helpers ------------------------------------------------------------------------------------------


def _start(plan: Plan, inputs: Inputs, init: Any, positions: np.ndarray, devices: list, steps: int,
           resume_from: Checkpoints | None, timings: dict[str, float]) -> Progress:
    history = np.zeros((steps, len(positions)), np.float32)
    if resume_from is not None:  # saved without the padding (`with_checkpoints`): padded again here
        count = int(positions.max()) + 1
        abstract = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct((count, *leaf.shape[1:]), leaf.dtype),
                                          jax.eval_shape(init_state, plan, inputs.seed, inputs.identities))
        restored = resume_from.latest(abstract, (steps, count))
        if restored is not None:
            state, saved_history, done = restored
            return Progress(_shard(_on_device(_take(state, positions)), devices), None, saved_history[:, positions],
                            done)  # its images rendered by the chunk program
    start = time.perf_counter()
    if init is None:  # the chunk program draws the first state itself
        state, begin_with = placeholder_state(plan, inputs), FROM_SEED
    else:  # per unit
        theta = _on_device(_take(_check_init(init, int(positions.max()) + 1), positions))
        state, begin_with = placeholder_state(plan, inputs, theta), FROM_THETA
    timings["init_s"] = time.perf_counter() - start
    # on the device as the chunks return it: the first chunk and the next share one compiled program
    return Progress(_shard(_on_device(state), devices), None, history, 0, start=begin_with)


def _result(progress: Progress, units: np.ndarray, timings: dict[str, float]) -> Result:
    if progress.images is None:  # nothing ran yet
        raise JaxvisError("no step was run (steps=0 or stop_after=0)")
    images, opt_state, theta, moved, reports = jax.tree_util.tree_map(
        lambda leaf: leaf[: len(units)], host((progress.images, progress.state.opt_state, progress.state.theta,
                                               progress.state.moved, progress.reports)))
    return Result(images, progress.history[: progress.done, : len(units)].copy(), units, progress.done, dict(timings),
                  moved=moved, opt_state=opt_state, theta=theta, report=reports)


def _unit_array(units: Array | np.ndarray | None) -> np.ndarray:
    units = np.asarray([0] if units is None else units)
    if units.ndim != 1 or len(units) == 0:
        raise ValueError(f"units must be a non-empty 1-D array of unit indices, got shape {units.shape}")
    return units


def _unit_identities(units: np.ndarray) -> np.ndarray:
    """What each unit's random draws are keyed on: the unit's own index (int32), not its place in the call."""
    if not np.issubdtype(units.dtype, np.integer):
        raise ValueError(f"units must be whole numbers (unit indices), got dtype {units.dtype}")
    if units.min() < np.iinfo(np.int32).min or units.max() > np.iinfo(np.int32).max:
        raise ValueError("units must fit in 32 bits")
    return units.astype(np.int32)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")


def _check_layers(model: Model, objective: Objective, *signals: Objective | None) -> tuple[str, ...]:
    layers = objective.model_layers.union(*(signal.model_layers for signal in signals if signal is not None))
    if not layers:
        raise ValueError(
            f"objective {objective.name!r} reads no layer of {model.name} (only {sorted(objective.layers) or 'nothing'}); "
            "add a term on a layer, e.g. channel('features.14', 7), or `model.layers` for names."
        )
    beyond_output = layers - {model.arch.output}  # the output needs no layer table (one abstract trace)
    unknown = sorted(beyond_output - set(model.layers)) if beyond_output else []
    if unknown:
        raise UnknownLayerError(unknown, model.name, model.layers)
    return tuple(sorted(layers))


def report_shape(model: Model, reports: Objective, param: Param, batch: int) -> tuple[int, ...]:
    """The shape of one unit's report, from the layers' shapes at the rendered size (no network traced)."""

    def shape(layer: str) -> tuple[int, ...]:
        if layer == model.arch.output and not model.arch.is_generator:
            return (model.arch.num_classes,)
        return model.layer_shapes(param.size)[layer][1:]

    acts = {layer: jax.ShapeDtypeStruct((batch, *shape(layer)), jnp.float32) for layer in reports.model_layers}
    acts[INPUT] = jax.ShapeDtypeStruct((batch, param.size, param.size, 3), jnp.float32)
    one = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[0], reports)
    return tuple(jax.eval_shape(lambda o: o(acts), one).shape)


def _is_per_unit(value: Any) -> bool:
    """A function of the unit index giving each unit its own piece (not a piece, nor an optax transformation)."""
    return callable(value) and not isinstance(value, (Param, Optimizer, optax.GradientTransformation))


def _leading(tree: Any) -> set[int | None]:
    return {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree_util.tree_leaves(tree)}


def _check_init(init: Any, count: int) -> Any:
    leading = _leading(init)
    if leading != {count}:
        raise ValueError(f"init must hold one entry per unit (leading axis {count}), got leading axes {leading}")
    return init


def _map_swept(plan: Plan, function: Callable[[Any], Any]) -> Plan:
    """`function` applied to the swept values (one per cell × unit); the shared ones as they are."""
    leaves, treedef = jax.tree_util.tree_flatten(plan)
    return jax.tree_util.tree_unflatten(treedef, [function(leaf) if k in plan.swept else leaf
                                                  for k, leaf in enumerate(leaves)])


def _take(tree: Any, positions: np.ndarray) -> Any:
    """Entries `positions` of every leaf's leading (unit) axis (on the host)."""
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[positions], tree)


def _on_device(tree: Any) -> Any:
    """Host arrays as device arrays of jax's default dtypes (float64 -> float32, int64 -> int32)."""
    return jax.tree_util.tree_map(jnp.asarray, tree)


def _pad_to_multiple(positions: np.ndarray, devices: int) -> np.ndarray:
    """Repeat the last unit so the unit axis splits evenly across devices (extra results are dropped)."""
    extra = (-len(positions)) % devices
    return np.concatenate([positions, np.repeat(positions[-1:], extra)]) if extra else positions


def _shard(tree: Any, devices: list) -> Any:
    """Split the leading (unit) axis across the devices (every process's, across processes); a no-op on one."""
    if len(devices) == 1:
        return tree
    mesh = jax.sharding.Mesh(np.asarray(devices), ("units",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("units"))
    return place(tree, sharding)


def _unit_list(units: np.ndarray | None) -> str:
    return ", ".join(str(u) for u in (units if units is not None else [])[:10]) or "?"


