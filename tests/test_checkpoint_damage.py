"""A damaged checkpoint is skipped for the intact one before it, saying which and why; with none intact, or with
the run's record damaged, a clear error says where and how to start over.  On the tiny CNN (`helpers.tiny_cnn`).

Mutations that fail these tests: `Checkpoints.damage` always answering None (a flip that orbax reads without
noticing -- in commit_success.txt, _CHECKPOINT_METADATA or an index node it does not read -- resumes from the
damaged step_8 and says nothing; others end in orbax's raw error); the loop not going on to older checkpoints
(`DamagedCheckpointError` though step_4 is intact); the fingerprint's checksum not compared (a damaged
config.json that still parses passes as a changed run); the orbax error not caught (a run saved without checksums).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxvis.core.checkpoints import DamagedCheckpointError
from test_engine import small_run

RUN = dict(steps=12, checkpoint_every=4)


def flip(path: Path) -> None:
    """Invert eight bytes spread over the file (bit rot, a bad copy)."""
    data = bytearray(path.read_bytes())
    for k in range(0, len(data), max(1, len(data) // 8)):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def interrupted(tiny_cnn, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A run stopped after 8 of 12 steps (checkpoints at steps 4 and 8), and the uninterrupted run's images."""
    folder = tmp_path_factory.mktemp("interrupted")
    small_run(tiny_cnn, checkpoint_dir=folder, stop_after=8, **RUN)
    assert sorted(p.name for p in folder.glob("step_*")) == ["step_4", "step_4.sha256", "step_8", "step_8.sha256"]
    return folder, small_run(tiny_cnn, steps=12).images


def copy_of(folder: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name.replace("/", "_")
    shutil.copytree(folder, copy)
    return copy


def test_each_damaged_file_of_the_newest_checkpoint_is_skipped_for_the_one_before(tiny_cnn, interrupted, tmp_path,
                                                                                  capsys):
    folder, uninterrupted = interrupted
    newest = folder / "step_8"
    names = sorted(p.relative_to(newest).as_posix() for p in newest.rglob("*") if p.is_file())
    assert {"_METADATA", "manifest.ocdbt", "ocdbt.process_0/manifest.ocdbt"} <= set(names)  # orbax's kinds of file
    for name in [*names, "../step_8.sha256"]:
        copy = copy_of(folder, tmp_path, name)
        flip(copy / "step_8" / name)
        capsys.readouterr()
        resumed = small_run(tiny_cnn, checkpoint_dir=copy, resume=True, **RUN)
        err = capsys.readouterr().err
        assert f"skipping the checkpoint {copy / 'step_8'}: its " in err, (name, err)
        assert f"resuming from {copy / 'step_4'}" in err, (name, err)
        np.testing.assert_allclose(resumed.images, uninterrupted, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_checkpoint_saved_without_checksums_that_orbax_cannot_read_is_skipped(tiny_cnn, interrupted, tmp_path,
                                                                                capsys):
    folder, uninterrupted = interrupted
    copy = copy_of(folder, tmp_path, "unlisted")
    for listed in copy.glob("step_*.sha256"):  # as saved before checksums were kept
        listed.unlink()
    flip(copy / "step_8" / "_METADATA")
    resumed = small_run(tiny_cnn, checkpoint_dir=copy, resume=True, **RUN)
    err = capsys.readouterr().err
    assert f"skipping the checkpoint {copy / 'step_8'}: orbax could not read it" in err, err
    np.testing.assert_allclose(resumed.images, uninterrupted, rtol=1e-5, atol=1e-6)


def test_with_no_intact_checkpoint_the_error_names_each_and_how_to_start_over(tiny_cnn, interrupted, tmp_path):
    folder, _ = interrupted
    copy = copy_of(folder, tmp_path, "none")
    for step in ("step_4", "step_8"):
        flip(copy / step / "manifest.ocdbt")
    with pytest.raises(DamagedCheckpointError) as caught:
        small_run(tiny_cnn, checkpoint_dir=copy, resume=True, **RUN)
    message = str(caught.value)
    assert f"no intact checkpoint in {copy}" in message and "--fresh" in message and "resume=False" in message
    assert "step_8: its file manifest.ocdbt does not match" in message and "step_4: its file" in message


def test_a_damaged_record_of_the_run_is_said_not_taken_for_another_run(tiny_cnn, interrupted, tmp_path):
    folder, _ = interrupted
    for damage in ("unreadable", "still parses"):
        copy = copy_of(folder, tmp_path, damage)
        record = copy / "config.json"
        if damage == "unreadable":
            flip(record)
        else:  # a flipped digit: valid JSON, another seed
            record.write_text(json.dumps({**json.loads(record.read_text()), "seed": 9}, indent=1))
        with pytest.raises(DamagedCheckpointError, match=f"the record of the run in {record} is damaged.*--fresh"):
            small_run(tiny_cnn, checkpoint_dir=copy, resume=True, **RUN)


def test_a_state_with_whole_number_and_scalar_leaves_resumes_as_it_was_saved(tmp_path):
    """Not damage, the plain case beside it: a statistic's state may hold 0-d leaves (a count), which the
    engine's dropping of its padding (`count`) must leave alone."""
    import jax
    import jax.numpy as jnp

    from jaxvis.core.checkpoints import Checkpoints

    state = {"seen": jnp.asarray(7, jnp.int32), "sums": jnp.arange(6.0).reshape(3, 2)}
    store = Checkpoints(tmp_path / "run", {"run": 1})
    store.save(4, state, np.zeros(1, np.float32))
    store.save(8, state, np.ones((2, 3), np.float32), count=2)  # the first 2 entries of each leading axis
    restored, history, done = store.latest({"seen": jax.ShapeDtypeStruct((), jnp.int32),
                                            "sums": jax.ShapeDtypeStruct((2, 2), jnp.float32)}, (2, 3))
    assert done == 8 and int(restored["seen"]) == 7 and np.array_equal(history, np.ones((2, 3)))
    assert np.array_equal(restored["sums"], [[0.0, 1.0], [2.0, 3.0]])
