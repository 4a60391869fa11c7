"""Which units carry an attack (Bau et al. 2020, PNAS, "Adversarial attacks"): restore a few units of one
layer to their clean maps in the adversarial image and see how much of the attack is undone.

    pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0      # its 20 labelled ImageNet photos
    python benchmarks/attack_units.py [--layers features.14 features.7] [--eps 2/255]

MobileNetV2 (real ImageNet weights), foolbox's 20 ImageNet photos at 224 px, PGD-10 L-infinity (step eps/4,
no random start), untargeted; only the images it fooled count. For each layer and k, the k units of each
image ranked four ways by `jaxvis.analysis.attribution.unit_changes` -- carried (each unit's own restoration
effect), rose (mean activation rose most), pushed (gradient x activation toward the adversarial class rose
most), and k random units (3 draws) -- are put back together (`restored_margin`). Reported: the share of
fooled images whose true class wins again, and the median of the margin left (logit of the adversarial
class less the true class's) as a share of the margin before.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from common import machine, markdown_table, write_section  # noqa: E402
from transfer import photo_folder  # noqa: E402

KS = (1, 4, 8, 16)
RANDOM_DRAWS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="+", default=["features.14", "features.7"])
    parser.add_argument("--eps", default="2/255")
    args = parser.parse_args()
    eps = float(Fraction(args.eps))

    import jaxvis
    from jaxvis.analysis.attribution import restored_margin, unit_changes
    from jaxvis.data.datasets import labelled_images
    from jaxvis.data.io import read_photo
    from jaxvis.methods.attacks import pgd
    from jaxvis.models.model import logits

    model = jaxvis.load("mobilenet_v2")
    items = labelled_images(photo_folder())
    clean = np.stack([read_photo(str(item.path), 224, model.arch.min_size) for item in items])
    truth = np.array([item.label for item in items])
    labels = logits(model, clean).argmax(-1)
    correct = labels == truth
    result = pgd(model, clean[correct], labels[correct], eps=eps, step_size=eps / 4, steps=10, random_start=False)
    fooled = result.success
    clean, adversarial = clean[correct][fooled], result.images[fooled]
    labels, fooled_as = labels[correct][fooled], result.prediction[fooled]
    print(f"{int(correct.sum())} of {len(items)} photos right clean, {len(clean)} fooled at eps {args.eps}",
          file=sys.stderr)
    rng = np.random.default_rng(0)
    rows, record = [], {"eps": eps, "images": int(len(clean)), "layers": {}}
    for layer in args.layers:
        changes = unit_changes(model, clean, adversarial, layer, labels, fooled_as, top=max(KS))
        width = changes.restored.shape[1]
        rankings = {by: changes.ranked(by) for by in ("carried", "rose", "pushed")}
        rankings.update({f"random {d}": np.stack([rng.permutation(width)[:max(KS)] for _ in clean])
                         for d in range(RANDOM_DRAWS)})
        measured = {}
        for by, ranked in rankings.items():
            for k in KS:
                left = restored_margin(model, clean, adversarial, layer, labels, fooled_as, ranked[:, :k])
                measured[(by, k)] = (float((left < 0).mean()), float(np.median(left / changes.margin)))
        record["layers"][layer] = {f"{by} k={k}": value for (by, k), value in measured.items()}
        for by in ("carried", "rose", "pushed", "random"):
            cells = []
            for k in KS:
                if by == "random":
                    draws = [measured[(f"random {d}", k)] for d in range(RANDOM_DRAWS)]
                    flipped, left = np.mean([d[0] for d in draws]), np.mean([d[1] for d in draws])
                else:
                    flipped, left = measured[(by, k)]
                cells.append(f"{flipped:.0%} / {left:.2f}")
            rows.append([layer, f"{width}", by + (f" (mean of {RANDOM_DRAWS})" if by == "random" else ""), *cells])
    header = ["layer", "units", "ranking", *[f"k = {k}: true class back / margin left" for k in KS]]
    text = (f"MobileNetV2, foolbox's 20 ImageNet photos, PGD-10 L-inf eps {args.eps} (step eps/4, no random "
            f"start); {len(clean)} fooled images count. The k units of each image are restored to their clean "
            "maps together in the adversarial image: the share whose true class wins again, and the median "
            "adversarial margin left as a share of the margin before. `python benchmarks/attack_units.py`; "
            f"{machine()}.\n\n" + markdown_table(header, rows))
    write_section("attack_units", text)
    Path(__file__).with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(text)


if __name__ == "__main__":
    main()
