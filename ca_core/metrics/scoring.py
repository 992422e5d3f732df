"""Shared pieces of every metric: chunked forward passes and the target class's score."""
from __future__ import annotations

from typing import Iterator

import torch


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` items covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def class_scores(logits: torch.Tensor, targets: torch.Tensor, score: str = "prob") -> torch.Tensor:
    """The target class's softmax probability (``score="prob"``) or logit (``"logit"``), shape (B,).

    The softmax runs in float32 at least, so half-precision models give the same probabilities.
    """
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    values = logits.softmax(dim=1) if score == "prob" else logits
    return values.gather(1, targets[:, None])[:, 0]
