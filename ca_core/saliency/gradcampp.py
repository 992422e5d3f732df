"""Grad-CAM++ (Chattopadhay et al., WACV 2018), closed form of its eq. 19 for the logit, as in
the CA-Stream code and pytorch-grad-cam: alpha = g^2 / (2 g^2 + (sum_ij A) g^3 + eps), zero where
g = 0; weight_k = sum_ij ReLU(g) alpha."""
from __future__ import annotations

import torch

from .base import register
from .gradcam import GradCAM

EPS = 1e-6  # pytorch-grad-cam's value, so the two implementations agree


@register("gradcampp", "Grad-CAM++")
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: Grad-CAM with per-position gradient weights alpha."""

    @staticmethod
    def channel_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2 = grads.square()
        total = acts.sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(grads != 0, g2 / (2 * g2 + total * g2 * grads + EPS), 0.0)
        return (grads.clamp_min(0) * alpha).sum(dim=(2, 3))
