"""The package's imports run one way: no cycle between ``ca_core`` modules, and nothing in the
library imports the reproduction package ``ca_core.repro``.

Every import is parsed, also those inside functions. ``__main__`` modules are command-line entry
points that nothing imports; they may call into the reproduction.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ca_core"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``ca_core/models/factory.py`` -> ``ca_core.models.factory`` (a package's ``__init__`` is the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The ``ca_core`` modules that ``path`` imports anywhere in its code."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # "from x import y": y is a module when x.y is one, else a name in x.
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # "import ca_core.models.factory.x" -> the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    files = [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, modules, root) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def is_library(module: str) -> bool:
    return not module.startswith("ca_core.repro") and not module.endswith(".__main__")


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_library_never_imports_the_reproduction():
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if t.startswith("ca_core.repro"))
             for m, targets in graph.items() if is_library(m)}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_checker_finds_a_cycle_and_a_wrong_way_import(tmp_path):
    """The checks above can fail: a tree with a cycle through a function-level import, and a
    library module importing the reproduction."""
    pkg = tmp_path / "ca_core"
    (pkg / "repro").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "repro" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "repro" / "c.py").write_text("from ..a import b\n")
    (pkg / "d.py").write_text("def f():\n    from .repro.c import x\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["ca_core.a", "ca_core.b"]]
    assert graph["ca_core.d"] == {"ca_core.repro.c"} and is_library("ca_core.d")
    assert graph["ca_core.repro.c"] == {"ca_core.a"}


@pytest.mark.parametrize("entry", ["ca_core.train.__main__", "ca_core.pipeline.__main__"])
def test_entry_points_exist(entry):
    assert entry in import_graph()
