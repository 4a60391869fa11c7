"""Forward + input-gradient of a frozen network: jaxvis vs torch, side by side in one run.

This is the inner loop of every jaxvis method (one optimization step is a
forward and a backward to the image), so it bounds how fast they can be.

    python benchmarks/forward_grad.py [--runs 7] [--models mobilenet_v2 resnet50]

For each model, batch (1, 8) and size (128, 224) it alternates jaxvis and
torch calls and reports the median of --runs timed calls after warm-up,
jaxvis's compile time separately, and writes the table to RESULTS.md.
MobileNetV2 uses its real ImageNet weights; ResNet-50 the same random weights
in both (the cost does not depend on the values).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import jaxvis  # noqa: E402
from common import machine, markdown_table, median, seconds, write_section  # noqa: E402

TARGET_CLASS = 1


def torch_model(name: str) -> torch.nn.Module:
    model = getattr(torchvision.models, name)(weights=None)
    if name == "mobilenet_v2":
        from converters import find_weights

        path = find_weights(jaxvis.architecture(name).pretrained, download=False).path
        model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval().requires_grad_(False)


def torch_step(model: torch.nn.Module, arch: jaxvis.Architecture):
    mean = torch.tensor(arch.mean).view(1, 3, 1, 1)
    std = torch.tensor(arch.std).view(1, 3, 1, 1)

    def step(images: torch.Tensor) -> torch.Tensor:
        images = images.detach().requires_grad_(True)
        model((images - mean) / std)[:, TARGET_CLASS].sum().backward()
        return images.grad

    return step


def jaxvis_step():
    return jax.jit(jax.grad(lambda model, images: model(images)[:, TARGET_CLASS].sum(), argnums=1))


def bench(name: str, batches: list[int], sizes: list[int], runs: int) -> list[dict]:
    reference = torch_model(name)
    model = jaxvis.load(name, weights=reference.state_dict() if name != "mobilenet_v2" else "pretrained")
    step_torch, step_jax = torch_step(reference, model.arch), jaxvis_step()
    rows = []
    for batch in batches:
        for size in sizes:
            images = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
            x_jax, x_torch = jnp.asarray(images), torch.tensor(images).permute(0, 3, 1, 2).contiguous()
            start = time.perf_counter()
            grad_jax = step_jax(model, x_jax).block_until_ready()
            compile_s = time.perf_counter() - start
            grad_torch = step_torch(x_torch).permute(0, 2, 3, 1).numpy()
            ours = np.asarray(grad_jax).ravel()
            agreement = float(ours @ grad_torch.ravel() / (np.linalg.norm(ours) * np.linalg.norm(grad_torch)))
            for _ in range(2):  # warm-up
                step_jax(model, x_jax).block_until_ready()
                step_torch(x_torch)
            t_jax, t_torch = [], []
            for _ in range(runs):  # alternate, so both see the same machine conditions
                t_jax += seconds(lambda: step_jax(model, x_jax).block_until_ready(), 1)
                t_torch += seconds(lambda: step_torch(x_torch), 1)
            row = dict(model=name, batch=batch, size=size, jaxvis_ms=1e3 * median(t_jax), torch_ms=1e3 * median(t_torch),
                       compile_s=compile_s, grad_cosine=agreement)
            row["speedup"] = row["torch_ms"] / row["jaxvis_ms"]
            print(f"{name:14s} batch {batch:2d} {size:3d}px  jaxvis {row['jaxvis_ms']:8.1f} ms  torch {row['torch_ms']:8.1f} ms"
                  f"  torch/jaxvis {row['speedup']:5.2f}x  (compile {compile_s:.1f}s, gradient cosine {agreement:.6f})", flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 224])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    rows = [row for name in args.models for row in bench(name, args.batches, args.sizes, args.runs)]
    table = markdown_table(
        ["model", "batch", "size", "jaxvis ms", "torch ms", "torch / jaxvis", "jaxvis compile s", "gradient cosine vs torch"],
        [[r["model"], str(r["batch"]), str(r["size"]), f"{r['jaxvis_ms']:.1f}", f"{r['torch_ms']:.1f}",
          f"**{r['speedup']:.2f}x**", f"{r['compile_s']:.1f}", f"{r['grad_cosine']:.6f}"] for r in rows],
    )
    text = (
        "## Forward + input gradient (`benchmarks/forward_grad.py`)\n\n"
        f"Machine: {machine()}. Median of {args.runs} alternating runs after warm-up; "
        "gradient of one logit w.r.t. the input images; jaxvis with its default fast paths "
        "(BatchNorm folded, 1x1 convs as matmuls, depthwise as shifted products on CPU). "
        "torch / jaxvis > 1 means jaxvis is faster. The gradients are compared by cosine: "
        "elementwise they differ where a unit lies within rounding error of a ReLU kink.\n\n" + table
    )
    if not args.no_write:
        write_section("forward_grad", text)
    print(text)


if __name__ == "__main__":
    main()
