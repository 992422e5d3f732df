"""Leaf helpers shared by the whole package (imports nothing of ``ca_core``).

Atomic writes (every artefact on disk), seeding and RNG state (training and its
resumption), the device, chunking, and the two checks every entry point shares: class labels that
must fit a classifier, and the target class's score that Score-CAM and the metrics both read; and
:class:`FieldError`, the error of a settings dataclass's rejected field.
"""
from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

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


# ---------------------------------------------------------------------------------------------
# Randomness and devices


#: The suffix of a folder set aside by :func:`set_aside` (followed by the UTC time).
ORPHAN = ".orphan-"


def set_aside(folder: str | Path) -> Path:
    """Rename ``folder`` to ``<folder>.orphan-<UTC time>`` beside it and return the new path: results
    that no longer belong to a run are never deleted by the code, only by the user."""
    folder = Path(folder)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = folder.with_name(f"{folder.name}{ORPHAN}{stamp}")
    folder.rename(aside)
    return aside


def announce(message: str) -> None:
    """One line on stderr saying what the code recomputes and why (``ca_core: ...``): not a warning
    (nothing is wrong), but never silent."""
    print(f"ca_core: {message}", file=sys.stderr, flush=True)


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


def target_scores(logits: torch.Tensor, targets: torch.Tensor, score: str = "prob",
                  temperature: float = 1.0) -> torch.Tensor:
    """The target class's softmax probability (``score="prob"``) or logit (``"logit"``), shape (B,).

    The one definition of "the score explained" used by Score-CAM and every metric. The softmax
    runs in float32 at least, so half-precision models give the same probabilities. ``temperature``
    divides the logits first (temperature scaling, Guo et al. 2017: a calibrated model's scores);
    1 leaves them untouched, bit for bit.
    """
    if score not in ("prob", "logit"):
        raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    logits = logits if temperature == 1.0 else logits / temperature
    values = logits.softmax(dim=1) if score == "prob" else logits
    return values.gather(1, targets[:, None])[:, 0]


# ---------------------------------------------------------------------------------------------
# Speed: numeric precision and memory format

#: ``precision`` option values and the autocast dtype of each (``None``: plain float32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str | None = None) -> str:
    """``precision`` if it is known (and, for ``"fp16"``, if ``device`` is CUDA), else a ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: unknown {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device is not None and torch.device(device).type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device (CPUs autocast to bfloat16: use 'bf16')")
    return precision


def autocast(device: torch.device | str, precision: str = "fp32") -> torch.autocast:
    """``torch.autocast`` for ``precision`` on ``device`` (disabled for ``"fp32"``)."""
    device = torch.device(device)
    dtype = PRECISIONS[check_precision(precision, device)]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-d batch in channels-last memory format (the fast layout of CPU and GPU convolutions)."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


class Autocast(torch.nn.Module):
    """``model`` whose forward passes run at ``precision`` and return float32 outputs.

    Lets code that only calls ``model(x)`` (the metrics) run at another precision without knowing it.
    """

    def __init__(self, model: torch.nn.Module, precision: str) -> None:
        super().__init__()
        self.model, self.precision = model, precision
        self.device = next(model.parameters()).device
        check_precision(precision, self.device)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.device, self.precision):
            out = self.model(*args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) else out


def progress_bar(iterable: Iterable, **options: Any) -> Iterable:
    """A text progress bar (tqdm) that redraws at most every 5 s: long loops (epochs, evaluation)
    show rate and time left in a terminal, in a notebook, and in a pipeline's streamed log, without
    filling a stored notebook with thousands of redraws."""
    from tqdm import tqdm

    return tqdm(iterable, mininterval=5.0, **options)


# ---------------------------------------------------------------------------------------------
# Settings


class FieldError(ValueError):
    """A value that a settings dataclass's ``__post_init__`` rejects, with the field it belongs to.

    ``field`` names the field, so that a reader of settings files can name the key
    (``profiles.smoke.train.epochs``) without parsing the message, which stays the check's own.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    @classmethod
    @contextmanager
    def of(cls, field: str) -> Iterator[None]:
        """Within the block, a ``ValueError`` of a shared check (:func:`check_precision`) is ``field``'s:
        raised again as a :class:`FieldError` with the same message."""
        try:
            yield
        except ValueError as err:
            raise cls(field, str(err)) from err
