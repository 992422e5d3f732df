"""Layer-CAM (Jiang et al., IEEE TIP 2021): every position of every channel gets its own weight,
the positive part of its gradient; as pytorch-grad-cam 1.5's ``LayerCAM``."""
from __future__ import annotations

import torch

from .base import CAMMethod, postprocess, register


@register("layercam", "Layer-CAM")
class LayerCAM(CAMMethod):
    """Layer-CAM: a per-position gradient weighting of the activations.

    For activations A (B, K, h, w) and gradients g = dY_c/dA of the target logit Y_c::

        map_ij = min-max(ReLU(sum_k ReLU(g_k,ij) A_k,ij))

    Example:
        >>> from ca_core import build_model
        >>> from ca_core.saliency import explain, upsample
        >>> model = build_model("resnet_mini", "gap", num_classes=5).eval()
        >>> images = torch.randn(2, 3, 56, 56)
        >>> maps = explain(model, images, "layercam")  # predicted classes; (2, 7, 7) in [0, 1]
        >>> upsample(maps, 56).shape
        torch.Size([2, 56, 56])
    """

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        acts, grads = self.activations_and_gradients(x, targets)
        return postprocess((grads.clamp_min(0) * acts).sum(dim=1))
