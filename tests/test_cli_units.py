"""`jaxvis concepts | dissect | ablate | examples` on the real MobileNetV2 and real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxvis.analysis.units.concept_set import build_concept_set
from jaxvis.cli import main


@pytest.fixture(scope="module")
def concepts(tmp_path_factory):
    return build_concept_set(tmp_path_factory.mktemp("cli-concepts"), photos=["sample:coffee", "sample:chelsea",
                             "sample:astronaut", "sample:rocket"], crops_per_photo=2, collages=4, size=96)


def test_concepts_writes_the_simple_layout(capsys, tmp_path):
    assert main(["concepts", str(tmp_path / "set"), "--crops", "1", "--collages", "2"]) == 0
    assert "images with colour and texture masks" in capsys.readouterr().out
    rows = (tmp_path / "set" / "concepts.csv").read_text().splitlines()
    assert rows[0] == "id,name,category" and rows[1] == "1,black,color" and len(rows) == 16
    collage = tmp_path / "set" / "masks" / "collage-000"
    assert sorted(p.name for p in collage.iterdir()) == ["color.png", "texture.png"]


def test_dissect_prints_the_table_and_writes_the_record(capsys, tmp_path, concepts):
    out = tmp_path / "dissect"
    assert main(["dissect", "mobilenet_v2", "features.4", "--data", str(concepts), "--size", "96",
                 "--batch-size", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "dissection.json").read_text())
    assert record["layer"] == "features.4" and len(record["units"]) == 32 and record["images"] == 12
    best = max(record["units"], key=lambda u: u["iou"])
    assert f"{best['unit']:>5}  {best['concept']}" in printed  # the table lists the best unit first
    assert sum(record["summary"].values()) == sum(u["detector"] for u in record["units"])


def test_ablate_lists_units_and_writes_the_curve(capsys, tmp_path, concepts):
    out = tmp_path / "ablate"
    assert main(["ablate", "mobilenet_v2", "features.16", "--class", "espresso", "--data",
                 str(concepts / "images"), "--size", "96", "--top", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "ablation.json").read_text())
    assert record["metric"] == "agreement with the unablated model" and record["class"] == "espresso"
    assert len(record["top_units"]) == 3 and record["curve"]["k"][:3] == [0, 1, 2]
    assert record["curve"]["class_top"][0] == record["baseline"] == 1.0  # agreement with itself
    assert "<svg" in (out / "curve.svg").read_text() and "espresso" in printed


def test_examples_writes_unit_and_direction_strips(capsys, tmp_path, concepts):
    out = tmp_path / "examples"
    assert main(["examples", "mobilenet_v2", "features.7", "--data", str(concepts / "images"), "--size", "96",
                 "--units", "0-2", "--directions", "2", "--top", "3", "--out", str(out)]) == 0
    strips = sorted(p.name for p in out.glob("examples_*.png"))
    assert strips == ["examples_direction_0.png", "examples_direction_1.png", "examples_unit_0.png",
                      "examples_unit_1.png", "examples_unit_2.png"]
    with Image.open(out / "examples_unit_0.png") as strip:
        assert strip.size == (3 * 96, 2 * 96)  # three overlays over three crops around the peaks
    record = json.loads((out / "run.json").read_text())
    assert len(record["top_images"]["unit 0"]) == 3 and (out / "index.html").exists()


@pytest.mark.parametrize("args, message", [
    (["dissect", "mobilenet_v2", "features.99", "--data", "."], "nearest: features.9"),
    (["dissect", "mobilenet_v2", "features.4", "--data", "/no/such/folder"], "is not a folder"),
    (["ablate", "mobilenet_v2", "features.16", "--class", "expresso", "--data", "."], "Did you mean espresso"),
    (["examples", "mobilenet_v2", "features.4", "--data", ".", "--units", "30-40"], "valid units are 0-31"),
])
def test_unit_command_errors_are_one_clear_line(capsys, tmp_path, args, message):
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and not (tmp_path / "out").exists()


def test_dissect_of_a_plain_photo_folder_says_what_it_needs(capsys, tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["dissect", "mobilenet_v2", "features.4", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "neither index.csv (Broden) nor concepts.csv" in capsys.readouterr().err


def test_atlas_writes_the_site_and_dissects_a_concept_folder(capsys, tmp_path, concepts, tiny_cnn_by_name):
    out = tmp_path / "atlas"
    assert main(["atlas", tiny_cnn_by_name, "features.5", "--data", str(concepts), "--units", "0,2", "--steps", "2",
                 "--fv-size", "32", "--size", "96", "--directions", "1", "--top", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "units").iterdir()) == ["unit-0.html", "unit-2.html"]
    record = json.loads((out / "atlas.json").read_text())
    assert all(u["concept"] is not None for u in record["units"])  # --data was a concept set: dissected
    assert "open" in capsys.readouterr().err
