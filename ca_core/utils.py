"""Leaf helpers shared by the whole package (imports nothing of ``ca_core``).

Atomic writes and digests (every artefact on disk), seeding and RNG state (training and its
resumption), the device, chunking, and the two checks every entry point shares: class labels that
must fit a classifier, and the target class's score that Score-CAM and the metrics both read.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

Labels = torch.Tensor | Sequence[int] | int | None


# ---------------------------------------------------------------------------------------------
# Files


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str) + "\n"))


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


def source_digest(folder: Path) -> str:
    """Hash of every ``.py`` file under ``folder`` (names and contents): a version of that code."""
    files = sorted(p for p in Path(folder).rglob("*.py") if "__pycache__" not in p.parts)
    return digest(*[str(p.relative_to(folder)) for p in files], *files)


# ---------------------------------------------------------------------------------------------
# Randomness and devices


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """Every RNG state a later epoch may draw from."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` items covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


# ---------------------------------------------------------------------------------------------
# Labels and target scores


def check_labels(labels: Labels, n: int | None, num_classes: int | None, device: torch.device | str = "cpu",
                 what: str = "targets", names: Sequence[str] | None = None) -> torch.Tensor:
    """Labels as an (n,) long tensor on ``device``, or a :class:`ValueError` naming the problem.

    ``labels`` is a tensor, a sequence or one int (the same class for all ``n`` items); each must be
    an integer class index in ``[0, num_classes)`` (unchecked when ``num_classes`` is ``None``;
    ``n`` ``None``: any length). ``names`` (e.g. file paths) name the first offending item.
    """
    t = torch.as_tensor(labels, device=device)
    if t.ndim == 0 and n is not None:
        t = t.expand(n)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.ndim != 1 or (
            n is not None and len(t) != n):
        count = f"{n} " if n is not None else ""
        raise ValueError(f"{what} must hold one integer class index per image ({count}images); "
                         f"got dtype {t.dtype} and shape {tuple(t.shape)}")
    if num_classes is not None and len(t):
        bad = ((t < 0) | (t >= num_classes)).nonzero()
        if len(bad):
            i = int(bad[0])
            item = names[i] if names is not None else f"item {i}"
            raise ValueError(f"{what}: label {int(t[i])} of {item} does not fit a model with {num_classes} "
                             f"classes (labels must be 0..{num_classes - 1}); {len(bad)} such label(s)")
    return t.long()


def target_scores(logits: torch.Tensor, targets: torch.Tensor, score: str = "prob") -> torch.Tensor:
    """The target class's softmax probability (``score="prob"``) or logit (``"logit"``), shape (B,).

    The one definition of "the score explained" used by Score-CAM and every metric. The softmax
    runs in float32 at least, so half-precision models give the same probabilities.
    """
    if score not in ("prob", "logit"):
        raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    values = logits.softmax(dim=1) if score == "prob" else logits
    return values.gather(1, targets[:, None])[:, 0]
