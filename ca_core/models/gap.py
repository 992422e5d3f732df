"""The baseline: a timm CNN with its own global average pooling, behind the same interface as
:class:`~ca_core.models.CAStream` (``.backbone``, ``.family``, ``forward(x, return_attention)``)."""
from __future__ import annotations

import torch
from torch import nn

from .families import Family, family_of


class GAPModel(nn.Module):
    """A timm backbone used as is (GAP + classifier); every parameter stays trainable.

    The wrapper only gives GAP and CA models one interface, so that saliency methods and metrics
    treat both alike, and turns a request for attention maps into a clear error.
    """

    pooling = "gap"

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.family: Family | None = family_of(backbone)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> torch.Tensor:
        """Logits of the backbone; GAP has no attention, so ``return_attention`` is an error."""
        if return_attention:
            raise ValueError("a GAP model has no attention map; build the model with pooling='ca'")
        return self.backbone(x)
