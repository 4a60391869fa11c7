"""The model interface every method builds on: capture, edit, layers, jit/grad/vmap, early exit, bad images.

The mechanics run on the tiny CNN (`helpers.tiny_cnn`); the real MobileNetV2 where its names and depth are the point."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis
from helpers import forward


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(np.random.default_rng(0).random((2, 96, 96, 3), dtype=np.float32))


@pytest.fixture(scope="module")
def small_images():
    """For the tiny CNN: 40 px, not its input size (32)."""
    return jnp.asarray(np.random.default_rng(0).random((2, 40, 40, 3), dtype=np.float32))


def test_layers_are_torch_module_names_in_forward_order(mobilenet):
    layers = mobilenet.layers
    assert layers[0] == "features.0.0" and layers[-1] == "logits"
    for name in ("features.14", "features.3.conv.1.0", "classifier.1"):
        assert name in layers
    assert layers.index("features.3") < layers.index("features.14") < layers.index("classifier.1")
    assert len(layers) == len(set(layers))


def test_capture_returns_named_activations_with_their_shapes(tiny_cnn, small_images):
    acts = forward(tiny_cnn, small_images, capture=["features.11", "classifier.0", "logits"])
    assert acts["features.11"].shape == (2, 10, 10, 32)
    assert tiny_cnn.layer_shapes(40)["features.11"] == (1, 10, 10, 32)
    np.testing.assert_array_equal(acts["classifier.0"], acts["logits"])
    np.testing.assert_allclose(acts["logits"], forward(tiny_cnn, small_images), rtol=1e-6, atol=1e-6)


def test_edit_changes_the_forward_downstream_only(tiny_cnn, small_images):
    def zero_channel_5(a):
        return a.at[..., 5].set(0.0)

    plain = forward(tiny_cnn, small_images, capture=["features.7", "features.8"])
    edited = forward(tiny_cnn, small_images, capture=["features.7", "features.8"], edit={"features.8": zero_channel_5})
    np.testing.assert_array_equal(edited["features.7"], plain["features.7"])
    assert np.all(edited["features.8"][..., 5] == 0)
    assert np.abs(plain["features.8"][..., 5]).max() > 0
    logits = forward(tiny_cnn, small_images)
    assert not np.allclose(forward(tiny_cnn, small_images, edit={"features.8": zero_channel_5}), logits)
    np.testing.assert_allclose(forward(tiny_cnn, small_images, edit={"features.8": lambda a: a}), logits, rtol=1e-6)


def test_edit_must_keep_the_shape(mobilenet, images):
    with pytest.raises(ValueError, match="must keep the shape"):
        jax.eval_shape(lambda x: mobilenet(x, edit={"features.14": lambda a: a[..., :3]}), images)


def test_capturing_an_early_layer_does_not_trace_the_rest(mobilenet, images):
    early = jax.make_jaxpr(lambda x: mobilenet(x, capture=["features.2"]))(images)
    full = jax.make_jaxpr(lambda x: mobilenet(x, capture=["features.2", "logits"]))(images)
    assert len(early.eqns) * 5 < len(full.eqns)
    assert "dot_general" in str(full) and "1280" not in str(early)


def test_gradient_with_respect_to_images(tiny_cnn, small_images):
    loss = lambda x: tiny_cnn(x, capture="features.8")["features.8"][..., 7].mean()
    grad = jax.jit(jax.grad(loss))(small_images)
    assert grad.shape == small_images.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0
    step = 1e-2 * grad / jnp.abs(grad).max()
    assert loss(small_images + step) > loss(small_images)  # ascent along the gradient increases the activation


def test_vmap_over_a_leading_axis_equals_a_loop(tiny_cnn, small_images):
    stacked = jnp.stack([small_images, small_images[::-1] * 0.5])  # (2 groups, 2 images, H, W, 3)
    mapped = jax.jit(jax.vmap(lambda x: tiny_cnn(x, capture="features.8")["features.8"]))(stacked)
    for k in range(2):
        np.testing.assert_allclose(mapped[k], forward(tiny_cnn, stacked[k], capture=["features.8"])["features.8"],
                                   rtol=1e-5, atol=1e-5)


def test_model_is_a_pytree_of_its_weights(tiny_cnn):
    leaves = jax.tree_util.tree_leaves(tiny_cnn)
    assert sum(leaf.size for leaf in leaves) == sum(leaf.size for leaf in jax.tree_util.tree_leaves(tiny_cnn.variables))
    doubled = jax.tree_util.tree_map(lambda v: v * 1.0, tiny_cnn)
    assert isinstance(doubled, jaxvis.Model) and doubled.arch is tiny_cnn.arch


def test_a_parameter_of_the_wrong_shape_is_named(mobilenet, images):
    """jaxvis's layers check a parameter's shape themselves (not through Flax's traced initializer)."""
    import flax

    params = flax.core.unfreeze(mobilenet.variables)
    params["params"]["features"]["0"]["0"]["kernel"] = jnp.zeros((3, 3, 3, 8))  # 32 output channels
    with pytest.raises(flax.errors.ScopeParamShapeError, match="kernel.*features/0/0"):
        jax.eval_shape(lambda v, x: dataclasses.replace(mobilenet, variables=v)(x), params, images)


def test_logits_alone_do_not_build_the_layer_table(mobilenet, images):
    """The table of layer names is traced only when a layer is captured or edited (it costs a trace of the
    whole network)."""
    from jaxvis.models.model import layer_shapes

    layer_shapes.cache_clear()
    jax.eval_shape(mobilenet, images)
    assert layer_shapes.cache_info().currsize == 0
    jax.eval_shape(lambda x: mobilenet(x, capture="features.2"), images)
    assert layer_shapes.cache_info().currsize == 1


def test_unknown_layer_suggests_nearest_names(mobilenet, images):
    with pytest.raises(jaxvis.UnknownLayerError) as error:
        mobilenet(images, capture=["features.14x"])
    assert "features.14" in str(error.value) and "model.layers" in str(error.value)
    with pytest.raises(jaxvis.UnknownLayerError, match="layer4"):
        mobilenet(images, edit={"layer4": lambda a: a})


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(jaxvis.UnknownArchitectureError) as error:
        jaxvis.load("mobilenet_v3")
    assert "mobilenet_v2" in str(error.value) and "resmlp_12_224" in str(error.value)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((96, 96, 3), np.float32), r"images\[None\]"),
        (np.zeros((1, 3, 96, 96), np.float32), "NCHW"),
        (np.zeros((1, 96, 96, 4), np.float32), "3 channels"),
        (np.zeros((1, 96, 96, 3), np.uint8), "/ 255"),
        (np.zeros((1, 16, 16, 3), np.float32), "at least 32x32"),
    ],
)
def test_bad_images_are_refused_with_a_specific_message(mobilenet, bad, match):
    with pytest.raises(jaxvis.InvalidImageError, match=match):
        mobilenet(bad)


def test_fixed_size_models_refuse_other_sizes():
    model = jaxvis.Model(jaxvis.architecture("vit_small_patch16_224"), None)  # refused before any weight is read
    with pytest.raises(jaxvis.InvalidImageError, match="exactly 224x224"):
        model(np.zeros((1, 160, 160, 3), np.float32))


@pytest.mark.parametrize("name", sorted(jaxvis.ARCHITECTURES))
def test_min_size_is_accepted_and_every_activation_is_nonempty(name):
    arch = jaxvis.architecture(name)
    shapes = jaxvis.Model(arch, None).layer_shapes(arch.min_size)
    assert all(all(d > 0 for d in shape) for shape in shapes.values())
    if arch.is_generator:  # images of its size
        assert shapes[arch.output] == (1, arch.input_size, arch.input_size, 3)
    elif arch.num_classes:  # a classifier
        assert shapes["logits"] == (1, arch.num_classes)
    else:  # the saliency model: a one-channel map of the input's size
        assert shapes["logits"] == (1, arch.min_size, arch.min_size, 1)


def test_alexnet_min_size_is_where_torch_stops_too():
    import torch
    import torchvision

    alexnet = jaxvis.load("alexnet", weights=None)
    assert alexnet.arch.min_size == 63
    assert np.isfinite(np.asarray(forward(alexnet, np.zeros((1, 63, 63, 3), np.float32)))).all()
    with pytest.raises(jaxvis.InvalidImageError, match="at least 63x63"):
        alexnet(np.zeros((1, 62, 62, 3), np.float32))
    reference = torchvision.models.alexnet(weights=None).eval()  # the same boundary in torch
    with torch.no_grad():
        reference(torch.zeros(1, 3, 63, 63))
        with pytest.raises(RuntimeError):
            reference(torch.zeros(1, 3, 62, 62))


def test_redirected_relu_gradient_leaves_the_forward_and_live_gradients_alone(tiny_cnn, small_images):
    layer = "features.8"
    value = lambda m, x, flag: m(x, capture=layer, redirect_relu=flag)[layer][..., 7].mean()
    forward_on, forward_off = value(tiny_cnn, small_images, True), value(tiny_cnn, small_images, False)
    assert forward_on == forward_off
    grad = jax.jit(jax.grad(value, argnums=1))
    on, off = grad(tiny_cnn, small_images, jnp.asarray(True)), grad(tiny_cnn, small_images, jnp.asarray(False))
    plain = grad(tiny_cnn, small_images, None)
    np.testing.assert_allclose(off, plain, rtol=0, atol=1e-6 * np.abs(plain).max())
    # Every image here has live gradient, so redirection (per image, only where none flows) changes nothing.
    np.testing.assert_allclose(on, plain, rtol=0, atol=1e-6 * np.abs(plain).max())


def test_redirected_relu_gradient_revives_a_unit_that_is_off():
    from jaxvis.models import ops

    x = jnp.asarray([[-1.0, -2.0, 7.0]])  # every unit outside ReLU6's range
    loss = lambda x, on: -ops.activation(ops.relu6, x, on).sum()  # minimize -> push outputs up
    np.testing.assert_array_equal(jax.grad(loss)(x, False), [[0.0, 0.0, 0.0]])
    # Redirected: the off units get gradient toward turning on; the saturated one is not pushed higher.
    np.testing.assert_array_equal(jax.grad(loss)(x, True), [[-1.0, -1.0, 0.0]])


def test_the_layer_table_is_traced_once_and_read_back_in_later_processes(tiny_cnn, monkeypatch, tmp_path):
    """The table a trace gives is written as JSON and read back equal (no trace); a damaged file is traced
    and written again; another size has its own table."""
    from jaxvis.models import model as model_module

    monkeypatch.setenv("JAXVIS_CACHE", str(tmp_path))
    traced = []
    real_trace = model_module._traced_layer_shapes
    monkeypatch.setattr(model_module, "_traced_layer_shapes", lambda *a: traced.append(a) or real_trace(*a))

    def fresh(size):  # as a new process would: nothing in memory
        model_module.layer_shapes.cache_clear()
        return model_module.layer_shapes(tiny_cnn.arch, size)

    first = fresh(40)
    assert len(traced) == 1 and first["features.11"] == (1, 10, 10, 32)
    assert fresh(40) == first and list(fresh(40)) == list(first) and len(traced) == 1  # read back, in order
    (table,) = (tmp_path / "layers").iterdir()
    table.write_text("[[\"features.0\", [1, 2")  # cut short
    assert fresh(40) == first and len(traced) == 2
    assert fresh(48)["features.11"] == (1, 12, 12, 32) and len(traced) == 3
    model_module.layer_shapes.cache_clear()
