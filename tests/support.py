"""Helpers shared by the tests (imported as ``support``; pytest puts this folder on the path)."""
from __future__ import annotations

import torch
from torch import nn


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give norm layers and layer-scales non-trivial values (timm initialises residual branches to
    ~zero, which would make gradients degenerate), so the tests can tell methods apart."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma") or (p.ndim == 1 and ("bn" in name or "norm" in name) and name.endswith("weight")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.ndim == 1 and ("bn" in name or "norm" in name) and name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()
