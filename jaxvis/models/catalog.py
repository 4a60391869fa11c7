"""What is known about each architecture without importing jax: its sizes and its layers' unit counts.

The command line checks a whole request (architecture, layer, every unit, sizes)
from this catalog in a fraction of a second, before jax or any weights load.
The catalog is written from the models themselves and kept in
`jaxvis/data/catalog.json`; `tests/test_request.py` checks that it matches them,
so it cannot drift. After changing an architecture, write it again:

    python -m jaxvis.models.catalog
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jaxvis.core.errors import UnknownArchitectureError

CATALOG = Path(__file__).parent.parent / "data" / "catalog.json"


@dataclass(frozen=True)
class Card:
    """An architecture's static facts, as a request check needs them (a subset of `Architecture`'s)."""

    name: str
    input_size: int
    min_size: int
    fixed_size: bool
    default_layer: str
    num_classes: int
    layers: dict[str, int]  # capturable name -> units (the size of its last axis), in forward order
    latent_size: int = 0  # > 0: a generator (its input is a latent vector, not an image)


def card(name: str) -> Card:
    """The catalog's card for a registered architecture, or `UnknownArchitectureError` naming the nearest."""
    cards = _read()
    if name not in cards:
        raise UnknownArchitectureError(name, sorted(cards))
    return cards[name]


def names() -> list[str]:
    """Every registered architecture's name, in registration order."""
    return list(_read())


def card_of(arch: Any) -> Card:
    """The card of any `Architecture`, computed from the model (traces its shapes; imports jax)."""
    from jaxvis.models.model import layer_shapes

    shapes = layer_shapes(arch, arch.input_size)
    return Card(arch.name, arch.input_size, arch.min_size, arch.fixed_size, arch.default_layer, arch.num_classes,
                {layer: shape[-1] for layer, shape in shapes.items()}, arch.latent_size)


def write_catalog(path: Path = CATALOG) -> dict[str, Card]:
    """Write the cards of every registered architecture, computed from the models."""
    from jaxvis.models import ARCHITECTURES

    cards = {name: card_of(arch) for name, arch in ARCHITECTURES.items()}
    path.write_text(json.dumps({name: asdict(c) for name, c in cards.items()}, indent=1) + "\n")
    _read.cache_clear()
    return cards


@functools.lru_cache(maxsize=1)
def _read() -> dict[str, Card]:
    return {name: Card(**fields) for name, fields in json.loads(CATALOG.read_text()).items()}


if __name__ == "__main__":
    written = write_catalog()
    print(f"wrote {len(written)} architectures to {CATALOG}")
