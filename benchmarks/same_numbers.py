"""Are two run folders the same numbers? Every checkpoint's tensors, every per-image array and every
table of ``results.json`` of run folder A against B (e.g. a copy kept before a refactoring).

    cp -a runs/default /tmp/before   # before the change; then, after it, make book (or the pipeline)
    python benchmarks/same_numbers.py /tmp/before runs/default

Keys, stamps and timings are left out (they name the code, which changed on purpose); everything a
model or an evaluation computed is compared exactly (``torch.equal``, ``numpy.array_equal``, ``==``).
Folders set aside as orphans are skipped. Exits 1 when anything differs, naming it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ca_core.utils import ORPHAN

#: Record fields that identify code or time, not computed numbers.
IGNORED = {"key", "fingerprint", "time_s", "written", "created", "commit", "reproduction"}


def files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob(pattern) if ORPHAN not in p.as_posix())


def same_checkpoints(a: Path, b: Path, path: Path) -> bool:
    x, y = load_file(a / path), load_file(b / path)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def same_arrays(a: Path, b: Path, path: Path) -> bool:
    with np.load(a / path) as x, np.load(b / path) as y:
        names = [k for k in x.files if k not in IGNORED]
        return names == [k for k in y.files if k not in IGNORED] and all(np.array_equal(x[k], y[k]) for k in names)


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in IGNORED}
    return [strip(v) for v in value] if isinstance(value, list) else value


def main(a: str, b: str) -> int:
    a, b = Path(a), Path(b)
    differ, counts = [], {}
    for kind, pattern, same in (("checkpoints", "train/**/model.safetensors", same_checkpoints),
                                ("per-image arrays", "eval/**/*.npz", same_arrays)):
        found = files(a, pattern)
        missing = set(found) ^ set(files(b, pattern))
        differ += [f"{p}: in one run only" for p in sorted(missing)]
        differ += [str(p) for p in found if p not in missing and not same(a, b, p)]
        counts[kind] = len(found)
    ra, rb = (strip(json.loads((r / "results.json").read_text())) for r in (a, b))
    differ += [f"results.json: {k}" for k in sorted(ra.keys() | rb.keys()) if ra.get(k) != rb.get(k)]
    print(f"compared {counts['checkpoints']} checkpoints, {counts['per-image arrays']} per-image array files and "
          f"{len(ra)} sections of results.json: " + ("identical" if not differ else f"{len(differ)} differ"))
    for d in differ:
        print("  differs:", d)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
