"""Raw attention (the paper's class-agnostic map): the softmax weights with which the last CA
block of a CA-Stream model pools its feature map, min-maxed per image to [0, 1]."""
from __future__ import annotations

import torch
from torch import nn

from ..models import is_ca_model
from ..utils import autocast
from .base import SaliencyMethod, minmax, register


@register("attention", "Raw attention")
class RawAttention(SaliencyMethod):
    """Raw attention of the last CA block; ``targets`` are ignored (the map is class-agnostic)."""

    kind = "attention"

    def __init__(self, model: nn.Module, layer: None = None, batch_size: int = 32, progress: bool = False,
                 precision: str = "fp32") -> None:
        if not is_ca_model(model):
            raise ValueError(
                f"method 'attention' needs a CA-Stream model (build_model(..., pooling='ca')); got "
                f"{type(model).__name__}, a GAP model without attention: use 'gradcam', 'gradcampp' or 'scorecam'"
            )
        if layer is not None:
            raise ValueError("method 'attention' has no target layer: it reads the last CA block")
        super().__init__(model, batch_size, progress, precision)

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad(), autocast(self.device, self.precision):
            attention = self.model.forward_attention(x)[-1]
        return minmax(attention.float())
