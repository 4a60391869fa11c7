"""Streaming unit statistics over a data set: brute-force agreement, 8 devices, resuming.

Mutations that fail here: a survey that skips the padding mask (the last short batch would
count zeros), image indices off by a batch after a resume, a state not replicated across
devices (XLA would still sum -- so the 8-device test compares values, not only shapes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from helpers import forward, planted_model
from jaxvis.analysis.units import quantiles, stream, topk
from jaxvis.analysis.units.concept_set import build_concept_set
from jaxvis.analysis.units.survey import State, Spec, survey, survey_step
from jaxvis.core.checkpoints import Checkpoints, ResumeMismatchError

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A plain folder of 11 real photo crops (no labels needed for a survey)."""
    root = build_concept_set(tmp_path_factory.mktemp("survey"), photos=["sample:astronaut", "sample:coffee",
                             "sample:chelsea", "sample:rocket"], crops_per_photo=2, collages=3, size=80)
    return root / "images"


def test_survey_on_mobilenet_matches_brute_force(mobilenet, photos):
    found = survey(mobilenet, "features.4", photos, k=3, size=64, batch_size=4, progress=False)
    from jaxvis.data.datasets import Stream, unlabelled_images

    images = np.concatenate([b.images for b in Stream(unlabelled_images(photos), 64, 11)])
    acts = np.asarray(forward(mobilenet, images, capture="features.4")["features.4"])  # (11, 8, 8, 32)
    peaks = acts.reshape(11, -1, acts.shape[-1]).max(axis=1)
    order = np.argsort(-peaks, axis=0, kind="stable")[:3].T  # (units, 3)
    np.testing.assert_array_equal(np.asarray(found.top.images), order)
    np.testing.assert_allclose(np.asarray(found.top.values), np.take_along_axis(peaks.T, order, 1), rtol=1e-5)
    assert [Path(p).name for p in found.paths] == sorted(p.name for p in photos.iterdir())
    exact = np.quantile(acts.reshape(-1, acts.shape[-1]), 0.9, axis=0, method="inverted_cdf")
    assert np.all(np.abs(found.quantile(0.9) - exact) <= quantiles.ALPHA * np.abs(exact) + 1e-5)


def planted_survey(folder: Path, devices_hint: str) -> dict:
    import jaxvis

    found = survey(planted_model(), "pool", folder, k=4, directions=2, size=64, batch_size=8, progress=False)
    dissected = jaxvis.dissect(planted_model(), "pool", folder.parent, size=64, seg_size=32, batch_size=8,
                               progress=False)
    return {"devices": devices_hint, "iou": dissected.iou.tolist(), "thresholds": dissected.thresholds.tolist(), "images": np.asarray(found.top.images).tolist(),
            "values": np.asarray(found.top.values).tolist(), "counts": np.asarray(found.sketch.counts).sum(0).tolist(),
            "directions": np.asarray(found.directions_top.values).tolist()}


def test_eight_devices_give_the_results_of_one(photos, tmp_path):
    """The batch axis split over 8 forced CPU devices: same top-k, sketch, directions and dissection tally."""
    script = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import jax; "
              f"from test_unit_stream import planted_survey; from pathlib import Path; "
              f"print(json.dumps(planted_survey(Path({str(photos)!r}), str(jax.local_device_count()))))")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    eight = json.loads(done.stdout.strip().splitlines()[-1])
    one = planted_survey(photos, str(jax.local_device_count()))
    assert eight["devices"] == "8" and one["devices"] == "1"
    assert eight["images"] == one["images"] and eight["counts"] == one["counts"]
    np.testing.assert_allclose(eight["values"], one["values"], rtol=1e-6)
    np.testing.assert_allclose(eight["directions"], one["directions"], rtol=1e-5)
    assert eight["thresholds"] == one["thresholds"] and eight["iou"] == one["iou"]


def survey_inputs(model, photos, size=64, batch_size=4):
    from jaxvis.analysis.units.survey import image_batches, image_source

    batches, paths = image_batches(image_source(photos), size, batch_size)
    spec = Spec(topk.directions(jax.random.key(0), 3, 2), "pool", 3)
    state = State(topk.init(3, 3, (16, 16)), topk.init(2, 3, (16, 16)), quantiles.init(3))
    return batches, paths, spec, state


class Crash(Exception):
    pass


def test_an_interrupted_run_resumes_after_the_last_saved_batch(photos, tmp_path):
    model = planted_model()
    batches, paths, spec, state = survey_inputs(model, photos)
    whole = stream.run(survey_step, "unit survey", model, spec, state, batches, batch_size=4, total=len(paths),
                       progress=False)
    store = Checkpoints(tmp_path / "ckpt", {"run": "test"})
    firsts = []

    def crashing(first):
        firsts.append(first)
        for index, batch in enumerate(batches(first)):
            if index == 2:
                raise Crash
            yield batch

    with pytest.raises(Crash):
        stream.run(survey_step, "unit survey", model, spec, state, crashing, batch_size=4, total=len(paths),
                   progress=False, checkpoints=store, every=1)
    assert store.steps()[-1] == 2

    def recording(first):
        firsts.append(first)
        return batches(first)

    resumed = stream.run(survey_step, "unit survey", model, spec, state, recording, batch_size=4,
                         total=len(paths), progress=False, checkpoints=store, every=1)
    assert firsts == [0, 2] and resumed.images == len(paths) - 8
    for a, b in zip(jax.tree_util.tree_leaves(whole.state), jax.tree_util.tree_leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resuming_a_changed_survey_is_refused(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(Checkpoints, "remove", lambda self: None)  # keep the finished run's checkpoints
    model = planted_model()
    survey(model, "pool", photos, k=3, size=64, batch_size=4, progress=False, checkpoint_dir=tmp_path, every=1)
    with pytest.raises(ResumeMismatchError, match="k: 3 -> 5"):
        survey(model, "pool", photos, k=5, size=64, batch_size=4, progress=False, checkpoint_dir=tmp_path)


def test_empty_and_unreadable_folders_are_clear_errors(tmp_path):
    from jaxvis.data.datasets import DatasetError

    model = planted_model()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found in .*empty"):
        survey(model, "pool", tmp_path / "empty", size=64, progress=False)
    (tmp_path / "broken").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "broken" / name).write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="none of the 2 images could be read"):
        survey(model, "pool", tmp_path / "broken", size=64, progress=False)
