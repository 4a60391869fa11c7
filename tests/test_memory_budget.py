"""Memory planning (issue 34, point 3): with a memory budget, `jaxvis visualize` chooses the units per compiled
program from the program's own memory analysis -- the most that fit -- and a budget too small for one unit is
a clear error before any step runs.  The budget is forced here (a CPU has none by itself).

Mutations that fail these tests (each run): the engine not checking the budget (every unit in one program);
the planner shrinking by one unit at a time instead of to what the analysis says (no size found in 3 tries);
`--memory-budget ""` taken as no budget (the whole model runs).  XLA's memory is linear in the units from 2
on, not from 1 (a 1-unit program of the tiny CNN needs more than a 2-unit one), hence the sizes chosen here.
"""

from __future__ import annotations

import json

import pytest

from jaxvis.cli import main
from jaxvis.engine.memory import MemoryBudgetError, parse_bytes
from jaxvis.methods.feature_visualization import run_visualization

LAYER = "features.8"


def needed(model, units: int) -> int:
    """The memory per device of the program `jaxvis visualize` runs for `units` units, as XLA's analysis of it
    says (a budget of 1 byte stops every program before it runs, with what it needs)."""
    with pytest.raises(MemoryBudgetError) as over:
        run_visualization(model, f"{LAYER}:0-{units - 1}", size=32, steps=1, progress=False, memory_budget=1)
    return over.value.needed


def test_a_budget_gives_groups_of_the_most_units_that_fit_and_too_small_a_budget_is_refused(
        tiny_cnn, tiny_cnn_by_name, tmp_path, capsys):
    three, four = needed(tiny_cnn, 3), needed(tiny_cnn, 4)
    budget = (three + four) // 2  # room for 3 units, not 4

    out = tmp_path / "vis"
    code = main(["visualize", tiny_cnn_by_name, LAYER, "--channels", "0-7", "--size", "32", "--steps", "2",
                 "--memory-budget", str(budget), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "groups of 3 units fit the memory budget" in err and "8 units x 2 steps in 3 groups of up to 3 units" in err
    record = json.loads((out / "run.json").read_text())
    assert [group["units"] for group in record["timings"]] == [3, 3, 2]
    assert all(group["program_bytes"] <= budget for group in record["timings"])
    assert len(list(out.glob("unit_*.png"))) == 8

    code = main(["visualize", tiny_cnn_by_name, LAYER, "--channels", "0-7", "--size", "32", "--steps", "2",
                 "--memory-budget", str((four - three) // 2), "--out", str(tmp_path / "small")])
    err = capsys.readouterr().err
    assert code == 2 and "not even one unit fits" in err and "Traceback" not in err, err
    assert not list((tmp_path / "small").glob("*.png"))


@pytest.mark.parametrize("text, size", [("512MB", 512 * 2**20), ("2GB", 2 * 2**30), ("1.5 gb", int(1.5 * 2**30)),
                                        ("64k", 64 * 1024), ("1000", 1000)])
def test_memory_sizes_read_as_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "0", "2PB"])
def test_a_size_that_is_not_one_is_refused_before_anything_starts(text, tmp_path, capsys):
    code = main(["visualize", "mobilenet_v2", f"--memory-budget={text}", "--out", str(tmp_path / "out")])
    assert code == 2 and "--memory-budget must be a size" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
