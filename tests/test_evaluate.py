"""Robust accuracy over a labelled folder: foolbox's 20 ImageNet photos (labels in their file names),
recounted here from what the attack did to each photo (evaluate must hand it every photo, in order); transfer to
EfficientNet-Lite0."""

from __future__ import annotations

import functools
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

import jaxvis
from jaxvis.core.errors import MethodOptionError
from jaxvis.data.datasets import labelled_images, stream
from jaxvis.methods.attacks import cw, evaluate, fgsm, pgd
from jaxvis.methods.attacks.evaluate import self_labelled
from jaxvis.models.model import logits

EPS = (1 / 255, 4 / 255)
SIZE = 160  # evaluate counts the same at any size; half the pixels of 224 (MobileNetV2: 17 of 20 right, Lite0: 15)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of foolbox's 20 ImageNet photos (its data folder also holds CIFAR and MNIST samples)."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox (its labelled photos) is not installed: pip install --no-deps foolbox==3.3.4")
    folder = tmp_path_factory.mktemp("imagenet")
    for photo in sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg")):
        shutil.copy(photo, folder)
    return folder


@pytest.fixture(scope="module")
def all_photos(photos):
    """The 20 photos and labels in one array, read as evaluate reads them."""
    (batch,) = list(stream(photos, SIZE, 20))
    return batch


@pytest.fixture(scope="module")
def lite0():
    return jaxvis.load("efficientnet_lite0")


def recording(attack):
    """`attack` as evaluate sees it (same name and signature), keeping every call: its images, labels, options
    and result. The recount below reads the attack's own results, so the attack runs once per batch, and
    checks that evaluate gave it every photo, in order, with its label."""
    calls = []

    @functools.wraps(attack)
    def recorded(model, images, labels, **options):
        outcome = attack(model, images, labels, **options)
        recorded.sweeps += isinstance(outcome, list)
        options.pop("config", None)  # evaluate's own: no progress bar of the attack's
        if isinstance(outcome, list):  # an eps sweep: one call, a result per eps (each checked as a call)
            calls.extend((np.asarray(images), np.asarray(labels), {**options, "eps": eps}, one)
                         for eps, one in zip(options["eps"], outcome))
        else:
            calls.append((np.asarray(images), np.asarray(labels), options, outcome))
        return outcome

    recorded.sweeps = 0
    return recorded, calls


def attacked_in_order(calls, batch, size: int, **options):
    """The calls' results (padding cut off), after checking that they attacked `batch` in batches of `size`
    (the last padded with repeats of its first image) with `options`."""
    starts = range(0, len(batch.images), size)
    assert len(calls) == len(starts), [c[2] for c in calls]
    for (images, labels, given, _), start in zip(calls, starts):
        count = min(size, len(batch.images) - start)
        assert images.shape[0] == size and given == options
        np.testing.assert_array_equal(images[:count], batch.images[start:start + count])
        np.testing.assert_array_equal(images[count:], np.repeat(batch.images[start:start + 1], size - count, 0))
        np.testing.assert_array_equal(labels[:count], batch.labels[start:start + count])
    return [(outcome, min(size, len(batch.images) - start)) for (*_, outcome), start in zip(calls, starts)]


def joined(results, field: str) -> np.ndarray:
    return np.concatenate([np.asarray(getattr(outcome, field))[:count] for outcome, count in results])


def test_robust_accuracy_is_what_the_attack_does_to_each_image(mobilenet, photos, all_photos, capsys):
    """Batches of 8 (the last of 4, padded): per eps the images the model gets right clean and FGSM at that
    eps does not fool, recounted from what FGSM did to each photo; every eps of a batch in one sweep."""
    attack, calls = recording(fgsm)
    report = evaluate(mobilenet, photos, attack, eps=EPS, batch_size=8, size=SIZE)
    right = logits(mobilenet, all_photos.images).argmax(-1) == all_photos.labels
    assert report.total == 20 and report.clean_correct == int(right.sum()) and report.skipped == []
    assert 0.5 < report.clean_accuracy <= 1.0
    for eps in EPS:
        results = attacked_in_order([c for c in calls if c[2] == {"eps": eps}], all_photos, 8, eps=eps)
        robust = right & ~joined(results, "success")
        assert report.robust[eps] == int(robust.sum())
        assert report.failed[eps] == [p for p, r in zip(all_photos.paths, robust) if r]
    assert report.robust_accuracy(EPS[1]) <= report.robust_accuracy(EPS[0]) < report.clean_accuracy
    assert "fgsm on mobilenet_v2" in capsys.readouterr().err  # the progress bar
    assert attack.sweeps == 3  # one call per batch: every eps in one program
    table = report.table().splitlines()
    assert table[0].startswith("| eps | mobilenet_v2 robust acc.") and table[3].startswith("| 1/255 |")


def test_a_minimal_attack_runs_once_and_is_thresholded_at_each_eps(mobilenet, photos, all_photos):
    """C&W's L2 norms read at each eps: robust where it found nothing smaller."""
    options = dict(binary_search_steps=1, steps=30, initial_const=1.0, abort_early=False)
    radii = (0.9, 1.5)
    attack, calls = recording(cw)
    report = evaluate(mobilenet, photos, attack, eps=radii, batch_size=10, size=SIZE, progress=False, **options)
    right = logits(mobilenet, all_photos.images).argmax(-1) == all_photos.labels
    results = attacked_in_order(calls, all_photos, 10, **options)  # once per batch, not once per radius
    success, size = joined(results, "success"), joined(results, "norm")
    for radius in radii:
        assert report.robust[radius] == int((right & ~(success & (size <= radius))).sum())
    assert report.robust[1.5] < report.robust[0.9] < report.clean_correct, (size, success)


def test_transfer_to_another_network(mobilenet, lite0, photos, all_photos):
    """PGD on MobileNetV2, judged by EfficientNet-Lite0: its accuracy on the adversarial images, and the share
    of MobileNetV2's successes (on images both get right) that also fool it -- recounted here."""
    attack, calls = recording(pgd)
    report = evaluate(mobilenet, photos, attack, eps=(8 / 255,), batch_size=20, size=SIZE, transfer_to=[lite0],
                      progress=False, steps=10, random_start=False)
    ((attacked, _),) = attacked_in_order(calls, all_photos, 20, eps=8 / 255, steps=10, random_start=False)
    labels = all_photos.labels
    source_right = logits(mobilenet, all_photos.images).argmax(-1) == labels
    other_right = logits(lite0, all_photos.images).argmax(-1) == labels
    other_after = logits(lite0, attacked.images).argmax(-1) == labels
    counts = report.transfer["efficientnet_lite0"][8 / 255]
    assert report.transfer_clean_correct["efficientnet_lite0"] == int(other_right.sum())
    assert counts.correct == int(other_after.sum())
    eligible = source_right & attacked.success & other_right
    assert counts.fooled_by_source == int(eligible.sum()) > 10
    assert counts.transferred == int((eligible & ~other_after).sum())
    assert 0.0 <= report.transfer_rate("efficientnet_lite0", 8 / 255) <= 1.0
    assert "transfer to efficientnet_lite0" in report.table()


def test_unreadable_files_are_counted_and_left_out(mobilenet, photos, tmp_path):
    for item in labelled_images(photos)[:3]:
        (tmp_path / item.path.name).write_bytes(item.path.read_bytes())
    (tmp_path / "broken_7.jpg").write_bytes(b"not a jpeg")
    report = evaluate(mobilenet, tmp_path, fgsm, eps=[1 / 255], size=SIZE, progress=False)
    assert report.total == 3 and [p.name for p, _ in report.skipped] == ["broken_7.jpg"]


@pytest.mark.parametrize("options, message", [
    (dict(eps=[]), "at least one perturbation budget"),
    (dict(eps=[1 / 255], targets=[1]), "untargeted"),
    (dict(eps=[0.5], attack=cw, norm="linf"), "minimizes the L2 norm"),
])
def test_bad_evaluation_requests(mobilenet, photos, options, message):
    attack = options.pop("attack", fgsm)
    with pytest.raises(MethodOptionError, match=message):
        evaluate(mobilenet, photos, attack, progress=False, **options)


def test_scikit_image_photos_labelled_with_the_models_own_predictions(mobilenet):
    """No labels: the model's clean answers are the labels (100% clean accuracy by construction); PGD at 2/255
    moves it off every one of them, at 1/255 FGSM off some."""
    batches = self_labelled(mobilenet, [f"sample:{n}" for n in ("chelsea", "coffee", "astronaut", "rocket")],
                            size=SIZE, batch_size=3)
    assert [len(b.labels) for b in batches] == [3, 1]
    report = evaluate(mobilenet, batches, pgd, eps=[2 / 255], progress=False, steps=10)
    assert report.clean_accuracy == 1.0 and report.robust_accuracy(2 / 255) == 0.0
    assert report.failed[2 / 255] == []
