"""ONNX graphs -> PyTorch-named state_dicts, by following the graph (no onnxruntime needed).

Exporters keep the names of most parameters (`backbone.encoder.layer.0.norm1.weight`)
but give anonymous names to tensors they transformed on the way.  Two such patterns
are recovered, which covers Vision Transformers exported from Hugging Face or timm
(ViT, DeiT, DINOv2) with `torch.onnx.export`:

- a Linear layer: its weight is the anonymous 2-D input B of a `MatMul` whose output
  is added to a named `P.bias` -> `P.weight`, transposed to torch's (out, in);
- a resized position embedding: an anonymous (1, 1, D) tensor (the CLS token's
  position) concatenated along axis 1 with a value computed from an anonymous
  (1, N, D) tensor (the patch grid's positions, reshaped and resized in the graph)
  -> `P.position_embeddings`, their concatenation (1, 1 + N, D), P the prefix of the
  named `P.cls_token`.

The accounting is as strict as for state_dicts: every initializer, and every Constant
tensor large enough to be a weight (`WEIGHT_ELEMENTS`), becomes exactly one entry;
one that fits no pattern is an error naming the node that consumes it.  Graph
structure (shapes, axes, scales: small Constants) is not weights and is left alone.

    state_dict = onnx_state_dict("vit_s_focus.onnx")   # {torch name: np.ndarray}
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConversionError, WeightFileError

WEIGHT_ELEMENTS = 64  # Constants with at least this many elements are weights to account for
ANCESTRY_DEPTH = 24  # how far up the graph a resized position grid is looked for


class UnsupportedGraphError(ConversionError, ValueError):
    """An ONNX graph holding a tensor that no supported pattern explains."""


def load_graph(path: str | Path) -> Any:
    """The `onnx.ModelProto` in `path`, or a `WeightFileError` saying why it cannot be read."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        raise WeightFileError("reading ONNX files needs the onnx package: pip install onnx") from None
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"ONNX file {path} does not exist (or is not a file).")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise WeightFileError(f"{path} is not a readable ONNX model ({type(err).__name__}: {err}); "
                              "is it truncated, or another kind of file?") from None
    if not model.graph.node:
        raise WeightFileError(f"{path} holds no ONNX graph (no nodes): is it truncated, or another kind of file?")
    return model


def onnx_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The graph's weights under their PyTorch names (module docstring), in graph order."""
    graph = load_graph(path).graph
    return GraphWeights(graph, str(path)).state_dict()


class GraphWeights:
    def __init__(self, graph: Any, source: str):
        from onnx import numpy_helper

        self.source = source
        self.tensors: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None and int(np.prod(value.dims)) >= WEIGHT_ELEMENTS:
                    self.tensors[node.output[0]] = numpy_helper.to_array(value)
        self.nodes = list(graph.node)
        self.consumers: dict[str, list[Any]] = {}
        self.producer: dict[str, Any] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node

    def named(self, name: str) -> bool:
        return not name.startswith("onnx::") and not name.startswith("/") and "." in name

    def state_dict(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        used: set[str] = set()
        for name, array in self.tensors.items():
            if self.named(name):
                self._add(out, name, array)
                used.add(name)
        for weight, bias in self._linears():
            self._add(out, bias[: -len("bias")] + "weight", self.tensors[weight].T.copy())
            used.add(weight)
        for cls, grid, prefix in self._position_embeddings(out):
            table = np.concatenate([self.tensors[cls].reshape(1, 1, -1), self.tensors[grid]], axis=1)
            self._add(out, prefix + "position_embeddings", table)
            used |= {cls, grid}
        left = [name for name in self.tensors if name not in used]
        if left:
            details = "; ".join(f"{name} {list(self.tensors[name].shape)} (used by "
                                f"{', '.join(f'{n.op_type} {n.name}' for n in self.consumers.get(name, [])) or 'nothing'})"
                                for name in left[:5])
            raise UnsupportedGraphError(
                f"{self.source}: {len(left)} tensor{'s' if len(left) > 1 else ''} fit no supported pattern: {details}. "
                "Supported: named initializers, Linear weights (MatMul + named bias), and a position embedding "
                "split into CLS and resized grid parts (see converters/onnx.py).")
        return out

    def _add(self, out: dict[str, np.ndarray], name: str, array: np.ndarray) -> None:
        if name in out:
            raise UnsupportedGraphError(f"{self.source}: two tensors of the graph map to {name}")
        out[name] = np.asarray(array)

    def _linears(self) -> Iterator[tuple[str, str]]:
        """(anonymous weight, named bias) of every MatMul + Add pair."""
        for node in self.nodes:
            if node.op_type != "MatMul" or len(node.input) != 2:
                continue
            weight = node.input[1]
            if weight not in self.tensors or self.named(weight) or self.tensors[weight].ndim != 2:
                continue
            bias = self._added_bias(node.output[0])
            if bias is None:
                raise UnsupportedGraphError(
                    f"{self.source}: MatMul {node.name} multiplies by {weight} "
                    f"{list(self.tensors[weight].shape)} but no named bias is added to its output, so its torch "
                    "name cannot be told (a Linear without bias is not supported)")
            yield weight, bias

    def _added_bias(self, output: str) -> str | None:
        for node in self.consumers.get(output, []):
            if node.op_type == "Add":
                for name in node.input:
                    if name != output and name in self.tensors and self.named(name) and name.endswith(".bias"):
                        return name
        return None

    def _position_embeddings(self, named: dict[str, np.ndarray]) -> Iterator[tuple[str, str, str]]:
        """(anonymous CLS position, anonymous grid, prefix) of every resized position embedding."""
        prefixes = [name[: -len("cls_token")] for name in named if name.endswith("cls_token")]
        for node in self.nodes:
            if node.op_type != "Concat" or _axis(node) != 1:
                continue
            cls = [name for name in node.input if name in self.tensors and not self.named(name)
                   and self.tensors[name].shape[:2] == (1, 1) and self.tensors[name].ndim == 3]
            if not cls:
                continue
            grids = [name for other in node.input if other != cls[0] for name in self._ancestors(other)
                     if name in self.tensors and not self.named(name) and self.tensors[name].ndim == 3
                     and self.tensors[name].shape[-1] == self.tensors[cls[0]].shape[-1]]
            if len(grids) != 1 or len(prefixes) != 1:
                raise UnsupportedGraphError(
                    f"{self.source}: Concat {node.name} joins the position tensor {cls[0]} with "
                    f"{len(grids)} position grids under {len(prefixes)} cls_token names; expected one of each")
            yield cls[0], grids[0], prefixes[0]

    def _ancestors(self, name: str) -> Iterator[str]:
        """Every tensor `name` is computed from, up to `ANCESTRY_DEPTH` nodes up."""
        frontier, seen = [name], set()
        for _ in range(ANCESTRY_DEPTH):
            parents = []
            for value in frontier:
                if value in seen:
                    continue
                seen.add(value)
                yield value
                node = self.producer.get(value)
                if node is not None:
                    parents += list(node.input)
            frontier = parents


def _axis(node: Any) -> int | None:
    return next((attribute.i for attribute in node.attribute if attribute.name == "axis"), None)
