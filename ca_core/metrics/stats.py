"""Statistics over per-image metric values: bootstrap confidence intervals and a paired test.

Values are fractions per image (e.g. AD in [0,1], AI in {0,1}); results are in percent (x100),
the unit of the paper's tables.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

Values = torch.Tensor | np.ndarray | Sequence[float]


def _as_array(values: Values, name: str) -> np.ndarray:
    """Finite 1-D float64 array of at least one value."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of per-image values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf at indices {np.flatnonzero(~np.isfinite(array)).tolist()[:10]}")
    return array


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of ``values``."""
    return values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)


def summarize(values: Values, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean x100 with a percentile-bootstrap 95% confidence interval: ``{"mean", "lo", "hi"}``."""
    array = _as_array(values, "values")
    means = _bootstrap_means(array, n_boot, np.random.default_rng(seed))
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": 100 * float(array.mean()), "lo": 100 * float(lo), "hi": 100 * float(hi)}


def paired_test(a: Values, b: Values, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Compare two settings on the same images (e.g. GAP vs CA for one saliency method).

    Returns ``diff`` = mean(b - a) x100, its percentile-bootstrap 95% interval ``lo``/``hi``
    (resampling images, which keeps the pairing), and a two-sided ``p`` from a sign-flip
    randomisation test (under the null that a and b are exchangeable per image, each difference
    is as likely negated): the share of ``n_boot`` random sign flips whose mean difference is at
    least as far from 0 as the observed one, counting the observed one, so p >= 1/(n_boot+1).
    """
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired_test needs a and b on the same images, got {x.size} and {y.size} values")
    diff = y - x
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(_bootstrap_means(diff, n_boot, rng), [2.5, 97.5])
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_boot, diff.size))
    null = np.abs((signs * diff).mean(axis=1))
    observed = abs(diff.mean())
    extreme = np.count_nonzero(null >= observed - 1e-12 * max(1.0, observed))
    return {"diff": 100 * float(diff.mean()), "lo": 100 * float(lo), "hi": 100 * float(hi),
            "p": (1 + extreme) / (1 + n_boot)}
