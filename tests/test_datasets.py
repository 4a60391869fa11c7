"""jaxvis.data.datasets: labelled image folders (both layouts), batches read by a background thread."""

from __future__ import annotations

import importlib.util
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvis.core.errors import JaxvisError
import jaxvis.data.datasets as datasets
from jaxvis.data.datasets import DatasetError, LabelledImage, labelled_images, stream
from jaxvis.data.imagenet import UnknownClassError, class_index, class_names, synsets
from jaxvis.data.io import center_crop_resize, read_image

SIZE = 16


def timm_synsets() -> list[str]:
    spec = importlib.util.find_spec("timm")
    if spec is None:
        pytest.skip("timm is not installed")
    path = Path(spec.submodule_search_locations[0]) / "data" / "_info" / "imagenet_synsets.txt"
    return path.read_text().split()


def write_image(path: Path, seed: int, shape=(24, 32), mode: str = "RGB") -> Path:
    """A noise image, different for each seed, written by Pillow in the format of the suffix."""
    rng = np.random.default_rng(seed)
    channels = (3,) if mode == "RGB" else ()
    pixels = rng.integers(0, 256, shape + channels, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def labels_of(items, root: Path) -> dict[str, int]:
    return {item.path.relative_to(root).as_posix(): item.label for item in items}


# --- synset ids ------------------------------------------------------------------------------


def test_synsets_are_timms_list_in_class_index_order():
    assert synsets() == tuple(timm_synsets())
    assert len(synsets()) == 1000 and synsets()[0] == "n01440764"
    assert class_names()[0] == "tench" and class_names()[207] == "golden retriever"
    assert class_index("n01440764") == 0
    assert class_index("n01443537") == 1
    assert class_index("N02099601 ") == 207  # golden retriever, case and spaces ignored
    for line in (0, 1, 207, 999):
        assert class_index(timm_synsets()[line]) == line


def test_unknown_synset_is_refused():
    with pytest.raises(UnknownClassError, match="n00000000.*synset"):
        class_index("n00000000")
    with pytest.raises(UnknownClassError, match="out of range"):
        class_index("n02099601", num_classes=100)


# --- layout (a): class sub-folders -----------------------------------------------------------


def test_synset_folders_map_to_their_class_index(tmp_path):
    third = timm_synsets()[500]  # read independently of jaxvis's copy
    for seed, folder in enumerate(["n01443537", "n01440764", third]):
        write_image(tmp_path / folder / f"img{seed}.png", seed)
    write_image(tmp_path / "n01440764" / "nested" / "deep.jpg", 9)
    items = labelled_images(tmp_path)
    assert labels_of(items, tmp_path) == {
        "n01440764/img1.png": 0,
        "n01440764/nested/deep.jpg": 0,
        "n01443537/img0.png": 1,
        f"{third}/img2.png": 500,
    }
    assert [item.path for item in items] == sorted(item.path for item in items)
    assert all(isinstance(item, LabelledImage) and isinstance(item.path, Path) for item in items)


@pytest.mark.parametrize(
    "folder, label",
    [("207", 207), ("0", 0), ("golden_retriever", 207), ("golden retriever", 207), ("Egyptian_cat", 285)],
)
def test_index_and_name_folders(tmp_path, folder, label):
    write_image(tmp_path / folder / "a.png", 0)
    write_image(tmp_path / "n01443537" / "b.png", 1)
    assert sorted(item.label for item in labelled_images(tmp_path)) == sorted([label, 1])


def test_extensions_case_insensitive_and_other_files_ignored(tmp_path):
    names = ["a.JPG", "b.jpeg", "c.png", "d.bmp", "e.webp", "f.PNG"]
    for seed, name in enumerate(names):
        write_image(tmp_path / "tench" / name, seed)
    (tmp_path / "tench" / "notes.txt").write_text("not an image")
    (tmp_path / "tench" / ".hidden.png").write_bytes(b"")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    items = labelled_images(tmp_path)
    assert [item.path.name for item in items] == sorted(names)
    assert {item.label for item in items} == {0}


def test_folder_that_names_no_class_says_which_and_suggests(tmp_path):
    write_image(tmp_path / "golden_retreiver" / "a.png", 0)
    with pytest.raises(DatasetError) as info:
        labelled_images(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "golden_retreiver") in message
    assert "golden retriever" in message  # the nearest class name
    assert "n01440764" in message  # the accepted layouts
    assert isinstance(info.value, JaxvisError) and isinstance(info.value, ValueError)


def test_two_folders_of_one_class_are_refused(tmp_path):
    write_image(tmp_path / "207" / "a.png", 0)
    write_image(tmp_path / "golden_retriever" / "b.png", 1)
    with pytest.raises(DatasetError, match="golden_retriever.*207|207.*golden_retriever"):
        labelled_images(tmp_path)


def test_mixed_layout_is_refused(tmp_path):
    write_image(tmp_path / "n01440764" / "a.png", 0)
    write_image(tmp_path / "stray_3.png", 1)
    with pytest.raises(DatasetError, match=r"mixes.*n01440764.*stray_3\.png.*layouts"):
        labelled_images(tmp_path)


# --- layout (b): flat folder of label-named files --------------------------------------------


def test_flat_label_named_files(tmp_path):
    for seed, name in enumerate(["imagenet_06_292.jpg", "tiger_cat_282.PNG", "x_0.png", "cifar10_09_1.bmp"]):
        write_image(tmp_path / name, seed)
    (tmp_path / "labels.csv").write_text("ignored")
    items = labelled_images(tmp_path)
    assert {item.path.name: item.label for item in items} == {
        "imagenet_06_292.jpg": 292,
        "tiger_cat_282.PNG": 282,
        "x_0.png": 0,
        "cifar10_09_1.bmp": 1,
    }


@pytest.mark.parametrize(
    "name, why",
    [
        ("photo.jpg", "does not end in _LABEL"),
        ("img_0001.jpg", "does not end in _LABEL"),  # a running number, not a label
        ("ILSVRC2012_val_00000001.JPEG", "does not end in _LABEL"),
        ("imagenet_00_1000.jpg", "out of range"),
    ],
)
def test_flat_file_without_a_label_is_refused(tmp_path, name, why):
    write_image(tmp_path / "imagenet_00_243.jpg", 0)
    write_image(tmp_path / name, 1)
    with pytest.raises(DatasetError, match=why) as info:
        labelled_images(tmp_path)
    assert str(tmp_path / name) in str(info.value)


@pytest.mark.parametrize("content", ["nothing", "text file", "empty class folders"])
def test_no_images_is_an_error_that_lists_the_extensions(tmp_path, content):
    if content == "text file":
        (tmp_path / "readme.txt").write_text("hello")
    if content == "empty class folders":
        (tmp_path / "n01440764").mkdir()
        (tmp_path / "207").mkdir()
    with pytest.raises(DatasetError, match="no images found") as info:
        labelled_images(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert all(ext in str(info.value) for ext in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))


def test_root_that_is_not_a_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        labelled_images(tmp_path / "missing")


# --- batches ---------------------------------------------------------------------------------


@pytest.fixture
def flat(tmp_path) -> Path:
    """Seven labelled noise images of varied sizes and modes (label = 10 * seed + 3)."""
    shapes = [(24, 32), (40, 20), (17, 17), (30, 45), (64, 48), (20, 20), (33, 21)]
    for seed, shape in enumerate(shapes):
        suffix = ".jpg" if seed % 2 else ".png"
        write_image(tmp_path / f"photo_{seed}_{10 * seed + 3}{suffix}", seed, shape, "L" if seed == 2 else "RGB")
    return tmp_path


def test_batches_shapes_order_and_alignment(flat):
    s = stream(flat, SIZE, batch_size=3)
    assert s.total == 7
    got = list(s)
    assert [len(b.labels) for b in got] == [3, 3, 1]  # the last, smaller batch is kept
    paths = [p for b in got for p in b.paths]
    assert paths == [item.path for item in labelled_images(flat)] == sorted(flat.iterdir())
    for batch in got:
        assert batch.images.dtype == np.float32 and batch.labels.dtype == np.int32
        assert batch.images.shape == (len(batch.paths), SIZE, SIZE, 3)
        assert 0.0 <= batch.images.min() and batch.images.max() <= 1.0
        for image, label, path in zip(batch.images, batch.labels, batch.paths):
            assert label == int(re.search(r"_(\d+)\.\w+$", path.name).group(1))
            np.testing.assert_array_equal(image, center_crop_resize(read_image(path), SIZE))
    again = list(s)  # a second pass reads the same batches in the same order
    assert all(np.array_equal(a.images, b.images) and a.paths == b.paths for a, b in zip(got, again))
    assert s.skipped == []


def test_corrupt_file_is_skipped_and_reported_once(flat, capsys):
    bad = flat / "photo_9_5.jpg"
    bad.write_bytes(b"not an image")
    s = stream(flat, SIZE, batch_size=3, prefetch=1)
    first = [p for b in s for p in b.paths]
    second = [p for b in s for p in b.paths]
    assert s.total == 8
    assert first == second == sorted(p for p in flat.iterdir() if p != bad)
    assert [path for path, _ in s.skipped] == [bad]
    assert "not an image file" in s.skipped[0][1]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(warnings) == 1 and str(bad) in warnings[0]  # once, however many passes


def test_skipped_files_do_not_shorten_the_middle_batches(flat):
    (flat / "photo_1_5.png").write_bytes(b"\x89PNG truncated")  # sorts third: inside the first batch
    sizes = [len(b.paths) for b in stream(flat, SIZE, batch_size=3)]
    assert sizes == [3, 3, 1]


def test_limit_and_items(flat):
    items = labelled_images(flat)
    limited = stream(flat, SIZE, batch_size=4, limit=2)
    assert limited.total == 2
    assert [p for b in limited for p in b.paths] == [item.path for item in items[:2]]
    from_items = stream(items[3:5], SIZE, batch_size=4)
    assert [b.labels.tolist() for b in from_items] == [[item.label for item in items[3:5]]]


@pytest.mark.parametrize("option", [{"batch_size": 0}, {"size": -1}, {"prefetch": 0}, {"limit": -1}])
def test_bad_options_are_refused_at_once(flat, option):
    kwargs = {"size": SIZE, "batch_size": 2, "prefetch": 2} | option
    with pytest.raises(DatasetError, match=next(iter(option))):
        stream(flat, **kwargs)
    if "limit" not in option:
        with pytest.raises(DatasetError, match=next(iter(option))):
            datasets.batches(labelled_images(flat), **kwargs)  # at the call, not at the first batch


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "jaxvis-reader" and t.is_alive()]


def test_consumer_stopping_early_ends_the_reader(flat):
    assert reader_threads() == []
    batches = iter(stream(flat, SIZE, batch_size=1, prefetch=1))
    next(batches)
    assert len(reader_threads()) == 1  # blocked on the full queue
    closer = threading.Thread(target=batches.close, daemon=True)  # close() must not hang: bounded wait
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive(), "closing the batch iterator hung"
    assert reader_threads() == []
    for _ in stream(flat, SIZE, batch_size=1, prefetch=1):
        break  # the for loop drops the iterator: CPython closes it at once
    assert reader_threads() == []


def test_closing_mid_batch_stops_reading(flat, monkeypatch):
    """The reader checks for a stopped consumer between images, not only between batches."""
    reads, reading, go = [], threading.Event(), threading.Event()

    def slow(path):
        reads.append(Path(path).name)
        if len(reads) == 5:  # the second image of the second batch
            reading.set()
            go.wait(timeout=10)
        return read_image(path)

    monkeypatch.setattr(datasets, "read_image", slow)
    batches = iter(stream(flat, SIZE, batch_size=4, prefetch=1))
    next(batches)
    assert reading.wait(timeout=10)
    closer = threading.Thread(target=batches.close, daemon=True)
    closer.start()
    time.sleep(0.2)  # close() has set the stop flag and waits for the reader
    go.set()
    closer.join(timeout=10)
    assert not closer.is_alive() and reader_threads() == []
    assert len(reads) == 5  # not 7: the rest of the second batch was never read


def test_reader_error_propagates_to_the_consumer(flat, monkeypatch):
    def failing(path):
        if "photo_4_" in Path(path).name:
            raise RuntimeError("disk on fire")
        return read_image(path)

    monkeypatch.setattr(datasets, "read_image", failing)
    seen = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for batch in stream(flat, SIZE, batch_size=2):
            seen += batch.paths
    assert [p.name.split("_")[1] for p in seen] == ["0", "1", "2", "3"]  # the batches before the error
    assert reader_threads() == []


def test_foolbox_labelled_photos(tmp_path):
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.skip("foolbox is not installed")
    photos = sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg"))
    assert len(photos) == 20
    for photo in photos:
        shutil.copy(photo, tmp_path)
    s = stream(tmp_path, 224, batch_size=8)
    got = list(s)
    assert [len(b.paths) for b in got] == [8, 8, 4] and s.skipped == []
    assert got[0].images.shape == (8, 224, 224, 3)
    expected = [int(re.fullmatch(r"imagenet_\d\d_(\d+)\.jpg", p.name).group(1)) for p in photos]
    assert [int(label) for b in got for label in b.labels] == expected
    assert [p.name for b in got for p in b.paths] == [p.name for p in photos]
