"""Network dissection names a planted detector, with thresholds at the data's top quantile.

The planted model (`helpers.planted_model`): unit 0 is relu(R - G - B - 0.1) by construction
(it fires on red pixels, not on magenta or orange-yellow), unit 1 relu(G - 0.7 R - 0.9 B - 0.1)
on green (not cyan or yellow), unit 2 a fixed arbitrary mix.  Dissection must name unit 0
"red" and unit 1 "green" above NetDissect's 0.04 IoU threshold.  Mutations that fail here:
thresholds from the wrong tail of the sketch (quantile instead of 1 - quantile), the tally
without upsampling or with labels of the wrong layer, labelling by the lowest IoU.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import planted_model

import jaxvis
from jaxvis.analysis.units.concept_set import build_concept_set, colour_names, concept_rows
from jaxvis.analysis.units.survey import LayerShapeError
from jaxvis.core.errors import UnknownLayerError
from jaxvis.data.datasets import DatasetError


@pytest.fixture(scope="module")
def planted():
    return planted_model()


@pytest.fixture(scope="module")
def concepts(tmp_path_factory):
    photos = [f"sample:{name}" for name in ("astronaut", "chelsea", "coffee", "rocket", "colorwheel")]
    return build_concept_set(tmp_path_factory.mktemp("concepts"), photos=photos, crops_per_photo=2, collages=6,
                             size=96)


def test_dissection_names_the_planted_colour_detectors(planted, concepts):
    result = jaxvis.dissect(planted, "pool", concepts, size=64, seg_size=32, batch_size=8, progress=False)
    red, green = result.units[0], result.units[1]
    assert (red.concept, red.category) == ("red", "color") and red.iou > 0.04 and red.detector, red
    assert (green.concept, green.category) == ("green", "color") and green.iou > 0.04, green
    assert result.summary()["color"] >= 2
    assert result.thresholds.shape == (3,) and result.iou.shape == (3, len(concept_rows()) + 1)
    assert "red" in result.table() and result.as_dict()["units"][0]["concept"] == "red"


def test_dissection_thresholds_are_the_top_quantile_of_the_data(planted, concepts):
    """T_u is the 99.5th percentile of the unit's activations (NumPy on the same images)."""
    result = jaxvis.dissect(planted, "pool", concepts, size=64, seg_size=32, batch_size=8, progress=False)
    from jaxvis.data.segmentation import read_concepts

    data = read_concepts(concepts)
    acts = np.concatenate([np.asarray(planted(b.images, capture="pool")["pool"])
                           for b in data.stream(64, 32, 8, labels=False)])
    exact = np.quantile(acts.reshape(-1, 3), 0.995, axis=0, method="inverted_cdf")
    np.testing.assert_allclose(result.thresholds, exact, rtol=0.006, atol=1e-6)


def test_colour_names_of_the_prototypes_and_of_a_real_photo():
    rows = {name: concept for concept, name, category in concept_rows() if category == "color"}
    swatches = np.array([[[0.82, 0.15, 0.15], [0.25, 0.6, 0.25], [1.0, 1.0, 1.0], [0.02, 0.02, 0.02]]])
    assert colour_names(swatches).tolist() == [[rows["red"], rows["green"], rows["white"], rows["black"]]]
    from jaxvis.data.io import read_image

    names = colour_names(read_image("sample:coffee"))  # a dark espresso on a white saucer, a brown-red table
    counts = np.bincount(names.ravel(), minlength=12)
    assert counts.argmax() == rows["brown"] and counts[rows["white"]] > 0.05 * names.size
    assert counts[rows["green"]] == counts[rows["blue"]] == 0  # nothing green or blue in the photo


def test_concept_set_is_reproducible_from_its_seed(tmp_path):
    first = build_concept_set(tmp_path / "a", photos=["sample:coffee"], crops_per_photo=2, collages=2, size=64)
    second = build_concept_set(tmp_path / "b", photos=["sample:coffee"], crops_per_photo=2, collages=2, size=64)
    names = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert names == sorted(p.relative_to(second) for p in second.rglob("*.png")) and len(names) == 10
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_dissection_refuses_a_layer_without_maps_and_a_plain_folder(planted, concepts, tmp_path):
    with pytest.raises(LayerShapeError, match="spatial extent.*head.*pool"):
        jaxvis.dissect(planted, "head", concepts, size=64, progress=False)
    with pytest.raises(UnknownLayerError, match="nearest: pool"):
        jaxvis.dissect(planted, "poool", concepts, size=64, progress=False)
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetError, match="neither index.csv .* nor concepts.csv"):
        jaxvis.dissect(planted, "pool", tmp_path / "photos", size=64, progress=False)
