"""Pytree structures as JSON, and back by looking names up: nothing read from a file runs as code.

The program store (`jaxvis.core.programs`) keeps beside each exported program the
structure of its results, so that a new process hands them back as the pytrees
the library expects without tracing the program again.  A `PyTreeDef` is not
plain data: its nodes are classes, and the static parts of jaxvis's pieces can
hold functions.  This codec writes each by name (module and qualified name) and
reads it back by looking the name up in an allowed package -- never by
unpickling -- and rebuilds dataclass instances field by field without calling
their constructors.  What it cannot write (a lambda, a local class, an object of
another library) raises `NotEncodable`: such a program is simply not stored.

    text = encode_structure(jax.tree_util.tree_structure(state))
    assert decode_structure(text) == jax.tree_util.tree_structure(state)
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import types
from typing import Any

import jax
import numpy as np

from jaxvis.core.structure import Label

ALLOWED_PACKAGES = ("jaxvis", "converters", "optax", "jax", "jaxlib", "builtins", "collections", "numpy")
LEAF = jax.tree_util.tree_structure(0)
UNNAMED = {"builtins:NoneType": type(None)}  # builtins that no module attribute names
BUILTIN_TYPES = ("tuple", "list", "dict", "int", "float", "bool", "str", "complex", "frozenset", "set")  # only these


class NotEncodable(ValueError):
    """A structure holds something the codec does not write by name (a lambda, a foreign object)."""


def encode_structure(treedef: Any) -> str:
    """`treedef` as JSON text (`NotEncodable` if some node or static value cannot be named)."""
    return json.dumps(_node(treedef), sort_keys=True)


def decode_structure(text: str) -> Any:
    """The `PyTreeDef` that `encode_structure` wrote (`NotEncodable` for a name outside the allowed packages)."""
    return _tree(json.loads(text))


def _node(treedef: Any) -> Any:
    data = treedef.node_data()
    if data is None:
        return None  # a leaf
    kind, aux = data
    return {"type": _reference(kind), "aux": _value(aux), "children": [_node(c) for c in treedef.children()]}


def _tree(node: Any) -> Any:
    if node is None:
        return LEAF
    data = (_resolve(node["type"]), _decoded(node["aux"]))
    return LEAF.from_node_data_and_children(jax.tree_util.default_registry, data, [_tree(c) for c in node["children"]])


def _reference(obj: Any) -> str:
    """`module:qualname` of a class or function that can be looked up again, else `NotEncodable`."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module.split(".")[0] not in ALLOWED_PACKAGES:
        raise NotEncodable(f"{obj!r} cannot be written by name")
    reference = f"{module}:{qualname}"
    if _resolve(reference) is not obj:  # an alias, or a name rebound since
        raise NotEncodable(f"{reference} does not name {obj!r}")
    return reference


def _resolve(reference: str) -> Any:
    if reference in UNNAMED:
        return UNNAMED[reference]
    module, _, qualname = reference.partition(":")
    if module.split(".")[0] not in ALLOWED_PACKAGES or not qualname or "<" in qualname:
        raise NotEncodable(f"{reference!r} is not in an allowed package ({', '.join(ALLOWED_PACKAGES)})")
    if module == "builtins" and qualname not in BUILTIN_TYPES:  # eval, exec, open, __import__ ...
        raise NotEncodable(f"{reference!r} is not an allowed builtin ({', '.join(BUILTIN_TYPES)})")
    try:
        value: Any = importlib.import_module(module)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as err:
        raise NotEncodable(f"{reference!r} names nothing here ({err})") from err
    return value


def _value(value: Any) -> Any:
    """A static value as JSON: plain numbers and strings as themselves, everything else tagged."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, Label):
        return {"label": str(value)}
    if type(value) in (tuple, list):
        return {type(value).__name__: [_value(v) for v in value]}
    if type(value) in (frozenset, set):
        return {"frozenset": sorted((_value(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))}
    if type(value) is dict:
        return {"dict": [[_value(k), _value(v)] for k, v in value.items()]}
    if isinstance(value, functools.partial):
        return {"partial": _reference(value.func), "args": _value(value.args), "keywords": _value(value.keywords)}
    if isinstance(value, np.dtype):
        return {"dtype": value.str}
    if isinstance(value, np.generic):
        return {"scalar": value.dtype.str, "value": value.item()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": _reference(type(value)),
                "fields": {f.name: _value(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        return {"ref": _reference(value)}
    raise NotEncodable(f"a static value of type {type(value).__name__} cannot be written")


def _decoded(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "label" in value:
        return Label(value["label"])
    if "tuple" in value:
        return tuple(_decoded(v) for v in value["tuple"])
    if "list" in value:
        return [_decoded(v) for v in value["list"]]
    if "frozenset" in value:
        return frozenset(_decoded(v) for v in value["frozenset"])
    if "dict" in value:
        return {_decoded(k): _decoded(v) for k, v in value["dict"]}
    if "partial" in value:
        return functools.partial(_resolve(value["partial"]), *_decoded(value["args"]), **_decoded(value["keywords"]))
    if "dtype" in value:
        return np.dtype(value["dtype"])
    if "scalar" in value:
        return np.dtype(value["scalar"]).type(value["value"])
    if "dataclass" in value:
        return _dataclass(_resolve(value["dataclass"]), {k: _decoded(v) for k, v in value["fields"].items()})
    if "ref" in value:
        return _resolve(value["ref"])
    raise NotEncodable(f"unknown tag in {sorted(value)}")


def _dataclass(cls: Any, fields: dict[str, Any]) -> Any:
    """An instance of dataclass `cls` with these fields, set directly (its `__init__` is not run)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise NotEncodable(f"{cls!r} is not a dataclass")
    if set(fields) != {f.name for f in dataclasses.fields(cls)}:
        raise NotEncodable(f"the fields of {cls.__qualname__} differ from those written")
    instance = object.__new__(cls)
    for name, field_value in fields.items():
        object.__setattr__(instance, name, field_value)
    return instance
