"""Reading concept-segmentation data sets: Broden's layout and the simple one, and their bad inputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from jaxvis.data.datasets import DatasetError
from jaxvis.data.segmentation import read_concepts


def write_csv(path, header, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def broden_label_png(path, labels: np.ndarray) -> None:
    """Broden's encoding: label = R + 256·G."""
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = labels % 256, labels // 256
    Image.fromarray(rgb).save(path)


@pytest.fixture
def broden(tmp_path):
    """A two-image Broden: colour + object pixel labels, a texture image label; concept 300 needs G."""
    root = tmp_path / "broden"
    (root / "images").mkdir(parents=True)
    write_csv(root / "category.csv", ["name", "first", "last", "count", "frequency"],
              [["color", 1, 2, 2, 2], ["object", 3, 300, 2, 2], ["texture", 4, 4, 1, 1]])
    write_csv(root / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"],
              [[1, "red", "color(2)", 2, 0.5, ""], [2, "blue", "color(2)", 2, 0.5, ""],
               [3, "sky", "object(1)", 1, 0.3, ""], [4, "striped", "texture(1)", 1, 1.0, ""],
               [300, "tree", "object(1);color(1)", 1, 0.2, ""]])
    write_csv(root / "c_color.csv", ["code", "number", "name", "frequency", "coverage"],
              [[1, 1, "red", 2, 0.5], [2, 2, "blue", 2, 0.5], [3, 300, "tree", 1, 0.01]])
    write_csv(root / "c_object.csv", ["code", "number", "name", "frequency", "coverage"],
              [[1, 3, "sky", 1, 0.3], [2, 300, "tree", 1, 0.2]])
    write_csv(root / "c_texture.csv", ["code", "number", "name", "frequency", "coverage"],
              [[1, 4, "striped", 1, 1.0]])
    rows = []
    for index in range(2):
        Image.fromarray(np.full((8, 8, 3), 100 * index, np.uint8)).save(root / "images" / f"im{index}.jpg")
        colour = np.full((4, 4), 1 + index)
        broden_label_png(root / "images" / f"im{index}_color.png", colour)
        objects = np.zeros((4, 4), int)
        objects[:2] = 3 if index == 0 else 300
        broden_label_png(root / "images" / f"im{index}_object.png", objects)
        rows.append([f"im{index}.jpg", "train", 8, 8, 4, 4, f"im{index}_color.png", f"im{index}_object.png",
                     "4" if index == 0 else ""])
    write_csv(root / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "texture"], rows)
    return root


def test_broden_layout_reads_labels_categories_and_image_level_concepts(broden):
    data = read_concepts(broden)
    assert data.layout == "broden" and len(data) == 2 and data.layers == 3
    names = data.concepts.names
    assert names[1] == "red" and names[300] == "tree" and names[5] == "-"
    assert data.concepts.category_of(300) == "object"  # primary: larger coverage in c_object than c_color
    assert data.concepts.category_of(4) == "texture"
    batch = next(iter(data.stream(size=8, seg_size=4, batch_size=2)))
    assert batch.images.shape == (2, 8, 8, 3) and batch.labels.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(batch.labels[0, 0], 1)
    np.testing.assert_array_equal(batch.labels[1, 1, :2], 300)  # R + 256·G decoded
    np.testing.assert_array_equal(batch.labels[0, 2], 4)  # the image-level texture label fills the map
    np.testing.assert_array_equal(batch.labels[1, 2], 0)  # image 1 has no third layer


def simple(tmp_path, masks: dict[str, np.ndarray], size=(6, 5), concepts=((1, "red", "color"), (2, "sky", "object"))):
    root = tmp_path / "simple"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    write_csv(root / "concepts.csv", ["id", "name", "category"], concepts)
    for name, mask in masks.items():
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8), mode="L").save(root / "masks" / f"{name}.png")
    return root


def test_simple_layout_and_nearest_resizing(tmp_path):
    mask = np.zeros((6, 5), int)
    mask[:3] = 1
    mask[3:, :2] = 2
    data = read_concepts(simple(tmp_path, {"a": mask}))
    assert data.concepts.categories == ("color", "object") and data.concepts.category_of(2) == "object"
    batch = next(iter(data.stream(size=10, seg_size=6, batch_size=4)))
    assert batch.labels.shape == (1, 1, 6, 6)
    assert set(np.unique(batch.labels)) == {0, 1, 2}  # nearest: no blended ids
    assert (batch.labels[0, 0, :3] == 1).all()


def test_mask_of_another_size_is_an_error_naming_both_files(tmp_path):
    root = simple(tmp_path, {"a": np.zeros((4, 4))})
    with pytest.raises(DatasetError, match=r"mask .*a\.png is 4x4 but its image .*a\.png is 5x6"):
        list(read_concepts(root).stream(8, 4, 2))


def test_unknown_concept_ids_are_an_error_naming_the_mask(tmp_path):
    root = simple(tmp_path, {"a": np.full((6, 5), 7)})
    with pytest.raises(DatasetError, match=r"a\.png has concept ids \[7\] that concepts.csv does not list"):
        list(read_concepts(root).stream(8, 4, 2))


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    root = simple(tmp_path, {"a": np.ones((6, 5)), "b": np.ones((6, 5)), "c": np.ones((6, 5))})
    (root / "images" / "b.png").write_bytes(b"not a png")
    data = read_concepts(root)
    batches = list(data.stream(8, 4, 2))
    assert [len(b.indices) for b in batches] == [2] and batches[0].indices.tolist() == [0, 2]
    assert [p.name for p, _ in data.skipped] == ["b.png"] and "skipped" in capsys.readouterr().err


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="neither index.csv"):
        read_concepts(tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        read_concepts(tmp_path / "missing")
    root = simple(tmp_path, {"a": np.ones((6, 5))})
    (root / "masks" / "a.png").unlink()
    with pytest.raises(DatasetError, match="has no mask"):
        read_concepts(root)
    write_csv(root / "concepts.csv", ["id", "label"], [[1, "red"]])
    with pytest.raises(DatasetError, match="lacks the columns name, category"):
        read_concepts(root)
