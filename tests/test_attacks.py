"""Adversarial attacks: agreement with torchattacks on the same weights and photos, the eps ball, early
stopping, one program for every eps and step count, and clear errors for bad requests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from helpers import forward, torch_pretrained_mobilenet_v2
from jaxvis.core.errors import InvalidImageError, MethodOptionError
from jaxvis.engine.plan import RUN_CHUNK as ENGINE_PROGRAM
from jaxvis.methods.attacks import apgd, cw, fgsm, lbfgs, pgd
from jaxvis.methods.attacks.common import cross_entropy

SAMPLES = ("chelsea", "coffee", "astronaut", "rocket")
SIZE = 112  # the attacks and their torch references do the same work at any size; this one is 4x cheaper than 224


def photo_batch(model, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Four of scikit-image's photos at `size` px, labelled with the model's own clean predictions."""
    from jaxvis.data.io import center_crop_resize, read_image

    images = np.stack([center_crop_resize(read_image(f"sample:{n}"), size) for n in SAMPLES]).astype(np.float32)
    return images, np.asarray(forward(model, images)).argmax(-1)


@pytest.fixture(scope="module")
def batch(mobilenet):
    return photo_batch(mobilenet, SIZE)


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
    return Normalized(torch_pretrained_mobilenet_v2(mobilenet), mobilenet.arch.mean, mobilenet.arch.std).eval()


def torchattacks_run(attack, images, labels):
    adversarial = attack(torch.tensor(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.long))
    return adversarial.detach().permute(0, 2, 3, 1).numpy()


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
    ours_grad = np.asarray(jax.jit(jax.grad(lambda m, x: cross_entropy(m(x), jnp.asarray(labels)).sum(), argnums=1))(
        mobilenet, images))
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

    from jaxvis.methods.attacks.pgd import gradient_step, project

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
    before = ENGINE_PROGRAM.compilations
    pgd(mobilenet, images, labels, eps=4 / 255, step_size=1 / 255, steps=3, seed=5)
    fgsm(mobilenet, images, labels, eps=1 / 255, early_stop=True)  # one step of the same program
    assert ENGINE_PROGRAM.compilations == before


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


# --- Carlini–Wagner L2 ---------------------------------------------------------------------------


def foolbox_model(reference):
    foolbox = pytest.importorskip("foolbox")
    return foolbox, foolbox.PyTorchModel(reference, bounds=(0, 1))


def test_cw_perturbations_are_no_larger_than_foolboxs(mobilenet, reference, batch):
    """The same search (4 rounds of 100 Adam steps from c = 0.01) on the same weights and photos: per image
    the same success and the L2 norm foolbox 3's `L2CarliniWagnerAttack` (torch backend) finds, within 1%
    (never more than 1% larger), and the same median."""
    foolbox, fmodel = foolbox_model(reference)
    images, labels = batch
    options = dict(binary_search_steps=4, steps=100, initial_const=1e-2)
    ours = cw(mobilenet, images, labels, **options)
    attack = foolbox.attacks.L2CarliniWagnerAttack(**options)
    x, y = torch.tensor(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels, dtype=torch.long)
    _, clipped, success = attack(fmodel, x, foolbox.criteria.Misclassification(y), epsilons=None)
    theirs = clipped.detach().permute(0, 2, 3, 1).numpy()
    their_norm = np.sqrt(((theirs - images) ** 2).reshape(len(images), -1).sum(1))
    np.testing.assert_array_equal(ours.success, success.numpy())
    assert ours.success.all()
    assert (ours.norm <= their_norm * 1.01 + 1e-3).all(), (ours.norm, their_norm)
    assert (ours.norm >= their_norm * 0.99 - 1e-3).all(), (ours.norm, their_norm)  # the same search: the same result
    assert abs(np.median(ours.norm) - np.median(their_norm)) <= 0.01 * np.median(their_norm)
    np.testing.assert_allclose(ours.norm, np.sqrt(((ours.images - images) ** 2).reshape(4, -1).sum(1)), rtol=1e-5)
    assert (torch_predict(reference, ours.images) != labels).all()  # fooled in torch too


def test_targeted_cw_reaches_its_targets_in_the_box(mobilenet, reference, batch):
    images, labels = batch
    targets = np.asarray([1, 207, 980, 309])
    result = cw(mobilenet, images, labels, targets=targets, binary_search_steps=2, steps=60, initial_const=1.0)
    assert result.success.all() and result.images.min() >= 0.0 and result.images.max() <= 1.0
    np.testing.assert_array_equal(torch_predict(reference, result.images), targets)


def test_cw_returns_an_image_it_never_fooled_unchanged(mobilenet, batch):
    """A margin κ no logit gap can reach in 3 steps: nothing is fooled with it, and nothing is returned changed."""
    images, labels = batch
    result = cw(mobilenet, images, labels, binary_search_steps=1, steps=3, kappa=1e4)
    assert not result.success.any()
    np.testing.assert_array_equal(result.images, images)
    assert (result.norm == 0).all()


def test_cw_abort_early_stops_a_stalled_image(mobilenet, batch):
    images, labels = batch
    patient = cw(mobilenet, images, labels, binary_search_steps=1, steps=40, initial_const=1e-6, abort_early=False)
    hasty = cw(mobilenet, images, labels, binary_search_steps=1, steps=40, initial_const=1e-6)
    assert (patient.steps == 40).all() and (hasty.steps < 40).all()


# --- Szegedy's L-BFGS ----------------------------------------------------------------------------


def test_lbfgs_finds_perturbations_smaller_than_one_fgsm_level(mobilenet, reference, batch):
    """Untargeted L-BFGS fools every photo with an L2 norm below what one intensity level of FGSM spends
    (1/255 on every pixel: L2 = √(3·S²)/255 ≈ 0.76 at 112 px), checked in torch."""
    images, labels = batch
    result = lbfgs(mobilenet, images, labels, search_steps=3, steps=10)
    assert result.success.all()
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert (torch_predict(reference, result.images) != labels).all()
    level = fgsm(mobilenet, images, labels, eps=1 / 255, early_stop=False).images - images
    assert (result.norm < np.sqrt((level**2).reshape(len(images), -1).sum(1)) / 3).all(), result.norm


def test_targeted_lbfgs_reaches_its_targets(mobilenet, reference, batch):
    """...in the program the untargeted attack runs in (whether it targets is a runtime value)."""
    images, labels = batch
    targets = np.asarray([1, 207, 980, 309])
    result = lbfgs(mobilenet, images, labels, targets=targets, search_steps=3, steps=10)
    assert result.success.all()
    np.testing.assert_array_equal(torch_predict(reference, result.images), targets)
    before = ENGINE_PROGRAM.compilations
    lbfgs(mobilenet, images, labels, search_steps=1, steps=2)  # untargeted (its success: the test above)
    assert ENGINE_PROGRAM.compilations == before


# --- APGD-CE -------------------------------------------------------------------------------------


def torchattacks_apgd_start(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """torchattacks' random start for APGD (NCHW), drawn from torch's generator seeded as its `perturb` seeds it."""
    torch.manual_seed(0)
    if norm == "linf":
        t = 2 * torch.rand(x.shape, dtype=x.dtype) - 1
        start = x + eps * t / t.reshape(len(x), -1).abs().max(1)[0].reshape(-1, 1, 1, 1)
    else:
        t = torch.randn(x.shape, dtype=x.dtype)
        start = x + eps * t / ((t**2).sum(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-12)
    return start.clamp(0, 1)


def apgd_from(model, images, labels, eps, norm, steps, start):
    """APGD without early stopping (the reference's) from the given start: images, steps moved, logits."""
    from jaxvis.engine.run_config import RunConfig
    from jaxvis.methods.attacks.apgd import run

    adversarial, used, logits = run(model, images, labels, None, [eps], norm, steps, 1, False,
                                    RunConfig(progress=False), starts=np.asarray(start)[None])
    return adversarial[0], used[0], logits[0]


def test_apgd_first_step_matches_torchattacks_up_to_sign_ties(mobilenet, reference, batch):
    """float32, from torchattacks' own random start: the first step gives its images up to sign ties.
    torchattacks returns an image it did not fool unchanged; the images it fooled must agree."""
    import torchattacks

    images, labels = batch
    eps = 2 / 255
    start = torchattacks_apgd_start(torch.tensor(images).permute(0, 3, 1, 2), eps, "linf").permute(0, 2, 3, 1)
    ours, _, logits = apgd_from(mobilenet, images, labels, eps, "linf", 1, start.numpy())
    theirs = torchattacks_run(torchattacks.APGD(reference, norm="Linf", eps=eps, steps=1, seed=0), images, labels)
    fooled = torch_predict(reference, theirs) != labels
    np.testing.assert_array_equal(np.asarray(logits).argmax(-1) != labels, fooled)
    assert fooled.any()
    np.testing.assert_array_equal(theirs[~fooled], images[~fooled])
    assert (np.abs(np.asarray(ours)[fooled] - theirs[fooled]) > 1e-5).mean() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps, steps", [("linf", 1 / 255, 5), ("l2", 0.1, 12)])
def test_apgd_follows_torchattacks_step_for_step_in_float64(mobilenet, reference, batch, norm, eps, steps):
    """In float64, where jax's and torch's gradients agree to ~1e-12, whole runs with a checkpoint after
    nearly every step (step-size halving, returns to the best point, momentum) give torchattacks' images
    to 1e-8 -- so any departure from its arithmetic shows. Chelsea and coffee at 112 px (the batch's first
    two: the same random starts as in the 4-photo batch); each image's run is independent of the others',
    and torch's float64 network is this test's cost (8x less than 4 photos at 224 px). L-infinity is kept to
    5 steps: at 224 px one sign tie survives even float64 on chelsea at the 6th, and the runs part from there.
    At 112 px the other two part early (astronaut by a whole 1/255 level in L-infinity from step 3: a sign
    tie; rocket by 4.5e-5 in L2), while every fooled run of chelsea and coffee agrees to 1e-10."""
    import dataclasses

    import torchattacks

    images, labels = (a[:2] for a in batch)  # chelsea, coffee
    images = images.astype(np.float64)
    x = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
    net = reference.double()
    try:
        start = torchattacks_apgd_start(x, eps, norm).permute(0, 2, 3, 1).numpy()
        torch.set_default_dtype(torch.float64)  # torchattacks' internal buffers
        attack = torchattacks.APGD(net, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=steps, seed=0)
        theirs = attack(x, torch.tensor(labels, dtype=torch.long)).detach().permute(0, 2, 3, 1).numpy()
        fooled = torch_predict(net, theirs) != labels
    finally:
        torch.set_default_dtype(torch.float32)
        reference.float()
    with jax.enable_x64(True):
        model = dataclasses.replace(mobilenet, variables=jax.tree.map(lambda v: jnp.asarray(v, jnp.float64),
                                                                      mobilenet.variables))
        ours, _, logits = apgd_from(model, images, labels, eps, norm, steps, start)
        assert ours.dtype == np.float64
        ours_fooled = np.asarray(logits).argmax(-1) != labels
    np.testing.assert_array_equal(ours_fooled, fooled)
    assert fooled.any()
    np.testing.assert_array_equal(theirs[~fooled], images[~fooled])
    assert np.abs(ours[fooled] - theirs[fooled]).max() < 1e-8


def test_apgd_checkpoint_halves_where_either_condition_of_algorithm_1_holds():
    """Four images at a checkpoint of an 8-step window (ρ·8 = 6 rises): (a) 6 rises, oscillating;
    (b) 7 rises, not halved last time, best loss not risen since: stuck; (c) as (b) but the best loss rose;
    (d) as (b) but halved last time. (a) and (b) halve and return to their best point; (c), (d) go on."""
    from jaxvis.methods.attacks.apgd import ApgdState, checkpoint

    x, best = jnp.zeros((4, 2, 2, 3)), jnp.ones((4, 2, 2, 3))
    four = jnp.zeros(4)
    s = ApgdState(count=jnp.int32(8), previous=x, best=best, best_grad=best + 2.0,
                  best_loss=jnp.asarray([1.5, 2.0, 2.5, 2.0]), best_logits=jnp.zeros((4, 3)), adversarial=x,
                  adversarial_logits=jnp.zeros((4, 3)), fooled=four > 0, moved_last=four == 0,
                  step_size=jnp.full(4, 0.4), last_loss=four, rises=jnp.asarray([6.0, 7.0, 7.0, 7.0]),
                  since_check=jnp.int32(8), window=jnp.int32(8), halved_last=jnp.asarray([False, False, False, True]),
                  best_loss_at_check=jnp.asarray([1.0, 2.0, 2.0, 2.0]), used=four.astype(int))
    per_image = jax.vmap(checkpoint, in_axes=(ApgdState(*[0 if np.ndim(v) else None for v in s]), 0, 0, None, None))
    after, after_x, after_grad = per_image(s, x, x + 2.0, jnp.int32(3), jnp.int32(6))
    halved = np.asarray([True, True, False, False])
    np.testing.assert_allclose(after.step_size, np.where(halved, 0.2, 0.4))
    np.testing.assert_array_equal(np.asarray(after_x)[:, 0, 0, 0], halved.astype(float))
    np.testing.assert_array_equal(np.asarray(after_grad)[:, 0, 0, 0], np.where(halved, 3.0, 2.0))
    np.testing.assert_array_equal(after.halved_last, halved)
    np.testing.assert_array_equal(after.best_loss_at_check, s.best_loss)
    assert (np.asarray(after.window) == 6).all() and not np.asarray(after.since_check).any()
    assert not np.asarray(after.rises).any()
    assert (np.asarray(per_image(s._replace(window=jnp.int32(10)), x, x, jnp.int32(3), jnp.int32(6))[0].window)
            == 7).all()


@pytest.mark.parametrize("norm, eps", [("linf", 4 / 255), ("l2", 0.5)])
def test_apgd_stays_in_the_eps_ball_and_fools_the_model(mobilenet, reference, batch, norm, eps):
    images, labels = batch
    result = apgd(mobilenet, images, labels, norm=norm, eps=eps, steps=10)
    assert result.success.all()
    assert (result.norm <= eps * (1 + 1e-5)).all()
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert (result.steps < 10).all()  # fooled early, then frozen (early stopping)
    assert (torch_predict(reference, result.images) != labels).all()


def test_targeted_apgd_and_another_budget_reuse_the_program(mobilenet, reference, batch):
    images, labels = batch
    targets = np.asarray([1, 207, 980, 309])
    apgd(mobilenet, images, labels, targets=targets, eps=4 / 255, steps=5)
    before = ENGINE_PROGRAM.compilations
    result = apgd(mobilenet, images, labels, targets=targets, eps=8 / 255, steps=30, seed=2)
    assert ENGINE_PROGRAM.compilations == before
    assert result.success.all()
    np.testing.assert_array_equal(torch_predict(reference, result.images), targets)


@pytest.mark.parametrize("attack, change, message", [
    ("cw", dict(kappa=-1.0), "kappa"),
    ("cw", dict(binary_search_steps=0), "binary_search_steps must be at least 1"),
    ("cw", dict(learning_rate=0.0), "learning_rate must be positive"),
    ("cw", dict(steps=0), "steps must be at least 1"),
    ("lbfgs", dict(search_steps=0), "search_steps must be at least 1"),
    ("lbfgs", dict(initial_const=-1.0), "initial_const must be positive"),
    ("apgd", dict(eps=8.0), "write 8/255"),
    ("apgd", dict(norm="l1"), "unknown norm 'l1'"),
    ("apgd", dict(restarts=0), "restarts must be at least 1"),
])
def test_a_bad_request_to_the_other_attacks_says_what_is_wrong(mobilenet, batch, attack, change, message):
    images, labels = batch
    with pytest.raises(MethodOptionError, match=message):
        {"cw": cw, "lbfgs": lbfgs, "apgd": apgd}[attack](mobilenet, images, labels, **change)


ROBUSTNESS_EPS = [0.25 / 255, 0.5 / 255, 0.75 / 255, 1 / 255, 1.5 / 255, 2 / 255, 3 / 255, 4 / 255]


def test_an_eps_sweep_is_one_program_whose_every_point_is_its_own_run(mobilenet, batch):
    """A robustness curve: PGD at 8 eps values in one program (one compilation for the sweep), each point equal
    to the separate run at that eps with the same seed. Mutation that fails it: every cell given the first eps."""
    images, labels = batch
    budget = dict(step_size=0.25 / 255, steps=3, seed=2)
    before = ENGINE_PROGRAM.compilations
    swept = pgd(mobilenet, images, labels, eps=ROBUSTNESS_EPS, **budget)
    assert ENGINE_PROGRAM.compilations - before <= 1 and len(swept) == len(ROBUSTNESS_EPS)
    alone = [pgd(mobilenet, images, labels, eps=eps, **budget) for eps in ROBUSTNESS_EPS]
    for eps, cell, single in zip(ROBUSTNESS_EPS, swept, alone):
        np.testing.assert_array_equal(cell.success, single.success)
        np.testing.assert_array_equal(cell.steps, single.steps)
        assert (np.abs(cell.images - images) <= eps + 1e-6).all()
        # sign steps: a gradient component near zero may take the other sign in a program of another batch size
        # (float32 noise), and a flip moves later steps a little: 0.13% of the pixels differ at 4/255 here
        assert (np.abs(cell.images - single.images) > 1e-5).mean() < 1e-2, eps
    curve = [1 - cell.success.mean() for cell in swept]
    assert curve == [1 - single.success.mean() for single in alone]
    assert curve[0] > curve[-1]  # a larger ball fools more images


def interrupted_at_the_first_save(monkeypatch, run) -> None:
    """`run()` stopped (KeyboardInterrupt) right after it saves its first checkpoint."""
    from jaxvis.core.checkpoints import Checkpoints

    save = Checkpoints.save

    def save_then_stop(self, step, *args):
        save(self, step, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoints, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(Checkpoints, "save", save)


def test_pgd_with_restarts_continues_after_an_interruption_and_refuses_a_changed_run(mobilenet, batch, tmp_path,
                                                                                     monkeypatch, capsys):
    """PGD through the engine checkpoints: a run with restarts interrupted after step 2 continues from that step
    to the images of an uninterrupted run; another eps or restart count is refused, naming it."""
    from jaxvis.core.checkpoints import ResumeMismatchError
    from jaxvis.engine.run_config import RunConfig

    images, labels = batch
    budget = dict(eps=1 / 255, step_size=0.25 / 255, steps=4, restarts=2)
    whole = pgd(mobilenet, images, labels, config=RunConfig(seed=1, progress=False), **budget)
    config = RunConfig(seed=1, progress=False, checkpoint_dir=tmp_path / "pgd", checkpoint_every=2)
    interrupted_at_the_first_save(monkeypatch, lambda: pgd(mobilenet, images, labels, config=config, **budget))
    capsys.readouterr()
    continued = pgd(mobilenet, images, labels, config=config, **budget)
    assert "step_2" in capsys.readouterr().err
    np.testing.assert_array_equal(continued.images, whole.images)
    np.testing.assert_array_equal(continued.steps, whole.steps)
    with pytest.raises(ResumeMismatchError, match="eps"):
        pgd(mobilenet, images, labels, config=config, **dict(budget, eps=2 / 255))
    with pytest.raises(ResumeMismatchError, match="units"):
        pgd(mobilenet, images, labels, config=config, **dict(budget, restarts=3))


def test_an_apgd_eps_sweep_gives_each_eps_its_own_run(mobilenet, batch):
    """APGD at 3 eps values in one program: per eps, the same successes and steps as the separate run (each
    image's start drawn from its own key, scaled onto its cell's sphere). Mutation that fails it: the update
    (`Apgd`) of every cell given the first eps."""
    images, labels = batch
    values = [0.1 / 255, 0.5 / 255, 4 / 255]
    swept = apgd(mobilenet, images, labels, eps=values, steps=4, seed=1)
    for eps, cell in zip(values, swept):
        alone = apgd(mobilenet, images, labels, eps=eps, steps=4, seed=1)
        np.testing.assert_array_equal(cell.success, alone.success)
        np.testing.assert_array_equal(cell.steps, alone.steps)
        assert (cell.norm <= eps + 1e-6).all()  # float32: x - clean near 0.5 is exact to ~6e-8
    assert swept[0].steps.sum() > swept[-1].steps.sum()  # a larger ball fools sooner


def test_cw_continues_its_search_after_an_interruption_and_refuses_a_changed_one(mobilenet, batch, tmp_path,
                                                                                 monkeypatch, capsys):
    """C&W's rounds are stages: a search stopped after its first round continues from it (restored, not rerun)
    to the result of an uninterrupted search; another learning rate is refused, naming it. Mutation that
    fails it: the next round's c taken from a fresh search instead of the restored round's state."""
    from jaxvis.core.checkpoints import ResumeMismatchError
    from jaxvis.engine.run_config import RunConfig

    images, labels = batch
    options = dict(binary_search_steps=3, steps=8, initial_const=0.1, abort_early=False)
    whole = cw(mobilenet, images, labels, config=RunConfig(progress=False), **options)
    config = RunConfig(progress=False, checkpoint_dir=tmp_path / "cw")
    interrupted_at_the_first_save(monkeypatch, lambda: cw(mobilenet, images, labels, config=config, **options))
    capsys.readouterr()
    continued = cw(mobilenet, images, labels, config=config, **options)
    assert capsys.readouterr().err.count("resuming from") == 1  # round 1 restored
    np.testing.assert_array_equal(continued.images, whole.images)
    np.testing.assert_array_equal(continued.steps, whole.steps)
    assert whole.success.all() and (whole.steps == 3 * 8).all()  # every round ran
    with pytest.raises(ResumeMismatchError, match="learning_rate"):
        cw(mobilenet, images, labels, config=config, **dict(options, learning_rate=0.02))


def test_pgd_takes_its_logits_from_one_more_pass_of_its_loop(mobilenet, batch, monkeypatch):
    """PGD's logits come from one more pass of the engine's loop at the final images (its backward skipped): its
    predictions are those of an independent forward of the returned images, and the program holds the network's
    forward once -- a forward after the loop, or a program of its own, would be one more copy to trace and compile.
    Three photos at 96 px: a shape no other test compiles, traced here (the on-disk program store is bypassed)."""
    import jaxvis.core.programs as programs
    from jaxvis.data.io import resize
    from jaxvis.engine.run_config import RunConfig
    import jaxvis.models.model as model_module

    images = np.stack([resize(image, 96, 96) for image in batch[0][:3]]).astype(np.float32)
    labels = np.asarray(forward(mobilenet, images)).argmax(-1)
    mobilenet.layer_shapes(96)  # the layer-shape table (one abstract trace per size) is not part of any program
    monkeypatch.setattr(programs, "_stored_path", lambda *args: None)
    network, traced = model_module.forward, []
    monkeypatch.setattr(model_module, "forward", lambda *a: traced.append(a) or network(*a))
    result = pgd(mobilenet, images, labels, eps=2 / 255, step_size=0.5 / 255, steps=3, random_start=False,
                 config=RunConfig(progress=False))
    assert len(traced) == 1
    monkeypatch.setattr(model_module, "forward", network)
    independent = np.asarray(forward(mobilenet, result.images)).argmax(-1)
    np.testing.assert_array_equal(result.prediction, independent)
    np.testing.assert_array_equal(result.success, independent != labels)
    assert not np.array_equal(result.images, images)


def test_apgd_reports_the_logits_it_kept_without_another_forward(mobilenet, batch, monkeypatch):
    """APGD keeps the logits of the points it keeps (the last fooling one, else the best): its predictions are
    those of an independent forward of the returned images, and the program holds the network's forward once.
    Three photos at 80 px: a shape no other test compiles (the on-disk program store bypassed)."""
    import jaxvis.core.programs as programs
    from jaxvis.data.io import resize
    from jaxvis.engine.run_config import RunConfig
    import jaxvis.models.model as model_module

    images = np.stack([resize(image, 80, 80) for image in batch[0][:3]]).astype(np.float32)
    labels = np.asarray(forward(mobilenet, images)).argmax(-1)
    mobilenet.layers  # the layer-name table (one abstract trace per process) is not part of any program
    monkeypatch.setattr(programs, "_stored_path", lambda *args: None)
    network, traced = model_module.forward, []
    monkeypatch.setattr(model_module, "forward", lambda *a: traced.append(a) or network(*a))
    result = apgd(mobilenet, images, labels, eps=1 / 255, steps=4, config=RunConfig(progress=False))
    assert len(traced) == 1
    monkeypatch.setattr(model_module, "forward", network)
    independent = np.asarray(forward(mobilenet, result.images)).argmax(-1)
    np.testing.assert_array_equal(result.prediction, independent)
    np.testing.assert_array_equal(result.success, independent != labels)
