"""Transfer of adversarial examples between networks (Szegedy et al. 2013, Sec. 4.2), both ways between
MobileNetV2 and EfficientNet-Lite0 (real ImageNet weights), with `jaxvis.methods.attacks.evaluate`.

    pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0      # its 20 labelled ImageNet photos
    python benchmarks/transfer.py

Images: foolbox's 20 ImageNet photos (labels in their file names), 224 px. Attacks, all untargeted:
FGSM; PGD-10 L-infinity (step eps/4, no random start); APGD-CE 20 steps; C&W L2 (2 rounds of 50 steps
from c = 1, no abort early), read at L2 radii. Per attack, eps and direction: the source's robust
accuracy, the target's accuracy on the source's adversarial images, and the transfer rate -- of the
images the source attack fooled that the target gets right clean, the share the target gets wrong
(count in brackets). 20 images: each rate is a few counts; read the trend, not the digits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import machine, markdown_table, write_section  # noqa: E402

LINF = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
L2 = (0.25, 0.5, 1.0, 2.0)


def photo_folder() -> Path:
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        raise SystemExit("install foolbox for its photos: pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0")
    folder = Path(tempfile.mkdtemp(prefix="jaxvis-imagenet-"))
    for photo in sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg")):
        shutil.copy(photo, folder)
    return folder


def main() -> None:
    import jaxvis
    from jaxvis.methods.attacks import apgd, cw, evaluate, fgsm, pgd

    def pgd10(model, images, labels, *, eps):
        return pgd(model, images, labels, eps=eps, step_size=eps / 4, steps=10, random_start=False)

    def apgd20(model, images, labels, *, eps):
        return apgd(model, images, labels, eps=eps, steps=20)

    def cw_l2(model, images, labels):
        return cw(model, images, labels, binary_search_steps=2, steps=50, initial_const=1.0, abort_early=False)

    attacks = [("FGSM", fgsm, LINF), ("PGD-10", pgd10, LINF), ("APGD-CE-20", apgd20, LINF), ("C&W L2", cw_l2, L2)]
    models = {name: jaxvis.load(name) for name in ("mobilenet_v2", "efficientnet_lite0")}
    folder = photo_folder()
    rows, records = [], []
    for source_name, source in models.items():
        (target,) = [m for n, m in models.items() if n != source_name]
        for label, attack, budgets in attacks:
            started = time.perf_counter()
            report = evaluate(source, folder, attack, eps=budgets, batch_size=20, transfer_to=[target])
            took = time.perf_counter() - started
            print(f"{label} {source_name} -> {target.name}: {took:.1f} s", file=sys.stderr)
            for eps in budgets:
                counts = report.transfer[target.name][eps]
                rate = report.transfer_rate(target.name, eps)
                shown = f"{eps * 255:.0f}/255" if budgets is LINF else f"L2 {eps:g}"
                rows.append([label, f"{source_name} → {target.name}", shown,
                             f"{100 * report.robust_accuracy(eps):.0f}%",
                             f"{100 * counts.correct / report.total:.0f}%",
                             "–" if counts.fooled_by_source == 0 else
                             f"{100 * rate:.0f}% ({counts.transferred}/{counts.fooled_by_source})"])
                records.append(dict(attack=label, source=source_name, target=target.name, eps=eps,
                                    source_clean=report.clean_accuracy, source_robust=report.robust_accuracy(eps),
                                    target_clean=report.transfer_clean_correct[target.name] / report.total,
                                    target_accuracy=counts.correct / report.total, transferred=counts.transferred,
                                    eligible=counts.fooled_by_source))
            clean = (source_name, report.clean_accuracy, target.name,
                     report.transfer_clean_correct[target.name] / report.total)
    header = ["attack", "made on → judged by", "eps", "source robust acc.", "target acc.", "transfer rate"]
    table = markdown_table(header, rows)
    print(table)
    note = (f"Clean accuracy on these 20 photos: {clean[2]} {100 * clean[3]:.0f}%, {clean[0]} "
            f"{100 * clean[1]:.0f}%." if rows else "")
    write_section("transfer", f"""## Transfer between networks (`benchmarks/transfer.py`)

Adversarial images made on one network and classified by the other (Szegedy et al. 2013), foolbox's 20
labelled ImageNet photos at 224 px, untargeted. Transfer rate: of the images the source attack fooled that
the target gets right clean, the share the target now gets wrong (counts in brackets; 20 images, so read
the trend). PGD-10: step eps/4, no random start; APGD-CE: 20 steps; C&W: 2 rounds × 50 steps from c = 1,
read at each L2 radius. The bounded attacks stop each image at its first misclassification (jaxvis's
default early stopping), so their perturbations only just cross the source's boundary; FGSM spends the
full eps on every image and transfers best at 8/255. {note} Machine: {machine()}.

{table}
""")
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(dict(machine=machine(), rows=records), indent=1))


if __name__ == "__main__":
    main()
