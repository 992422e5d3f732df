"""Correlation of paired rows: Pearson and Spearman, one value per row of a batch.

Every place that compares two batches item by item (a map with the same image's map after a
change: another precision, a randomised model; an attention map with the feature norms) uses
these, so all of them share one definition and one convention for constant rows.

Conventions:

* Rows: item ``i`` of ``a`` is compared with item ``i`` of ``b``; the axes after the first are
  flattened, so (B, N) rows and (B, h, w) maps are both accepted.
* Arithmetic: float64 on the CPU (NumPy), whatever the inputs' dtype and device.
* Constant rows: a correlation is undefined for a constant row; two constant rows give 1 (they
  agree exactly), a constant row against a varying one gives 0 (no relation). Never NaN.
* Spearman ties: tied values get their average rank.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

Rows = torch.Tensor | np.ndarray


def _rows(x: Rows) -> np.ndarray:
    """``x`` as a float64 (B, N) array on the CPU: one row per item, its other axes flattened."""
    if isinstance(x, torch.Tensor):
        x = x.detach().double().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def pearson(a: Rows, b: Rows) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: (B, ...) twice -> (B,) float64.

    Example:
        >>> pearson(torch.tensor([[1., 2., 3.], [1., 1., 1.]]), torch.tensor([[2., 4., 7.], [1., 1., 1.]]))
        array([0.99339927, 1.        ])
    """
    a, b = _rows(a), _rows(b)
    if a.shape != b.shape:
        raise ValueError(f"need two batches of rows of one shape, got {a.shape} and {b.shape}")
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norm_a, norm_b = np.sqrt((a ** 2).sum(axis=1)), np.sqrt((b ** 2).sum(axis=1))
    flat_a, flat_b = norm_a == 0, norm_b == 0
    rho = (a * b).sum(axis=1) / np.where(flat_a | flat_b, 1.0, norm_a * norm_b)
    return np.where(flat_a & flat_b, 1.0, np.where(flat_a | flat_b, 0.0, rho))


def spearman(a: Rows, b: Rows) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b``: the :func:`pearson`
    correlation of the rows' ranks (ties: average ranks), (B, ...) twice -> (B,) float64.

    Example:
        >>> spearman(torch.tensor([[1., 2., 3., 4.]]), torch.tensor([[1., 4., 9., 100.]]))
        array([1.])
    """
    return pearson(rankdata(_rows(a), axis=1), rankdata(_rows(b), axis=1))
