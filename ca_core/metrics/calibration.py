"""Calibration of a classifier's softmax: temperature scaling (Guo et al. 2017), NLL, expected
calibration error and the reliability diagram's bins.

The model's probabilities are softmax(z / T) of its logits z: T = 1 is the raw model, the T of
minimum NLL on held-out data (:func:`fit_temperature`) the calibrated one; T > 1 softens an
over-confident model without changing any prediction. Every function takes torch tensors or numpy
arrays, (N, C) logits and (N,) integer labels, and computes in float64 numpy. Accuracy, confidence
and ECE are fractions (x100 for points), NLL is in nats.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

Array = torch.Tensor | np.ndarray

#: Search interval of log T for :func:`fit_temperature`: T in [e^-5, e^5] = [0.0067, 148].
LOG_T_BOUNDS = (-5.0, 5.0)
#: Equal-width confidence bins of the ECE and the reliability diagram (Guo et al. 2017).
N_BINS = 15
#: Probabilities given to :func:`expected_calibration_error` with ``probs=True`` must sum to 1 within this.
PROB_SUM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Reliability:
    """The reliability diagram's bins: ``edges`` (n_bins + 1, equal width on [0, 1]) and per bin the
    mean max probability ``confidence``, the ``accuracy`` (both nan for an empty bin) and ``count``."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """:func:`calibration_summary`'s result at ``temperature``: accuracy, mean max probability
    (``confidence``), ``nll`` (nats) and ``ece`` (:data:`N_BINS` bins)."""

    accuracy: float
    confidence: float
    nll: float
    ece: float
    temperature: float


def _numpy(values: Array) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def _as_scores(scores: Array, name: str) -> np.ndarray:
    """Finite (N, C) float64 array with N >= 1 and C >= 2."""
    z = np.asarray(_numpy(scores), dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"{name} must be (N examples, C >= 2 classes), got shape {z.shape}")
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} contain NaN or inf in rows {np.flatnonzero(bad)[:10].tolist()}")
    return z


def _as_labels(labels: Array, n: int, classes: int) -> np.ndarray:
    """(n,) int64 class indices in [0, classes)."""
    y = _numpy(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must be ({n},), one per row of the logits, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    bad = (y < 0) | (y >= classes)
    if bad.any():
        raise ValueError(f"labels must lie in [0, {classes}), got {y[bad][:10].tolist()} "
                         f"at {np.flatnonzero(bad)[:10].tolist()}")
    return y.astype(np.int64)


def _check_temperature(temperature: float) -> float:
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite positive number, got {temperature}")
    return float(temperature)


def _log_softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    """log softmax(z / T) per row: s - log1p(sum of exp(s) over the other classes), s = z / T shifted
    to a row maximum of 0, so exp never overflows and a confident row's NLL keeps its tiny value
    (needed to see it fall as T -> 0) instead of rounding 1 + 1e-20 to 1."""
    s = z / temperature
    s = s - s.max(axis=1, keepdims=True)
    others = np.exp(s)
    others[np.arange(len(s)), s.argmax(axis=1)] = 0.0
    return s - np.log1p(others.sum(axis=1, keepdims=True))


def _nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    return float(-_log_softmax(z, temperature)[np.arange(len(y)), y].mean())


def nll(logits: Array, labels: Array, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T), in nats:
    NLL = -(1/N) sum_n log softmax(z_n / T)[y_n] (torch's ``cross_entropy`` at T = 1).

    Example:
        >>> round(nll(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0])), 4)
        0.7201
    """
    z = _as_scores(logits, "logits")
    return _nll(z, _as_labels(labels, *z.shape), _check_temperature(temperature))


def fit_temperature(logits: Array, labels: Array) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) (Guo et al. 2017).

    NLL(T) = (1/N) sum_n [logsumexp(z_n / T) - z_n[y_n] / T] is convex in 1/T (a log-sum-exp of
    linear functions of 1/T, minus a linear one), so it is unimodal in log T and a bounded Brent
    search on log T in :data:`LOG_T_BOUNDS` finds the minimum: deterministic, to about 1e-7
    relative in T. Fit it on held-out data (the validation split), never on the test images. When
    a bound's NLL is as low as the search's point, the minimum is there: it returns the bound and
    warns, as for logits right on every example, whose NLL keeps falling as T -> 0.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(0, 3, (20000, 10))
        >>> probs = np.exp(z / 2.0) / np.exp(z / 2.0).sum(1, keepdims=True)  # the truth: T = 2
        >>> labels = (rng.random((20000, 1)) > probs.cumsum(1)).sum(1)
        >>> round(fit_temperature(z, labels), 1)
        2.0
    """

    z = _as_scores(logits, "logits")
    y = _as_labels(labels, *z.shape)
    def objective(log_t: float) -> float:
        return _nll(z, y, float(np.exp(log_t)))

    best = minimize_scalar(objective, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-7}).x
    bound = min(LOG_T_BOUNDS, key=lambda b: abs(b - best))
    if objective(bound) <= objective(best):  # unimodal: the minimum is at the bound (or the NLL is flat)
        warnings.warn(f"fit_temperature: the NLL's minimum is at the search bound T = {np.exp(bound):.4g}",
                      RuntimeWarning, stacklevel=2)
        return float(np.exp(bound))
    return float(np.exp(best))


def _confidence_correct(scores: Array, labels: Array, temperature: float, probs: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per example the max probability and whether its class (the prediction) is the label."""
    p = _as_scores(scores, "probs" if probs else "logits")
    y = _as_labels(labels, *p.shape)
    if probs:
        if temperature != 1.0:
            raise ValueError("a temperature applies to logits: pass logits, or probabilities with temperature=1")
        if (p < 0).any() or np.abs(p.sum(axis=1) - 1).max() > PROB_SUM_TOLERANCE:
            raise ValueError("probs must be non-negative with rows summing to 1")
    else:
        p = np.exp(_log_softmax(p, _check_temperature(temperature)))
    return p.max(axis=1), p.argmax(axis=1) == y


def _bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> Reliability:
    """Equal-width bins (lo, hi] of [0, 1] (a confidence of 0 in the first)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges, right=True) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore"):  # empty bins: 0 / 0 = nan
        return Reliability(edges, np.bincount(index, confidence, n_bins) / count,
                           np.bincount(index, correct.astype(np.float64), n_bins) / count, count)


def reliability(scores: Array, labels: Array, temperature: float = 1.0, n_bins: int = N_BINS, *,
                probs: bool = False) -> Reliability:
    """The reliability diagram of softmax(scores / T) (or of probabilities, ``probs=True``): the
    examples binned by their max probability into ``n_bins`` equal-width bins (lo, hi] of [0, 1],
    each bin's mean confidence, accuracy (prediction = argmax) and count. A calibrated model has
    accuracy = confidence in every bin.

    Example:
        >>> r = reliability(np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0]), n_bins=2, probs=True)
        >>> r.confidence.tolist(), r.accuracy.tolist(), r.count.tolist()
        ([nan, 0.8], [nan, 0.5], [0, 2])
    """
    return _bins(*_confidence_correct(scores, labels, temperature, probs), n_bins)


def _ece(bins: Reliability) -> float:
    full = bins.count > 0
    weights = bins.count[full] / bins.count.sum()
    return float((weights * np.abs(bins.accuracy[full] - bins.confidence[full])).sum())


def expected_calibration_error(scores: Array, labels: Array, temperature: float = 1.0, n_bins: int = N_BINS, *,
                               probs: bool = False) -> float:
    """ECE (Naeini et al. 2015; Guo et al. 2017) of softmax(scores / T), or of probabilities with
    ``probs=True``: over the :func:`reliability` bins B_b of the max probability,

        ECE = sum_b (|B_b| / N) |accuracy(B_b) - confidence(B_b)|,

    a fraction: 0 for a calibrated model (up to sampling noise, about sqrt(n_bins / N)); large
    for an over-confident one, whose confidence exceeds its accuracy.

    Example:
        >>> p = np.array([[0.95, 0.05], [0.85, 0.15], [0.55, 0.45], [0.28, 0.72]])
        >>> round(expected_calibration_error(p, np.array([0, 1, 0, 1]), n_bins=5, probs=True), 4)
        0.3825
    """
    return _ece(reliability(scores, labels, temperature, n_bins, probs=probs))


def calibration_summary(logits: Array, labels: Array, temperature: float = 1.0) -> Calibration:
    """Accuracy, mean confidence, NLL and ECE (:data:`N_BINS` bins) of softmax(logits / T): the raw model at
    T = 1, the calibrated one at :func:`fit_temperature`'s T (the accuracy is the same at any T).

    Example:
        >>> s = calibration_summary(np.array([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0]]), np.array([0, 1, 1]))
        >>> round(s.accuracy, 3), round(s.confidence, 3), round(s.nll, 3), round(s.ece, 3)
        (0.667, 0.929, 0.741, 0.325)
    """
    z = _as_scores(logits, "logits")
    y = _as_labels(labels, *z.shape)
    t = _check_temperature(temperature)
    confidence, correct = _confidence_correct(z, y, t, probs=False)
    return Calibration(accuracy=float(correct.mean()), confidence=float(confidence.mean()), nll=_nll(z, y, t),
                       ece=_ece(_bins(confidence, correct, N_BINS)), temperature=t)
