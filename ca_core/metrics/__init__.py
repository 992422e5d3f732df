"""The paper's interpretability metrics and what tells a better map from a more confident model.

``evaluate_maps`` computes every metric of the paper (AD, AG, AI, Insertion, Deletion, localisation)
per image with one shared clean forward pass, also normalised by the full-image probability and,
given a temperature, on calibrated probabilities; ``road`` is ROAD (Rong et al. 2022);
``cascading_randomisation`` the parameter randomisation sanity check (Adebayo et al. 2018), which
compares maps by ``spearman`` (``pearson`` and ``spearman``: per-row correlations, one convention);
``fit_temperature`` and the calibration summaries measure each model's confidence;
``summarize``, ``crossed_test``, ``holm`` and ``equivalence_test`` turn per-image values into the
percentages of the paper's tables with intervals and tests. Conventions are named in
:mod:`ca_core.metrics.protocols`.
"""
from .calibration import (Calibration, Reliability, calibration_summary, expected_calibration_error, fit_temperature,
                          nll, reliability)
from .causal import auc, blur, blur_kernel, causal_curves, pixel_ranks
from .confidence import average_drop, average_gain, average_increase, confidence_metrics, mask_images
from .correlation import pearson, spearman
from .maps import evaluate_maps, normalised_aucs
from .localisation import energy_pointing_game, paper_tolerance, pointing_game
from .protocols import PROTOCOLS, Protocol, get_protocol
from .road import road
from .sanity import SanityResult, cascading_randomisation, randomisation_steps
from .stats import (CrossedTest, Equivalence, crossed_test, equivalence_test, holm, paired_test, simulate_crossed,
                    summarize, variance_ratios)

__all__ = [
    "Calibration", "CrossedTest", "Equivalence", "PROTOCOLS", "Protocol", "Reliability", "SanityResult", "auc",
    "average_drop", "average_gain", "average_increase", "blur", "blur_kernel", "calibration_summary",
    "cascading_randomisation", "causal_curves", "confidence_metrics", "crossed_test", "energy_pointing_game",
    "equivalence_test", "evaluate_maps", "expected_calibration_error", "fit_temperature", "get_protocol", "holm",
    "mask_images", "nll", "normalised_aucs", "paired_test", "paper_tolerance", "pearson", "pixel_ranks",
    "pointing_game",
    "randomisation_steps", "reliability", "road", "simulate_crossed", "spearman", "summarize", "variance_ratios",
]
