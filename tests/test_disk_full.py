"""A full disk, a used-up quota, a read-only filesystem (issue 35, point 1): a clear error naming the path and how
much is left to write, nothing computed lost, no partial file left looking complete.

Faults are injected at the N-th write of jaxvis's one write function (`jaxvis.core.files._put`), and met for real
on a small tmpfs (what orbax and tensorstore write in C++ included) where this process may mount one.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from jaxvis.cli import main
from jaxvis.core import files
from jaxvis.core.files import WriteRefusedError, write_files
from jaxvis.data.io import read_image

REFUSED = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
SAID = {errno.ENOSPC: "no space left", errno.EDQUOT: "quota", errno.EROFS: "read-only"}


def refuse_writes(monkeypatch, code: int, at: int, *under: Path) -> list[Path]:
    """From the `at`-th write on (1-based; counting only writes under the folders `under`, if any are given), the
    filesystem refuses with `code`; returns the paths written or tried (their temporary names), in order."""
    real, tried = files._put, []

    def put(path: Path, data: bytes) -> None:
        if not under or any(folder in path.parents for folder in under):
            tried.append(path)
            if len(tried) >= at:  # as a real full disk does: part of the bytes reach the file, then the error
                real(path, data[: len(data) // 2])
                raise OSError(code, os.strerror(code), str(path))
        real(path, data)

    monkeypatch.setattr(files, "_put", put)
    return tried


@pytest.mark.parametrize("code", REFUSED)
def test_a_refused_write_names_its_file_and_what_is_left_and_a_rerun_writes_only_that(tmp_path, monkeypatch, code):
    outputs = {tmp_path / "out" / f"file_{k}.bin": bytes([k]) * (10 * (k + 1)) for k in range(5)}
    for at in range(1, len(outputs) + 1):
        folder = tmp_path / "out"
        for path in folder.glob("*"):
            path.unlink()
        refuse_writes(monkeypatch, code, at)
        with pytest.raises(WriteRefusedError) as refused:
            write_files(outputs)
        paths = list(outputs)
        left = paths[at - 1:]
        message = str(refused.value)
        assert str(paths[at - 1]) in message and SAID[code] in message and refused.value.errno == code
        assert f"{len(left)} of the 5 output files are not written yet" in message
        assert f"({sum(len(outputs[p]) for p in left)} B in all)" in message  # every size here is under 1 KB
        assert sorted(folder.iterdir()) == paths[: at - 1]  # no partial file, no temporary one
        assert all(p.read_bytes() == outputs[p] for p in paths[: at - 1])
        monkeypatch.undo()
        written = refuse_writes(monkeypatch, code, 10**9)  # counts, refuses nothing
        assert write_files(outputs) == len(left)
        assert [final(p) for p in written] == left
        assert all(p.read_bytes() == outputs[p] for p in paths)
        monkeypatch.undo()


def test_a_file_that_was_there_keeps_its_old_content_when_its_rewrite_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    files.write_whole(path, b"old record")
    refuse_writes(monkeypatch, errno.ENOSPC, 1)
    with pytest.raises(WriteRefusedError, match="no space left"):
        files.write_whole(path, b"a new record, longer")
    assert path.read_bytes() == b"old record" and sorted(tmp_path.iterdir()) == [path]


def final(temporary: Path) -> Path:
    """The file that `write_whole`'s temporary name (`NAME.PID.tmp`) becomes."""
    return temporary.with_suffix("").with_suffix("")


VISUALIZE = ("visualize", "mobilenet_v2", "features.10", "--channels", "2,3", "--size", "32", "--steps", "4",
             "--checkpoint-every", "2")


OUTPUTS = ["unit_0002.png", "unit_0003.png", "contact_sheet.png", "index.html", "run.json"]  # in writing order


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "vis"
    assert main([*VISUALIZE, "--out", str(out)]) == 0
    return out


def pngs(out: Path) -> dict[str, np.ndarray]:
    return {path.name: read_image(path) for path in sorted(out.glob("unit_*.png"))}


@pytest.mark.parametrize("at", [2, 5])  # the second unit's PNG; run.json (2 PNGs, the sheet, the page, the record)
def test_a_full_output_disk_stops_with_what_is_kept_and_the_rerun_only_writes(capsys, tmp_path, monkeypatch,
                                                                              uninterrupted, at):
    out = tmp_path / "vis"
    tried = refuse_writes(monkeypatch, errno.ENOSPC, at, out)
    code, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 2, err
    assert [final(p).name for p in tried] == OUTPUTS[:at]
    assert f"cannot write {final(tried[at - 1])}: no space left" in err
    assert f"{5 - at + 1} of the 5 output files are not written yet" in err
    assert "its optimization state is kept" in err and "checkpoints up to step 4" in err and "Traceback" not in err
    assert not list(out.glob("*.tmp")) and not (out / "run.json").exists()
    monkeypatch.undo()
    written = refuse_writes(monkeypatch, errno.ENOSPC, 10**9, out)  # counts, refuses nothing
    code, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 0, err
    assert "resuming at step 4 of 4" in err  # nothing optimized again
    assert [final(p).name for p in written] == OUTPUTS[at - 1:]  # only the files not written
    got, want = pngs(out), pngs(uninterrupted)
    assert list(got) == list(want) and all(np.array_equal(got[name], want[name]) for name in want)


def test_a_full_disk_for_the_run_state_warns_and_the_run_still_writes_its_images(capsys, tmp_path, monkeypatch,
                                                                                 uninterrupted):
    from jaxvis.cli.common import run_directory

    out = tmp_path / "vis"
    refuse_writes(monkeypatch, errno.EDQUOT, 1, run_directory(out))
    code, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 0, err
    assert "cannot save the optimization state of step 2" in err and "quota" in err and "the run goes on" in err
    assert "no earlier checkpoint of it is kept" in err and "Traceback" not in err
    got, want = pngs(out), pngs(uninterrupted)
    assert all(np.array_equal(got[name], want[name]) for name in want)


def test_with_both_disks_full_it_says_that_nothing_is_kept(capsys, tmp_path, monkeypatch):
    from jaxvis.cli.common import run_directory

    out = tmp_path / "vis"
    refuse_writes(monkeypatch, errno.ENOSPC, 1, out, run_directory(out))  # the run state is under the cache
    code, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 2 and "nothing of this run is kept" in err, err


# --- for real: a small tmpfs -----------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path):
    """A mount function for tmpfs folders of a given size, all unmounted at the end; skips where mounting is not
    allowed (CI runs as root)."""
    mounted = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_orbax_refused_by_a_real_full_disk_keeps_the_older_checkpoint_and_leaves_no_part(small_disk):
    """tensorstore's C++ writer meets ENOSPC on a 200 KB tmpfs: the error names the step and the kept checkpoint,
    orbax's temporary folder is removed, and the older checkpoint still resumes."""
    import jax
    import jax.numpy as jnp

    from jaxvis.core.checkpoints import Checkpoints

    store = Checkpoints(small_disk("200k") / "run", {"run": 1})
    small = [jnp.arange(1000, dtype=jnp.float32)]
    store.save(1, small, np.ones((4, 2), np.float32))
    noise = [jnp.asarray(np.random.default_rng(0).random(100_000, np.float32))]  # 400 KB that do not compress
    with pytest.raises(WriteRefusedError) as refused:
        store.save(2, noise, np.ones((4, 2), np.float32))
    message = str(refused.value)
    assert "step 2" in message and "no space left" in message and "the checkpoint of step 1 is kept" in message
    assert "390.7 KB" in message  # the state's 400 000 bytes and the history's 32: 400 032 / 1024
    assert sorted(p.name for p in store.directory.iterdir()) == ["config.json", "step_1", "step_1.sha256"]
    state, history, done = store.latest(jax.eval_shape(lambda s: s, small), (4, 2))
    assert done == 1 and np.array_equal(state[0], small[0]) and np.array_equal(history, np.ones((4, 2)))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's callbacks after a failure
def test_a_real_full_disk_for_the_outputs_and_the_run_state_then_room_again(capsys, tmp_path, monkeypatch,
                                                                             small_disk, uninterrupted):
    """The outputs on a 16 KB tmpfs (the lock and the PNGs fit, the rest does not), the run state on a 32 KB one
    (orbax's checkpoints do not fit): clear messages, nothing half-written; with room again, the same command
    finishes with the images of an uninterrupted run."""
    outputs, state = small_disk("16k"), small_disk("32k")
    out = outputs / "vis"
    code, err = run(capsys, *VISUALIZE, "--out", str(out), "--state-dir", str(state / "run"))
    assert code == 2, err
    assert "cannot save the optimization state of step 2" in err and "no space left" in err
    assert "output files are not written yet" in err and "Traceback" not in err
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]
    assert not [p for p in (state / "run").rglob("*") if "orbax-checkpoint-tmp" in p.name]
    written, want = pngs(out), pngs(uninterrupted)  # the PNGs there are whole: read, and equal to the run's
    assert written and all(np.array_equal(written[name], want[name]) for name in written)
    for point in (outputs, state):
        subprocess.run(["mount", "-o", "remount,size=4m", str(point)], check=True)
    code, err = run(capsys, *VISUALIZE, "--out", str(out), "--state-dir", str(state / "run"))
    assert code == 0, err
    got = pngs(out)
    assert list(got) == list(want) and all(np.array_equal(got[name], want[name]) for name in want)
