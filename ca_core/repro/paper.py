"""The numbers the paper reports, as data, so the book can print them beside this run's.

Source: Torres, Zhang, Sicre, Ayache, Avrithis, "CA-Stream: Attention-based pooling for interpretable
image recognition", CVPR 2024 XAI4CV workshop (arXiv 2404.14996); tables as given in the authors'
poster and slides (``ftorres11/CA_Stream: assets/CA_Poster.pdf``, ``assets/CA_Slides.pdf``; the same
numbers in both). ImageNet-1k validation, 224 px, ResNet-50 and ConvNeXt-B, all values in percent.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..saliency import METHODS

SOURCE = (
    "Torres et al., CA-Stream (CVPR-W 2024, arXiv 2404.14996): accuracy table and Table 1, "
    "ImageNet validation, as in the authors' poster/slides (ftorres11/CA_Stream assets)"
)

#: Metric keys in the paper's column order, with the direction in which a value is better.
METRICS: dict[str, str] = {"ad": "down", "ag": "up", "ai": "up", "insertion": "up", "deletion": "down"}
METRIC_LABELS: dict[str, str] = {"ad": "AD↓", "ag": "AG↑", "ai": "AI↑", "insertion": "I↑", "deletion": "D↓"}

#: The CAM methods of the paper's Table 1: its claims are about these.
PAPER_CAMS: tuple[str, ...] = ("gradcam", "gradcampp", "scorecam")
#: The saliency methods the paper shows: its CAMs, and raw attention (qualitatively).
PAPER_METHODS: tuple[str, ...] = (*PAPER_CAMS, "attention")


def method_label(method: str) -> str:
    """The display name of a saliency method of :data:`ca_core.saliency.METHODS`: its own ``label``,
    marked "(baseline)" for a sanity baseline and "(beyond paper)" for a method the paper does not show,
    so that a reader of a table tells the paper's methods from the others."""
    cls = METHODS[method]
    if cls.kind == "baseline":
        return f"{cls.label} (baseline)"
    return cls.label if method in PAPER_METHODS else f"{cls.label} (beyond paper)"


class _MethodLabels(Mapping[str, str]):
    """:func:`method_label` of every registered saliency method, as a read-only mapping that reads
    the registry at each use: a method registered after this module's import is in it too."""

    def __getitem__(self, method: str) -> str:
        return method_label(method)

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)

    def __or__(self, other: Mapping[str, str]) -> dict[str, str]:
        return dict(self) | dict(other)

    def __ror__(self, other: Mapping[str, str]) -> dict[str, str]:
        return dict(other) | dict(self)


#: Saliency method keys of ``ca_core.saliency`` and their display names (:func:`method_label`):
#: the paper's methods, the methods beyond the paper and the sanity baselines, marked so.
METHOD_LABELS: Mapping[str, str] = _MethodLabels()

#: The paper's backbones (timm names) and their display names.
BACKBONE_LABELS: dict[str, str] = {"resnet50": "ResNet-50", "convnext_base": "ConvNeXt-B"}

#: Top-1 accuracy (%) by backbone and pooling.
ACCURACY: dict[str, dict[str, float]] = {
    "resnet50": {"gap": 74.55, "ca": 74.70},
    "convnext_base": {"gap": 83.72, "ca": 83.51},
}

_TABLE1_ROWS = {
    # (backbone, method, pooling): AD, AG, AI, I, D
    ("resnet50", "gradcam", "gap"): (13.04, 17.56, 44.47, 72.57, 13.24),
    ("resnet50", "gradcam", "ca"): (12.54, 22.67, 48.56, 75.53, 13.50),
    ("resnet50", "gradcampp", "gap"): (13.79, 15.87, 42.08, 72.32, 13.33),
    ("resnet50", "gradcampp", "ca"): (13.99, 19.29, 44.60, 75.21, 13.78),
    ("resnet50", "scorecam", "gap"): (8.83, 17.97, 48.46, 71.99, 14.31),
    ("resnet50", "scorecam", "ca"): (7.09, 23.65, 54.20, 74.91, 14.68),
    ("convnext_base", "gradcam", "gap"): (33.72, 2.43, 15.25, 52.85, 29.57),
    ("convnext_base", "gradcam", "ca"): (19.45, 13.96, 32.89, 86.38, 45.29),
    ("convnext_base", "gradcampp", "gap"): (34.01, 2.37, 15.60, 52.83, 29.17),
    ("convnext_base", "gradcampp", "ca"): (36.69, 8.00, 21.95, 85.39, 53.42),
    ("convnext_base", "scorecam", "gap"): (43.55, 2.23, 15.67, 50.96, 39.49),
    ("convnext_base", "scorecam", "ca"): (23.51, 11.04, 27.35, 83.41, 60.53),
}

#: Table 1 (%): ``TABLE1[(backbone, method, pooling)][metric]``.
TABLE1: dict[tuple[str, str, str], dict[str, float]] = {
    key: dict(zip(METRICS, values)) for key, values in _TABLE1_ROWS.items()
}

#: The paper's claims (poster: "CA improves over GAP on most metrics and is worse on Deletion"),
#: each as (text, kind, metric). ``kind`` "improves" wants CA better than GAP in the metric's
#: direction, "kept" wants no significant accuracy change (metric ``None`` = accuracy), "worse"
#: wants CA worse in the metric's direction (Deletion up).
CLAIMS: tuple[tuple[str, str, str | None], ...] = (
    ("CA improves Average Gain (AG)", "improves", "ag"),
    ("CA improves Average Increase (AI)", "improves", "ai"),
    ("CA improves Insertion (I)", "improves", "insertion"),
    ("CA keeps the accuracy of GAP", "kept", None),
    ("CA is worse on Deletion (D)", "worse", "deletion"),
)


def paper_value(backbone: str, method: str, pooling: str, metric: str) -> float | None:
    """The paper's Table 1 value for this cell, or ``None`` when the paper has no such cell
    (another backbone, or raw attention, which the paper shows only qualitatively)."""
    row = TABLE1.get((backbone, method, pooling))
    return None if row is None else row[metric]


def paper_backbone(backbone: str) -> str | None:
    """The paper's backbone of the same family (``resnet_mini`` -> ``resnet50``), or ``None``."""
    if backbone in ACCURACY:
        return backbone
    family = next((f for f in ("convnext", "resnet") if backbone.startswith(f)), None)
    return {"resnet": "resnet50", "convnext": "convnext_base"}.get(family)
