"""Hyperparameter grids: values given as lists, every combination run in one compiled program.

    grid = Grid.of(lr=[0.02, 0.05, 0.1], diversity=0.5)   # one axis: lr (lists are axes)
    grid.shape, grid.axes        # (3,), ("lr",)
    grid.cells                   # [{"lr": 0.02, "diversity": 0.5}, ...]  (row-major, the first axis slowest)

A method builds its pieces once per cell and hands them to the engine as lists
(`jaxvis.engine.optimize.optimize`), which runs cells × units vmapped;
`Result.with_grid_axes` puts the grid's axes in front of the result.  Only runtime values can be swept:
a value that changes shapes or loop structure (steps, size, batch, ensemble) is
refused as a list by `refuse_lists`.  A long list of units is split into programs of at most N cells × units
by `unit_groups` (the command line's --group-size is N).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jaxvis.core.errors import MethodOptionError


@dataclass(frozen=True)
class Grid:
    axes: tuple[str, ...]  # the names given as lists, in the order given
    values: tuple[tuple[Any, ...], ...]  # each axis's values
    fixed: dict[str, Any]  # the names given as single values

    @classmethod
    def of(cls, **options: Any) -> Grid:
        """The grid of `options`: a list is an axis, anything else (a tuple too) a fixed value."""
        axes = {name: tuple(value) for name, value in options.items() if isinstance(value, list)}
        empty = [name for name, value in axes.items() if not value]
        if empty:
            raise MethodOptionError(f"{', '.join(empty)}: a swept value needs at least one entry")
        fixed = {name: value for name, value in options.items() if name not in axes}
        return cls(tuple(axes), tuple(axes.values()), fixed)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for values in self.values)

    @property
    def swept(self) -> bool:
        return bool(self.axes)

    @property
    def cells(self) -> list[dict[str, Any]]:
        """Every combination, row-major (the last axis fastest), each with the fixed values too."""
        return [{**self.fixed, **dict(zip(self.axes, combination))} for combination in itertools.product(*self.values)]

    def per_cell(self, build: Any) -> Any:
        """`[build(**cell) for cell in cells]` when swept, else `build(**fixed)` alone (not a list)."""
        return [build(**cell) for cell in self.cells] if self.swept else build(**self.fixed)


def unit_groups(units: Sequence[Any], cells: int, entries: int) -> list[list[Any]]:
    """How a grid × units is split into programs: groups of units, each run with every cell of the grid in one
    program of at most `entries` cells × units (at least one unit a program, however large the grid).  A unit's
    images do not depend on its group (draws are keyed on the unit), so any split gives the same images."""
    size = max(1, entries // max(1, cells))
    return [list(units[i : i + size]) for i in range(0, len(units), size)]


def refuse_lists(**options: Any) -> None:
    """`MethodOptionError` for any option given as a list that changes the compiled program's shapes or loop."""
    listed = [name for name, value in options.items() if isinstance(value, list)]
    if listed:
        raise MethodOptionError(
            f"{', '.join(listed)} cannot be swept: {'it changes' if len(listed) == 1 else 'they change'} the compiled "
            "program (its shapes, its loop or a kind of piece); run one call per value (rates, weights and "
            "strengths can be lists)"
        )
