"""Network dissection's two passes in jaxvis against the same algorithm written in PyTorch, alternating in one run.

    python benchmarks/dissect_vs_torch.py [--layer features.14] [--batch 32] [--repeats 3]
    python benchmarks/dissect_vs_torch.py --model dcgan_faces --layer main.8 --batch 64   # GAN dissection

Same network (MobileNetV2, the real ImageNet weights, torchvision's module in torch), same data
(the offline concept set, `jaxvis.analysis.units.concept_set`, decoded once and held in memory so both
sides time compute, not JPEG decoding), same batch, 224 px images, 112 px label maps.

- pass 1 (survey): forward to the layer; per unit the running top-k images by peak activation
  and a quantile sketch of every activation (the log-bucketed histogram of
  `jaxvis.analysis.units.quantiles`, in torch: bucket index + `scatter_add_`);
- pass 2 (tally): forward to the layer; upsample each unit's map bilinearly to 112 px
  (align_corners=False, NetDissect's geometry); threshold at the unit's top-0.5% level; count
  intersections with every concept present in the batch, activated pixels per category, and
  labelled pixels (`jaxvis.analysis.units.iou`; torch: the same counts with `einsum`).

The torch side follows NetDissect-Lite's `FeatureOperator.tally` (written from its algorithm,
not copied), vectorized over units and concepts as the jaxvis side is; it upsamples the whole
layer at once (torch's fastest), jaxvis in chunks of 32 units. Both sides' results are checked
against each other. Reported: images/s of each pass (median over repeats; jaxvis warm, its
first pass with the compile given separately), the ratio, and the tally step's achieved
GFLOP/s (XLA's cost analysis) against this machine's matmul peak.

With `--model dcgan_faces` it is GAN dissection's pass (Bau et al. 2019): the inputs are latent
vectors, the generator draws each batch (torch: the PyTorch DCGAN tutorial's generator holding the
same weights) up to the layer, the maps are upsampled to the 64 px images' size and thresholded at
the top 1%, and the masks are those of `jaxvis.analysis.gan.samples` (sampled and segmented once, cached,
held in memory).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from common import (keep_row, machine, markdown_table, matmul_gflops, median, processor, torch_dcgan,  # noqa: E402
                    torch_mobilenet_v2, write_section)


def load_batches(model, batch: int, samples: int):
    """The data set decoded once and held (every stream of it yields the same batches), and its batches for
    the torch side (inputs, indices, compact labels, concept ids): the offline concept set at 224 px with
    112 px labels, or a generator's sampled faces (latents, 64 px labels)."""
    from jaxvis.analysis.units import iou
    from jaxvis.analysis.units.concept_set import build_concept_set
    from jaxvis.data.segmentation import read_concepts

    if model.arch.is_generator:
        from jaxvis.analysis.gan.samples import sample_concepts

        data, size, seg_size = sample_concepts(model, samples, progress=False), model.input_size, model.input_size
    else:
        data, size, seg_size = read_concepts(build_concept_set(tempfile.mkdtemp(prefix="jaxvis-concepts-"))), 224, 112
    held = list(data.stream(size, seg_size, batch))
    data = copy.copy(data)  # the library's dissection streams these held batches: both sides time compute
    data.stream = lambda *args, start=0, **options: iter(held[start // batch:])
    batches = []
    for b in held:
        labels, ids = iou.compact(b.labels)
        batches.append((b.images, b.indices, labels, ids))
    return data, batches


# --- the torch side ------------------------------------------------------------------------------------


class TorchDissection:
    """Both passes in torch, following NetDissect-Lite's algorithm (vectorized over units and concepts)."""

    def __init__(self, forward, units: int, k: int, alpha: float, floor: float, ceiling: float):
        import torch

        self.torch = torch
        self.acts = forward  # inputs (NumPy) -> the layer's maps (B, U, h, w)
        self.k, self.units = k, units
        self.gamma = (1 + alpha) / (1 - alpha)
        self.floor, self.side = floor, math.ceil(math.log(ceiling / floor) / math.log(self.gamma))

    def survey(self, batches):
        torch = self.torch
        values = torch.full((self.units, self.k), -math.inf)
        images = torch.full((self.units, self.k), -1, dtype=torch.long)
        positions = torch.zeros((self.units, self.k), dtype=torch.long)
        maps = None
        counts = torch.zeros((self.units, 2 * self.side + 1), dtype=torch.int64)
        with torch.no_grad():
            for batch_images, indices, _, _ in batches:
                acts = self.acts(batch_images)
                peaks, where = acts.flatten(2).max(2)  # (B, U): the peak and its position, as jaxvis keeps
                unit_maps = acts.transpose(0, 1)  # (U, B, h, w)
                if maps is None:
                    maps = torch.zeros((self.units, self.k, *acts.shape[2:]))
                joined = torch.cat([values, peaks.T], 1)
                ids = torch.cat([images, torch.from_numpy(indices).long().expand(self.units, -1)], 1)
                values, chosen = joined.topk(self.k, dim=1)
                images = ids.gather(1, chosen)
                positions = torch.cat([positions, where.T], 1).gather(1, chosen)
                joined_maps = torch.cat([maps, unit_maps], 1)
                maps = joined_maps[torch.arange(self.units)[:, None], chosen]
                flat = acts.transpose(0, 1).reshape(self.units, -1)
                magnitude = flat.abs()
                level = torch.ceil(torch.log(magnitude.clamp_min(self.floor) / self.floor) / math.log(self.gamma))
                level = torch.where(magnitude > self.floor, level.clamp(1, self.side), torch.zeros_like(level))
                bucket = (self.side + torch.sign(flat) * level).long()
                counts.scatter_add_(1, bucket, torch.ones_like(bucket))
        return values.numpy(), images.numpy(), counts.numpy()

    def tally(self, batches, thresholds: np.ndarray, category: np.ndarray, concepts: int, categories: int):
        torch = self.torch
        both = torch.zeros((self.units, concepts), dtype=torch.int64)
        activated = torch.zeros((self.units, categories), dtype=torch.int64)
        labelled = torch.zeros(concepts, dtype=torch.int64)
        threshold = torch.from_numpy(thresholds).view(1, -1, 1, 1)
        category = torch.from_numpy(category).long()
        with torch.no_grad():
            for batch_images, _, labels, ids in batches:
                acts = self.acts(batch_images)
                size = labels.shape[-2:]
                up = torch.nn.functional.interpolate(acts, size=size, mode="bilinear", align_corners=False)
                on = (up > threshold).flatten(2).float()  # (B, U, S·S)
                ids = torch.from_numpy(ids).long()
                used = ids[1:] > 0
                numbers = torch.where(used, torch.arange(1, len(ids)), torch.full_like(ids[1:], -1))
                onehot = (torch.from_numpy(labels)[..., None] == numbers).any(1).flatten(1, 2).float()  # (B, S·S, n)
                in_category = torch.nn.functional.one_hot(category[ids[1:]], categories).float() * used[:, None]
                annotated = (onehot.sum(1) @ in_category > 0).float()  # (B, K)
                both.index_add_(1, ids[1:], torch.einsum("bup,bpc->uc", on, onehot).round().long() * used)
                activated += (on.sum(2).T @ annotated).round().long()
                labelled.index_add_(0, ids[1:], onehot.sum((0, 1)).round().long() * used)
        return both.numpy(), activated.numpy(), labelled.numpy()


def classifier_forward(net, layer: str):
    """MobileNetV2's forward to `features.N` from NHWC images in [0, 1] (ImageNet normalization)."""
    import torch

    features = net.features[: int(layer.split(".")[1]) + 1]  # the forward stops at the layer, as jaxvis's does
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return lambda images: features((torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std)


def generator_forward(net, layer: str):
    """The DCGAN generator's forward to `main.N` from latents (B, nz)."""
    import torch

    main = net.main[: int(layer.split(".")[1]) + 1]
    return lambda z: main(torch.from_numpy(z)[:, :, None, None])


# --- the jaxvis side -----------------------------------------------------------------------------------


def jaxvis_passes(model, layer: str, data, batch: int, quantile: float):
    """One call of the library's dissection (`jaxvis.dissect`, or GAN dissection's for a generator) over the
    held data: its Dissection, with each pass's seconds."""
    if model.arch.is_generator:
        from jaxvis.analysis.gan.dissect import dissect

        return dissect(model, layer, data=data, quantile=quantile, batch_size=batch, progress=False)
    import jaxvis

    return jaxvis.dissect(model, layer, data, quantile=quantile, size=224, seg_size=112, batch_size=batch,
                          progress=False)


def tally_flops(model, layer: str, data, batches, batch: int, thresholds: np.ndarray) -> float:
    """XLA's count of the floating-point operations of one tally step (a full batch)."""
    import jax
    import jax.numpy as jnp

    from jaxvis.analysis.units import iou
    from jaxvis.analysis.units.dissect import TallySpec, tally_step

    images, _, labels, ids = batches[0]
    concepts = data.concepts
    spec = TallySpec(jnp.asarray(thresholds), jnp.asarray(concepts.category), layer)
    state = iou.init(len(thresholds), len(concepts), len(concepts.categories))
    compiled = jax.jit(tally_step).lower(model, spec, state, images, labels, ids, np.ones(batch, bool)).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=["mobilenet_v2", "dcgan_faces"])
    parser.add_argument("--samples", type=int, default=256, help="sampled faces (dcgan_faces)")
    parser.add_argument("--layer", default="features.14")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, but leave RESULTS.md alone")
    args = parser.parse_args()
    import jaxvis
    from jaxvis.analysis.units import iou, quantiles
    from jaxvis.analysis.units.dissect import TOP_K
    from jaxvis.analysis.units.survey import layer_map_shape

    model = jaxvis.load(args.model)
    data, batches = load_batches(model, args.batch, args.samples)
    images = sum(len(b[1]) for b in batches)
    _, _, units = layer_map_shape(model, args.layer, 224)
    generator = model.arch.is_generator
    quantile = 0.01 if generator else 0.005  # GAN Dissection's, NetDissect's
    forward = generator_forward(torch_dcgan(model), args.layer) if generator else \
        classifier_forward(torch_mobilenet_v2(model), args.layer)
    reference = TorchDissection(forward, units, TOP_K, quantiles.ALPHA, quantiles.FLOOR, quantiles.CEILING)
    print(f"{images} images, {len(batches)} batches of {args.batch}, {args.layer} ({units} units)", flush=True)
    cold = jaxvis_passes(model, args.layer, data, args.batch, quantile).seconds
    times: dict[str, list[float]] = {"jaxvis survey": [], "jaxvis tally": [], "torch survey": [], "torch tally": []}
    for repeat in range(args.repeats):
        found = jaxvis_passes(model, args.layer, data, args.batch, quantile)
        survey_s, tally_s, thresholds = found.seconds["survey"], found.seconds["tally"], found.thresholds
        start = time.perf_counter()
        values, top_images, counts = reference.survey(batches)
        torch_survey = time.perf_counter() - start
        start = time.perf_counter()
        both, activated, labelled = reference.tally(batches, thresholds, data.concepts.category, len(data.concepts),
                                                    len(data.concepts.categories))
        torch_tally = time.perf_counter() - start
        for name, value in (("jaxvis survey", survey_s), ("jaxvis tally", tally_s), ("torch survey", torch_survey),
                            ("torch tally", torch_tally)):
            times[name].append(value)
        print(f"  repeat {repeat}: jaxvis survey {survey_s:.2f}s tally {tally_s:.2f}s | torch survey "
              f"{torch_survey:.2f}s tally {torch_tally:.2f}s", flush=True)
    same_top = float((np.asarray(found.survey.top.images) == top_images).mean())
    sketch_gap = int(np.abs(np.asarray(found.survey.sketch.counts) - counts).sum())
    torch_iou = iou.iou(iou.Tally(both, activated, labelled), data.concepts.category)
    iou_gap = float(np.abs(found.iou - torch_iou).max())
    print(f"agreement: top-k images {same_top:.4f} equal; sketch counts off by {sketch_gap} of {counts.sum()}; "
          f"IoU off by {iou_gap:.2e} at most", flush=True)
    flops = tally_flops(model, args.layer, data, batches, args.batch, thresholds)
    tally_rate = flops / (median(times["jaxvis tally"]) / len(batches)) / 1e9
    peak = matmul_gflops()
    rate = {name: images / median(values) for name, values in times.items()}
    row = [args.layer if not generator else f"{args.layer} ({model.name})", str(args.batch), str(images),
           f"{rate['jaxvis survey']:.1f}", f"{rate['torch survey']:.1f}",
           f"**{rate['jaxvis survey'] / rate['torch survey']:.2f}x**",
           f"{rate['jaxvis tally']:.1f}", f"{rate['torch tally']:.1f}",
           f"**{rate['jaxvis tally'] / rate['torch tally']:.2f}x**",
           f"{cold['survey'] + cold['tally']:.1f}", f"{tally_rate:.0f} of {peak:.0f} ({100 * tally_rate / peak:.0f}%)",
           f"{same_top:.3f} / {iou_gap:.1e}"]
    if args.no_write:
        print(row)
        return
    rows = keep_row("dissect_vs_torch", f"{model.name} {args.layer} batch {args.batch}", row)
    header = ["machine", "layer", "batch", "images", "survey jaxvis img/s", "survey torch img/s", "survey ratio",
              "tally jaxvis img/s", "tally torch img/s", "tally ratio", "jaxvis first run s (compiles)",
              "tally step GFLOP/s of matmul peak", "agreement: top-k / IoU"]
    write_section("dissect_vs_torch", f"""## Network dissection vs PyTorch (`benchmarks/dissect_vs_torch.py`)

MobileNetV2 (real weights), the offline concept set held in memory, 224 px images, 112 px label maps; the
same two passes in both (`python benchmarks/dissect_vs_torch.py`; its docstring says what each does).
Rows marked `(dcgan_faces)`: GAN dissection's passes on the DCGAN faces generator (`--model dcgan_faces`),
its {args.samples} sampled faces' latents as inputs, 64 px masks, quantile 0.01.
images/s: medians over {args.repeats} alternating repeats, jaxvis warm (its first run, compiling both
programs, in its own column). The jaxvis side is one call of `jaxvis.dissect` (GAN dissection's for the
generator) on the data held in memory. Agreement: the share of identical top-{TOP_K} image indices, and the
largest difference of IoU (bilinear arithmetic differs in the last bits, so pixels at the threshold can
flip). GFLOP/s: XLA's flop count of one tally step over its median time. Measured on:
{machine()}.

{markdown_table(header, rows)}
""")
    print(f"{processor()}: survey {rate['jaxvis survey'] / rate['torch survey']:.2f}x, tally "
          f"{rate['jaxvis tally'] / rate['torch tally']:.2f}x torch")


if __name__ == "__main__":
    main()
