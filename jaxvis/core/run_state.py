"""An interrupted run's state folder, without importing jax: what it was asked to do, and who holds it.

The command line saves the request of a resumable run (`request.json`) next to its
checkpoints, so that the same command continues it and a changed one is refused,
naming the changed fields, before any weights load.  A lock file (created with
O_EXCL, which works on NFS too, holding pid and host) keeps two identical commands
from continuing one run at once, and two commands from writing one output folder;
the lock of a process that is gone from this host is taken over, with a note (one
held from another host never is).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import WriteRefusedError, refusal, write_whole

REQUEST = "request.json"
LOCK = "lock"


class RunLockedError(JaxvisError):
    """Another live process holds the run's state folder."""


def differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """`key: saved -> wanted` for every key that differs (missing on one side: `(none)`)."""
    keys = sorted(set(saved) | set(wanted))
    return [f"{key}: {_short(saved.get(key, '(none)'))} -> {_short(wanted.get(key, '(none)'))}"
            for key in keys if saved.get(key, "(none)") != wanted.get(key, "(none)")]


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def saved_steps(directory: Path) -> list[int]:
    """The steps of the checkpoints (`step_N` folders) in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name[5:]) for p in directory.glob("step_*") if p.name[5:].isdigit())


def saved_request(directory: Path) -> dict[str, Any] | None:
    """The request saved in a run's state folder, or None (no state, or an unreadable one)."""
    try:
        return json.loads((directory / REQUEST).read_text())
    except (OSError, ValueError):
        return None


def save_request(directory: Path, request: dict[str, Any]) -> None:
    """Keep the request next to the run's checkpoints; where the filesystem refuses it, warn and go on (the
    checkpoints' own fingerprint still guards a resume)."""
    try:
        write_whole(directory / REQUEST, json.dumps(request, indent=1, sort_keys=True).encode())
    except WriteRefusedError as error:
        print(f"jaxvis: warning: {error}; the run goes on without it", file=sys.stderr)


def lock_holder(directory: Path, name: str = LOCK) -> dict[str, Any] | None:
    """{"pid", "host"} of the process holding the folder's lock, or None if unlocked (or unreadable)."""
    try:
        return json.loads((directory / name).read_text())
    except (OSError, ValueError):
        return None


def is_alive(holder: dict[str, Any]) -> bool:
    """Whether the holder may still run: a live pid on this host, or any process on another host."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


@contextmanager
def locked(directory: Path, name: str = LOCK, doing: str | None = None) -> Iterator[None]:
    """Hold `directory`'s lock (the file `name`) while the block runs; `RunLockedError` if a live process holds
    it, saying what that process is `doing` (default: running this command with this --out)."""
    path = directory / name
    made = [folder for folder in (directory, *directory.parents) if not folder.exists()]  # deepest first
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _take(path, me, doing or f"is running this command with this --out (its state: {directory})")
    except OSError as error:
        reason = refusal(error)
        if reason is None or isinstance(error, JaxvisError):
            raise
        raise WriteRefusedError(f"cannot take the lock {path}: {reason}", error.errno) from None
    try:
        yield
    finally:
        if lock_holder(directory, name) == me:
            path.unlink(missing_ok=True)
        for folder in [directory, *made[1:]]:  # only the lock was there: leave nothing behind
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()


STALE_EMPTY_LOCK_S = 60  # a lock still empty this long after it was made lost its holder between create and write


def _take(path: Path, me: dict[str, Any], doing: str) -> None:
    """Create the lock file `path` with O_EXCL holding `me`, taking over the lock of a process gone from this
    host (or an empty one a holder killed between creating and writing it left long ago)."""
    for _attempt in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(path.parent, path.name)
            if holder is None and _age(path) < STALE_EMPTY_LOCK_S:
                raise RunLockedError(f"another jaxvis is taking the lock {path} at this moment; wait for it to "
                                     "finish, or use another --out") from None
            if holder is not None and is_alive(holder):
                raise RunLockedError(
                    f"another jaxvis (pid {holder.get('pid', '?')} on {holder.get('host', '?')}) {doing}; wait for "
                    "it to finish, or use another --out"
                ) from None
            gone = f"process {holder.get('pid', '?')}, which is no longer running" if holder else \
                "a process that was stopped while taking it"
            print(f"jaxvis: taking over the lock of {gone}", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        try:
            os.write(descriptor, json.dumps(me).encode())  # one write: the lock is empty or whole
        except OSError:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(descriptor)
        return
    raise RunLockedError(f"could not lock {path.parent}: another process took it meanwhile")


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def check_same_request(state_dir: Path, request: dict[str, Any]) -> None:
    """Refuse to continue an interrupted run that was asked for differently, naming what changed."""
    saved = saved_request(state_dir)
    changed = differences(saved, request) if saved is not None else []
    if changed:
        raise JaxvisError("an interrupted run with this --out was started with other settings; what changed:\n  "
                          + "\n  ".join(changed) + f"\nrun it as it was to continue it, add --fresh to start over "
                          f"(its state in {state_dir} is discarded), or use another --out")


def continue_or_start(state_dir: Path, request: dict[str, Any], fresh: bool) -> bool:
    """Whether the run continues an interrupted one in `state_dir` (refused, naming what changed, if it was asked
    for differently); with `fresh`, or nothing saved, its state is discarded and it starts over."""
    continuing = not fresh and saved_request(state_dir) is not None
    if continuing:
        check_same_request(state_dir, request)  # before anything loads
    else:
        discard_state(state_dir)
    return continuing


def discard_state(state_dir: Path) -> None:
    """Remove an interrupted run's state (keeping the lock this process holds)."""
    for entry in state_dir.iterdir():
        if entry.name != LOCK:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
