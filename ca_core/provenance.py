"""Provenance: digests of what produced an artefact, so that nothing stale is ever reused.

An artefact (a training stage's checkpoint, an evaluation chunk, an executed notebook) is keyed by
:func:`digest` of its settings, of the artefacts it reads and of the source of all the code that
computes it. That code is not a hand-kept list: :func:`code_digest` follows the ``import``
statements of a ``ca_core`` module (also those inside functions) to every package module it can
reach, so a change anywhere below it changes the key. A leaf module: it imports nothing of ``ca_core``.
"""
from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch

PACKAGE_DIR = Path(__file__).resolve().parent


def digest(*parts: Any) -> str:
    """SHA-256 of JSON-able values and of the bytes of any :class:`Path` among them."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(part.read_bytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """Hash of a state dict's names, shapes, dtypes and values (e.g. a backbone's weights)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The import graph of the package


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    """``ca_core/models/factory.py`` -> ``ca_core.models.factory`` (a package's ``__init__`` is the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE_DIR) -> set[str]:
    """The package modules that the file ``path`` imports anywhere in its code."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                origin = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # "from x import y": y is a module when x.y is one, else a name defined in x.
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # "import ca_core.models.factory.x" -> the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def module_files(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package under ``root`` and its file."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package modules it imports (directly)."""
    files = module_files(root)
    return {name: imports_of(path, set(files), root) for name, path in files.items()}


def reachable(modules: list[str], graph: dict[str, set[str]]) -> set[str]:
    """The modules named and every package module they import, directly or not."""
    seen: set[str] = set()
    todo = [m for m in modules if m in graph]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m] - seen)
    return seen


@lru_cache(maxsize=None)
def _cached_code_digest(modules: tuple[str, ...], root: Path) -> str:
    files = module_files(root)
    closure = sorted(reachable(list(modules), import_graph(root)))
    return digest(closure, *[files[m] for m in closure])


def code_digest(*modules: str, root: Path = PACKAGE_DIR) -> str:
    """Hash of the source of ``modules`` and of every package module they reach through imports.

    Cached per process: the source does not change while a run is going on.
    """
    unknown = [m for m in modules if m not in module_files(root)]
    if unknown:
        raise ValueError(f"not modules of {root.name}: {', '.join(unknown)}")
    return _cached_code_digest(tuple(sorted(modules)), root)


def notebook_modules(path: Path, root: Path = PACKAGE_DIR) -> list[str]:
    """The package modules that the code cells of the notebook ``path`` import."""
    modules = set(module_files(root))
    found: set[str] = set()
    for cell in json.loads(Path(path).read_text()).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", [])))
        except SyntaxError:  # IPython magics: not Python, and import nothing of the package
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
                     if isinstance(node, ast.ImportFrom) and not node.level else [])
            found.update(n for n in names if n in modules)
    return sorted(found)
