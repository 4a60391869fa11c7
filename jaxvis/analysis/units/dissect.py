"""Network dissection (Bau, Zhou, Khosla, Oliva & Torralba, CVPR 2017; NetDissect-Lite's defaults).

    1. T_u = the top-`quantile` level of unit u over every image and position of the data set
       (quantile 0.005: NetDissect-Lite's `settings.QUANTILE`)                 -> `survey` pass
    2. for every image: upsample u's map bilinearly to the segmentation's size, S_u = {A_u > T_u};
       tally |S_u ∩ L_c| and the union with each concept c's labelled pixels L_c  -> `iou` pass
    3. IoU[u, c] = Σ|S_u ∩ L_c| / Σ|S_u ∪ L_c|; per category the best concept; the unit's label
       is the best of those; it detects that concept if IoU >= 0.04 (NetDissect-Lite's
       `settings.SCORE_THRESHOLD`; 0.04 in the paper)

    result = jaxvis.dissect(model, "features.14", "broden1_224/")   # or the offline concept set
    print(result.table())
    result.summary()        # {"color": 3, "material": 1, ...}: detectors per category

`data` is a concept-segmentation data set (`jaxvis.data.segmentation`: Broden or the
simple layout).  Images are resized whole to the model's input size, label maps
to `seg_size` (default: half of it, Broden's 224 -> 112).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxvis.analysis.units import iou, stream
from jaxvis.analysis.units.survey import BATCH, LayerShapeError, Survey, survey, unit_maps
from jaxvis.core.checkpoints import Checkpoints, fingerprint
from jaxvis.core.distributed import is_lead
from jaxvis.core.structure import piece
from jaxvis.data.datasets import DatasetError
from jaxvis.data.segmentation import ConceptDataset, Concepts, read_concepts
from jaxvis.models.model import Model
from jaxvis.pieces.tokens import grid_side

Array = jax.Array
QUANTILE = 0.005  # NetDissect-Lite settings.QUANTILE: the top 0.5% of a unit's activations
IOU_THRESHOLD = 0.04  # NetDissect-Lite settings.SCORE_THRESHOLD; Bau et al. 2017, §3.2
TOP_K = 4  # top images the survey keeps per unit (what the atlas and `jaxvis dissect` show beside each label)
RUNNERS_UP = 3


@dataclass(frozen=True)
class UnitConcept:
    """A unit's best concept, and the next best ones as (concept, category, IoU)."""

    unit: int
    concept: str
    category: str
    iou: float
    detector: bool  # IoU at or above the threshold
    runners_up: tuple[tuple[str, str, float], ...]


@dataclass(frozen=True)
class Dissection:
    model: str
    layer: str
    units: tuple[UnitConcept, ...]  # in unit order
    thresholds: np.ndarray  # (U,) T_u
    iou: np.ndarray  # (U, C)
    concepts: Concepts
    quantile: float
    iou_threshold: float
    images: int
    seconds: dict[str, float]  # per pass
    images_per_s: dict[str, float]
    survey: Survey

    def summary(self) -> dict[str, int]:
        """How many units detect a concept of each category (every category listed, zeros included)."""
        counts = {category: 0 for category in self.concepts.categories}
        for unit in self.units:
            if unit.detector:
                counts[unit.category] += 1
        return counts

    def ranked(self) -> list[UnitConcept]:
        """Units from the highest IoU down."""
        return sorted(self.units, key=lambda u: -u.iou)

    def table(self, limit: int | None = 20) -> str:
        rows = [f"{'unit':>5}  {'concept':<16} {'category':<10} {'IoU':>6}  runners-up"]
        for unit in self.ranked()[:limit]:
            others = ", ".join(f"{name} {score:.3f}" for name, _, score in unit.runners_up)
            mark = "" if unit.detector else "  (below threshold)"
            rows.append(f"{unit.unit:>5}  {unit.concept:<16} {unit.category:<10} {unit.iou:6.3f}  {others}{mark}")
        summary = ", ".join(f"{cat} {n}" for cat, n in self.summary().items())
        rows.append(f"detectors (IoU >= {self.iou_threshold}): {summary} of {len(self.units)} units")
        return "\n".join(rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "layer": self.layer, "quantile": self.quantile,
            "iou_threshold": self.iou_threshold, "images": self.images, "summary": self.summary(),
            "seconds": self.seconds, "images_per_s": self.images_per_s,
            "units": [{"unit": u.unit, "concept": u.concept, "category": u.category, "iou": u.iou,
                       "detector": u.detector,
                       "runners_up": [{"concept": c, "category": k, "iou": s} for c, k, s in u.runners_up]}
                      for u in self.units],
        }


@piece(data=("thresholds", "category"))
class TallySpec:
    thresholds: Array
    category: Array
    layer: str


def tally_step(model: Model, spec: TallySpec, state: iou.Tally, images: Array, labels: Array, ids: Array,
               valid: Array) -> iou.Tally:
    acts = unit_maps(model(images, capture=spec.layer)[spec.layer])
    return iou.update(state, acts, spec.thresholds, labels, ids, spec.category, valid)


def concept_data(data: Any) -> ConceptDataset:
    if isinstance(data, ConceptDataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_concepts(data)
    raise DatasetError(f"dissection needs a concept-segmentation data set (a folder in Broden's or the simple "
                       f"layout, or a ConceptDataset); got {type(data).__name__}.")


def has_maps(shape: tuple[int, ...]) -> bool:
    """Conv maps, or transformer tokens on a square patch grid (`unit_maps` reads both as maps)."""
    return len(shape) == 4 or (len(shape) == 3 and grid_side(shape[1]) is not None)


def check_spatial(model: Model, layer: str, size: int) -> None:
    shapes = model.layer_shapes(size)
    if layer in shapes and not has_maps(shapes[layer]):
        spatial = [name for name, shape in shapes.items() if has_maps(shape)]
        hint = f" Layers of {model.name} with maps: {', '.join(spatial[-8:])}." if spatial else ""
        raise LayerShapeError(
            f"dissection needs a layer with spatial extent (activation maps N x H x W x C, or patch tokens "
            f"N x [1 +] h·w x C); {layer} of "
            f"{model.name} gives {shapes[layer]} per batch.{hint}")


def dissect(model: Model, layer: str, data: Any, *, quantile: float = QUANTILE, iou_threshold: float = IOU_THRESHOLD,
            size: int | None = None, seg_size: int | None = None, batch_size: int = BATCH, progress: bool = True,
            checkpoint_dir: str | os.PathLike | None = None, every: int = 50) -> Dissection:
    """Label every unit of `layer` with the concept its top activations segment best (module docstring).

    checkpoint_dir: the survey's and the tally's streams keep their state there every `every` batches (and at
    their ends), so that the same call after an interruption continues where they stopped; removed once done."""
    size = size or model.input_size
    seg_size = seg_size or size // 2
    check_spatial(model, layer, size)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile}")
    dataset = concept_data(data)
    kept = None if checkpoint_dir is None else Path(checkpoint_dir)
    found = survey(model, layer, dataset, k=TOP_K, size=size, batch_size=batch_size, progress=progress,
                   checkpoint_dir=None if kept is None else kept / "survey", every=every, keep_finished=True)
    thresholds = found.quantile(1 - quantile).astype(np.float32)
    batch_size = stream.device_batch(batch_size)

    def batches(first: int):
        reader = dataset.stream(size, seg_size, batch_size, start=first * batch_size)
        for batch in reader:
            labels, ids = iou.compact(batch.labels)
            yield batch.images, labels, stream.Whole(ids)

    concepts = dataset.concepts
    spec = TallySpec(thresholds, concepts.category, layer)
    state = iou.init(len(thresholds), len(concepts), len(concepts.categories))
    store = None if kept is None else Checkpoints(kept / "tally", fingerprint(
        model=model.name, weights=model.variables, layer=layer, thresholds=thresholds, size=size, seg_size=seg_size,
        batch_size=batch_size, images=[str(item.image) for item in dataset.items], concepts=list(concepts.names)))
    done = stream.run(tally_step, "dissection tally", model, spec, state, batches, batch_size=batch_size,
                      total=len(dataset), progress=progress, checkpoints=store, every=every)
    if kept is not None and is_lead():  # (across processes, process 0 keeps the run state)
        shutil.rmtree(kept / "survey", ignore_errors=True)
        store.remove()  # finished: nothing left to resume
    scores = iou.iou(jax.device_get(done.state), concepts.category)
    units = tuple(label_unit(unit, scores[unit], concepts, iou_threshold) for unit in range(len(thresholds)))
    return Dissection(model.name, layer, units, thresholds, scores, concepts, quantile, iou_threshold,
                      len(dataset) - len(dataset.skipped),
                      {"survey": found.seconds, "tally": done.seconds},
                      {"survey": found.images_per_s, "tally": done.images_per_s}, found)


def label_unit(unit: int, scores: np.ndarray, concepts: Concepts, threshold: float,
               runners_up: int = RUNNERS_UP) -> UnitConcept:
    """The best concept of each category, the best of those as the unit's label (NetDissect-Lite's
    `tally`: per-category argmax, then categories ordered by score); runners-up the next best concepts."""
    order = [int(c) for c in np.argsort(-scores, kind="stable") if c != 0]
    best = order[0]
    others = tuple((concepts.names[c], concepts.category_of(c), float(scores[c])) for c in order[1:1 + runners_up])
    return UnitConcept(unit, concepts.names[best], concepts.category_of(best), float(scores[best]),
                       bool(scores[best] >= threshold), others)
