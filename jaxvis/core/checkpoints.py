"""Saving and resuming an optimization, and refusing to resume a different one.

A run's *fingerprint* is everything that decides its images: the model and a
digest of its weights, the objective (its structure and its numbers: units,
targets, weights), the parameterization, the transforms, the optimizer and its
hyperparameters, steps, batch, ensemble, seed, ReLU redirection and a given
start.  It is saved next to the orbax checkpoints; resuming compares it field
by field and names what changed (`optimizer.learning_rate: 0.05 -> 0.2`).

Damage (bit rot, a copy cut short): each checkpoint's files are listed with their SHA-256
in `step_N.sha256` beside it, written once orbax has finished.  Resuming checks the newest
checkpoint against its list (orbax reads some damaged files without noticing, and others
with a raw error) and falls back to the older one, saying which it skipped and why; with no
intact checkpoint left it stops with `DamagedCheckpointError`, naming the folder and how to
start over.  The fingerprint is checked the same way.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.core.distributed import from_lead, host, is_lead, process_count
from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import WriteRefusedError, file_checksums, human, refusal, sha256, write_whole
from jaxvis.core.run_state import differences, saved_steps
from jaxvis.core.structure import describe, digest

FINGERPRINT = "config.json"
CHECKSUMS = ".sha256"  # `step_N.sha256`: {file under step_N: its SHA-256}, and the fingerprint's own
START_OVER = "start over with --fresh (in Python: resume=False), which discards them, or use another --out"


class ResumeMismatchError(JaxvisError):
    """A checkpoint belongs to a run that differs from the one asked for."""


class DamagedCheckpointError(JaxvisError):
    """No checkpoint of the run can be read intact (or its fingerprint is damaged)."""


def fingerprint(**parts: Any) -> dict[str, Any]:
    """The run's parts described (`structure.describe`) and flattened to dotted keys."""
    return _flatten(describe(parts))


@contextmanager
def orbax_checkpointer(join_s: float = 30.0) -> Iterator[Any]:
    """An orbax `StandardCheckpointer`, closed at the end, its log records (absl) held back: a failure is
    raised clearly, not also logged with orbax's thread's traceback.  Where the block raises, the threads it
    started are waited for (up to `join_s`): after one of orbax's writes fails, its other serialization threads
    go on writing into the temporary folder, and would recreate it after it is removed."""
    import orbax.checkpoint as ocp

    before = set(threading.enumerate())
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                               active_processes={jax.process_index()})  # process 0 writes alone
    checkpointer = ocp.StandardCheckpointer(multiprocessing_options=alone)
    try:
        yield checkpointer
    except BaseException:
        _close_quietly(checkpointer)
        for thread in set(threading.enumerate()) - before:
            thread.join(join_s)
        raise
    else:
        checkpointer.close()  # its metadata thread would otherwise outlive it
    finally:
        logger.setLevel(level)


def _close_quietly(checkpointer: Any) -> None:
    try:
        checkpointer.close()
    except Exception:  # noqa: BLE001 -- the error that brought us here is the one to report
        pass


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

    def save(self, step: int, state: Any, history: np.ndarray, count: int | None = None) -> None:
        """Save checkpoint `step`; a full disk, a used-up quota or a read-only filesystem raises
        `WriteRefusedError` saying which checkpoint is kept, and leaves no part of this one behind.
        count: keep only the first `count` entries of every leaf's leading axis, 0-d leaves whole (the engine
        drops the units it padded for its devices, so a checkpoint does not depend on how many devices or
        processes ran)."""
        target = (self.directory / f"step_{step}").resolve()
        leaves = [_storable(leaf[:count] if count is not None and np.ndim(leaf) else leaf)  # see `latest`
                  for leaf in host(jax.tree_util.tree_leaves(state))]
        if not is_lead():
            return  # across processes, process 0 keeps the run's checkpoints
        try:
            write_whole(self.directory / FINGERPRINT, json.dumps(self.config, indent=1).encode())
            with orbax_checkpointer() as checkpointer:  # a failure is raised here, clearly
                checkpointer.save(target, {"state": leaves, "history": history, "step": step}, force=True)
                checkpointer.wait_until_finished()
            sums = {**file_checksums(target), f"../{FINGERPRINT}": sha256(self.directory / FINGERPRINT)}
            write_whole(self._checksums(step), json.dumps(sums, indent=1, sort_keys=True).encode())
        except Exception as error:
            reason = refusal(error)
            if reason is None:
                raise
            self._discard(step)
            kept = self.steps()
            raise WriteRefusedError(
                f"cannot save the optimization state of step {step} in {self.directory}: {reason} (it needs about "
                f"{human(sum(leaf.nbytes for leaf in leaves) + history.nbytes)}); "
                + (f"the checkpoint of step {kept[-1]} is kept" if kept else "no earlier checkpoint of it is kept"),
                getattr(error, "errno", None)) from None
        for old in self.steps()[:-2]:  # keep the two newest
            shutil.rmtree(self.directory / f"step_{old}", ignore_errors=True)
            self._checksums(old).unlink(missing_ok=True)

    def save_or_warn(self, step: int, state: Any, history: np.ndarray, count: int | None = None) -> bool:
        """`save`, or, where the filesystem refuses it, a warning that the run goes on without it (what is
        computed is not lost unless the run is interrupted before a later save succeeds); whether it saved."""
        try:
            self.save(step, state, history, count)
        except WriteRefusedError as error:
            print(f"jaxvis: warning: {error}; the run goes on, but an interruption now loses what was not "
                  "saved (free some space, or point JAXVIS_CACHE at another disk)", file=sys.stderr)
            return False
        return True

    def _discard(self, step: int, settle_s: float = 0.1, tries: int = 20) -> None:
        """Remove what a failed save of `step` left: orbax's temporary folder, or a checkpoint without its list.
        tensorstore's C++ writes still in flight can recreate the temporary folder after it is removed: it is
        removed again until it stays away for `settle_s` (at most `tries` times)."""
        for _ in range(tries):
            partials = list(self.directory.glob(f"step_{step}.orbax-checkpoint-tmp*"))
            for partial in partials:
                shutil.rmtree(partial, ignore_errors=True)
            if not partials:
                break
            time.sleep(settle_s)
        if not self._checksums(step).exists():
            shutil.rmtree(self.directory / f"step_{step}", ignore_errors=True)

    def check(self) -> None:
        """Raise `ResumeMismatchError` naming the differences if the saved run is another one."""
        path = self.directory / FINGERPRINT
        if not self.steps() or not path.exists():
            return
        damaged = DamagedCheckpointError(f"the record of the run in {path} is damaged, so its checkpoints cannot "
                                         f"be checked against this run; {START_OVER}")
        if self._fingerprint_damaged():
            raise damaged
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            raise damaged from None
        changed = differences(saved, self.config)
        if changed:
            raise ResumeMismatchError(
                f"the checkpoint in {self.directory} is from a different run; what changed:\n  "
                + "\n  ".join(changed)
                + "\nrun it as it was to continue it, or start afresh (--fresh; in Python resume=False), or use "
                  "another --out."
            )

    def latest(self, abstract_state: Any, history_shape: tuple[int, int]) -> tuple[Any, np.ndarray, int] | None:
        """(state, history, steps done) of the newest checkpoint, or None if there is none.  Across processes,
        process 0 reads it and sends it to the others (a collective: every process calls this)."""
        if process_count() == 1:
            return self._read_latest(abstract_state, history_shape)
        found, failure = None, None
        if is_lead():
            try:
                found = self._read_latest(abstract_state, history_shape)
            except Exception as error:  # noqa: BLE001 -- raised below, once the others know
                failure = error
        status = int(from_lead(np.int32(-1 if failure is not None else 0 if found is None else found[2])))
        if failure is not None:
            raise failure
        if status < 0:
            raise JaxvisError("process 0 could not resume this run (its message says why)")
        if status == 0:
            return None
        blank = (jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract_state),
                 np.zeros(history_shape, np.float32))
        state, history = from_lead(found[:2] if found is not None else blank)
        return state, np.asarray(history), status

    def _read_latest(self, abstract_state: Any, history_shape: tuple[int, int]
                     ) -> tuple[Any, np.ndarray, int] | None:
        steps = self.steps()
        if not steps:
            return None
        leaves, structure = jax.tree_util.tree_flatten(abstract_state)
        target = {"state": [_storable(leaf) for leaf in leaves], "history": np.zeros(history_shape, np.float32),
                  "step": 0}
        self.check()
        skipped = []
        for step in reversed(steps):
            folder = self.directory / f"step_{step}"
            damage = self.damage(step)
            if damage is None:
                try:
                    with orbax_checkpointer() as checkpointer:
                        restored = checkpointer.restore(folder.resolve(), target)
                except Exception as error:  # orbax and tensorstore raise many kinds on damaged files
                    damage = f"orbax could not read it ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
            if damage is not None:
                skipped.append(f"step_{step}: {damage}")
                print(f"jaxvis: skipping the checkpoint {folder}: {damage}", file=sys.stderr)
                continue
            print(f"jaxvis: resuming from {folder}", file=sys.stderr)
            state = jax.tree_util.tree_unflatten(structure, [
                jnp.zeros(want.shape, want.dtype) if _empty(want) else jnp.asarray(got)
                for want, got in zip(leaves, restored["state"])])
            return state, np.asarray(restored["history"]), int(restored["step"])
        raise DamagedCheckpointError(f"no intact checkpoint in {self.directory}:\n  " + "\n  ".join(skipped)
                                     + f"\n{START_OVER}")

    def damage(self, step: int) -> str | None:
        """What is wrong with checkpoint `step` by its checksums (None: intact, or saved without checksums)."""
        try:
            expected = json.loads(self._checksums(step).read_text())
        except FileNotFoundError:
            return None  # saved before checksums were kept: orbax's own checks are all there is
        except (OSError, ValueError) as error:
            return f"its list of checksums {self._checksums(step).name} is damaged ({type(error).__name__})"
        folder = self.directory / f"step_{step}"
        for name, digest_wanted in sorted(expected.items()):
            if name.startswith("../"):
                continue  # the fingerprint (`check`)
            path = folder / name
            try:
                found = sha256(path)
            except OSError:
                return f"its file {name} is missing or unreadable"
            if found != digest_wanted:
                return f"its file {name} does not match the checksum saved with it (damaged)"
        return None

    def _fingerprint_damaged(self) -> bool:
        """Whether the fingerprint differs from its checksum in the newest readable list of checksums."""
        for step in reversed(self.steps()):
            try:
                wanted = json.loads(self._checksums(step).read_text()).get(f"../{FINGERPRINT}")
            except (OSError, ValueError, AttributeError):
                continue
            try:
                return wanted is not None and sha256(self.directory / FINGERPRINT) != wanted
            except OSError:
                return True
        return False

    def _checksums(self, step: int) -> Path:
        return self.directory / f"step_{step}{CHECKSUMS}"

    def remove(self) -> None:
        """Delete the checkpoints (a finished run needs them no more); across processes, process 0's."""
        if is_lead():
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


__all__ = ["Checkpoints", "DamagedCheckpointError", "ResumeMismatchError", "differences", "digest", "fingerprint"]
