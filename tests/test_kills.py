"""Killed at any moment (issue 35, point 3): a command killed with SIGKILL -- at random moments, and at the moments a
compile, a checkpoint or the gallery is under way -- then run again as it was, until it finishes, ends with the same
bytes in its images (a dissection: the same labels and scores) as a run never killed: feature visualization,
Plug-In Inversion's seven stages, and network dissection's two streams over a data set.

Each job runs the command line in fresh processes on the tiny CNN (`helpers.tiny_cnn`, known by name in them), with
its own jaxvis cache (so the first process also converts nothing and compiles everything: a kill can land in the
compile).  The random moments are drawn from the job's measured duration with a seed that a failure prints
(`JAXVIS_KILL_SEED=N` repeats it).  Mutation that fails it: an output written in place, not through a temporary
name (the PNG cut short by the mid-gallery kill is left looking whole).  What it found: a restored run's images
were rendered outside the chunk program, so a later stage started from other bits than it was saved with and the
rerun was refused as another run (DeepInversion's second phase, seed 986987; now rendered by the chunk program).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


TESTS = os.path.dirname(os.path.abspath(__file__))
SEED = int(os.environ.get("JAXVIS_KILL_SEED", random.randrange(10**6)))
RANDOM_KILLS = 3

# Moments a random draw rarely hits, made certain: the process kills itself there.
DIE = "os.kill(os.getpid(), signal.SIGKILL)"
MOMENTS = {
    "random": "",
    "mid-compile": f"""
        import threading
        from jaxvis.core import programs
        real_compile = programs.Program._compile
        def compile(self, *args):  # die 0.3 s into the first compile (tracing, lowering or XLA)
            threading.Timer(0.3, lambda: {DIE}).start()
            return real_compile(self, *args)
        programs.Program._compile = compile""",
    "mid-checkpoint": f"""
        import orbax.checkpoint as ocp
        from jaxvis.core import checkpoints
        real_save, real_wait, saves = checkpoints.Checkpoints.save, ocp.StandardCheckpointer.wait_until_finished, []
        def save(self, step, *args):
            saves.append(self.directory)
            return real_save(self, step, *args)
        def wait(self):  # orbax writes in the background: die while the second checkpoint's files are written
            if len(saves) == 2 and any(saves[-1].glob("*.orbax-checkpoint-tmp*")):
                {DIE}
            real_wait(self)
        checkpoints.Checkpoints.save = save
        ocp.StandardCheckpointer.wait_until_finished = wait""",
    "mid-gallery": f"""
        from jaxvis.core import files
        real_put, outputs = files._put, []
        def put(path, data):
            if path.name.startswith(("unit_", "class_", "contact", "index", "run.json")):
                outputs.append(path)
                if len(outputs) == 2:  # the first output whole, the second cut short
                    real_put(path, data[: len(data) // 2])
                    {DIE}
            real_put(path, data)
        files._put = put""",
}

def pngs(pattern: str):
    """A job's results: the bytes of its PNGs matching `pattern`."""
    return lambda folder: {path.name: path.read_bytes() for path in sorted(folder.glob(pattern))}


def dissection(folder: Path) -> dict[str, bytes]:
    """A dissection's results: every unit's label and scores, and the summary (timings left out)."""
    if not (folder / "dissection.json").exists():
        return {}
    record = json.loads((folder / "dissection.json").read_text())
    return {key: json.dumps(record[key]).encode() for key in ("images", "units", "summary")}


JOBS = {  # the command (without --out), how to read its results, the moments it is killed at
    "visualize": (["visualize", "tiny_cnn", "features.8", "--channels", "0-3", "--size", "32", "--steps", "24",
                   "--checkpoint-every", "4"], pngs("unit_*.png"),
                  ("mid-compile", "random", "mid-checkpoint", "random", "mid-gallery", "random")),
    "pii": (["invert", "tiny_cnn", "--method", "pii", "--classes", "1,3", "--size", "32", "--steps", "3", "--ensemble",
             "2"], pngs("class_*.png"), ("random", "mid-checkpoint", "mid-gallery", "random")),
    "dissect": (["dissect", "tiny_cnn", "features.8", "--data", "{concepts}", "--batch-size", "4",
                 "--checkpoint-every", "1"], dissection, ("random", "mid-checkpoint", "random", "random")),
}


@pytest.fixture(scope="module")
def concepts(tmp_path_factory) -> Path:
    """A small concept set: 3 photos' crops and 8 collages (16 images, 4 batches of 4)."""
    from jaxvis.analysis.units.concept_set import build_concept_set

    return build_concept_set(tmp_path_factory.mktemp("concepts"), crops_per_photo=2, collages=10,
                             photos=["sample:chelsea", "sample:coffee", "sample:astronaut"], size=64)


def command(args: list[str], moment: str) -> str:
    return textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {TESTS!r})
        from helpers import tiny_cnn, use_tiny_cnn_by_name
        use_tiny_cnn_by_name(tiny_cnn())
        """) + textwrap.dedent(MOMENTS[moment]) + textwrap.dedent(f"""
        from jaxvis.cli import main
        sys.exit(main({args!r}))
        """)


def start(args: list[str], moment: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "JAXVIS_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-c", command(args, moment)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, err


@pytest.mark.parametrize("job", JOBS)
def test_killed_at_any_moment_the_same_command_ends_with_the_same_results(tmp_path, concepts, job):
    template, results, moments = JOBS[job]
    args = [part.format(concepts=concepts) for part in template]
    rng = random.Random(f"{SEED}-{job}")
    said = f"(JAXVIS_KILL_SEED={SEED})"

    began = time.perf_counter()
    code, err = finish(start([*args, "--out", str(tmp_path / "whole")], "random", tmp_path / "cache-whole"))
    took = time.perf_counter() - began
    assert code == 0, err[-3000:]
    whole = results(tmp_path / "whole")
    assert whole

    out, cache, story = [*args, "--out", str(tmp_path / "killed")], tmp_path / "cache-killed", []
    after_checkpoint, waiting_for_resume, checkpoint_killed = [], False, False
    for moment in moments:
        process = start(out, moment, cache)
        if moment == "random":
            at = rng.uniform(0.05, 1.0) * took  # the first process compiles, as the uninterrupted one did
            try:
                process.wait(timeout=at)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
            story.append(f"random kill at {at:.1f} s of {took:.1f}")
        else:
            story.append(moment)
        code, err = finish(process)
        assert code in (-signal.SIGKILL, 0), f"{story} {said}: exit {code}\n{err[-3000:]}"
        assert "Traceback" not in err, f"{story} {said}\n{err[-3000:]}"
        if waiting_for_resume:  # the processes after a mid-checkpoint kill, up to one that finishes
            after_checkpoint.append(err)
            waiting_for_resume = code != 0
        if code == 0:
            story[-1] += " (it had finished)"
        elif moment == "mid-checkpoint":
            waiting_for_resume, checkpoint_killed = True, True
        for name, data in results(tmp_path / "killed").items():  # what a kill leaves is whole, or absent
            assert data == whole[name], f"{name} after: {story} {said}"
    code, err = finish(start(out, "random", cache))
    assert code == 0, f"{story} {said}\n{err[-3000:]}"
    assert not checkpoint_killed or "resuming from" in "".join(after_checkpoint) + err, \
        f"the checkpoint kept before the mid-checkpoint kill was not used: {story} {said}\n" + "\n---\n".join(
            after_checkpoint + [err])  # the checkpoint kept before it was used
    got = results(tmp_path / "killed")
    assert list(got) == list(whole), f"{story} {said}"
    for name in whole:  # bit for bit (a PNG's bytes: the same pixels encode the same)
        assert got[name] == whole[name], f"{name} differs after: {story} {said}"
