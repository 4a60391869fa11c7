"""Picture: Plug-In Inversion on MobileNetV2 at this CPU's budget vs the reference budget, judged by Lite0.

Reads the raw images `inversion_quality.py` kept under benchmarks/out/ (run it first with
`--class-ids 145,292,309 --size 224 --pii-steps 401 --ensemble 48 --methods pii,logit --pairs 0`)
and writes docs/inversion-pii-budget-mobilenet_v2.jpg: one row per run, each image captioned
with the rank EfficientNet-Lite0 gives its target class (#1 = top-1).

    python benchmarks/pii_budget_sheet.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import jaxvis  # noqa: E402
from inversion_quality import DOCS, saved_images  # noqa: E402
from jaxvis.app.gallery import contact_sheet  # noqa: E402
from jaxvis.data.imagenet import class_names  # noqa: E402
from jaxvis.pieces.transforms import resize_images  # noqa: E402

CLASSES = [145, 292, 309]  # the three PII missed worst at 128 px, ensemble 4 (king penguin, tiger, bee)
ROWS = [("PII 128/e4", "pii", "128 px, 401 steps/stage, ensemble 4"),
        ("PII 224/e48", "pii", "224 px, 401 steps/stage, ensemble 48, classes 145,292,309"),
        ("logit 224", "logit", "224 px, 512 steps, classes 145,292,309")]


def main() -> None:
    judge, names = jaxvis.load("efficientnet_lite0"), class_names()
    images, labels = [], []
    for label, method, budget in ROWS:
        with np.load(saved_images(method, "mobilenet_v2", budget)) as data:
            kept = list(data["classes"])
            chosen = data["images"][[kept.index(c) for c in CLASSES]]
        logits = np.asarray(judge(chosen))
        for image, target, row in zip(np.asarray(resize_images(chosen, 224)), CLASSES, logits):
            images.append(image)
            labels.append(f"{label} {names[target].split()[-1][:8]}: #{int((row > row[target]).sum()) + 1}")
    path = DOCS / "inversion-pii-budget-mobilenet_v2.jpg"
    Image.fromarray(contact_sheet(np.stack(images), labels, columns=len(CLASSES))).save(path, quality=90)
    print(path, *labels, sep="\n")


if __name__ == "__main__":
    main()
