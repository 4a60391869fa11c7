"""The options of a long command that runs across processes (`jaxvis.core.distributed`), and what they decide:
which process takes the output folder's lock, and where the run state lives.  A command calls `check` with
its request checks, `join` once they pass, then works inside `holding`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from jaxvis.core import distributed

EXAMPLE = """Across processes (one per host or GPU; the same command on each, process 0 writes the outputs):
  jaxvis visualize mobilenet_v2 features.14 --channels 0-159 --coordinator 10.0.0.1:8476 --num-processes 2 --process-id 0
  jaxvis visualize mobilenet_v2 features.14 --channels 0-159 --coordinator 10.0.0.1:8476 --num-processes 2 --process-id 1
  (keep the coordinator's port on a private network: it has no authentication)"""


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("across processes (jax.distributed)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="process 0's host and a free port, the same on every process (listens without "
                            "authentication: a private network only)")
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes run this command")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 to N-1 (0 writes "
                       "the outputs)")
    group.add_argument("--distributed", choices=("auto",),
                       help="find the processes from the cluster (a SLURM job step, a Cloud TPU VM) instead")
    group.add_argument("--connect-timeout", type=float, default=distributed.CONNECT_TIMEOUT_S, metavar="SECONDS",
                       help="how long to wait for the coordinator and the other processes")
    group.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="where process 0 keeps the run's state (default: under its cache, keyed on --out); "
                            "a shared disk lets another host be process 0 when the run continues")


def check(args: argparse.Namespace) -> None:
    """Refuse incomplete or malformed options with the request's other checks (nothing has started)."""
    distributed.check_request(args.coordinator, args.num_processes, args.process_id, args.distributed == "auto")


def join(args: argparse.Namespace) -> None:
    """Start the distributed runtime as the options ask (a no-op without them)."""
    if args.coordinator is None and args.num_processes is None and args.distributed is None:
        return
    distributed.initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed == "auto",
                           timeout_s=args.connect_timeout)


def note() -> str:
    """" across N processes (D devices)" when running across processes, else ""."""
    if not distributed.running():
        return ""
    import jax

    return f" across {jax.process_count()} processes ({jax.device_count()} devices)"


def state_directory(args: argparse.Namespace, out: Path) -> Path:
    from jaxvis.cli.common import run_directory

    return args.state_dir.resolve() if args.state_dir else run_directory(out)


@contextmanager
def holding(out: Path, state_dir: Path | None = None) -> Iterator[bool]:
    """On process 0, hold the output folder and the run state, if the command keeps one (their locks); on the
    others nothing, since they write neither.  Yields whether this process writes."""
    from jaxvis.cli.common import holding_output
    from jaxvis.core.run_state import locked

    lead = distributed.is_lead()
    with ExitStack() as stack:
        if lead:
            stack.enter_context(holding_output(out, state_dir))
            if state_dir is not None:
                stack.enter_context(locked(state_dir))
        yield lead
