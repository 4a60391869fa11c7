"""Runs across processes on JAX's distributed runtime (`jax.distributed`): one process per host (or GPU).

    jaxvis.distributed.initialize("10.0.0.1:8476", num_processes=2, process_id=0)   # before jaxvis.load
    model = jaxvis.load("mobilenet_v2")
    images = jaxvis.visualize(model, "features.14:0-159")   # the same call on every process

Every process runs the same program; the unit axis of an optimization is one global mesh over every
process's devices (`jaxvis.engine.optimize`), so each process computes its share of the units.  What the
host needs -- the objective's history each chunk, the final images, a checkpoint's state -- is gathered
to every process (`host`); only process 0 (`is_lead`) writes files: outputs, run state, checkpoints.
A resumed run's state is read by process 0 and sent to the others (`from_lead`), so the run state need
only be where process 0 can reach it.

Faults: when a process dies, the others' next collective fails at once (the runtime's connection is
reset) and they stop with `PeerLostError` -- except when process 0 dies: the coordinator lives in it, and
JAX's runtime ends the others at once itself (exit status 134, "Terminating process because the JAX
distributed service detected fatal errors ... another task died").  One that hangs is noticed by the
coordinator's heartbeat (`heartbeat_s`).  A process that cannot reach the coordinator stops after
`timeout_s`.  The coordinator listens without authentication: keep it on a private network.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from jaxvis.core.errors import JaxvisError

CONNECT_TIMEOUT_S = 60  # how long a process waits for the coordinator and the others to join
HEARTBEAT_S = 30  # a process not heard from for this long is taken as lost by the coordinator
SHUTDOWN_S = 30  # how long a finishing process waits for the others at the end


class DistributedError(JaxvisError):
    """The distributed runtime could not start as asked (bad address, unreachable coordinator, no cluster)."""


class PeerLostError(JaxvisError):
    """Another process of the run ended or stopped answering."""


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None, *,
               auto: bool = False, timeout_s: float = CONNECT_TIMEOUT_S, heartbeat_s: float = HEARTBEAT_S) -> None:
    """Join the run's processes: `coordinator` ("HOST:PORT", process 0's host), how many there are and which
    this is; or `auto=True` for the cluster detection JAX has (SLURM, Cloud TPU).  Call it before anything
    uses jax's devices (before `jaxvis.load`).  A no-op for a single process (`num_processes=1`)."""
    import jax

    check_request(coordinator, num_processes, process_id, auto)
    if not auto and num_processes is None:
        raise DistributedError("give the coordinator (HOST:PORT), num_processes and process_id, or auto=True "
                               "on a SLURM or Cloud TPU cluster")
    if not auto and num_processes == 1:
        return
    if jax.distributed.is_initialized():
        raise DistributedError("jaxvis.distributed.initialize was called twice in this process")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices talk through gloo
    if not auto and process_id != 0:
        _wait_for_coordinator(coordinator, process_id, timeout_s)
    options = dict(initialization_timeout=int(timeout_s), heartbeat_timeout_seconds=int(heartbeat_s),
                   shutdown_timeout_seconds=SHUTDOWN_S)
    try:
        if auto:
            jax.distributed.initialize(**options)
        else:
            jax.distributed.initialize(coordinator, num_processes, process_id, **options)
    except Exception as error:  # noqa: BLE001 -- jax raises several kinds; each becomes one clear line
        raise DistributedError(_start_failure(error, coordinator, process_id, auto, timeout_s)) from None


def check_request(coordinator: str | None, num_processes: int | None, process_id: int | None, auto: bool) -> None:
    """Refuse an incomplete or malformed set of options before anything starts."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if auto:
        if any(value is not None for value in given.values()):
            raise DistributedError("--distributed auto finds the coordinator and the processes itself: give it "
                                   "alone, or give --coordinator, --num-processes and --process-id instead")
        return
    missing = [name for name, value in given.items() if value is None]
    if len(missing) == 3 or (num_processes == 1 and process_id in (None, 0)):
        return  # one process
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise DistributedError(f"a run across processes needs --coordinator HOST:PORT, --num-processes N and "
                               f"--process-id I on every process (missing: {flags}); or --distributed auto on "
                               "a SLURM or Cloud TPU cluster")
    if not re.fullmatch(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}", coordinator) or int(coordinator.rsplit(":", 1)[1]) > 65535:
        raise DistributedError(f"--coordinator must be HOST:PORT (process 0's host and a free port, e.g. "
                               f"10.0.0.1:8476), got {coordinator!r}")
    if not isinstance(num_processes, int) or num_processes < 1:
        raise DistributedError(f"--num-processes must be a positive whole number, got {num_processes!r}")
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise DistributedError(f"--process-id must be between 0 and {num_processes - 1} (one per process, 0 on "
                               f"the coordinator's host), got {process_id!r}")


def running() -> bool:
    """Whether this process has joined a run across processes (without importing jax)."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.distributed.is_initialized()


def process_count() -> int:
    import jax

    return jax.process_count() if running() else 1


def is_lead() -> bool:
    """Whether this process writes the run's files (process 0; the only one without jax.distributed)."""
    import jax

    return jax.process_index() == 0 if running() else True


def host(tree: Any) -> Any:
    """`tree`'s arrays as NumPy on this host, whole: a global array's shards from every process are gathered
    (a collective: every process must call it at the same point)."""
    import jax

    if process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def whole(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:  # every process holds it whole already
                return np.asarray(leaf.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    with peers_answering():
        return jax.tree_util.tree_map(whole, tree)


def place(tree: Any, sharding: Any) -> Any:
    """`tree`'s arrays (host values every process holds alike) laid out by `sharding`: across processes, each
    process places its own devices' shards (an array laid out so already is left as it is)."""
    import jax

    if process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        whole = np.asarray(leaf)
        return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])

    return jax.tree_util.tree_map(one, tree)


def from_lead(tree: Any) -> Any:
    """Process 0's `tree` on every process (the others pass one of the same structure and shapes)."""
    if process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    with peers_answering():
        return multihost_utils.broadcast_one_to_all(tree)


def together(name: str) -> None:
    """Wait until every process reaches this point (named alike on all)."""
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils

    with peers_answering():
        multihost_utils.sync_global_devices(name)


@contextmanager
def peers_answering() -> Iterator[None]:
    """A collective's failure because another process is gone, as `PeerLostError`."""
    try:
        yield
    except JaxvisError:
        raise
    except Exception as error:  # noqa: BLE001 -- gloo and the coordination service raise ValueError/XlaRuntimeError
        if not _is_lost_peer(error):
            raise
        import jax

        raise PeerLostError(
            f"process {jax.process_index()} of {jax.process_count()}: another process of this run ended or stopped "
            f"answering ({_first_line(error)}); the run's checkpoints (kept by process 0) are where it resumes: "
            "start the same command on every process again") from None


def end(code: int) -> int:
    """Leave the run: a process that fails exits at once (`os._exit`) so that the others' next collective fails
    too instead of waiting for it at jax's shutdown barrier; a finished one returns its code as usual."""
    if code == 0 or not running():
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait_for_coordinator(coordinator: str, process_id: int, timeout_s: float) -> None:
    """Return once the coordinator's port accepts a connection; `DistributedError` after `timeout_s`.  (Asked
    to connect to a coordinator that is not there, jax's runtime aborts the process with a C++ check failure
    instead of raising.)"""
    host_name, port = coordinator.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host_name.strip("[]"), int(port)), timeout=min(2.0, timeout_s)):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"process {process_id} could not reach the coordinator at {coordinator} within {timeout_s:g} s "
                    f"({error.strerror or error}); start process 0 on that host with the same --coordinator and "
                    "--num-processes (a firewall may block the port; --connect-timeout waits longer)") from None
            time.sleep(0.2)


def _is_lost_peer(error: Exception) -> bool:
    text = str(error)
    return any(word in text for word in ("Gloo", "gloo", "Connection reset", "Connection refused", "heartbeat",
                                         "UNAVAILABLE", "DEADLINE_EXCEEDED", "coordination service", "Broken pipe",
                                         "Socket closed"))


def _start_failure(error: Exception, coordinator: str | None, process_id: int | None, auto: bool,
                   timeout_s: float) -> str:
    said = _first_line(error)
    if auto:
        return (f"--distributed auto found no cluster to join ({said}); it works inside a SLURM job step or on "
                "a Cloud TPU VM; elsewhere give --coordinator, --num-processes and --process-id")
    if "DEADLINE_EXCEEDED" in said or "timed out" in said.lower() or "Barrier" in said:
        return (f"process {process_id} could not reach the coordinator at {coordinator} or not every process "
                f"joined within {timeout_s:g} s ({said}); start process 0 on that host and the others with the "
                "same --coordinator and --num-processes (a firewall may block the port)")
    return f"cannot start the distributed runtime with the coordinator at {coordinator}: {said}"


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"

