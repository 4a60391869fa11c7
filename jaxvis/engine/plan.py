"""The pure optimization: one step, and a chunk of steps from a given or freshly drawn state -- the program the engine compiles.

One step, for every unit at once (vmapped):

    images ← param.render(θ)                            (batch images per unit)
    shared ← step_transform(k_step, images)             (one draw per step and unit)
    for each of `ensemble` views:  v ← transform(k_view, shared)
        value_v ← objective({captured layers of model(v)}, input: images)
    loss ← −mean_v value_v;   θ ← param.project(optax_update(∇θ loss))
    Beside the objective, the same forward passes give per unit: a stop value (positive: the unit keeps
    θ this step), a watched value (given to an optimizer with extra arguments: APGD's "fooled" and
    logits) and a report (kept from the last step: an attack's logits).  With a final evaluation
    the last step only evaluates (its backward skipped by a `cond`): the report of the images returned.

Structure (`Plan`: the pieces' static configuration, layer names, batch,
ensemble, chunk length) decides the compiled program; everything else is an
argument: the objectives' numbers (unit indices, weights, targets), the seed,
the ReLU-redirection step count, the optimizer's hyperparameters, the
transforms' strengths, the first step and the number of steps of a chunk.  So
runs that differ only in those share one program, and a sweep over them is one
program too: `Plan.swept` names the values that differ per unit (a grid cell's).

Keys: a unit draws from its identity (`Inputs.identities`: the unit's own index, not
its position in the call): unit u at step t from fold_in(fold_in(step_key(seed), t), u).
So the same seed and unit give the same images however a run is chunked, resumed,
sharded or split into groups of units.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.core.programs import Program
from jaxvis.core.structure import piece
from jaxvis.models.model import Model
from jaxvis.pieces.objectives import INPUT, Objective
from jaxvis.pieces.optimizers import Optimizer
from jaxvis.pieces.param import Param
from jaxvis.pieces.transforms import Transform

Array = jax.Array


@piece(data=("param", "optimizer", "transform", "step_transform"))
class Plan:
    """What one compiled program is made of (besides the model and the shapes)."""

    param: Param
    optimizer: Optimizer
    transform: Transform
    step_transform: Transform
    layers: tuple[str, ...]
    batch: int = 1  # images per unit
    ensemble: int = 1  # transformed views per image and step
    chunk: int = 32  # steps per call of the compiled loop (the objective history buffer's length)
    redirect_relu: bool = False  # compile Lucid's redirected ReLU gradient in (used while t < relu_steps)
    swept: tuple[int, ...] = ()  # which runtime values (leaf indices) carry a leading unit axis (a sweep's)
    final_evaluation: bool = False  # step `Inputs.final_step` only evaluates: no backward pass, no update
    report_shape: tuple[int, ...] = ()  # the shape of one unit's report (`Inputs.reports`)


def stack_plans(plans: list[Plan], units: int) -> Plan:
    """One plan for a sweep's cells × `units` units: values equal in every cell stay shared; the others become
    swept, one per cell × unit (cell-major).  The cells must be built alike (only runtime values differ)."""
    flat = [jax.tree_util.tree_flatten(plan) for plan in plans]
    treedef = flat[0][1]
    odd = next((c for c, (_, other) in enumerate(flat) if other != treedef), None)
    if odd is not None:
        raise ValueError(f"grid cell {odd} is built differently from cell 0 (a size, a count or a kind of piece "
                         "differs): only runtime values (rates, weights, strengths) can be swept in one program")
    columns = [np.stack([np.asarray(leaves[k]) for leaves, _ in flat]) for k in range(len(flat[0][0]))]
    swept = tuple(k for k, column in enumerate(columns) if not all(np.array_equal(v, column[0]) for v in column))
    leaves = [np.repeat(column, units, axis=0) if k in swept else flat[0][0][k] for k, column in enumerate(columns)]
    return dataclasses.replace(jax.tree_util.tree_unflatten(treedef, leaves), swept=swept)


def unit_axes(plan: Plan) -> Plan:
    """`vmap`'s in_axes for `plan` over units: 0 for the swept values (one per unit), None for the shared."""
    leaves, treedef = jax.tree_util.tree_flatten(plan)
    return jax.tree_util.tree_unflatten(treedef, [0 if k in plan.swept else None for k in range(len(leaves))])


def per_unit(function: Any, plan: Plan) -> Any:
    """`jax.vmap` of `function(plan, *per-unit arguments)` over units, each unit seeing its own swept values."""
    return lambda *args: jax.vmap(function, in_axes=(unit_axes(plan), *([0] * len(args))))(plan, *args)


class Inputs(NamedTuple):
    """The runtime values of a run."""

    objectives: Objective  # every leaf has a leading unit axis
    identities: Array  # int32 (units,): what each unit's random draws are keyed on
    seed: Array  # int32 scalar
    relu_steps: Array  # int32 scalar: redirect the ReLU gradient while step < relu_steps
    stops: Objective | None = None  # per unit (leading unit axis): positive once the unit is finished
    watches: Objective | None = None  # per unit: a value the optimizer is given (`watch=`) besides the loss
    reports: Objective | None = None  # per unit: a value kept from the last step's forward pass (e.g. logits)
    final_step: Array | None = None  # int32: the step that only evaluates (with `Plan.final_evaluation`)


class State(NamedTuple):
    theta: Any  # leading unit axis
    opt_state: Any
    moved: Array  # int32 (units,): the steps in which each unit moved (fewer than run where it stopped early)


def init_state(plan: Plan, seed: Array, identities: Array) -> State:
    """Fresh parameters for units of these identities (each its own key) and their optimizer state."""
    init_key = jax.random.split(jax.random.key(seed))[0]
    keys = jax.vmap(lambda k: jax.random.fold_in(init_key, k))(identities)
    return start_from(plan, per_unit(lambda p, k: p.param.init(k, p.batch), plan)(keys))


def start_from(plan: Plan, theta: Any) -> State:
    """The optimizer state for given parameters (one per unit)."""
    units = jax.tree_util.tree_leaves(theta)[0].shape[0]
    opt_state = per_unit(lambda p, th: p.optimizer.transformation().init(th), plan)(theta)
    return State(theta, opt_state, jnp.zeros(units, jnp.int32))


def unit_objective(plan: Plan, model: Model, theta: Any, objective: Objective, key: Array,
                   redirect: Array | None, signals: tuple[Objective | None, ...] = ()) -> tuple[Array, tuple]:
    """One unit's objective and its signals' values (stop, watch: 0 for a signal that is None), each averaged
    over `ensemble` transformed views of its image batch: one forward pass per view gives them all."""
    images = plan.param.render(theta)
    step_key, views_key = jax.random.split(key)
    shared = plan.step_transform(step_key, images)

    def view(view_key: Array) -> tuple[Array, tuple]:
        acts = model(plan.transform(view_key, shared), capture=list(plan.layers), edit=plan.param.edit(theta),
                     redirect_relu=redirect)
        seen = {**acts, INPUT: images}
        zero = jnp.zeros((), jnp.float32)
        return objective(seen), tuple(zero if s is None else s(seen).astype(jnp.float32) for s in signals)

    if plan.ensemble == 1:
        return view(jax.random.split(views_key, 1)[0])
    values, signal_values = jax.vmap(view)(jax.random.split(views_key, plan.ensemble))
    return values.mean(), tuple(v.mean(axis=0) for v in signal_values)


def step(plan: Plan, model: Model, inputs: Inputs, state: State, t: Array) -> tuple[State, Array, Array]:
    """Step t of every unit: the new state, each unit's objective before the update and its report (0 without)."""
    step_key = jax.random.fold_in(jax.random.split(jax.random.key(inputs.seed))[1], t)
    keys = jax.vmap(lambda k: jax.random.fold_in(step_key, k))(inputs.identities)
    redirect = t < inputs.relu_steps if plan.redirect_relu else None
    evaluate_only = t >= inputs.final_step if plan.final_evaluation else None

    def unit_step(plan: Plan, theta: Any, opt_state: Any, moved: Array, objective: Objective, stop: Objective | None,
                  watch: Objective | None, report: Objective | None, key: Array
                  ) -> tuple[Any, Any, Array, Array, Array]:
        tx = plan.optimizer.transformation()

        def loss_and_signals(th: Any) -> tuple[Array, tuple]:
            value, signals = unit_objective(plan, model, th, objective, key, redirect, (stop, watch, report))
            return -value, signals

        if evaluate_only is None:
            (loss, signals), grads = jax.value_and_grad(loss_and_signals, has_aux=True)(theta)
        else:  # the backward pass only where it is used: one forward in the program serves the last evaluation
            loss, pullback, signals = jax.vjp(loss_and_signals, theta, has_aux=True)
            grads = jax.lax.cond(evaluate_only, lambda: jax.tree_util.tree_map(jnp.zeros_like, theta),
                                 lambda: pullback(jnp.ones_like(loss))[0])
        stop_value, watch_value, report_value = signals
        if isinstance(tx, optax.GradientTransformationExtraArgs):
            loss_fn = lambda th: loss_and_signals(th)[0]  # noqa: E731
            watched = {} if watch is None else {"watch": watch_value}
            updates, new_opt_state = tx.update(grads, opt_state, theta, value=loss, grad=grads, value_fn=loss_fn,
                                               **watched)
        else:
            updates, new_opt_state = tx.update(grads, opt_state, theta)
        new_theta = plan.param.project(optax.apply_updates(theta, updates))
        if stop is None and evaluate_only is None:
            return new_theta, new_opt_state, moved + 1, loss, report_value
        moving = jnp.bool_(True) if stop is None else stop_value <= 0  # a finished unit keeps its state
        moving = moving if evaluate_only is None else moving & ~evaluate_only
        return (kept(moving, new_theta, theta), kept(moving, new_opt_state, opt_state), moved + moving, loss,
                report_value)

    theta, opt_state, moved, losses, reports = per_unit(unit_step, plan)(
        state.theta, state.opt_state, state.moved, inputs.objectives, inputs.stops, inputs.watches, inputs.reports,
        keys)
    return State(theta, opt_state, moved), -losses, reports


def kept(moving: Array, new: Any, old: Any) -> Any:
    """`new` where a unit moves, else `old`, leaf by leaf: how a finished unit's parameters and state stay put."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(moving, n, o), new, old)


FROM_STATE, FROM_THETA, FROM_SEED = 0, 1, 2  # how a chunk begins (`run_chunk`'s `start`, a runtime value)


def begin(plan: Plan, inputs: Inputs, state: State, start: Array) -> State:
    """The state a chunk starts from: `state` as it is (FROM_STATE), its θ with a fresh optimizer state
    (FROM_THETA: a stage started from given images), or everything drawn from the seed (FROM_SEED; `state`
    then only gives the shapes).  Inside the chunk program, so a run compiles no initialization of its own.
    A θ given in another shape than the parameterization draws (DeepDream's photo) leaves FROM_SEED out."""
    drawn = jax.eval_shape(init_state, plan, inputs.seed, inputs.identities)
    same_shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), drawn) == \
        jax.tree_util.tree_map(lambda a: (jnp.shape(a), jnp.result_type(a)), state)
    from_seed = (lambda: init_state(plan, inputs.seed, inputs.identities)) if same_shapes else (lambda: state)
    return jax.lax.switch(start, [lambda: state, lambda: start_from(plan, state.theta), from_seed])


def placeholder_state(plan: Plan, inputs: Inputs, theta: Any = None) -> State:
    """Zeros shaped like the state a chunk begins with (host arrays): drawn by `init_state`, or made by
    `start_from` for a given θ (which is kept)."""
    if theta is None:
        abstract = jax.eval_shape(init_state, plan, inputs.seed, inputs.identities)
    else:
        abstract = jax.eval_shape(start_from, plan, theta)
    zeros = jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract)
    return zeros if theta is None else zeros._replace(theta=theta)


def run_chunk(plan: Plan, model: Model, inputs: Inputs, state: State, first: Array, count: Array,
              start: Array = FROM_STATE) -> tuple[State, Array, Array, Array]:
    """Steps first .. first + count − 1 (count ≤ plan.chunk, a runtime value), from the state `begin` makes
    of `state` and `start`.

    Returns the new state, the objectives (plan.chunk, units; rows ≥ count unused), the images
    rendered from the new state (units, batch, H, W, 3) and each unit's report from the chunk's
    last step (0 without reports).  The model is an argument: closing over it would make XLA
    constant-fold the weights.
    """

    def body(i: Array, carry: tuple[State, Array, Array]) -> tuple[State, Array, Array]:
        state, values, _ = carry
        state, value, reports = step(plan, model, inputs, state, first + i)
        return state, values.at[i].set(value.astype(values.dtype)), reports  # (a float64 run records float32)

    state = begin(plan, inputs, state, start)
    units = jax.tree_util.tree_leaves(state.theta)[0].shape[0]
    values = jnp.zeros((plan.chunk, units), jnp.float32)
    reports = jnp.zeros((units, *plan.report_shape), jnp.float32)
    state, values, reports = jax.lax.fori_loop(0, count, body, (state, values, reports))
    return state, values, render(plan, state), reports


def render(plan: Plan, state: State) -> Array:
    """Every unit's images (units, batch, H, W, 3), each rendered with its own parameterization values from
    what its optimizer returns (`Optimizer.final`: the parameters themselves, or e.g. APGD's best point)."""
    return per_unit(lambda p, th, st: p.param.render(p.optimizer.final(th, st)), plan)(state.theta, state.opt_state)


RUN_CHUNK = Program(run_chunk, "optimization step")
