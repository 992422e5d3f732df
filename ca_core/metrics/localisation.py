"""Localisation against ground-truth masks (or boxes drawn as masks).

* Pointing game (Zhang et al., ECCV 2016): a hit when the map's maximum falls inside the mask, or
  within ``tolerance`` pixels of it (the original uses 15 px at 224 px; first maximum in row-major
  order when several pixels share it). :func:`paper_tolerance` scales that margin to an image size.
* Energy-based pointing game (Score-CAM, Wang et al., CVPR-W 2020): the share of the map's total
  mass that falls inside the mask (0 for an all-zero map).

Maps and masks must have the same (B,H,W) shape: upsample the maps to the mask size first.
"""
from __future__ import annotations

import torch


def _check_same_shape(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must both be (B, H, W) "
                         "of the same shape; upsample the maps to the mask size first")


def paper_tolerance(height: int, width: int) -> float:
    """The pointing game's usual margin, 15 px at 224 px, scaled to an image of this size."""
    return 15.0 * min(height, width) / 224


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """Per image 1.0 when the map's maximum lies inside the (B,H,W) bool mask or within ``tolerance``
    pixels (Euclidean, pixel centres) of a mask pixel, else 0.0."""
    _check_same_shape(maps, masks)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    peak = maps.flatten(1).argmax(dim=1, keepdim=True)
    if tolerance == 0:
        return masks.flatten(1).gather(1, peak)[:, 0].to(maps.dtype)
    w = masks.shape[-1]
    pixels = torch.arange(masks[0].numel(), device=maps.device)
    ys, xs, py, px = pixels // w, pixels % w, peak // w, peak % w
    d2 = (ys[None] - py) ** 2 + (xs[None] - px) ** 2  # (B, H*W) squared distances to the peak
    d2 = torch.where(masks.flatten(1), d2, torch.iinfo(d2.dtype).max)
    return (d2.amin(dim=1) <= tolerance ** 2).to(maps.dtype)


def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image the share of the (non-negative) map's mass inside the (B,H,W) bool mask."""
    _check_same_shape(maps, masks)
    inside = (maps * masks).flatten(1).sum(dim=1)
    total = maps.flatten(1).sum(dim=1)
    return inside / total.clamp(min=torch.finfo(maps.dtype).tiny)
