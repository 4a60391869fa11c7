"""Streaming a statistic over a data set: one compiled step per batch, the batch axis sharded, resumable.

A statistic is a pure step `step(model, spec, state, *arrays, valid) -> state`
whose state merges exactly across batches (top-k lists, sketch counts, tally
counts: `jaxvis.analysis.units.topk`, `quantiles`, `iou`).  `run` feeds it batches:

- every batch is padded to the same size (padding rows have `valid` False and
  never count), so one program serves the whole data set -- and, through the
  compile cache (`jaxvis.core.programs`), every later run with the same shapes;
- with several local devices the batch axis is split across them (the batch
  size rounded up to a multiple of the device count) and the state is kept
  replicated: XLA reduces each device's contribution, so results equal one
  device's (tested with 8 forced CPU devices);
- with `checkpoints`, the state is saved with orbax every `every` batches and
  at the end, next to the run's fingerprint, and a rerun continues after the
  last saved batch (`Checkpoints` refuses a changed run, naming what changed);
- a progress bar counts images; the result says how many images per second.

Across processes (`jaxvis.core.distributed`): the batch axis is split over
every process's devices, one global mesh; every process reads each batch and
places its own devices' share of it, the state is replicated on all, and
process 0 keeps the checkpoints.  The data set axis is what scales.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from jaxvis.core.checkpoints import Checkpoints
from jaxvis.core.distributed import host, is_lead, place, process_count
from jaxvis.core.programs import Program
from jaxvis.core.progress import progress_bar
from jaxvis.core.structure import piece
from jaxvis.data.datasets import DatasetError

Step = Callable[..., Any]
BatchSource = Callable[[int], Iterable[tuple[np.ndarray, ...]]]  # first batch index -> batches of arrays


@dataclass(frozen=True)
class Streamed:
    state: Any
    images: int  # images counted in this call (not those restored from a checkpoint)
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class Whole:
    """An array of a batch that has no batch axis (e.g. the concept ids a batch uses): neither padded
    nor split across devices."""

    array: np.ndarray


@piece
class Placement:
    """Where the state lives: replicated over the devices the batch is split across (None: one device)."""

    replicated: Any = None


def _constrained(step: Step, placement: Placement, model: Any, spec: Any, state: Any, *arrays: Any) -> Any:
    state = step(model, spec, state, *arrays)
    if placement.replicated is not None:
        state = jax.lax.with_sharding_constraint(state, placement.replicated)
    return state


@functools.cache
def program(step: Step, name: str) -> Program:
    """The one compiled program of a statistic's step (reused across calls and, on disk, processes)."""
    return Program(functools.partial(_constrained, step), name)


def device_batch(batch_size: int, devices: list | None = None) -> int:
    """`batch_size` rounded up to a multiple of the number of devices (every process's, across processes)."""
    count = len(devices or jax.devices())
    return -(-batch_size // count) * count


def run(step: Step, name: str, model: Any, spec: Any, state: Any, batches: BatchSource, *, batch_size: int,
        total: int, progress: bool = True, checkpoints: Checkpoints | None = None, every: int = 50) -> Streamed:
    """Fold every batch of `batches(first)` into `state` with `step`; see the module docstring.

    `batches(first)` yields tuples of NumPy arrays with a leading batch axis of at most `batch_size`
    (or `Whole` arrays without one), starting at batch `first` (after a resume); the first array is
    the images.  `step` gets them in order, then `valid`.
    """
    devices = jax.devices()  # every process's, under jax.distributed
    placement, data, replicated = _placements(devices, batch_size)
    first = 0
    if checkpoints is not None:
        restored = checkpoints.latest(jax.eval_shape(lambda s: s, state), (1,))
        if restored is not None:
            state, _, first = restored
    state = place(state, replicated) if replicated is not None else state
    compiled = program(step, name)
    bar = progress_bar(progress and is_lead(), total, name, unit="img", done=min(first * batch_size, total))
    counted, finished, started = 0, first, time.perf_counter()
    try:
        for index, arrays in enumerate(batches(first), start=first):
            valid = np.arange(batch_size) < len(arrays[0])
            fed = [_place(array, batch_size, data, replicated) for array in (*arrays, valid)]
            state = compiled(placement, model, spec, state, *fed)
            counted += len(arrays[0])
            finished = index + 1
            bar.update(len(arrays[0]))
            if checkpoints is not None and every and (index + 1) % every == 0:
                checkpoints.save_or_warn(index + 1, state, np.zeros(1, np.float32))  # no history
        state = jax.block_until_ready(state)
        if checkpoints is not None and finished > first and (not every or finished % every):  # the end, kept too
            checkpoints.save_or_warn(finished, state, np.zeros(1, np.float32))
    finally:
        bar.close()
    if counted == 0 and first == 0:
        raise DatasetError(f"none of the {total} images could be read (each skipped file is named above); "
                           f"nothing to compute the {name} on.")
    return Streamed(host(state) if process_count() > 1 else state, counted, time.perf_counter() - started)


def _placements(devices: list, batch_size: int):
    if len(devices) == 1:
        return Placement(), None, None
    if batch_size % len(devices):
        raise ValueError(f"batch size {batch_size} must be a multiple of the {len(devices)} devices "
                         "(`device_batch` rounds it up)")
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return Placement(replicated), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")), replicated


def _place(array: np.ndarray | Whole, batch_size: int, data: Any, replicated: Any) -> Any:
    if isinstance(array, Whole):
        return array.array if replicated is None else place(array.array, replicated)
    padded = pad_batch(array, batch_size)
    return padded if data is None else place(padded, data)


def pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """`array` with zero rows appended up to `size` rows (so one compiled program serves a short last batch)."""
    missing = size - len(array)
    if missing == 0:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), array.dtype)])


def batched(source: Iterator[Any], arrays: Callable[[Any], tuple[np.ndarray, ...]]) -> Iterator[tuple]:
    """The batches of a reader (`ImageBatch`, `SegmentationBatch`, ...) as the tuples `run` feeds."""
    for batch in source:
        yield arrays(batch)
