"""How many units fit in one compiled program: its memory (XLA's `memory_analysis` of the compiled executable)
against a budget, a share of the device's memory.

A program's memory is the model's weights (the same whatever the units) plus, per unit, its parameters,
optimizer state and activations: `needed = shared + units x per_unit` (per device: the units are split over
the devices).  From one compiled program both terms are known -- `shared` is the weights' size, `per_unit` the
rest divided by its units -- and so how many units a budget holds.
"""

from __future__ import annotations

import re
from typing import Any

from jaxvis.core.errors import JaxvisError
from jaxvis.core.files import human

SHARE = 0.5  # of an accelerator's memory given to one program: XLA's own buffers, copies and fragmentation need the rest
UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


class MemoryBudgetError(JaxvisError):
    """A compiled program needs more memory than its budget; `fitting` is how many units (all devices) would fit."""

    def __init__(self, needed: int, budget: int, units: int, shared: int, devices: int = 1):
        per_unit = max(1.0, (needed - shared) / max(units // devices, 1))
        self.needed, self.budget, self.per_unit = needed, budget, per_unit
        self.fitting = max(0, int((budget - shared) // per_unit)) * devices
        super().__init__(
            f"a program of {units} units needs {human(needed)} per device ({human(shared)} for the model's weights, "
            f"about {human(per_unit)} per unit), over the memory budget of {human(budget)}"
            + ("" if self.fitting else ": not even one unit fits; give a larger --memory-budget, or a smaller "
               "--size, --images or --ensemble"))


def program_bytes(executable: Any) -> int | None:
    """The memory one device needs to run `executable` (arguments, results and temporaries; buffers the program
    updates in place counted once), or None where the backend does not say."""
    try:
        analysis = executable.memory_analysis()
    except Exception:  # noqa: BLE001 -- a backend without the analysis
        return None
    if analysis is None:
        return None
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
               - analysis.alias_size_in_bytes)


def check_fits(executable: Any, budget: int, units: int, shared: int, devices: int = 1) -> int | None:
    """The program's memory per device; `MemoryBudgetError` if it exceeds `budget` (before it runs)."""
    needed = program_bytes(executable)
    if needed is not None and needed > budget:
        raise MemoryBudgetError(needed, budget, units, shared, devices)
    return needed


def device_budget(share: float = SHARE) -> int | None:
    """`share` of this process's first device's memory, or None where the device does not say (a CPU: the
    host's memory is the limit there, and no planning is done unless a budget is given)."""
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    return int(limit * share) if limit else None


def parse_bytes(text: str) -> int:
    """`512MB`, `2GB`, `1.5 GB`, `1000000` as a number of bytes (powers of 1024)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*", text.upper())
    if not match or float(match.group(1)) <= 0:
        raise JaxvisError(f"--memory-budget must be a size such as 512MB or 2GB, got {text!r}")
    unit = match.group(2) if match.group(2).endswith("B") or not match.group(2) else match.group(2) + "B"
    return int(float(match.group(1)) * UNITS[unit])
