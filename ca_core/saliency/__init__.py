"""Saliency maps for GAP and CA-Stream models: Grad-CAM, Grad-CAM++, Score-CAM, XGrad-CAM,
Layer-CAM, Opti-CAM, raw attention, and the sanity baselines ``random`` and ``centre`` (maps that
ignore the image).

``explain(model, images, method)`` returns one map per image, (B, h, w) in [0, 1] at the target
layer's resolution; ``upsample(maps, size)`` brings them to the input size.
"""
from __future__ import annotations

import torch
from torch import nn

from . import gradcam, gradcampp, scorecam, xgradcam, layercam, opticam, attention, baselines  # noqa: F401,I001  (registers the methods, in this order)
from .base import METHODS, CAMMethod, SaliencyMethod, Targets, register, upsample


def explain(model: nn.Module, images: torch.Tensor, method: str, targets: Targets = None,
            layer: nn.Module | str | None = None, batch_size: int = 32, progress: bool = False,
            precision: str = "fp32", **options) -> torch.Tensor:
    """Saliency maps (B, h, w) in [0, 1] for ``images`` (B, 3, H, W), on the images' device.

    Args:
        model: a GAP timm model or a CA-Stream model (``ca_core.build_model``).
        images: normalised input batch.
        method: a name in :data:`METHODS` ("gradcam", "gradcampp", "scorecam", "xgradcam", "layercam",
            "opticam", "attention", "random", "centre").
        targets: one class per image (tensor, sequence or int); default: the predicted class.
            The score explained is the target's logit (Score-CAM: see its variants).
        layer: target module or dotted path in the backbone; default: the family's CAM layer
            (ResNet ``layer4.-1``, ConvNeXt ``stages.3.blocks.-1.mlp.fc2``, any other timm CNN the
            map its global pooling reads, e.g. EfficientNet's ``bn2``). Same for GAP and CA.
        batch_size: images per forward pass (Score-CAM: masked inputs per forward pass).
        progress: show a progress bar for Score-CAM's masked forwards.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA): the autocast dtype of the model's
            forward passes; gradients, weights and maps stay float32.
        **options: method options, e.g. Score-CAM ``variant``, ``mean``, ``std``; CAM ``reshape``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; valid: {', '.join(METHODS)}")
    cls = METHODS[method]
    args = {} if layer is None else {"layer": layer}
    return cls(model, batch_size=batch_size, progress=progress, precision=precision, **args, **options)(images, targets)


__all__ = ["METHODS", "CAMMethod", "SaliencyMethod", "explain", "register", "upsample"]
