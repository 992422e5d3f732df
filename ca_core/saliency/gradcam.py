"""Grad-CAM (Selvaraju et al., ICCV 2017): channel weights are the spatial mean of the gradient
of the target logit with respect to the target layer's activations."""
from __future__ import annotations

import torch

from .base import CAMMethod, register


@register("gradcam", "Grad-CAM")
class GradCAM(CAMMethod):
    """Grad-CAM; subclasses change only :meth:`channel_weights`."""

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        acts, grads = self.activations_and_gradients(x, targets)
        return self.combine(self.channel_weights(acts, grads), acts)

    @staticmethod
    def channel_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Weights (B, K) from activations and gradients (B, K, h, w)."""
        return grads.mean(dim=(2, 3))
