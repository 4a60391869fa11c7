"""What the commands share: help layout, output folders, run records, saving finished stages."""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import WriteRefusedError, write_whole

DEFAULT_OUT = Path("jaxvis-out")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows each option's default (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if shown and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def add_parser(commands: Any, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                               epilog="examples:\n" + examples, formatter_class=HelpFormatter)


def add_common(parser: argparse.ArgumentParser, out_hint: str) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same images")
    parser.add_argument("--weights", help="a .pth or .safetensors state_dict (default: the pretrained weights)")
    parser.add_argument("--out", help=f"output directory (default: {DEFAULT_OUT}/{out_hint})")


def check_counts(**counts: int | None) -> None:
    """`JaxvisError` naming the first option (given as its keyword: batch_size for --batch-size) below 1."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise JaxvisError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


OUTPUT_LOCK = ".jaxvis-lock"  # in an output folder while a command writes it


@contextmanager
def holding_output(out: Path, state_dir: Path | None = None) -> Iterator[None]:
    """A context holding `out` for this command: a second jaxvis writing to it stops at once, naming this process
    and host (`jaxvis.core.run_state.locked`, O_EXCL).  Taken after the request checks, before the model loads;
    the folder it makes is removed again if the command ends without writing to it.  A write the filesystem
    refuses (full, over quota, read-only) is reported with what of the run is kept for the same command again."""
    from jaxvis.core.run_state import locked

    with locked(out, OUTPUT_LOCK, f"is writing to {out}"):
        try:
            yield
        except WriteRefusedError as error:
            raise WriteRefusedError(f"{error}\n{what_is_kept(state_dir or run_directory(out))}", error.errno) from None


def what_is_kept(state_dir: Path) -> str:
    """What a rerun of a command stopped by a refused write starts from: its run state in `state_dir`, if any."""
    from jaxvis.core.run_state import saved_steps

    saved = sorted({step for folder in (state_dir, *state_dir.rglob("*")) if folder.is_dir()
                    for step in saved_steps(folder)[-1:]})
    if not saved:
        return ("nothing of this run is kept but the files written whole: once there is room, the same command "
                "again computes it anew (files already written are left as they are)")
    return (f"its optimization state is kept in {state_dir} (checkpoints up to step {saved[-1]}): once there is room, "
            "the same command again continues from it and writes only the files that are missing or differ")


def run_directory(out: Path) -> Path:
    """Where an interrupted run in `out` keeps its optimization state: under the cache, keyed on `out`."""
    from jaxvis.core.cache_dirs import runs_dir

    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    return runs_dir() / key


def load_model(name: str, weights: str | None):
    import jaxvis
    from jaxvis.models.load import PRETRAINED

    return jaxvis.load(name, weights=weights or PRETRAINED)


def stage_saver(out: Path, labels: Sequence[str]):
    """An `on_stage` callback writing each finished stage's images to out/stages/ (nothing finished is lost)."""
    from jaxvis.data.io import save_image

    def save(stage: str, images: np.ndarray) -> None:
        flat = np.asarray(images).reshape(-1, *np.shape(images)[-3:])
        for image, label in zip(flat, labels):
            save_image(image, out / "stages" / f"{label}_{stage}.png")

    return save


def plain(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if not callable(v)}


def record(model: Any, command: str, config: dict[str, Any], result: Any, start: float) -> dict[str, Any]:
    from jaxvis.app.gallery import environment

    return {"config": {"command": command, "model": model.name, **plain(config)}, "environment": environment(),
            "steps": result.steps, "timings": result.timings, "total_s": time.perf_counter() - start,
            "final_objective": result.objective.tolist()}


def finish(out: Path, title: str, images: np.ndarray, labels: list[str], values: list[float],
           run_record: dict[str, Any], stem: str, value_name: str = "objective",
           curves: list[Any] | None = None) -> None:
    from jaxvis.app.gallery import write_gallery

    paths = write_gallery(out, title, images, labels, values, run_record, stem=stem, value_name=value_name,
                          curves=curves)
    print(f"{len(images)} images in {out}  (contact sheet: {paths['sheet']}, gallery: {paths['index']})")


def number_list(text: str, kind: type = float) -> Any:
    """A number, or a comma list of numbers (a swept value); finite ones only (`nan` and `inf` are refused)."""
    try:
        values = [kind(part) for part in text.split(",")]
        if not all(math.isfinite(value) for value in values):
            raise ValueError(text)
    except ValueError:
        what = ("a whole number or a comma list of whole numbers" if kind is int else
                "a number or a comma list of numbers (finite ones: not nan or inf)")
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def integer_list(text: str) -> int | list[int]:
    """A whole number, or a comma list of them (a swept value)."""
    return number_list(text, int)


def cell_suffix(cell: dict[str, Any], axes: tuple[str, ...]) -> str:
    """How a sweep's cell is named in its files: `-lr0.02-diversity50` (empty without a sweep)."""
    return "".join(f"-{axis}{cell[axis]:g}" for axis in axes)


def cell_labels(grid: Any, labels: Sequence[str]) -> list[str]:
    """Every cell × label (cell-major, as the engine orders a sweep's results), each label with its cell's
    suffix: `dream-step_size1.5-jitter32`."""
    return [f"{label}{cell_suffix(cell, grid.axes)}" for cell in grid.cells for label in labels]


def write_grid_page(out: Path, title: str, grid: Any, labels: Sequence[str], stem: str,
                    values: Sequence[Sequence[float]], value_name: str = "objective", image_suffix: str = "",
                    heading: str | None = None) -> None:
    """out/grid.html: each label's images (`{stem}_{label}{cell suffix}{image_suffix}.png`) over the sweep's grid,
    `values[label][cell]` under each, each label's table headed `{heading} {label}` (default: the stem)."""
    from jaxvis.app.gallery import grid_page

    suffixes = [cell_suffix(cell, grid.axes) for cell in grid.cells]
    files = [[f"{stem}_{label}{suffix}{image_suffix}.png" for suffix in suffixes] for label in labels]
    page = grid_page(f"{title}: {' x '.join(grid.axes)}", grid.axes, grid.values, list(labels), files, values,
                     value_name, stem if heading is None else heading)
    write_whole(out / "grid.html", page.encode())


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


VIEW = "the central square, resized to the model's input size"  # classify's and attack's view of an image


def classify_view(image: np.ndarray, size: int) -> np.ndarray:
    """An image as `jaxvis classify` and `jaxvis attack` show it to a model (`VIEW`; `jaxvis.data.io.read_photo`'s
    crop): an image already size x size is shown exactly as it is."""
    from jaxvis.data.io import center_crop_resize

    return center_crop_resize(image, size, crop_fraction=1.0)


def class_probabilities(model: Any, images: np.ndarray, size: int | None = None) -> np.ndarray:
    """Softmax of the model's logits for a batch (resized to size x size first, if a size is given)."""
    import jax

    from jaxvis.models.model import logits
    from jaxvis.pieces.transforms import resize_images

    batch = images if size is None else resize_images(images, size)
    return np.asarray(jax.nn.softmax(logits(model, batch), axis=-1))


def weights_identity(weights: str | None) -> dict[str, Any] | None:
    """What tells a weight file's versions apart without reading it: its full path, size and modification time."""
    if not weights:
        return None
    stat = os.stat(weights)
    return {"path": str(Path(weights).resolve()), "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}
