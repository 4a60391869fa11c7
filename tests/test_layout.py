"""The package's layout shows its architecture: imports run one way, down the layers, with no cycles.

Layers, bottom to top (a module may import its own layer and the ones below, never above):

    core < data < models < pieces < engine < methods < analysis < app (jaxvis.app and jaxvis.cli)

Every `import` counts, function-local ones included (read from the source with `ast`, not by importing).
Mutations that fail it: `jaxvis.models.model` importing `jaxvis.engine.plan` inside a function (an arrow up),
`jaxvis.analysis.units.dissect` importing `jaxvis.analysis.gan.dissect` (a cycle: gan imports units),
a new top-level module outside the layers.
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import jaxvis

ROOT = Path(jaxvis.__file__).parent
LAYERS = ("core", "data", "models", "pieces", "engine", "methods", "analysis", "app")
LAYER_OF_PACKAGE = {**{layer: index for index, layer in enumerate(LAYERS)}, "cli": LAYERS.index("app")}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The jaxvis modules `name` imports anywhere in its source (a name imported from a package counts as
    its submodule when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {module for module in found if module.startswith("jaxvis.") and module != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, set(known)) for name, path in known.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER_OF_PACKAGE.get(parts[1]) if len(parts) > 1 else None


def test_every_module_sits_in_a_layer():
    outside = sorted(m for m in modules() if m != "jaxvis" and layer(m) is None)
    assert not outside, f"modules outside the layers {LAYERS}: {outside}"


def test_imports_run_down_the_layers():
    upward = sorted(f"{m} -> {t}" for m, targets in graph().items() if m != "jaxvis" for t in targets
                    if layer(t) is not None and layer(t) > layer(m))
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    """Between modules, and between the packages of one layer (`analysis.units` and `analysis.gan`)."""
    edges = graph()
    packages: dict[str, set[str]] = {}
    for module, targets in edges.items():
        source = ".".join(module.split(".")[:3])
        packages.setdefault(source, set()).update(".".join(t.split(".")[:3]) for t in targets)
    for name, graph_edges in (("module", edges), ("package", packages)):
        cycle = find_cycle({node: {t for t in ts if t in graph_edges and t != node and not is_parent(t, node)}
                            for node, ts in graph_edges.items()})
        assert cycle is None, f"a {name} cycle: {' -> '.join(cycle)}"


def is_parent(package: str, module: str) -> bool:
    """A package's __init__ may import its own modules (and they may import it back for its names)."""
    return module.startswith(package + ".") or package.startswith(module + ".")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("old", sorted(jaxvis.MOVED))
def test_an_old_module_path_is_the_module_at_its_new_one_with_a_warning(old):
    new = jaxvis.MOVED[old]
    sys.modules.pop(old, None)  # imported by an earlier case: import it afresh
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_an_old_path_below_a_moved_package_is_its_new_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from jaxvis.attacks import pgd as old
    from jaxvis.methods.attacks import pgd as new

    assert old is new
