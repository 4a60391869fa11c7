"""Adversarial attacks: agreement with torchattacks on the same weights and photos, the eps ball, early
stopping, one program for every eps and step count, and clear errors for bad requests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from helpers import forward
from jaxvis.attacks import fgsm, pgd
from jaxvis.attacks.pgd import RUN as PGD_PROGRAM
from jaxvis.attacks.common import cross_entropy
from jaxvis.errors import InvalidImageError, MethodOptionError

SAMPLES = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def batch(mobilenet):
    """Four of scikit-image's photos at 224 px, labelled with the model's own clean predictions."""
    from jaxvis.io import center_crop_resize, read_image

    images = np.stack([center_crop_resize(read_image(f"sample:{n}"), 224) for n in SAMPLES]).astype(np.float32)
    return images, np.asarray(forward(mobilenet, images)).argmax(-1)


class Normalized(torch.nn.Module):
    """A torch classifier of [0, 1] NCHW images: the ImageNet normalization, then the network."""

    def __init__(self, net: torch.nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean)[:, None, None])
        self.register_buffer("std", torch.tensor(std)[:, None, None])

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


@pytest.fixture(scope="module")
def reference(mobilenet):
    """torchvision's MobileNetV2 with the very weight file jaxvis loaded, taking [0, 1] NCHW images."""
    import torchvision

    import converters

    net = torchvision.models.mobilenet_v2()
    path = converters.find_weights(mobilenet.arch.pretrained, download=False).path
    net.load_state_dict(torch.load(path, weights_only=True))
    return Normalized(net, mobilenet.arch.mean, mobilenet.arch.std).eval()


def torchattacks_run(attack, images, labels):
    adversarial = attack(torch.tensor(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.long))
    return adversarial.permute(0, 2, 3, 1).numpy()


def torch_predict(reference, images):
    with torch.no_grad():
        return reference(torch.tensor(images).permute(0, 3, 1, 2)).argmax(1).numpy()


def torch_input_gradient(reference, images, labels):
    """d cross-entropy / d image from torch (the sign FGSM takes), NHWC."""
    x = torch.tensor(images).permute(0, 3, 1, 2).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(reference(x), torch.tensor(labels, dtype=torch.long), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.permute(0, 2, 3, 1).numpy()


def test_fgsm_matches_torchattacks_up_to_sign_ties(mobilenet, reference, batch):
    """Same weights, photos and eps: the same images, except where the gradient is a near-tie at zero."""
    import torchattacks

    images, labels = batch
    eps = 2 / 255
    ours = fgsm(mobilenet, images, labels, eps=eps, early_stop=False)
    theirs = torchattacks_run(torchattacks.FGSM(reference, eps=eps), images, labels)
    differ = np.abs(ours.images - theirs) > 1e-5
    assert differ.mean() < 1e-3, differ.mean()
    # Where the images differ, torch's gradient is within the float discrepancy between jax's and torch's
    # gradients (at most 2% of the largest component): a near-tie at zero broken the other way.
    theirs_grad = torch_input_gradient(reference, images, labels)
    ours_grad = np.asarray(jax.grad(lambda x: cross_entropy(mobilenet(x), jnp.asarray(labels)).sum())(images))
    largest = np.abs(theirs_grad).reshape(len(images), -1).max(1)
    noise = np.abs(ours_grad - theirs_grad).reshape(len(images), -1).max(1)
    assert (noise < 2e-2 * largest).all()  # float32 through 53 layers; worst on confident images
    image_of = np.broadcast_to(np.arange(len(images))[:, None, None, None], differ.shape)[differ]
    assert (np.abs(theirs_grad[differ]) <= 2e-2 * largest[image_of]).all()
    np.testing.assert_array_equal(ours.success, torch_predict(reference, theirs) != labels)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_pgd_step_matches_torchattacks(mobilenet, reference, batch, norm):
    """Step k from torchattacks' image after k - 1 steps gives torchattacks' image after k steps. (Whole runs
    drift apart: a sign tie broken differently at one step changes every later gradient a little, and on
    confident images float32 noise is ~1% of the gradient, enough to flip many small components.)"""
    import torchattacks

    from jaxvis.attacks.pgd import gradient_step, project

    images, labels = batch
    eps, step_size = (2 / 255, 0.5 / 255) if norm == "linf" else (0.5, 0.1)
    make = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    grad = jax.jit(jax.grad(lambda m, x: cross_entropy(m(x), jnp.asarray(labels)).sum(), argnums=1))
    previous = images
    for steps in range(1, 6):
        theirs = torchattacks_run(make(reference, eps=eps, alpha=step_size, steps=steps, random_start=False),
                                  images, labels)
        ours = np.asarray(project(previous + step_size * gradient_step(grad(mobilenet, previous), norm), images,
                                  eps, norm))
        difference = np.abs(ours - theirs)
        if norm == "linf":
            assert (difference > 1e-5).mean() < 1e-3, (steps, (difference > 1e-5).mean())
        else:
            assert difference.max() < 1e-3, (steps, difference.max())  # of a 0.1 step
        previous = theirs
    whole = pgd(mobilenet, images, labels, norm=norm, eps=eps, step_size=step_size, steps=5, random_start=False,
                early_stop=False)
    assert whole.steps.tolist() == [5] * len(images)
    np.testing.assert_array_equal(whole.success, torch_predict(reference, theirs) != labels)


@pytest.mark.parametrize("norm, eps", [("linf", 8 / 255), ("l2", 1.0)])
def test_pgd_stays_in_the_eps_ball_and_fools_the_model(mobilenet, batch, norm, eps):
    images, labels = batch
    result = pgd(mobilenet, images, labels, norm=norm, eps=eps, steps=10, seed=3)
    delta = (result.images - images).reshape(len(images), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.sqrt((delta.astype(np.float64) ** 2).sum(1))
    assert (size <= eps + 1e-5).all() and result.images.min() >= 0 and result.images.max() <= 1
    np.testing.assert_allclose(result.norm, size, rtol=1e-4, atol=1e-6)
    predicted = np.asarray(forward(mobilenet, result.images)).argmax(-1)  # an independent forward
    assert (predicted != labels).all() and result.success.all()


def test_targeted_pgd_reaches_its_targets(mobilenet, batch):
    images, labels = batch
    targets = np.array([1, 207, 980, 309])
    result = pgd(mobilenet, images, labels, targets=targets, eps=8 / 255, steps=20)
    np.testing.assert_array_equal(np.asarray(forward(mobilenet, result.images)).argmax(-1), targets)


def test_a_finished_image_stops_changing(mobilenet, batch):
    """Image 0 is given a label the model does not predict: it already fools the model and is left alone."""
    images, labels = batch
    wrong = labels.copy()
    wrong[0] = (labels[0] + 1) % 1000
    result = pgd(mobilenet, images, wrong, eps=2 / 255, step_size=0.25 / 255, steps=6, random_start=False)
    assert result.steps[0] == 0 and np.array_equal(result.images[0], images[0])
    assert (result.steps[1:] >= 1).all() and (result.steps <= 6).all()
    moved = pgd(mobilenet, images, wrong, eps=2 / 255, step_size=0.25 / 255, steps=6, random_start=False,
                early_stop=False)
    assert moved.steps.tolist() == [6] * len(images) and not np.array_equal(moved.images[0], images[0])


def test_restarts_keep_the_best_start(mobilenet, batch):
    """Restart 0 is the single run (same seed); each image keeps a later start only where it succeeds, or fails
    with a higher loss (judged by an independent forward)."""
    images, labels = batch
    budget = dict(eps=0.25 / 255, step_size=0.25 / 255, steps=1, seed=1)
    one = pgd(mobilenet, images, labels, **budget)
    four = pgd(mobilenet, images, labels, restarts=4, **budget)

    def loss(result):
        logits = jnp.asarray(forward(mobilenet, result.images))
        return np.asarray(cross_entropy(logits, jnp.asarray(labels)))

    assert (four.success >= one.success).all()
    both_failed = ~four.success & ~one.success
    assert (loss(four)[both_failed] >= loss(one)[both_failed] - 1e-6).all()
    assert not np.array_equal(four.images, one.images)  # some image took another start


def test_another_eps_or_step_count_runs_the_compiled_program(mobilenet, batch):
    images, labels = batch
    pgd(mobilenet, images, labels, eps=2 / 255, steps=2)
    before = PGD_PROGRAM.compilations
    pgd(mobilenet, images, labels, eps=4 / 255, step_size=1 / 255, steps=3, seed=5)
    fgsm(mobilenet, images, labels, eps=1 / 255, early_stop=True)  # one step of the same program
    assert PGD_PROGRAM.compilations == before


@pytest.mark.parametrize("change, message", [
    (dict(eps=-0.1), "eps must be in"),
    (dict(eps=8.0), "write 8/255"),
    (dict(norm="l1"), "unknown norm 'l1'"),
    (dict(steps=0), "steps must be at least 1"),
    (dict(step_size=0.0), "step size must be positive"),
    (dict(targets="same"), "target is its true label"),
    (dict(labels="short"), "one class per image"),
    (dict(restarts=0), "restarts must be at least 1"),
])
def test_a_bad_attack_request_says_what_is_wrong(mobilenet, batch, change, message):
    images, labels = batch
    options = dict(change)
    if options.get("targets") == "same":
        options["targets"] = labels
    given = labels[:2] if options.pop("labels", None) == "short" else labels
    with pytest.raises(MethodOptionError, match=message):
        pgd(mobilenet, images, given, **options)


def test_images_outside_the_unit_range_are_refused(mobilenet, batch):
    images, labels = batch
    with pytest.raises(InvalidImageError, match=r"in \[0, 1\].*255"):
        fgsm(mobilenet, images * 255, labels)
