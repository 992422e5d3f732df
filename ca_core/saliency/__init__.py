"""Saliency maps for GAP and CA-Stream models: Grad-CAM, Grad-CAM++, Score-CAM, raw attention.

``explain(model, images, method)`` returns one map per image, (B, h, w) in [0, 1] at the target
layer's resolution; ``upsample(maps, size)`` brings them to the input size.
"""
from __future__ import annotations

import torch
from torch import nn

from . import gradcam, gradcampp, scorecam, attention  # noqa: F401,I001  (registers the methods, in this order)
from .base import METHODS, CAMMethod, SaliencyMethod, Targets, register, upsample


def explain(model: nn.Module, images: torch.Tensor, method: str, targets: Targets = None,
            layer: nn.Module | str | None = None, batch_size: int = 32, progress: bool = False,
            **options) -> torch.Tensor:
    """Saliency maps (B, h, w) in [0, 1] for ``images`` (B, 3, H, W), on the images' device.

    Args:
        model: a GAP timm model or a CA-Stream model (``ca_core.build_model``).
        images: normalised input batch.
        method: a name in :data:`METHODS` ("gradcam", "gradcampp", "scorecam", "attention").
        targets: one class per image (tensor, sequence or int); default: the predicted class.
            The score explained is the target's logit (Score-CAM: see its variants).
        layer: target module or dotted path in the backbone; default: the family's CAM layer
            (ResNet ``layer4.-1``, ConvNeXt ``stages.3.blocks.-1.mlp.fc2``). Same for GAP and CA.
        batch_size: images per forward pass (Score-CAM: masked inputs per forward pass).
        progress: show a progress bar for Score-CAM's masked forwards.
        **options: method options, e.g. Score-CAM ``variant``, ``mean``, ``std``; CAM ``reshape``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; valid: {', '.join(METHODS)}")
    cls = METHODS[method]
    args = {} if layer is None else {"layer": layer}
    return cls(model, batch_size=batch_size, progress=progress, **args, **options)(images, targets)


__all__ = ["METHODS", "CAMMethod", "SaliencyMethod", "explain", "register", "upsample"]
