"""Runs across processes (issue 34): two local processes on JAX's distributed runtime (gloo collectives on
127.0.0.1, ports chosen free) behave as two hosts.  The command line runs in fresh processes on the tiny CNN
(`helpers.tiny_cnn`, known by name in them), every process started by a test is killed by it at the end.

Mutations that fail these tests (each run): the units placed on `jax.local_devices()` instead of every
process's devices (each process runs all units alone: other bits, and process 1's death goes unnoticed); a lost
peer's error not recognised as one (process 0 ends with gloo's traceback).  The reference is one process with
two devices: the same program per device, so the PNGs are byte-identical (one device batches the arithmetic
differently: some units' images drift apart over the steps, see docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
VISUALIZE = ["visualize", "tiny_cnn", "features.8", "--channels", "0-7", "--size", "32", "--steps", "40",
             "--checkpoint-every", "8", "--group-size", "8"]
DIE_AFTER_SECOND_CHECKPOINT = """
    import os, signal
    from jaxvis.core import checkpoints
    real_save, saves = checkpoints.Checkpoints.save, []
    def save(self, *args, **kwargs):  # every process takes part in a checkpoint (its units' state is gathered)
        real_save(self, *args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoints.Checkpoints.save = save"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(args: list[str], cache: Path, before: str = "", devices: int = 1) -> subprocess.Popen:
    """The command line in a new process with `devices` CPU devices, the jaxvis cache `cache`, `before` run first."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from helpers import use_tiny_cnn_by_name
        use_tiny_cnn_by_name()  # the model built once the command loads it
        """) + textwrap.dedent(before) + textwrap.dedent(f"""
        from jaxvis.cli import main
        sys.exit(main({args!r}))
        """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JAXVIS_CACHE": str(cache),
                                 "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})


@pytest.fixture()
def launched():
    """Start processes through this; every one still running at the end is killed."""
    processes: list[subprocess.Popen] = []

    def launch(*args, **kwargs) -> subprocess.Popen:
        processes.append(start(*args, **kwargs))
        return processes[-1]

    yield launch
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def across(count: int, port: int, args: list[str]) -> list[list[str]]:
    """`args` for each of `count` processes."""
    return [[*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count), "--process-id", str(i)]
            for i in range(count)]


def ended(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def pngs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("unit_*.png"))}


def test_two_processes_draw_what_one_draws_and_survive_a_kill_and_a_change_of_count(tmp_path, launched):
    """8 units split over two processes give the PNGs one process gives, bit for bit; process 1 killed after
    its second checkpoint stops process 0 with a clear error at once; the rerun on two processes resumes from
    the last checkpoint, and (killed again) a rerun on one process finishes it, the same PNGs again."""
    cache = tmp_path / "cache"
    code, err = ended(launched([*VISUALIZE, "--out", str(tmp_path / "one")], cache, devices=2))
    assert code == 0, err[-3000:]
    one = pngs(tmp_path / "one")
    assert len(one) == 8

    together = [launched(args, cache) for args in across(2, free_port(), [*VISUALIZE, "--out", str(tmp_path / "two")])]
    (lead_code, lead_err), (other_code, other_err) = ended(together[0]), ended(together[1])
    assert lead_code == 0 and other_code == 0, lead_err[-3000:] + other_err[-3000:]
    assert "8 units x 40 steps in 1 group of up to 8 units across 2 processes (2 devices)" in lead_err, lead_err
    assert pngs(tmp_path / "two") == one
    assert not list((tmp_path / "two").glob("*.tmp")) and pngs(tmp_path / "two")

    out = [*VISUALIZE, "--out", str(tmp_path / "killed"), "--state-dir", str(tmp_path / "state")]
    for attempt in range(2):  # process 1 dies after its second checkpoint: at step 16, then (resumed) at 32
        lead, other = (launched(args, cache, DIE_AFTER_SECOND_CHECKPOINT if i == 1 else "")
                       for i, args in enumerate(across(2, free_port(), out)))
        other_code, _ = ended(other)
        died = time.monotonic()
        lead_code, lead_err = ended(lead, timeout=120)
        assert other_code == -signal.SIGKILL and lead_code == 2, lead_err[-3000:]
        assert time.monotonic() - died < 30, "process 0 did not stop soon after process 1 died"
        assert "another process of this run ended or stopped answering" in lead_err and "Traceback" not in lead_err
        assert "start the same command on every process again" in lead_err
        assert ("resuming from" in lead_err) == (attempt == 1), lead_err[-3000:]
        saved = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "state" / "group_1").glob("step_*.sha256"))
        assert saved[-1] == 16 * (attempt + 1), saved
    code, err = ended(launched(out, cache, devices=2))  # one process continues what two began
    assert code == 0 and "resuming from" in err and "step_32" in err, err[-3000:]
    assert pngs(tmp_path / "killed") == one


def test_a_process_that_cannot_reach_its_coordinator_stops_after_the_timeout(tmp_path, launched):
    port = free_port()  # nobody listens there: process 1 alone
    began = time.monotonic()
    code, err = ended(launched([*VISUALIZE, "--out", str(tmp_path / "out"), "--coordinator", f"127.0.0.1:{port}",
                                "--num-processes", "2", "--process-id", "1", "--connect-timeout", "3"],
                               tmp_path / "cache"), timeout=120)
    took = time.monotonic() - began
    assert code == 2 and f"could not reach the coordinator at 127.0.0.1:{port}" in err and "within 3 s" in err, err
    assert "Traceback" not in err and took < 60, (took, err[-2000:])
    assert not (tmp_path / "out").exists()  # process 1 writes nothing


@pytest.mark.parametrize("options, said", [
    (["--num-processes", "2"], "missing: --coordinator, --process-id"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "must be HOST:PORT"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "between 0 and 1"),
    (["--distributed", "auto", "--num-processes", "2"], "give it alone"),
])
def test_incomplete_options_are_refused_before_anything_starts(capsys, tmp_path, options, said):
    from jaxvis.cli import main

    code = main(["visualize", "mobilenet_v2", "--out", str(tmp_path / "out"), *options])
    err = capsys.readouterr().err
    assert code == 2 and said in err and not (tmp_path / "out").exists(), err
    assert "jax" not in sys.modules or not sys.modules["jax"].distributed.is_initialized()


COUNT_ROWS = """
    import atexit, sys
    from jaxvis.analysis.units import stream
    real_place, seen = stream._place, set()
    def place(array, batch_size, data, replicated):
        placed = real_place(array, batch_size, data, replicated)
        if data is not None and not isinstance(array, stream.Whole):
            seen.add((placed.shape[0], sum(shard.data.shape[0] for shard in placed.addressable_shards)))
        return placed
    stream._place = place
    atexit.register(lambda: print("rows of a batch placed here:", sorted(seen), file=sys.stderr))"""


def dissection(folder: Path) -> dict[str, Any]:
    """A dissection's results: every unit's label and scores, and the summary (timings left out)."""
    record = json.loads((folder / "dissection.json").read_text())
    return {key: record[key] for key in ("images", "units", "summary")}


@pytest.fixture(scope="module")
def concepts(tmp_path_factory) -> Path:
    """A small concept set: 3 photos' crops and 10 collages (16 images, 4 batches of 4)."""
    from jaxvis.analysis.units.concept_set import build_concept_set

    return build_concept_set(tmp_path_factory.mktemp("concepts"), crops_per_photo=2, collages=10, size=64,
                             photos=["sample:chelsea", "sample:coffee", "sample:astronaut"])


def one_then_two(launched, args: list[str], folder: Path, before: str = "") -> tuple[str, str]:
    """`args` run by one process (one device) into `folder/one`, then by two (`before` run first in each) into
    `folder/two`, sharing a cache; every run must finish.  The two processes' stderr."""
    cache = folder / "cache"
    code, err = ended(launched([*args, "--out", str(folder / "one")], cache))
    assert code == 0, err[-3000:]
    both = [launched(each, cache, before) for each in across(2, free_port(), [*args, "--out", str(folder / "two")])]
    (lead_code, lead_err), (other_code, other_err) = ended(both[0]), ended(both[1])
    assert lead_code == 0 and other_code == 0, lead_err[-3000:] + other_err[-3000:]
    return lead_err, other_err


def test_a_dissection_over_two_processes_labels_every_unit_as_one_process_does(tmp_path, launched, concepts):
    """The survey's and the tally's batches split over two processes' devices: the same labels, scores and
    image count as one process with one device (the statistics are counts and top-k lists: they merge exactly)."""
    args = ["dissect", "tiny_cnn", "features.8", "--data", str(concepts), "--batch-size", "4", "--checkpoint-every", "2"]
    lead_err, other_err = one_then_two(launched, args, tmp_path, COUNT_ROWS)
    one, two = dissection(tmp_path / "one"), dissection(tmp_path / "two")
    assert two["images"] == one["images"] == 16
    assert two == one
    assert "Traceback" not in other_err and not (tmp_path / "two" / ".jaxvis-lock").exists()
    for err in (lead_err, other_err):  # each process placed half of every batch of 4 on its device
        assert "rows of a batch placed here: [(4, 2)]" in err, err[-2000:]


def test_dataset_examples_over_two_processes_are_one_processes(tmp_path, launched, concepts):
    """`jaxvis examples`: the survey split over two processes finds the same top images for every unit and
    random direction as one process with one device; process 0 writes the same gallery, byte for byte."""
    args = ["examples", "tiny_cnn", "features.8", "--data", str(concepts / "images"), "--units", "0-3", "--top", "3",
            "--directions", "2", "--batch-size", "4"]
    _, other_err = one_then_two(launched, args, tmp_path, COUNT_ROWS)
    assert "rows of a batch placed here: [(4, 2)]" in other_err, other_err[-2000:]
    one, two = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("one", "two"))
    assert two["top_images"] == one["top_images"] and len(one["top_images"]) == 6
    pictures = {path.name: path.read_bytes() for path in (tmp_path / "one").glob("*.png")}
    assert pictures and {path.name: path.read_bytes() for path in (tmp_path / "two").glob("*.png")} == pictures
