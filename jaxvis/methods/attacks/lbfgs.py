"""Szegedy et al.'s box-constrained L-BFGS attack ("Intriguing properties of neural networks", ICLR 2014,
Sec. 4.1), per image, towards a target class t:

    minimize  ||r||_2^2 + c · loss_f(x + r, t)     subject to  x + r ∈ [0, 1]^m

by L-BFGS from r = 0, with a line search over c for the smallest c whose
minimizer is classified as t: the smallest c weights the distance most, so it
gives the smallest perturbation. The paper writes c on |r| and searches c's
other end; the weight on the loss, the squared distance and starting at the
clean image follow foolbox 2's `LBFGSAttack` (the implementation most results
since were made with). The c search is Carlini & Wagner's bracketing (ten-fold
up until a success, then bisection), per image, `search_steps` times.

Box constraint: each L-BFGS step (optax's, with its zoom line search, history
of 10 as scipy's L-BFGS-B) is projected back into [0, 1]; the curvature pairs
are taken between projected points. (scipy's L-BFGS-B, which foolbox used,
handles the bounds inside the step instead.) Within one solve an image stops
once its step moves no pixel by more than `TOLERANCE`.

Untargeted: the target is each image's runner-up class on the clean image, and
any misclassification counts as success. Defaults: 150 L-BFGS iterations per
solve (foolbox 2's maxiter), 10 search steps from c = 1e-2.

It runs on the engine (`jaxvis.optimize`), each solve of the c search a stage
(`jaxvis.engine.stages`), as C&W's rounds: each image a unit starting at its clean image
(`param.clamped`: the box), its update optax's L-BFGS inside `LbfgsSolve`, which
keeps the stop-at-convergence mask and the smallest success (`LbfgsState`); a
solve of N iterations takes N + 1 engine steps (the last judges the final iterate).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.methods.attacks.common import (LOGITS, NO_BOUND, AttackResult, Search, check_attack_request, cross_entropy,
                                   first_search, kept_logits, next_search, result, succeeded, with_logits)
from jaxvis.core.errors import MethodOptionError
from jaxvis.core.structure import piece
from jaxvis.engine.optimize import Result
from jaxvis.engine.plan import kept
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, run_stages
from jaxvis.models.model import Model, logits
from jaxvis.pieces.objectives import INPUT, Objective, term
from jaxvis.pieces.optimizers import Optimizer
from jaxvis.pieces.param import clamped

Array = jax.Array
STEPS = 150
SEARCH_STEPS = 10
INITIAL_CONST = 1e-2
MEMORY = 10  # L-BFGS history (scipy's default m)
TOLERANCE = 1e-7  # a solve is over for an image whose step moves no pixel further than this


def runner_up(logits: np.ndarray) -> np.ndarray:
    """Each image's second most likely class: the untargeted attack's target."""
    return np.argsort(logits, axis=-1)[:, -2]


def lbfgs_objective(clean: np.ndarray, label: int, aim: int, targeted: bool, const: float
                    ) -> tuple[Objective, Objective]:
    """What a solve ascends for one image: minus (its squared distance to `clean` + c · the cross-entropy of
    `aim`); and what the update watches: (succeeded, the squared distance), from the same forward pass."""
    numbers = (np.asarray(clean, np.float32), np.int32(label), np.int32(aim), np.bool_(targeted), np.float32(const))
    layers = frozenset({LOGITS, INPUT})
    return (Objective(term(_lbfgs_loss), numbers, layers, "-(L-BFGS loss)"),
            with_logits(Objective(term(_found_and_distance), numbers, layers, "found, distance")))


def _distance(numbers: tuple, acts: Any) -> Array:
    image = acts[INPUT]
    return ((image - numbers[0]) ** 2).reshape(image.shape[0], -1).sum(axis=1)


def _lbfgs_loss(numbers: tuple, acts: Any) -> Array:
    _, _, aim, _, const = numbers
    model_logits = acts[LOGITS]
    aims = jnp.full(model_logits.shape[0], aim)
    return -(_distance(numbers, acts) + const * cross_entropy(model_logits, aims)).sum()


def _found_and_distance(numbers: tuple, acts: Any) -> Array:
    _, label, aim, targeted, _ = numbers
    model_logits = acts[LOGITS]
    count = model_logits.shape[0]
    labels, aims = jnp.full(count, label), jnp.full(count, aim)
    found = jnp.where(targeted, succeeded(model_logits, labels, aims), succeeded(model_logits, labels, None))
    return jnp.stack([found.astype(jnp.float32).sum(), _distance(numbers, acts).sum()])


class LbfgsState(NamedTuple):
    """One image's solve: optax's L-BFGS state, whether it still moves, and the search's record."""

    lbfgs: Any
    step: Array
    active: Array  # bool: still moving this solve
    success: Array  # bool: found this solve (moves c)
    best_distance: Array
    best: Array  # the image of the smallest success so far (the clean image where none)
    best_logits: Array  # ... and its logits
    used: Array  # iterations that moved the image, all solves
    search: Search  # this solve's entry (c, its bracket), as given


@piece(data=("steps", "search"))
class LbfgsSolve(Optimizer):
    """One image's solve: optax's L-BFGS (zoom line search, history `memory`), each step projected into the box,
    the image stopping once a step moves no pixel further than `TOLERANCE`, keeping the smallest success. Judged
    at x before each step (`watch`: succeeded, distance); step `steps` only judges the final iterate."""

    steps: Any
    search: Search  # this image's entry
    memory: int = MEMORY

    def transformation(self) -> optax.GradientTransformationExtraArgs:
        solver = optax.lbfgs(memory_size=self.memory)

        def init(x: Array) -> LbfgsState:
            search = self.search
            return LbfgsState(solver.init(x), jnp.int32(0), jnp.bool_(True), jnp.bool_(False),
                              jnp.asarray(search.best_distance, jnp.float32), jnp.asarray(search.best, x.dtype),
                              jnp.asarray(search.best_logits, jnp.float32), jnp.asarray(search.used, jnp.int32),
                              search)

        def update(updates: Array, s: LbfgsState, x: Array, *, value: Array, grad: Array, value_fn: Any,
                   watch: Array, **_: Any) -> tuple[Array, LbfgsState]:
            found, distance, logits = watch[0] > 0, watch[1], watch[2:]
            improved = found & (distance < s.best_distance)
            steps, solver_state = solver.update(updates, s.lbfgs, x, value=value, grad=grad, value_fn=value_fn)
            stepped = jnp.clip(x + steps, 0.0, 1.0)
            moved = jnp.abs(stepped - x).max() > TOLERANCE
            moving = s.active & moved & (s.step < self.steps)
            return jnp.where(moving, stepped - x, 0.0), LbfgsState(
                kept(moving, solver_state, s.lbfgs), s.step + 1, moving, s.success | found,
                jnp.where(improved, distance, s.best_distance), jnp.where(improved, x, s.best),
                kept_logits(s.best_logits, logits, improved, s.step, s.best_distance), s.used + moving, s.search)

        return optax.GradientTransformationExtraArgs(init, update)

    def final(self, theta: Array, state: LbfgsState) -> Array:
        return state.best

    def finished(self, state: LbfgsState) -> np.ndarray:
        """Converged (its last point judged): the solve ends once every image has."""
        return ~np.asarray(state.active)


def solve(images: np.ndarray, labels: np.ndarray, aims: np.ndarray, targeted: bool, steps: int,
          initial_const: float, index: int, classes: int):
    """The builder of solve `index` of the c search (a `jaxvis.engine.stages` stage), from the previous solve's result."""

    def build(_key: Array, previous: Result | None) -> Stage:
        search = first_search(initial_const, images, classes) if previous is None else next_search(previous)
        pieces = lambda unit: lbfgs_objective(images[unit][None], labels[unit], aims[unit], targeted,  # noqa: E731
                                              search.const[unit])
        return Stage(f"solve_{index + 1}", lambda unit: pieces(unit)[0], param=clamped(images.shape[1]),
                     optimizer=lambda unit: LbfgsSolve(np.int32(steps), Search(*(np.asarray(f[unit]) for f in search))),
                     steps=steps + 1, units=np.arange(len(images)), init=images[:, None],
                     watch=lambda unit: pieces(unit)[1])

    return build


def lbfgs(model: Model, images: Any, labels: Any, *, targets: Any = None, search_steps: int = SEARCH_STEPS,
          steps: int = STEPS, initial_const: float = INITIAL_CONST, config: RunConfig | None = None) -> AttackResult:
    """Szegedy et al.'s L-BFGS adversarial examples for a batch: towards `targets`, or (untargeted) towards
    each image's runner-up class. `result.norm` is the L2 size of each perturbation (0 where no c
    succeeded: the image is returned as it was). Each solve of the search is one engine run of every
    image (`config`: progress bar, checkpoints per solve)."""
    if search_steps < 1:
        raise MethodOptionError(f"search_steps must be at least 1, got {search_steps}")
    if not initial_const > 0:
        raise MethodOptionError(f"initial_const must be positive, got {initial_const}")
    checked, labels, targets = check_attack_request(model, images, labels, targets, None, "l2", steps)
    images, labels = np.asarray(checked, np.float32), np.asarray(labels)
    targets = None if targets is None else np.asarray(targets)
    aims = targets if targets is not None else runner_up(logits(model, images))
    solves = [solve(images, labels, aims, targets is not None, steps, initial_const, index, model.arch.num_classes)
              for index in range(search_steps)]
    searched = run_stages(model, solves, config=run_config(config))
    state = searched.stages[-1].opt_state
    found = state.best_distance < NO_BOUND / 10
    adversarial = np.where(found[:, None, None, None], searched.images[:, 0], images)
    return result(images, adversarial, state.best_logits, labels, targets, state.used, "l2")
