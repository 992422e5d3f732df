"""Tests of ca_core.metrics.calibration: temperature recovery on synthetic logits, NLL against torch,
ECE on calibrated, over-confident and hand-computed cases, the reliability bins, input errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ca_core.metrics.calibration import (
    calibration_summary, expected_calibration_error, fit_temperature, nll, reliability,
)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(n: int, true_temperature: float, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Logits z ~ N(0, 3^2) and labels drawn from softmax(z / T_true): calibrated at T_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, classes))
    labels = (rng.random((n, 1)) > softmax(z / true_temperature).cumsum(axis=1)).sum(axis=1)
    return z, np.minimum(labels, classes - 1)  # a cumsum of 1 - 1e-16 cannot push a label past the last class


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_fit_temperature_recovers_the_true_temperature(true_temperature):
    z, labels = synthetic(20000, true_temperature)
    fitted = fit_temperature(z, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    assert nll(z, labels, fitted) < nll(z, labels, 1.0)
    assert nll(z, labels, fitted) <= min(nll(z, labels, fitted * f) for f in (0.99, 1.01))
    assert (fit_temperature(torch.tensor(z, dtype=torch.float32), torch.tensor(labels))
            == pytest.approx(fitted, rel=1e-4))


def test_fit_temperature_warns_when_the_minimum_is_at_the_bound():
    z = np.array([[5.0, 0.0], [0.0, 5.0]])  # right and confident on both: the NLL falls as T -> 0
    with pytest.warns(RuntimeWarning, match="search bound"):
        assert fit_temperature(z, np.array([0, 1])) == pytest.approx(np.exp(-5))


def test_nll_at_temperature_one_is_torch_cross_entropy():
    z, labels = synthetic(500, 1.0, seed=1)
    expected = F.cross_entropy(torch.tensor(z), torch.tensor(labels)).item()
    assert nll(z, labels) == pytest.approx(expected, rel=1e-12)
    assert nll(z, labels, 2.0) == pytest.approx(F.cross_entropy(torch.tensor(z / 2), torch.tensor(labels)).item(),
                                                rel=1e-12)


def test_ece_near_zero_when_calibrated_and_large_when_over_confident():
    z, labels = synthetic(20000, 1.0, seed=2)
    assert expected_calibration_error(z, labels) < 0.01
    over_z, over_labels = synthetic(20000, 2.0, seed=3)  # the logits claim twice the true sharpness
    over = calibration_summary(over_z, over_labels)
    assert over.ece > 0.1 and over.confidence > over.accuracy + 0.1
    calibrated = calibration_summary(over_z, over_labels, fit_temperature(over_z, over_labels))
    assert calibrated.ece < 0.01 and calibrated.accuracy == over.accuracy and calibrated.nll < over.nll


def test_ece_and_reliability_hand_computed():
    # max probabilities 0.95 (right), 0.85 (wrong), 0.55 (right), 0.72 (right); 5 bins of width 0.2:
    # (0.4, 0.6]: |1 - 0.55| x 1/4; (0.6, 0.8]: |1 - 0.72| x 1/4; (0.8, 1]: |0.5 - 0.9| x 2/4
    p = np.array([[0.95, 0.05], [0.85, 0.15], [0.55, 0.45], [0.28, 0.72]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, labels, n_bins=5, probs=True) == pytest.approx(0.45 / 4 + 0.28 / 4 + 0.4 / 2)
    r = reliability(p, labels, n_bins=5, probs=True)
    assert r.edges == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1])
    assert r.count.tolist() == [0, 0, 1, 1, 2]
    assert r.confidence[2:] == pytest.approx([0.55, 0.72, 0.9]) and np.isnan(r.confidence[:2]).all()
    assert r.accuracy[2:] == pytest.approx([1, 1, 0.5]) and np.isnan(r.accuracy[:2]).all()
    # the same probabilities as logits (log p) give the same bins
    logits = torch.log(torch.tensor(p))
    assert expected_calibration_error(logits, torch.tensor(labels), n_bins=5) == pytest.approx(0.3825)


def test_reliability_counts_every_example_once_and_matches_the_summary():
    z, labels = synthetic(3000, 1.5, seed=4)
    r = reliability(z, labels, temperature=1.5)
    assert r.count.sum() == 3000 and len(r.count) == 15
    full = r.count > 0
    summary = calibration_summary(z, labels, 1.5)
    assert (r.confidence[full] * r.count[full]).sum() / 3000 == pytest.approx(summary.confidence)
    assert (r.accuracy[full] * r.count[full]).sum() / 3000 == pytest.approx(summary.accuracy)
    assert summary.ece == pytest.approx(expected_calibration_error(z, labels, 1.5)) and summary.temperature == 1.5
    assert summary.nll == pytest.approx(nll(z, labels, 1.5))


@pytest.mark.parametrize("logits, labels, message", [
    (np.zeros(4), np.zeros(4, dtype=int), r"\(N examples, C >= 2 classes\)"),
    (np.zeros((4, 1)), np.zeros(4, dtype=int), "C >= 2"),
    (np.array([[0.0, 1.0], [np.nan, 0.0]]), np.array([0, 1]), r"NaN or inf in rows \[1\]"),
    (np.zeros((3, 2)), np.zeros(2, dtype=int), r"must be \(3,\)"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), "integer class indices"),
    (np.zeros((2, 3)), np.array([0, 3]), r"in \[0, 3\), got \[3\] at \[1\]"),
    (np.zeros((2, 3)), np.array([-1, 0]), r"got \[-1\] at \[0\]"),
])
def test_bad_inputs_get_a_clear_error(logits, labels, message):
    for call in (fit_temperature, nll, calibration_summary, expected_calibration_error):
        with pytest.raises(ValueError, match=message):
            call(logits, labels)


def test_bad_temperature_bins_and_probabilities():
    z, labels = np.zeros((2, 3)), np.array([0, 1])
    for t in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            nll(z, labels, t)
    with pytest.raises(ValueError, match="n_bins"):
        reliability(z, labels, n_bins=0)
    with pytest.raises(ValueError, match="summing to 1"):
        expected_calibration_error(np.array([[0.5, 0.6], [0.5, 0.5]]), labels[:2] * 0, probs=True)
    with pytest.raises(ValueError, match="temperature applies to logits"):
        expected_calibration_error(np.full((2, 2), 0.5), labels * 0, 2.0, probs=True)
