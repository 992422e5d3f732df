"""Average Drop, Average Gain and Average Increase (Grad-CAM++, Opti-CAM).

With Y the target's probability on the image and O the same on the image masked by the map,
per image: AD = max(Y - O, 0) / Y, AG = max(O - Y, 0) / (1 - Y), AI = 1[O > Y]. The means over
images, x100, are the paper's numbers (see :func:`ca_core.metrics.summarize`). As in the paper's
code, machine epsilon is added to the denominators.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..utils import chunks, target_scores


def mask_images(
    images: torch.Tensor, maps: torch.Tensor, masking: str, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Images (B,C,H,W, normalised) multiplied by maps (B,H,W in [0,1]).

    ``masking="pixel"`` multiplies the de-normalised image and normalises again, so a zero of
    the map gives a black pixel (the paper); ``"normalised"`` multiplies the normalised tensor,
    so a zero gives the mean colour. ``mean``/``std`` are (C,) tensors.
    """
    maps = maps[:, None]
    if masking == "normalised":
        return images * maps
    # normalise(denormalise(x) * S) rewritten as x * S + (S - 1) * mean / std: the same value,
    # but exact where S = 1, so an all-ones map gives back the clean image bit for bit.
    return images * maps + (maps - 1) * (mean / std)[:, None, None]


def masked_probs(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
    masking: str, mean: torch.Tensor, std: torch.Tensor, batch_size: int,
    temperatures: Sequence[float] = (1.0,),
) -> torch.Tensor:
    """O: the target's probability on each masked image, (len(temperatures), B), one row per
    softmax temperature from the same forward passes; built and forwarded ``batch_size`` at a time."""
    rows = []
    for s in chunks(len(images), batch_size):
        logits = model(mask_images(images[s], maps[s], masking, mean, std))
        rows.append(torch.stack([target_scores(logits, targets[s], temperature=t) for t in temperatures]))
    return torch.cat(rows, dim=1)


def average_drop(clean: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Per image max(Y - O, 0) / Y (lower is better)."""
    return (clean - masked).clamp(min=0) / (clean + torch.finfo(clean.dtype).eps)


def average_gain(clean: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Per image max(O - Y, 0) / (1 - Y) (higher is better)."""
    return (masked - clean).clamp(min=0) / (1 - clean + torch.finfo(clean.dtype).eps)


def average_increase(clean: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Per image 1 if O > Y else 0, as a float (higher is better)."""
    return (masked > clean).to(clean.dtype)


def confidence_metrics(clean: torch.Tensor, masked: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"ad", "ag", "ai"}`` per image from clean (Y) and masked (O) probabilities."""
    return {
        "ad": average_drop(clean, masked),
        "ag": average_gain(clean, masked),
        "ai": average_increase(clean, masked),
    }
