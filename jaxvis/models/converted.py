"""Converted weights kept on disk: one flat safetensors file with a checksum, read in a fraction of a second.

`jaxvis.load` converts a state_dict once and keeps the result here, keyed by the weight
file's sha256.  The variables' nested names are joined with "/"; the file's metadata
holds the sha256 of its tensor bytes, checked on every read, so a flipped bit or a
partly written file is caught and the weights converted again.  Reading parses the
file's JSON header and copies its bytes: no pickle, no code from the file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from jaxvis.core.files import write_whole

FORMAT = "jaxvis converted weights 1"
SEPARATOR = "/"


class DamagedWeightsFile(ValueError):
    """The file is not one this module wrote whole (wrong format, a checksum that does not match)."""


def write_converted(path: Path, variables: dict[str, Any]) -> None:
    """Write nested `variables` (arrays) to `path` (to a temporary name, then renamed)."""
    from safetensors.numpy import save

    tensors = {SEPARATOR.join(keys): np.ascontiguousarray(leaf) for keys, leaf in _flat(variables)}
    unchecked = save(tensors)
    payload_sha = hashlib.sha256(_payload(unchecked)).hexdigest()
    write_whole(path, save(tensors, metadata={"format": FORMAT, "sha256": payload_sha}))


def read_converted(path: Path) -> dict[str, Any]:
    """The nested variables written to `path`; `DamagedWeightsFile` unless the file is whole."""
    from safetensors.numpy import load

    blob = path.read_bytes()
    metadata = _header(blob).get("__metadata__", {})
    if metadata.get("format") != FORMAT:
        raise DamagedWeightsFile(f"{path} is not a jaxvis converted-weights file")
    if hashlib.sha256(_payload(blob)).hexdigest() != metadata.get("sha256"):
        raise DamagedWeightsFile(f"the checksum of {path} does not match (a damaged or partly written file)")
    nested: dict[str, Any] = {}
    for name, array in load(blob).items():
        *parents, leaf = name.split(SEPARATOR)
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = array
    return nested


def _flat(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    items = []
    for key, value in tree.items():
        if SEPARATOR in str(key):
            raise ValueError(f"variable name {key!r} holds {SEPARATOR!r}")
        if isinstance(value, dict):
            items.extend(_flat(value, (*prefix, str(key))))
        else:
            items.append(((*prefix, str(key)), np.asarray(value)))
    return items


def _header_length(blob: bytes) -> int:
    if len(blob) < 8:
        raise DamagedWeightsFile("the file is shorter than a safetensors header")
    return struct.unpack("<Q", blob[:8])[0]


def _header(blob: bytes) -> dict[str, Any]:
    length = _header_length(blob)
    try:
        return json.loads(blob[8 : 8 + length])
    except ValueError as err:
        raise DamagedWeightsFile(f"unreadable header ({err})") from err


def _payload(blob: bytes) -> bytes:
    """The tensor bytes after the header (what the checksum covers)."""
    return blob[8 + _header_length(blob):]
