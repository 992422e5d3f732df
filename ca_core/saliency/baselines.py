"""Sanity baselines: maps that never look at the image's content, scored like any method.

A saliency method is informative only where it beats these (Adebayo et al., NeurIPS 2018, make the
same point with randomised models). Both return maps at the CAM layer's resolution, like the CAMs,
so that every metric upsamples them the same way.

* ``random``: i.i.d. uniform noise per image, seeded by ``seed`` and the image's bytes, so an
  image gets the same map whatever its batch.
* ``centre``: a fixed Gaussian at the image centre (standard deviation ``sigma`` times the side): the
  "objects sit in the middle" prior that data sets with centred objects reward.
"""
from __future__ import annotations

import zlib

import torch

from .base import CAMMethod, minmax, register, resolve_targets


class Baseline(CAMMethod):
    """A map that ignores the image: only the CAM layer's spatial size is read from a forward pass."""

    kind = "baseline"

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        logits, output = self.forward(x)
        h, w = self.as_maps(output).shape[-2:]
        resolve_targets(targets, logits)  # checked like any method's targets, then unused
        return torch.stack([self.image_map(image, h, w) for image in x]).to(x.device)

    def image_map(self, image: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The (h, w) map of one image in [0, 1]."""
        raise NotImplementedError


@register("random", "Random")
class RandomMap(Baseline):
    """Uniform noise per image (min-maxed to [0, 1]); ``seed`` varies it across runs."""

    def __init__(self, model, layer=None, batch_size: int = 32, progress: bool = False, reshape=None,
                 precision: str = "fp32", seed: int = 0) -> None:
        super().__init__(model, layer, batch_size, progress, reshape, precision)
        self.seed = seed

    def image_map(self, image: torch.Tensor, h: int, w: int) -> torch.Tensor:
        key = zlib.crc32(image.detach().float().cpu().numpy().tobytes(), self.seed & 0xFFFFFFFF)
        noise = torch.rand(1, h, w, generator=torch.Generator().manual_seed(key))
        return minmax(noise)[0]


@register("centre", "Centre")
class CentreMap(Baseline):
    """A Gaussian at the centre with standard deviation ``sigma`` x the side, peak 1."""

    def __init__(self, model, layer=None, batch_size: int = 32, progress: bool = False, reshape=None,
                 precision: str = "fp32", sigma: float = 0.25) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        super().__init__(model, layer, batch_size, progress, reshape, precision)
        self.sigma = sigma

    def image_map(self, image: torch.Tensor, h: int, w: int) -> torch.Tensor:
        ys = (torch.arange(h) + 0.5) / h - 0.5
        xs = (torch.arange(w) + 0.5) / w - 0.5
        d2 = ys[:, None] ** 2 + xs[None, :] ** 2
        return minmax(torch.exp(-d2 / (2 * self.sigma ** 2))[None])[0]
