"""How a run is carried out, the same for every method: seed, progress bar, checkpoints.

    config = RunConfig(seed=1, checkpoint_dir="runs/pii-goldfish")
    plug_in_inversion(model, ["goldfish"], config=config)   # interrupted? the same call continues it

With a `checkpoint_dir`, each stage saves its optimization state there every
`checkpoint_every` steps and when it ends; the same call again continues from
the newest saved step (finished stages are restored, not rerun), and a call
that differs in anything that decides the images (a recipe value, the seed,
the classes, the weights) is refused with `ResumeMismatchError` naming the
change.  Only the seed changes the images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    progress: bool = True  # a progress bar per stage
    checkpoint_dir: str | Path | None = None  # a folder per stage inside it (stage_1_<label>, ...)
    checkpoint_every: int = 64  # steps between saved states (each stage's last step is always saved)

    def engine_options(self, checkpoint_dir: str | Path | None = None) -> dict[str, Any]:
        """The keywords of `jaxvis.engine.optimize.optimize` for a run kept in `checkpoint_dir` (default: this
        config's): its seed, progress bar and checkpoints, continuing what the folder holds."""
        directory = self.checkpoint_dir if checkpoint_dir is None else checkpoint_dir
        return dict(seed=self.seed, progress=self.progress, checkpoint_dir=directory,
                    checkpoint_every=self.checkpoint_every if directory is not None else 0,
                    resume=directory is not None)

    def stage_dir(self, index: int, label: str) -> Path | None:
        """Where stage `index` (from 0) keeps its checkpoints, or None without a checkpoint_dir."""
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / f"stage_{index + 1}_{label}"


def run_config(config: RunConfig | None, seed: int | None = None, progress: bool | None = None) -> RunConfig:
    """`config` (default: `RunConfig()`) with `seed` and `progress` in place where they were given."""
    given = {name: value for name, value in (("seed", seed), ("progress", progress)) if value is not None}
    return replace(config or RunConfig(), **given)
