"""Any concept data set a user points at (issue 35, point 6): it streams with every damaged image or mask skipped
and named, or it is refused with `DatasetError` saying what is wrong -- never another exception, never a hang.

Hypothesis builds a set in the simple layout (three 16 x 16 images, each with a mask) and damages it: per image,
an unreadable image or mask (skipped, named once), a missing image (not listed), a missing mask (refused when the
set is listed, before anything streams), a mask of another size or with concept ids that `concepts.csv` does not
list (refused, naming the mask); or `concepts.csv` itself (not UTF-8, no id column, ids that are not integers,
repeated or below 1: refused at once).  What must happen is worked out here from the damage, in the order the
reader meets it.  Mutations that fail it: a mask's size not compared with its image's, ids above the known ones
not checked, an unreadable mask made an error instead of a skip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from jaxvis.data.datasets import DatasetError
from jaxvis.data.segmentation import read_concepts

NAMES = ("a", "b", "c")
SKIPPED = ("image missing", "image unreadable", "mask unreadable")
REFUSED = ("mask of another size", "mask with unknown ids")
LISTING = ("mask missing",)
CSV_DAMAGE = ("not UTF-8", "no id column", "id not an integer", "repeated id", "id 0")
CONCEPTS = "id,name,category\n1,red,color\n2,brick,texture\n"


def build(root: Path, damage: dict[str, str | None], csv_damage: str | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    text = {None: CONCEPTS, "no id column": CONCEPTS.replace("id,", "number,"), "id 0": CONCEPTS + "0,x,color\n",
            "id not an integer": CONCEPTS + "two,x,color\n", "repeated id": CONCEPTS + "2,x,color\n"}
    (root / "concepts.csv").write_bytes(b"id,name\n1,\xff\xfe\n" if csv_damage == "not UTF-8"
                                        else text[csv_damage].encode())
    for name in NAMES:
        image, mask = root / "images" / f"{name}.png", root / "masks" / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(image)
        side = 12 if damage[name] == "mask of another size" else 16
        ids = rng.integers(0, 3, (side, side), dtype=np.uint8)
        if damage[name] == "mask with unknown ids":
            ids[3, 4] = 7
        Image.fromarray(ids).save(mask)
        broken = {"image missing": (image, None), "image unreadable": (image, b"not a png"),
                  "mask missing": (mask, None), "mask unreadable": (mask, image.read_bytes()[:40])}
        if damage[name] in broken:
            path, content = broken[damage[name]]
            path.unlink() if content is None else path.write_bytes(content)


@settings(max_examples=150, deadline=None, database=None)
@given(damage=st.fixed_dictionaries({name: st.sampled_from((None, None, *SKIPPED, *REFUSED, *LISTING)) for name in NAMES}),
       csv_damage=st.sampled_from((None, None, None, *CSV_DAMAGE)), seed=st.integers(0, 1000))
def test_any_concept_set_streams_with_damaged_files_skipped_or_is_refused_clearly(damage, csv_damage, seed):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        build(root, damage, csv_damage, seed)
        # What must happen, in the order the reader meets it: concepts.csv; the listing of images/ (an image
        # missing there is not listed) and of each listed image's mask; then, streaming, each image, its mask.
        listed = [name for name in NAMES if damage[name] != "image missing"]
        refused_by = next((name for name in listed if damage[name] in LISTING), None) or \
            next((name for name in listed if damage[name] in REFUSED), None)
        try:
            data = read_concepts(root)
            batches = list(data.stream(size=8, seg_size=4, batch_size=2))
        except DatasetError as error:
            message = str(error)
            if csv_damage is not None:
                assert "concepts.csv" in message
            elif not listed:
                assert f"no images in {root / 'images'}" in message
            else:
                assert refused_by is not None, message
                assert str(root / "masks" / f"{refused_by}.png") in message
            return
        assert listed, "a set without images was not refused"
        assert csv_damage is None and refused_by is None, f"not refused: {csv_damage} {damage}"
        read = [name for name in NAMES if damage[name] is None]
        assert [Path(path).stem for batch in batches for path in batch.paths] == read
        for batch in batches:
            assert batch.images.shape[1:] == (8, 8, 3) and batch.labels.shape[1:] == (1, 4, 4)
            assert batch.labels.min() >= 0 and batch.labels.max() <= 2
        damaged = {name for name in NAMES if damage[name] in SKIPPED and damage[name] != "image missing"}
        assert {path.stem for path, _ in data.skipped} == damaged  # each named once
