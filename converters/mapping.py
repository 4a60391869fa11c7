"""Map a PyTorch state_dict onto a Flax variable tree whose names mirror the torch modules.

jaxvis models name their Flax scopes exactly like the torch module paths, so
`features.14.conv.0.0.weight` lands in `params/features/14/conv/0/0/kernel`.
The generic rules below are the only layout knowledge needed:

  torch leaf       Flax leaf (same module path)          layout
  weight (4-D)     params/.../kernel                     OIHW -> HWIO
  weight (2-D)     params/.../kernel                     (out, in) -> (in, out)
  weight           params/.../scale  (BatchNorm, LayerNorm)  as is
  bias             params/.../bias                       as is
  running_mean     batch_stats/.../mean                  as is
  running_var      batch_stats/.../var                   as is
  num_batches_tracked   (training bookkeeping, accounted as unused)
  anything else    params/.../<same name>                as is   (class_token, in_proj_weight, ls1 ...)

Accounting is strict: every source tensor lands in exactly one target leaf, or is
matched by an explicit `ignore` prefix, and every target leaf is filled; anything
else raises `StateDictMismatchError` naming the keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from converters.errors import StateDictMismatchError

Path = tuple[str, ...]
_BOOKKEEPING = ("num_batches_tracked",)


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    target: Mapping[str, Any],
    *,
    target_name: str,
    ignore: Sequence[str] = (),
    rename: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Fill `target` (a Flax variable tree of arrays or shape structs) from `state_dict`.

    `rename` maps a source key into the target's torch naming first (for files
    saved by another library, e.g. efficientnet_pytorch for timm's model).
    `ignore` lists key prefixes that are known and deliberately unused (e.g.
    GoogLeNet's training-only auxiliary heads).  Returns a nested dict of numpy
    arrays with the structure of `target`.
    """
    wanted = dict(flatten(target))
    filled: dict[Path, np.ndarray] = {}
    unexpected, wrong_shape = [], []
    rejected: set[Path] = set()
    for key, value in state_dict.items():
        if key.startswith(tuple(ignore)) or key.rsplit(".", 1)[-1] in _BOOKKEEPING:
            continue
        name = rename(key) if rename else key
        path, layout = _target_of(name, wanted)
        if path is None or path in filled:
            unexpected.append(key)
            continue
        array = layout(np.asarray(value))
        if array.shape != tuple(wanted[path].shape):
            wrong_shape.append((key, tuple(np.shape(value)), _source_shape(layout, wanted[path].shape)))
            rejected.add(path)
            continue
        filled[path] = array.astype(wanted[path].dtype, copy=False)
    missing = [torch_name(p) for p in wanted if p not in filled and p not in rejected]
    if missing or unexpected or wrong_shape:
        raise StateDictMismatchError(
            target_name, missing, unexpected, wrong_shape, expected_keys=[torch_name(p) for p in wanted]
        )
    return unflatten(filled)


def expected_keys(target: Mapping[str, Any]) -> list[str]:
    """The torch state_dict keys (minus bookkeeping) a target tree expects."""
    return [torch_name(path) for path, _ in flatten(target)]


def torch_name(path: Path) -> str:
    """`('params', 'features', '0', '0', 'kernel')` -> `'features.0.0.weight'`."""
    collection, *module, leaf = path
    leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}.get(leaf, leaf)
    return ".".join([*module, leaf])


def _target_of(name: str, wanted: Mapping[Path, Any]) -> tuple[Path | None, Callable[[np.ndarray], np.ndarray]]:
    module, _, leaf = name.rpartition(".")
    mod: Path = tuple(module.split(".")) if module else ()
    candidates: list[tuple[Path, Callable[[np.ndarray], np.ndarray]]] = {
        "weight": [(("params", *mod, "kernel"), _kernel_layout), (("params", *mod, "scale"), _same)],
        "running_mean": [(("batch_stats", *mod, "mean"), _same)],
        "running_var": [(("batch_stats", *mod, "var"), _same)],
    }.get(leaf, [])
    candidates.append((("params", *mod, leaf), _same))
    for path, layout in candidates:
        if path in wanted:
            return path, layout
    return None, _same


def _same(array: np.ndarray) -> np.ndarray:
    return array


def _kernel_layout(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4:  # conv: (out, in/groups, kh, kw) -> (kh, kw, in/groups, out)
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:  # linear: (out, in) -> (in, out)
        return array.T
    return array


def _source_shape(layout: Callable, flax_shape: Sequence[int]) -> tuple:
    """The torch shape that would have fit a Flax leaf of `flax_shape`."""
    if layout is _kernel_layout and len(flax_shape) == 4:
        kh, kw, cin, cout = flax_shape
        return (cout, cin, kh, kw)
    if layout is _kernel_layout and len(flax_shape) == 2:
        return tuple(flax_shape[::-1])
    return tuple(flax_shape)


def flatten(tree: Mapping[str, Any], prefix: Path = ()) -> list[tuple[Path, Any]]:
    """Nested mappings -> `[(path, leaf)]` in insertion order."""
    items: list[tuple[Path, Any]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            items.extend(flatten(value, (*prefix, str(key))))
        else:
            items.append(((*prefix, str(key)), value))
    return items


def unflatten(items: Mapping[Path, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in items.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree
