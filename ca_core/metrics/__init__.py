"""The paper's interpretability metrics: AD, AG, AI, Insertion, Deletion, localisation, statistics.

``evaluate_maps`` computes every metric per image with one shared clean forward pass;
``summarize`` and ``paired_test`` turn per-image values into the percentages of the paper's tables
with bootstrap confidence intervals. Conventions are named in :mod:`ca_core.metrics.protocols`.
"""
from .causal import auc, blur, blur_kernel, causal_curves, pixel_ranks
from .confidence import average_drop, average_gain, average_increase, confidence_metrics, mask_images
from .maps import evaluate_maps
from .localisation import energy_pointing_game, paper_tolerance, pointing_game
from .protocols import PROTOCOLS, Protocol, get_protocol
from .stats import paired_test, summarize, two_level_test

__all__ = [
    "PROTOCOLS", "Protocol", "auc", "average_drop", "average_gain", "average_increase", "blur",
    "blur_kernel", "causal_curves", "confidence_metrics", "energy_pointing_game",
    "evaluate_maps", "get_protocol", "paper_tolerance", "mask_images", "paired_test", "pixel_ranks", "pointing_game",
    "summarize", "two_level_test",
]
