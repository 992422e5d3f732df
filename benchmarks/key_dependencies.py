"""Which artefacts an edit recomputes: edit one function in each of several modules (on a copy of
the package) and print, per edited module, the artefacts whose code key changes.

    python benchmarks/key_dependencies.py

The keys are the real ones (:func:`ca_core.repro.keys.code_keys`, :func:`ca_core.provenance.code_digest`);
``tests/test_keys.py`` asserts the same table.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ca_core.provenance import PACKAGE_DIR
from ca_core.repro.keys import code_keys

#: An edited function per module: data, the generator, a saliency method, the statistics, the models, figures.
EDITS = {
    "ca_core/data/transforms.py": "def eval_transform(",
    "ca_core/data/shapes.py": "def generate(",
    "ca_core/saliency/gradcam.py": "def channel_weights(",
    "ca_core/metrics/stats.py": "def crossed_test(",
    "ca_core/models/layers.py": "def forward(",
    "ca_core/repro/figures.py": "def forest_plot(",
}


def edited_copy(root: Path, module: str, function: str) -> Path:
    """A copy of the package under ``root`` in which the first function (or method) starting with
    ``function`` in ``module`` gains a statement (``pass``) at the top of its body."""
    package = root / "ca_core"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / module
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(function))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith(":"))  # the signature's last line
    indent = len(lines[start]) - len(lines[start].lstrip()) + 4
    lines.insert(end + 1, " " * indent + "pass  # edited\n")
    path.write_text("".join(lines))
    return package


def changed_keys(module: str, function: str, notebooks: Path = Path("notebooks")) -> list[str]:
    """The artefacts whose code key changes when ``module``'s ``function`` is edited."""
    before = code_keys(PACKAGE_DIR, notebooks)
    with tempfile.TemporaryDirectory() as tmp:
        after = code_keys(edited_copy(Path(tmp), module, function), notebooks)
    return [name for name in before if before[name] != after[name]]


def main() -> None:
    print("| module edited | artefacts recomputed |\n|---|---|")
    for module, function in EDITS.items():
        print(f"| `{module}` | {', '.join(changed_keys(module, function)) or 'none'} |")


if __name__ == "__main__":
    main()
