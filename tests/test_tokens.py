"""Token-aware objectives on the real DINOv2 ViT, each against NumPy on the captured activations.

Mutations that fail here: the CLS token read from the wrong end, a patch position read
column-major, the patch mean including the CLS token, a head sliced from the wrong axis,
attention read from key to query instead of CLS to patch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis
from jaxvis.pieces import tokens

LAYER = "backbone.encoder.layer.6"
PROBS = "backbone.encoder.layer.6.attention.attention.dropout"
CONTEXT = "backbone.encoder.layer.6.attention.attention"


@pytest.fixture(scope="module")
def captured():
    from jaxvis.data.io import center_crop_resize, read_image

    model = jaxvis.load("dinov2_vits14_focus")
    images = np.stack([center_crop_resize(read_image(f"sample:{n}"), 112) for n in ("coffee", "rocket")])
    acts = model(images, capture=[LAYER, PROBS, CONTEXT, "output_importance"])
    return {name: np.asarray(value) for name, value in acts.items()}


def test_token_objectives_read_the_tokens_they_name(captured):
    x = captured[LAYER]  # (2, 1 + 8 * 8, 384)
    assert x.shape == (2, 65, 384)
    np.testing.assert_allclose(tokens.cls_channel(LAYER, 5)(captured), x[:, 0, 5].mean(), rtol=1e-6)
    np.testing.assert_allclose(tokens.patch_channel(LAYER, 5, (2, 7))(captured), x[:, 1 + 2 * 8 + 7, 5].mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(tokens.patch_mean(LAYER, 5)(captured), x[:, 1:, 5].mean(), rtol=1e-5)
    context = captured[CONTEXT].reshape(2, 65, 6, 64)
    np.testing.assert_allclose(tokens.head_output(CONTEXT, 4, heads=6)(captured), (context[:, :, 4] ** 2).mean(),
                               rtol=1e-5)
    probs = captured[PROBS]  # (2, 6, 65, 65), rows sum to one
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(tokens.attention_to(PROBS, 3, (4, 1))(captured), probs[:, 3, 0, 1 + 4 * 8 + 1].mean(),
                               rtol=1e-6)
    np.testing.assert_allclose(tokens.saliency()(captured), captured["output_importance"].mean(), rtol=1e-6)


def test_token_objectives_vmap_over_units(captured):
    acts = {name: jnp.asarray(value) for name, value in captured.items()}
    units = jnp.arange(4)
    for objective, expected in ((tokens.patch_mean(LAYER, units), captured[LAYER][:, 1:, :4].mean(axis=(0, 1))),
                                (tokens.cls_channel(LAYER, units), captured[LAYER][:, 0, :4].mean(axis=0))):
        values = jax.vmap(lambda o: o(acts))(objective)
        np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-5)


def test_out_of_range_tokens_and_heads_are_clear_errors(captured):
    with pytest.raises(tokens.TokenIndexError, match=r"patch \(8, 0\) is outside the 8 x 8 grid"):
        tokens.patch_channel(LAYER, 0, (8, 0))(captured)
    with pytest.raises(tokens.TokenIndexError, match="head 6 is out of range .* heads 0..5"):
        tokens.attention_to(PROBS, 6, (0, 0))(captured)
    with pytest.raises(tokens.TokenIndexError, match="not tokens"):
        tokens.cls_channel("output_importance", 0)(captured)


def test_the_unit_spec_names_tokens():
    from jaxvis.core.errors import JaxvisError, UnitRangeError
    from jaxvis.models.catalog import card
    from jaxvis.models.request import check_request, parse_spec

    vit = card("dinov2_vits14_focus")
    assert parse_spec(vit, f"{LAYER}:0-3@cls").token == "cls"
    assert parse_spec(vit, f"{LAYER}:7@patches").units.tolist() == [7]
    spec = parse_spec(vit, f"{LAYER}.mlp.activation:1535@3,5")
    assert spec.token == (3, 5) and spec.units.tolist() == [1535]
    assert parse_spec(vit, f"{LAYER}:7").token is None
    from jaxvis.methods.feature_visualization import token_objective

    assert token_objective((3, 5))(LAYER, 7).name == f"patch({LAYER}:7@3,5)"
    assert token_objective("cls")(LAYER, 7).name == f"cls({LAYER}:7)"
    assert token_objective("patches")(LAYER, 7).name == f"patches({LAYER}:7)"
    with pytest.raises(UnitRangeError, match="use @cls, @patches or @ROW,COLUMN"):
        parse_spec(vit, f"{LAYER}:7@middle")
    with pytest.raises(JaxvisError, match="applies to the channel objective"):
        check_request(vit, f"{LAYER}:7@cls", objective="neuron", size=112)


def test_visualizing_a_patch_token_raises_it():
    """Eight steps on the spec `LAYER:5@2,3` raise that patch's channel 5 above its value at the start."""
    model = jaxvis.load("dinov2_vits14_focus")
    from jaxvis.methods.feature_visualization import run_visualization

    _, result = run_visualization(
        model, f"{LAYER}:5@2,3", size=56, model_size=112, steps=8, progress=False)
    assert result.history.shape == (8, 1) and result.history[-1, 0] > result.history[0, 0]


def test_the_visualize_command_checks_its_token_before_loading(capsys, tmp_path):
    from jaxvis.cli import main

    assert main(["visualize", "dinov2_vits14_focus", LAYER, "--token", "middle", "--out", str(tmp_path / "o")]) == 2
    assert "use @cls, @patches or @ROW,COLUMN" in capsys.readouterr().err and not (tmp_path / "o").exists()
