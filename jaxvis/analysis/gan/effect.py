"""The causal effect of generator units on a concept, with measures that can see a part disappear.

GAN Dissection (Bau et al., ICLR 2019, §3.2; PNAS 2020) removes the units that match a concept
and compares with removing as many random units of the same layer: the *average causal effect*.
The landmark segmenter cannot show a removal (its points are regressed from the face's geometry
and are placed whether or not the part is drawn), so the effect is measured on the pixels, in the
concept's region R of the unedited sample (its landmark polygon, dilated by `DILATION` px):

- **locality** (removal and insertion): the share of the edit's pixel change |Δ| that falls in R,
  over R's share of the image -- 1 when the change is spread evenly, large when it is confined
  to the part;
- **presence** of a removal: for a face part, its distinctness from the skin around it -- the
  distance between R's mean colour and the mean colour of a ring of skin around R -- as a
  relative change, (after - before) / before (< 0 when the part fades into the skin); for a
  colour concept, the change of the share of pixels carrying that colour name;
- **insertion** (face parts) sets the units to their top-quantile level (the dissection's
  threshold T_u) inside a target region T: R moved onto the face's skin (the shift, within
  ±16 px, that puts most of it on skin and none of it on R). Its *presence* is how much more
  T looks like the part: the distance between T's mean colour and the part's own mean colour
  in the unedited image, as a relative decrease (> 0: more like the part); its *locality* is
  measured against T.

Curves over k (the top-k units by IoU, or by any ranking, against k random units of the same
layer, `draws` random sets each) over the detected samples; `rank_by_effect` ranks units by
optimized ablation coefficients instead (the paper's α: minimise the part's presence with
coefficients α in [0, 1]^C plus an L2 penalty, Adam).

    curves = causal_effects(generator, dissection, data, "eye")
    for curve in curves: print(curve.table())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvis.analysis.gan.faces import PARTS
from jaxvis.analysis.gan.samples import BATCH, GeneratedConcepts, UnknownConceptError
from jaxvis.analysis.units.concept_set import colour_names
from jaxvis.analysis.units.dissect import Dissection
from jaxvis.analysis.units.stream import pad_batch
from jaxvis.core.programs import Program
from jaxvis.core.structure import piece
from jaxvis.engine.optimize import optimize
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.models.model import Model, apply
from jaxvis.pieces.edits import UnitEdit
from jaxvis.pieces.objectives import Objective, term
from jaxvis.pieces.optimizers import Optimizer
from jaxvis.pieces.param import Param

Array = jax.Array
KS = (1, 2, 4, 8, 12, 16, 20)
DRAWS = 3  # random unit sets per k
DILATION = 1  # px of the region's dilation at the image's size
RING = 2  # px of skin around the region for its presence
INTERVENTIONS = ("remove", "insert")
INITIAL_ALPHA = 0.01  # every ablation coefficient's start
MEASURES = ("locality", "presence")


@dataclass(frozen=True)
class Curve:
    """One measure of one intervention against k, named units beside random ones (means over samples)."""

    concept: str
    layer: str
    intervention: str  # "remove" | "insert"
    measure: str  # "locality" | "presence"
    ranking: str  # how the named units were chosen ("iou", "optimized", ...)
    ks: tuple[int, ...]
    named: np.ndarray  # (K,)
    random: np.ndarray  # (K,) mean over the random draws
    random_spread: np.ndarray  # (K,) standard deviation over the random draws
    samples: int

    def as_dict(self) -> dict:
        return {"concept": self.concept, "layer": self.layer, "intervention": self.intervention,
                "measure": self.measure, "ranking": self.ranking, "ks": list(self.ks), "samples": self.samples,
                "named": self.named.tolist(), "random": self.random.tolist(),
                "random_spread": self.random_spread.tolist()}


def draw(generator: Model, edit: UnitEdit, z: Array) -> Array:
    return generator(z, edit=edit.for_model())


DRAW = Program(draw, "generator edit")


def drawn(generator: Model, edit: UnitEdit | None, z: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """G(z) under `edit` (None: unedited), in padded batches of one compiled program; a per-image region
    is sliced with its batch."""
    out = []
    for start in range(0, len(z), batch_size):
        chunk = z[start:start + batch_size]
        padded = jnp.asarray(pad_batch(chunk, batch_size))
        if edit is None:
            images = apply(generator, padded)
        else:
            region = edit.region
            if region.ndim == 3:  # the padding rows get a region of zeros: drawn unedited, then dropped
                region = pad_batch(np.asarray(region[start:start + batch_size]), batch_size)
            images = DRAW(generator, UnitEdit(edit.units, edit.values, jnp.asarray(region), edit.layer), padded)
        out.append(np.asarray(images)[:len(chunk)])
    return np.concatenate(out)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (..., H, W) masks by `radius` steps of the 4-neighbourhood (a diamond)."""
    out = np.asarray(mask, bool).copy()
    for _ in range(radius):
        grown = out.copy()
        grown[..., 1:, :] |= out[..., :-1, :]
        grown[..., :-1, :] |= out[..., 1:, :]
        grown[..., :, 1:] |= out[..., :, :-1]
        grown[..., :, :-1] |= out[..., :, 1:]
        out = grown
    return out


@dataclass(frozen=True)
class Regions:
    """The samples an effect is measured on, with each one's concept region, skin ring and insertion
    target (N, H, W; targets only for face parts, else None)."""

    indices: np.ndarray
    region: np.ndarray  # bool
    ring: np.ndarray  # bool
    colour: int  # the concept id for colour concepts (presence by colour share), else 0
    target: np.ndarray | None = None  # bool, where an insertion goes
    target_kept: np.ndarray | None = None  # (N,) bool: a target on skin was found

    def for_insertion(self) -> "Regions":
        """The samples that have an insertion target."""
        keep = self.target_kept
        return Regions(self.indices[keep], self.region[keep], self.ring[keep], self.colour, self.target[keep],
                       keep[keep])


def concept_regions(data: GeneratedConcepts, concept: str, samples: int | None = None) -> Regions:
    """Samples whose unedited image shows `concept` (detected faces for parts), with regions and rings."""
    names = list(data.concepts.names)
    if concept not in names[1:]:
        raise UnknownConceptError(f"unknown concept {concept!r}; the data set labels: {', '.join(names[1:])}.")
    concept_id = names.index(concept)
    category = data.concepts.category_of(concept_id)
    limit = len(data) if samples is None else min(samples, len(data))
    layer = "part" if category == "part" else "color"
    labels = np.stack([data.labels(i, layer) for i in range(limit)])
    region = dilate(labels == concept_id, DILATION)
    keep = region.reshape(limit, -1).sum(axis=1) >= 4
    if category == "part":
        skin = np.stack([data.labels(i, "part") for i in range(limit)]) == PARTS.index("skin") + 1
        ring = dilate(region, RING) & ~region
        ring = np.where((ring & skin).reshape(limit, -1).sum(axis=1)[:, None, None] >= 4, ring & skin, ring)
        keep &= ring.reshape(limit, -1).sum(axis=1) >= 4
    else:
        ring = np.zeros_like(region)
    if not keep.any():
        raise UnknownConceptError(f"no sample among the first {limit} shows {concept!r} (4 pixels or more).")
    if category != "part":
        return Regions(np.flatnonzero(keep), region[keep], ring[keep], concept_id)
    target, kept = zip(*(skin_target(r, s) for r, s in zip(region[keep], skin[keep])))
    return Regions(np.flatnonzero(keep), region[keep], ring[keep], 0, np.stack(target), np.asarray(kept))


SHIFTS = range(-16, 17, 2)
ON_SKIN = 0.8  # the least share of a target on skin


def skin_target(region: np.ndarray, skin: np.ndarray) -> tuple[np.ndarray, bool]:
    """`region` shifted (within ±16 px) to where most of it lies on `skin` and none on itself; whether one
    with at least `ON_SKIN` of it on skin exists."""
    best, best_share = region, -1.0
    for dy in SHIFTS:
        for dx in SHIFTS:
            moved = np.roll(region, (dy, dx), axis=(0, 1))
            if (dy, dx) == (0, 0) or (moved & region).any() or moved.sum() < region.sum():
                continue
            share = (moved & skin).sum() / moved.sum()
            if share > best_share:
                best, best_share = moved, share
    return best, best_share >= ON_SKIN


def locality(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(N,) the share of |after - before| inside `region` over the region's share of the image (NaN: no change)."""
    change = np.abs(after - before).mean(axis=-1)
    total = change.reshape(len(change), -1).sum(axis=1)
    inside = (change * region).reshape(len(change), -1).sum(axis=1)
    share = region.reshape(len(region), -1).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 1e-6, inside / total / share, np.nan)


def distinctness(images: Array, region: Array, ring: Array) -> Array:
    """(N,) the distance between the mean colour inside `region` and inside `ring` (differentiable)."""
    inside = jnp.einsum("nhw,nhwc->nc", region, images) / region.sum(axis=(1, 2))[:, None]
    around = jnp.einsum("nhw,nhwc->nc", ring, images) / ring.sum(axis=(1, 2))[:, None]
    return jnp.sqrt(jnp.sum((inside - around) ** 2, axis=-1) + 1e-12)


def presence(images: np.ndarray, regions: Regions) -> np.ndarray:
    """(N,) a part's distinctness from the skin around it, or a colour's share of the image."""
    if regions.colour:
        names = np.stack([colour_names(image) + len(PARTS) for image in images])
        return (names == regions.colour).reshape(len(images), -1).mean(axis=1)
    return np.asarray(distinctness(jnp.asarray(images), jnp.asarray(regions.region, jnp.float32),
                                   jnp.asarray(regions.ring, jnp.float32)))


def presence_change(before: np.ndarray, after: np.ndarray, regions: Regions) -> float:
    """Mean change of presence: relative for parts, absolute (share of pixels) for colours."""
    old, new = presence(before, regions), presence(after, regions)
    return float(np.mean(new - old) if regions.colour else np.mean((new - old) / np.maximum(old, 1e-6)))


def likeness_gain(before: np.ndarray, after: np.ndarray, regions: Regions) -> float:
    """Mean relative decrease of the distance between the target's mean colour and the part's own (unedited)."""
    part = np.einsum("nhw,nhwc->nc", regions.region, before) / regions.region.sum(axis=(1, 2))[:, None]

    def distance(images: np.ndarray) -> np.ndarray:
        mean = np.einsum("nhw,nhwc->nc", regions.target, images) / regions.target.sum(axis=(1, 2))[:, None]
        return np.linalg.norm(mean - part, axis=-1)

    old = distance(before)
    return float(np.mean((old - distance(after)) / np.maximum(old, 1e-6)))


def intervention(kind: str, layer: str, units: Sequence[int], width: int, levels: np.ndarray,
                 regions: Regions) -> UnitEdit:
    if kind == "remove":
        return UnitEdit.removing(layer, units, width)
    return UnitEdit.setting(layer, units, width, levels, np.asarray(regions.target, np.float32), per_image=True)


def measure_edit(kind: str, generator: Model, edit: UnitEdit, z: np.ndarray, before: np.ndarray,
                 regions: Regions) -> dict[str, float]:
    after = drawn(generator, edit, z)
    if kind == "remove":
        return {"locality": float(np.nanmean(locality(before, after, regions.region))),
                "presence": presence_change(before, after, regions)}
    return {"locality": float(np.nanmean(locality(before, after, regions.target))),
            "presence": likeness_gain(before, after, regions)}


def causal_effects(generator: Model, dissection: Dissection, data: GeneratedConcepts, concept: str, *,
                   ks: Sequence[int] = KS, draws: int = DRAWS, seed: int = 0, samples: int | None = None,
                   ranking: Sequence[int] | None = None, ranking_name: str = "iou",
                   interventions: Sequence[str] = INTERVENTIONS) -> list[Curve]:
    """Curves of every measure of each intervention for the top-k units of `concept` (by IoU, or
    `ranking`) against k random units, over the samples that show the concept (module docstring)."""
    regions = concept_regions(data, concept, samples)
    concept_id = list(dissection.concepts.names).index(concept)
    width = dissection.iou.shape[0]
    order = list(ranking) if ranking is not None else list(np.argsort(-dissection.iou[:, concept_id], kind="stable"))
    ks = [k for k in ks if k <= width]
    kinds = [kind for kind in interventions if kind == "remove" or not regions.colour]  # insertion: parts only
    subsets = {kind: regions if kind == "remove" else regions.for_insertion() for kind in kinds}
    inputs = {kind: data.latents[subset.indices] for kind, subset in subsets.items()}
    before = {kind: drawn(generator, None, z) for kind, z in inputs.items()}
    rng = np.random.default_rng(seed)
    levels = np.asarray(dissection.thresholds, np.float32)
    results = {(kind, m): ([], [], []) for kind in kinds for m in MEASURES}
    for k in ks:
        random_sets = [rng.choice(width, k, replace=False) for _ in range(draws)]
        for kind in kinds:
            def effect(units):
                edit = intervention(kind, dissection.layer, units, width, levels, subsets[kind])
                return measure_edit(kind, generator, edit, inputs[kind], before[kind], subsets[kind])

            named, chance = effect(order[:k]), [effect(units) for units in random_sets]
            for m in MEASURES:
                results[kind, m][0].append(named[m])
                results[kind, m][1].append(np.mean([c[m] for c in chance]))
                results[kind, m][2].append(np.std([c[m] for c in chance]))
    return [Curve(concept, dissection.layer, kind, m, ranking_name, tuple(ks), *(np.asarray(v) for v in values),
                  len(subsets[kind].indices))
            for (kind, m), values in results.items()]


@piece(data=("latents",))
class AblationCoefficients(Param):
    """GAN Dissection's α in [0, 1]^C (§3.2): the generator draws `latents` with the units of `layer` scaled
    by (1 - α) -- r' = (1 - α) r everywhere; what is optimized is α, the latents stay."""

    latents: Any  # (batch, latent dim)
    layer: str
    width: int
    name = "ablation_coefficients"

    def init(self, key: Array, batch: int) -> Array:
        return jnp.full(self.width, INITIAL_ALPHA, jnp.float32)

    def render(self, theta: Array) -> Array:
        return jnp.asarray(self.latents)

    def project(self, theta: Array) -> Array:
        return jnp.clip(theta, 0.0, 1.0)

    def edit(self, theta: Array) -> dict:
        return UnitEdit(theta, jnp.zeros(self.width), jnp.ones((1, 1)), self.layer).for_model()


@piece(data=("learning_rate", "l2"))
class AdamWithL2(Optimizer):
    """Adam on loss + l2 ||α||²: the penalty's gradient 2 l2 α added to the loss's before Adam's moments."""

    learning_rate: Any
    l2: Any

    def transformation(self) -> optax.GradientTransformation:
        return optax.chain(optax.add_decayed_weights(2.0 * self.l2), optax.scale_by_adam(),
                           optax.scale_by_schedule(lambda count: -self.learning_rate))


def fading(region: np.ndarray, ring: np.ndarray, output: str) -> Objective:
    """Minus the part's mean presence in the generated images (layer `output`: its colour's distance from the
    skin around it)."""
    return Objective(term(_fading, output=output), (np.asarray(region, np.float32), np.asarray(ring, np.float32)),
                     frozenset({output}), "-presence")


def _fading(numbers: tuple[Array, Array], acts: Any, *, output: str) -> Array:
    region, ring = numbers
    return -distinctness(acts[output], region, ring).mean()


def rank_by_effect(generator: Model, layer: str, data: GeneratedConcepts, concept: str, *, samples: int | None = None,
                   steps: int = 100, lr: float = 0.05, l2: float = 0.01, config: RunConfig | None = None
                   ) -> np.ndarray:
    """Units of `layer` ordered by optimized ablation coefficients (GAN Dissection §3.2): α in [0, 1]^C
    minimising the part's mean presence after r' = (1 - α) r, plus l2 ||α||², by Adam; largest α first.
    One engine run (`config`: progress bar, checkpoints)."""
    regions = concept_regions(data, concept, samples)
    if regions.colour:
        raise UnknownConceptError("ranking by effect is for face parts (their presence is differentiable)")
    width = generator.layer_shapes()[layer][-1]
    latents = np.asarray(data.latents[regions.indices], np.float32)
    options = run_config(config, progress=False if config is None else None).engine_options()
    fitted = optimize(generator, fading(regions.region, regions.ring, generator.arch.output),
                      param=AblationCoefficients(latents, layer, width), optimizer=AdamWithL2(np.float32(lr),
                                                                                            np.float32(l2)),
                      steps=steps, batch=len(latents), description=f"ablation coefficients for {concept}", **options)
    return np.argsort(-fitted.theta[0], kind="stable")
