"""The Carlini–Wagner L2 attack (Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
IEEE S&P 2017, Sec. V-A), per image:

    x' = (tanh(w) + 1) / 2                                   (the box [0, 1] by construction)
    minimize  ||x' - x||_2^2 + c · max(Z(x')_y - max_{i≠y} Z(x')_i, -κ)      (untargeted)
              ||x' - x||_2^2 + c · max(max_{i≠t} Z(x')_i - Z(x')_t, -κ)      (targeted to t)

over w with Adam from w = atanh(2x - 1), for `steps` steps; then a binary search
over c: where the image succeeded, c falls to the middle of its bracket; where
it failed, c rises (ten-fold until a success brackets it). Each image keeps the
smallest successful perturbation of any step of any search round; an image
never fooled is returned unchanged. "Abort early" (the reference's): every
steps / 10 steps, an image whose objective fell by less than 0.01% stops moving
for the rest of that round.

Defaults are the authors' reference code (nn_robust_attacks, l2_attack.py), also
foolbox 3's `L2CarliniWagnerAttack`: 9 binary-search steps, initial c = 1e-3,
Adam learning rate 1e-2, κ = 0, abort early -- except the steps per round:
the reference allows 10000, hours on a CPU for one ImageNet image; we default
to 1000 (pass steps=10000 for the reference budget). torchattacks 3.5.1's `CW`
is one round at c = 1 with 50 steps (`binary_search_steps=1, initial_const=1,
steps=50, abort_early=False` here).

It runs on the engine (`jaxvis.optimize`), each round of the search a stage
(`jaxvis.engine.stages`): each image a unit whose parameterization is the tanh box
(`param.tanh_box`), its objective minus the C&W loss at its own c, its update
Adam inside `CwAdam`, which keeps the round's abort-early mask and the smallest
success so far (`CwState`); between rounds c moves on the host.  So a search
checkpoints per round and an interrupted one continues (`RunConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.methods.attacks.common import (LOGITS, NO_BOUND, AttackResult, Search, check_attack_request, first_search,
                                   kept_logits, margin, next_search, result, with_logits)
from jaxvis.core.errors import MethodOptionError
from jaxvis.core.structure import piece
from jaxvis.engine.optimize import Result
from jaxvis.engine.plan import kept
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import Stage, run_stages
from jaxvis.models.model import Model
from jaxvis.pieces.objectives import INPUT, Objective, term
from jaxvis.pieces.optimizers import Optimizer
from jaxvis.pieces.param import TanhBox, tanh_box, to_tanh_space

Array = jax.Array
BINARY_SEARCH_STEPS = 9
STEPS = 1000
LEARNING_RATE = 1e-2
INITIAL_CONST = 1e-3
KAPPA = 0.0
ABORT_TOLERANCE = 0.9999  # a round's image stops once its objective no longer falls by 0.01% per check


def hinge(logits: Array, labels: Array, targets: Array | None, kappa: Array) -> Array:
    """The paper's f_6 per image: how far the image is from being adversarial with margin κ (floored at -κ)."""
    if targets is not None:
        return jnp.maximum(-margin(logits, targets), -kappa)
    return jnp.maximum(margin(logits, labels), -kappa)


def adversarial_with_margin(logits: Array, labels: Array, targets: Array | None, kappa: Array) -> Array:
    """The reference's `compare`: adversarial even after κ is given back to the true class (taken from the
    target) -- with κ = 0, simply misclassified, or classified as the target."""
    return hinge(logits, labels, targets, kappa) <= -kappa


# --- one image's round as the engine's pieces -----------------------------------------------------------------


def cw_objective(start: np.ndarray, label: int, target: int | None, const: float, kappa: float
                 ) -> tuple[Objective, Objective]:
    """What a round ascends for one image: minus (its squared distance to `start` + c · hinge); and what the update
    watches: (adversarial with margin κ, the squared distance), from the same forward pass."""
    targeted = target is not None
    numbers = (np.asarray(start, np.float32), np.int32(label), np.int32(label if target is None else target),
               np.float32(const), np.float32(kappa))
    layers = frozenset({LOGITS, INPUT})
    return (Objective(term(_cw_loss, targeted=targeted), numbers, layers, "-(C&W loss)"),
            with_logits(Objective(term(_found_and_distance, targeted=targeted), numbers, layers, "found, distance")))


def _parts(numbers: tuple, acts: Any, targeted: bool) -> tuple[Array, Array, Array]:
    start, label, target, const, kappa = numbers
    image, logits = acts[INPUT], acts[LOGITS]
    count = logits.shape[0]
    distance = ((image - start) ** 2).reshape(count, -1).sum(axis=1)
    aim = jnp.full(count, target) if targeted else None
    return distance, hinge(logits, jnp.full(count, label), aim, kappa), \
        adversarial_with_margin(logits, jnp.full(count, label), aim, kappa)


def _cw_loss(numbers: tuple, acts: Any, *, targeted: bool) -> Array:
    distance, hinged, _ = _parts(numbers, acts, targeted)
    return -(distance + numbers[3] * hinged).sum()


def _found_and_distance(numbers: tuple, acts: Any, *, targeted: bool) -> Array:
    distance, _, found = _parts(numbers, acts, targeted)
    return jnp.stack([found.astype(jnp.float32).sum(), distance.sum()])


class CwState(NamedTuple):
    """One image's round: Adam's state, the abort-early check, and the search's record (carried across rounds)."""

    adam: Any
    step: Array
    previous: Array  # the objective at the last abort check
    active: Array  # bool: still moving this round
    success: Array  # bool: found this round (moves c)
    best_distance: Array  # the smallest successful squared distance of any round (NO_BOUND: none yet)
    best: Array  # ... and its w
    best_logits: Array  # ... and its logits (the start's before any success)
    used: Array  # Adam steps that moved the image, all rounds
    search: Any  # the round's `Search` entry (c, its bracket), as given: the next round moves c from it


@piece(data=("learning_rate", "steps", "abort_early", "search"))
class CwAdam(Optimizer):
    """One image's C&W round: Adam (the reference's learning rate), frozen once it stalls (abort early), keeping
    the smallest success; given at w the loss (`value`) and (found, distance) (`watch`)."""

    learning_rate: Any
    steps: Any
    abort_early: Any
    search: Search  # this image's entry

    def transformation(self) -> optax.GradientTransformationExtraArgs:
        adam = optax.adam(self.learning_rate)
        check_every = jnp.maximum(self.steps // 10, 1)

        def init(w: Array) -> CwState:
            search = self.search
            return CwState(adam.init(w), jnp.int32(0), jnp.float32(1e6), jnp.bool_(True), jnp.bool_(False),
                           jnp.asarray(search.best_distance, jnp.float32), jnp.asarray(search.best, w.dtype),
                           jnp.asarray(search.best_logits, jnp.float32), jnp.asarray(search.used, jnp.int32), search)

        def update(updates: Array, s: CwState, w: Array, *, value: Array, watch: Array, **_: Any
                   ) -> tuple[Array, CwState]:
            found, distance, logits = (watch[0] > 0) & s.active, watch[1], watch[2:]
            improved = found & (distance < s.best_distance)
            checkpoint = s.step % check_every == 0
            stalled = self.abort_early & checkpoint & (value > ABORT_TOLERANCE * s.previous)
            steps, adam_state = adam.update(updates, s.adam, w)
            moving = s.active & ~stalled
            return jnp.where(moving, steps, 0.0), CwState(
                kept(moving, adam_state, s.adam), s.step + 1, jnp.where(checkpoint, value, s.previous), moving,
                s.success | found, jnp.where(improved, distance, s.best_distance), jnp.where(improved, w, s.best),
                kept_logits(s.best_logits, logits, improved, s.step, s.best_distance), s.used + moving, s.search)

        return optax.GradientTransformationExtraArgs(init, update)

    def final(self, theta: Array, state: CwState) -> Array:
        """The w of the smallest success so far (the start's where none)."""
        return state.best

    def finished(self, state: CwState) -> np.ndarray:
        """Stalled (abort early): the round ends once every image has."""
        return ~np.asarray(state.active)


@dataclass(frozen=True)
class Settings:
    """One C&W search (read on the host: each round's pieces carry the numbers)."""

    binary_search_steps: Any
    steps: Any
    learning_rate: Any
    initial_const: Any
    kappa: Any
    abort_early: Any


def search_round(settings: Settings, images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None,
                 index: int, w_clean: np.ndarray, classes: int):
    """The builder of round `index` (a `jaxvis.engine.stages` stage): from the previous round's result."""
    starts = np.asarray(TanhBox(images).render(w_clean))  # the clean image as tanh space holds it (the reference's)

    def build(_key: Array, previous: Result | None) -> Stage:
        search = (first_search(settings.initial_const, w_clean, classes) if previous is None
                  else next_search(previous))
        pieces = lambda unit: cw_objective(starts[unit][None], labels[unit],  # noqa: E731
                                           None if targets is None else targets[unit], search.const[unit],
                                           settings.kappa)
        return Stage(f"round_{index + 1}", lambda unit: pieces(unit)[0],
                     param=lambda unit: tanh_box(images[unit]),
                     optimizer=lambda unit: CwAdam(np.float32(settings.learning_rate), np.int32(settings.steps),
                                                   np.bool_(settings.abort_early),
                                                   Search(*(np.asarray(field[unit]) for field in search))),
                     steps=int(settings.steps), units=np.arange(len(images)), watch=lambda unit: pieces(unit)[1])

    return build


def cw(model: Model, images: Any, labels: Any, *, targets: Any = None, binary_search_steps: int = BINARY_SEARCH_STEPS,
       steps: int = STEPS, learning_rate: float = LEARNING_RATE, initial_const: float = INITIAL_CONST,
       kappa: float = KAPPA, abort_early: bool = True, config: RunConfig | None = None) -> AttackResult:
    """Carlini–Wagner L2 adversarial examples for a batch: untargeted, or towards `targets`.

    images: float (N, H, W, 3) in [0, 1]; labels: (N,) true classes. Each round of the search is one
    engine run of every image (`config`: progress bar, checkpoints per round); `result.norm` is the L2
    size of each perturbation (0 where the image was never fooled: it is returned as it was).
    """
    if binary_search_steps < 1:
        raise MethodOptionError(f"binary_search_steps must be at least 1, got {binary_search_steps}")
    for name, value in (("learning_rate", learning_rate), ("initial_const", initial_const)):
        if not value > 0:
            raise MethodOptionError(f"{name} must be positive, got {value}")
    if kappa < 0:
        raise MethodOptionError(f"kappa (the confidence margin) must be 0 or more, got {kappa}")
    checked, labels, targets = check_attack_request(model, images, labels, targets, None, "l2", steps)
    settings = Settings(binary_search_steps, steps, learning_rate, initial_const, kappa, abort_early)
    images, labels = np.asarray(checked, np.float32), np.asarray(labels)
    targets = None if targets is None else np.asarray(targets)
    w_clean = np.asarray(to_tanh_space(images))
    rounds = [search_round(settings, images, labels, targets, index, w_clean, model.arch.num_classes)
              for index in range(binary_search_steps)]
    searched = run_stages(model, rounds, config=run_config(config))
    state = searched.stages[-1].opt_state
    found = state.best_distance < NO_BOUND / 10
    adversarial = np.where(found[:, None, None, None], searched.images[:, 0], images)  # never fooled: unchanged
    return result(images, adversarial, state.best_logits, labels, targets, state.used, "l2")
