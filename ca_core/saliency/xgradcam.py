"""XGrad-CAM (Fu et al., BMVC 2020, "Axiom-based Grad-CAM"): channel weights are the gradients
averaged with the channel's own normalised activations as spatial weights,
w_k = sum_ij (A_k,ij / (sum_ij A_k,ij + eps)) dY/dA_k,ij, as pytorch-grad-cam 1.5 computes them."""
from __future__ import annotations

import torch

from .base import register
from .gradcam import GradCAM

EPS = 1e-7  # pytorch-grad-cam's value, so the two implementations agree


@register("xgradcam", "XGrad-CAM")
class XGradCAM(GradCAM):
    """XGrad-CAM: Grad-CAM with activation-weighted gradient sums as channel weights.

    For activations A (B, K, h, w) and gradients g = dY_c/dA of the target logit Y_c::

        w_k = sum_ij A_k,ij g_k,ij / (sum_ij A_k,ij + eps),   eps = 1e-7
        map = min-max(ReLU(sum_k w_k A_k))

    Example:
        >>> from ca_core import build_model
        >>> from ca_core.saliency import explain, upsample
        >>> model = build_model("resnet_mini", "ca", num_classes=5).eval()
        >>> images = torch.randn(2, 3, 56, 56)
        >>> maps = explain(model, images, "xgradcam", targets=[0, 3])  # (2, 7, 7) in [0, 1]
        >>> upsample(maps, 56).shape
        torch.Size([2, 56, 56])
    """

    @staticmethod
    def channel_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        total = acts.sum(dim=(2, 3), keepdim=True)
        return (grads * acts / (total + EPS)).sum(dim=(2, 3))
