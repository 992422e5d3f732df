"""The package's imports run one way: no cycle between ``ca_core`` modules, and nothing in the
library imports the reproduction package ``ca_core.repro``.

Every import is parsed, also those inside functions. ``__main__`` modules are command-line entry
points that nothing imports; they may call into the reproduction.
"""
from __future__ import annotations

import pytest

from ca_core.provenance import code_digest, import_graph, reachable


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


def test_code_digest_follows_the_imports(tmp_path):
    graph = import_graph()
    closure = reachable(["ca_core.evaluation"], graph)
    assert {"ca_core.models.factory", "ca_core.saliency.scorecam", "ca_core.metrics.causal", "ca_core.utils"} <= closure
    assert not any(m.startswith("ca_core.repro") for m in closure)
    pkg = tmp_path / "ca_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("X = 1\n")
    (pkg / "mid.py").write_text("def f():\n    from .low import X\n")
    (pkg / "other.py").write_text("Y = 2\n")
    before = {m: code_digest(m, root=pkg) for m in ("ca_core.mid", "ca_core.other")}
    (pkg / "low.py").write_text("X = 2\n")
    from ca_core.provenance import _cached_code_digest

    _cached_code_digest.cache_clear()
    after = {m: code_digest(m, root=pkg) for m in ("ca_core.mid", "ca_core.other")}
    assert after["ca_core.mid"] != before["ca_core.mid"]  # a change below it, through a function-level import
    assert after["ca_core.other"] == before["ca_core.other"]
    with pytest.raises(ValueError, match="not modules of ca_core: ca_core.nothing"):
        code_digest("ca_core.nothing", root=pkg)
