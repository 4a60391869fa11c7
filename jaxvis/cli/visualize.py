"""`jaxvis visualize`: feature visualization of a layer's units with Lucid's defaults, in vectorized groups."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from converters.resolve import user_weight_file
from jaxvis.cli.common import (DEFAULT_OUT, add_parser, cell_suffix, check_counts, integer_list, load_model, minutes,
                               number_list, weights_identity, write_grid_page)
from jaxvis.cli import distributed as across
from jaxvis.core.errors import JaxvisError
from jaxvis.core.run_state import check_same_request, discard_state, save_request, saved_steps
from jaxvis.core.files import human
from jaxvis.engine.memory import device_budget, parse_bytes
from jaxvis.engine.sweeps import Grid, unit_groups

DEFAULT_GROUP = 32  # units x cells per program where no memory budget applies

EXAMPLES = """  jaxvis visualize mobilenet_v2                      features.14, channels 0-15, 128 px, 512 steps (~4 min, 2 CPU cores)
  jaxvis visualize mobilenet_v2 features.10 --channels 0-63 --steps 256 --out runs/f10
  jaxvis visualize googlenet inception4a --channels 3,7,9 --param maco --images 4 --diversity 100
  jaxvis visualize mobilenet_v2 logits --objective logit --channels 1,207,980
  jaxvis visualize dinov2_vits14_focus backbone.encoder.layer.6.mlp.activation --channels 0-7 --token patches
  jaxvis visualize mobilenet_v2 features.14 --channels 0-3 --lr 0.02,0.05,0.1 --images 2 --diversity 0,50
                                                     a sweep: every combination in one program; grid.html shows it
An interrupted run (Ctrl-C) keeps its optimization state under $JAXVIS_CACHE/runs/ (default ~/.cache/jaxvis):
the same command again continues it ("resuming at step S of T"); a changed one is refused, naming what
changed, unless --fresh starts it over. The state is removed once the run is complete (`jaxvis cache` lists it).
""" + across.EXAMPLE


COMMANDS = ("visualize",)


SWEEPABLE = ("lr", "diversity", "tv", "l1", "l2", "jitter", "scale")  # flags that take a comma list


def add_commands(commands: Any) -> None:
    from jaxvis.models.request import OBJECTIVE_NAMES, PARAM_NAMES

    vis = add_parser(commands, "visualize", "feature visualization of a layer's units (Lucid's defaults)", EXAMPLES)
    vis.add_argument("name", help="architecture, e.g. mobilenet_v2 (`jaxvis models` lists them)")
    vis.add_argument("layer", nargs="?", help="layer name (default: a middle layer of the model; "
                     "`jaxvis layers NAME` lists them)")
    vis.add_argument("--channels", default="0-15", help="units: 7, 0-63 or 3,7,9")
    vis.add_argument("--token", help="transformer layers: read each channel at the CLS token (cls), averaged over "
                     "the patch tokens (patches) or at one patch (ROW,COLUMN of the token grid); default: averaged "
                     "over every token")
    vis.add_argument("--objective", default="channel", choices=OBJECTIVE_NAMES,
                     help="what to maximize: a channel's mean, the center neuron, a class logit or log-probability, "
                          "or the layer's DeepDream energy")
    vis.add_argument("--size", type=int, default=128, help="image size in pixels (smaller images are upsampled "
                     "to the model's input size before it, as Lucent does)")
    vis.add_argument("--steps", type=int, default=512, help="optimization steps")
    vis.add_argument("--param", default="fourier", choices=PARAM_NAMES,
                     help="image parameterization: Lucid's decorrelated Fourier, plain pixels, or MaCo (phase only)")
    vis.add_argument("--lr", type=number_list, default=0.05, help="Adam learning rate; a comma list (0.02,0.05,0.1) "
                     "sweeps it: every combination of the swept values runs in one compiled program")
    vis.add_argument("--relu-override-steps", type=int, default=16,
                     help="steps with Lucid's redirected ReLU gradient at the start (0: off)")
    vis.add_argument("--group-size", type=int,
                     help="units x sweep cells optimized together in one vectorized program (a group; a sweep's "
                          "grid runs whole in each, with at least one unit); default: as many as fit in "
                          f"--memory-budget, and {DEFAULT_GROUP} where there is no budget (a CPU)")
    vis.add_argument("--memory-budget", metavar="SIZE",
                     help="memory one device may give a group's program, e.g. 6GB (default: half of a GPU's or "
                          "TPU's memory; none on a CPU): the group size is chosen from the compiled program's "
                          "memory analysis")
    vis.add_argument("--images", type=int, default=1, help="images per unit")
    vis.add_argument("--diversity", type=number_list, default=0.0,
                     help="weight of the diversity term (with --images > 1); a comma list sweeps it")
    vis.add_argument("--tv", type=number_list, default=0.0,
                     help="weight of the total-variation penalty on the image (Lucid's); a comma list sweeps it")
    vis.add_argument("--l1", type=number_list, default=0.0,
                     help="weight of the L1 penalty |image - 0.5| (Lucid's L1); a comma list sweeps it")
    vis.add_argument("--l2", type=number_list, default=0.0,
                     help="weight of the L2 penalty ||image - 0.5|| (Lucid's L2); a comma list sweeps it")
    vis.add_argument("--jitter", type=integer_list, default=8,
                     help="pixels of the first random shift of Lucid's standard transforms; a comma list sweeps it")
    vis.add_argument("--scale", type=number_list, default=0.1,
                     help="the random zoom's spread: scales 1 ± SCALE in 11 steps (Lucid's 0.1); a comma list "
                          "sweeps it")
    vis.add_argument("--ensemble", type=int, default=1, help="transformed views per image and step (averaged)")
    vis.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same images")
    vis.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    vis.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/NAME-LAYER)")
    vis.add_argument("--resume", action="store_true",
                     help="continue an interrupted run with the same --out (the same command does so by itself)")
    vis.add_argument("--fresh", action="store_true", help="start over, discarding an interrupted run's state")
    vis.add_argument("--checkpoint-every", type=int, default=64, help="steps between saved optimization states")
    across.add_options(vis)
    vis.set_defaults(run=run_visualize)


def run_visualize(args: argparse.Namespace) -> None:
    from jaxvis.app.gallery import check_output, prepare_output
    from jaxvis.models.catalog import card
    from jaxvis.models.request import check_request

    # The whole request is checked from the catalog, before jax, the weights or a compile.
    arch = card(args.name)
    layer = args.layer or arch.default_layer
    check_counts(steps=args.steps, images=args.images, ensemble=args.ensemble, group_size=args.group_size,
                 checkpoint_every=args.checkpoint_every)
    if args.resume and args.fresh:
        raise JaxvisError("--resume continues an interrupted run and --fresh discards it: give one of them")
    token = f"@{args.token}" if args.token else ""
    unit_spec, _ = check_request(arch, f"{layer}:{args.channels}{token}", objective=args.objective, param=args.param,
                                 size=args.size)
    units = unit_spec.units
    out = check_output(Path(args.out) if args.out else DEFAULT_OUT / f"{arch.name}-{layer}")
    if args.weights:
        user_weight_file(args.weights)
    across.check(args)
    budget = None if args.memory_budget is None else parse_bytes(args.memory_budget)

    options = dict(objective=args.objective, size=args.size, steps=args.steps, seed=args.seed, param=args.param,
                   batch=args.images, ensemble=args.ensemble, relu_override_steps=args.relu_override_steps,
                   **{name: getattr(args, name) for name in SWEEPABLE})
    cells = len(Grid.of(**{name: getattr(args, name) for name in SWEEPABLE}).cells)
    state_dir = across.state_directory(args, out)
    request = {"model": arch.name, "layer": layer, "units": units.tolist(), "token": args.token,
               "group_size": args.group_size, "memory_budget": budget, "weights": weights_identity(args.weights),
               **options}
    across.join(args)
    with across.holding(out, state_dir) as writes:
        if writes:  # process 0 (the only one without --num-processes)
            if not args.fresh and any(saved_steps(folder) for folder in state_dir.glob("group_*")):
                check_same_request(state_dir, request)
            else:
                discard_state(state_dir)  # --fresh, or nothing saved to continue from
        model = load_model(args.name, args.weights)
        budget = budget or device_budget()
        size = args.group_size or (DEFAULT_GROUP if budget is None else
                                   group_that_fits(model, layer, token, units, cells, options, budget))
        groups = unit_groups(units, cells, size)
        if writes:
            where = resume_point(state_dir, len(groups), args.steps)
            grid_note = f" x {cells} sweep cells" if cells > 1 else ""
            print(f"jaxvis: {arch.name} {layer}: {len(units)} units{grid_note} x {args.steps} steps in "
                  f"{len(groups)} group{'s' if len(groups) > 1 else ''} of up to {len(groups[0])} units{grid_note}"
                  f"{across.note()}; optimization state in {state_dir}", file=sys.stderr)
            if where:
                print(f"jaxvis: resuming at step {where}", file=sys.stderr)
            save_request(state_dir, request)
        _visualize(args, arch, layer, token, model, groups, options, prepare_output(out) if writes else out,
                   state_dir, writes, budget)


def group_that_fits(model: Any, layer: str, token: str, units: Any, cells: int, options: dict[str, Any],
                    budget: int, tries: int = 3) -> int:
    """The most units x cells per group whose compiled program fits `budget` (`jaxvis.engine.memory`): all of
    them if they fit, else as many as the first program's memory analysis says, checked by compiling that size
    (one step of it runs; the program is the one the run then uses)."""
    from jaxvis.core.distributed import is_lead
    from jaxvis.engine.memory import MemoryBudgetError
    from jaxvis.methods.feature_visualization import run_visualization

    size = len(units) * cells
    for _ in range(tries):
        first = unit_groups(units, cells, size)[0]
        spec = f"{layer}:{','.join(str(u) for u in first)}{token}"
        try:
            run_visualization(model, spec, **{**options, "steps": 1}, progress=False, memory_budget=budget)
        except MemoryBudgetError as error:
            if error.fitting < cells:
                raise JaxvisError(f"{error}") from None
            size = min(error.fitting - error.fitting % cells, size - cells)
            continue
        if is_lead():
            print(f"jaxvis: groups of {len(first)} units{f' x {cells} cells' if cells > 1 else ''} fit the memory "
                  f"budget of {human(budget)} per device", file=sys.stderr)
        return size
    raise JaxvisError(f"no group size under {human(budget)} found in {tries} tries; give --group-size")


def resume_point(state_dir: Path, group_count: int, steps: int) -> str | None:
    """`S of T` (with the group, when there are several) where an interrupted run goes on, or None if it has no
    saved steps: the first group whose newest checkpoint is short of `steps`."""
    saved = [max(saved_steps(state_dir / f"group_{n}"), default=0) for n in range(1, group_count + 1)]
    if not any(saved):
        return None
    number = next((n for n, done in enumerate(saved, 1) if done < steps), group_count)
    return f"{saved[number - 1]} of {steps}" + (f" in group {number} of {group_count}" if group_count > 1 else "")


def _visualize(args: argparse.Namespace, arch: Any, layer: str, token: str, model: Any, groups: list[Any],
               options: dict[str, Any], out: Path, state_dir: Path, writes: bool = True,
               budget: int | None = None) -> None:
    """Run the groups in order, writing the gallery after each (where this process `writes`: process 0), and
    remove the state once all are done.  budget: each group's program is checked against it before it runs."""
    import numpy as np

    from jaxvis.app.gallery import environment, write_gallery
    from jaxvis.engine.optimize import OptimizationDiverged
    from jaxvis.methods.feature_visualization import run_visualization

    units = np.concatenate(groups)
    grid = Grid.of(**{name: options[name] for name in SWEEPABLE})
    suffixes = [cell_suffix(cell, grid.axes) for cell in grid.cells]
    record = {"config": {"model": arch.name, "layer": layer, "units": units.tolist(), "token": args.token,
                         **options},
              "environment": environment(), "units": {}, "timings": []}
    images, labels, values, curves = [], [], [], []
    start = time.perf_counter()
    try:
        for number, group in enumerate(groups, 1):
            spec = f"{layer}:{','.join(str(u) for u in group)}{token}"
            if writes:
                print(f"[{number}/{len(groups)}] {arch.name} {spec}", file=sys.stderr)
            began = time.perf_counter()
            try:
                _, result = run_visualization(model, spec, checkpoint_dir=state_dir / f"group_{number}",
                                              checkpoint_every=args.checkpoint_every, resume=True,
                                              memory_budget=budget, **options)
            except OptimizationDiverged as err:
                result = err.result
                print(f"jaxvis: {err}", file=sys.stderr)
            if not writes:  # process 0 gathers the results and writes them
                if result.steps < args.steps:
                    raise JaxvisError(f"stopped at step {result.steps} (process 0 says why)")
                continue
            for k, (unit, unit_images, value) in enumerate(zip(result.units, result.images, result.objective)):
                suffix = suffixes[k // len(group)]  # the engine's entries: grid cell x unit, cell-major
                for j, image in enumerate(unit_images):
                    images.append(image)
                    labels.append(f"{int(unit):04d}{suffix}" + (f"-{j}" if len(unit_images) > 1 else ""))
                    values.append(float(value))
                    curves.append(result.history[:, k])
                record["units"][f"{int(unit)}{suffix}"] = {"objective": float(value), "history": result.history[:, k]}
            record["timings"].append({"units": len(group), **result.timings})
            record["total_s"] = time.perf_counter() - start
            title = f"{arch.name} {layer} ({args.objective})"
            paths = write_gallery(out, title, np.stack(images), labels, values, record, curves=curves,
                                  links=[("grid.html", "the sweep's grid")] if grid.swept else [])
            if grid.swept:
                finished = [int(unit) for unit in np.concatenate(groups[:number])]
                write_grid_page(out, title, grid, [f"{unit:04d}" for unit in finished], "unit",
                                [[record["units"][f"{unit}{suffix}"]["objective"] for suffix in suffixes]
                                 for unit in finished], image_suffix="-0" if args.images > 1 else "")
            if result.steps < args.steps:
                raise JaxvisError(f"stopped at step {result.steps}; finished images are in {out}")
            if number == 1 and len(groups) > 1:
                took = time.perf_counter() - began
                print(f"jaxvis: group 1 took {minutes(took)}; about {minutes(took * (len(groups) - 1))} more for the "
                      f"other {len(groups) - 1}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"jaxvis: interrupted; finished groups are in {out}; the same command again continues from the last "
              f"saved step (--fresh starts over)", file=sys.stderr)
        raise
    if not writes:
        return
    shutil.rmtree(state_dir, ignore_errors=True)  # complete: nothing to resume
    print(f"{len(images)} images in {out} after {minutes(time.perf_counter() - start)}  "
          f"(contact sheet: {paths['sheet']}, gallery: {paths['index']}"
          + (f", the sweep's grid: {out / 'grid.html'})" if grid.swept else ")"))
