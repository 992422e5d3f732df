"""Score-CAM (Wang et al., CVPR-W 2020): each channel of the target layer, upsampled to the
input size and min-maxed, masks the image; the target's score on the masked image weights it.

Variants:

* ``"paper"`` (default, the CA-Stream code): mask the de-normalised image in [0, 1] pixel space
  (masked-out pixels are black), re-normalise; weight = softmax probability of the target.
  Upsampling is bilinear with ``align_corners=False``.
* ``"pytorch_grad_cam"`` (pytorch-grad-cam 1.5): mask the normalised tensor; weights = softmax
  over channels of the target logits. Upsampling is bilinear with ``align_corners=True``.

The (image, channel) pairs of a chunk of images are forwarded in batches of ``batch_size``;
each batch's masks are built when it is forwarded, so all masks never exist at once. Channels
that are constant over space give an all-zero mask, i.e. the same blank input for every
channel and image: it is forwarded once, not once per channel.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..models import normalisation
from ..utils import target_scores
from .base import CAMMethod, Reshape, minmax, register, resolve_targets

VARIANTS = ("paper", "pytorch_grad_cam")


@register("scorecam", "Score-CAM")
class ScoreCAM(CAMMethod):
    """Score-CAM; ``mean``/``std`` (for de-normalising) default to the backbone's timm data config."""

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, batch_size: int = 32,
                 progress: bool = False, reshape: Reshape | None = None, variant: str = "paper",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 precision: str = "fp32") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown Score-CAM variant {variant!r}; valid: {', '.join(VARIANTS)}")
        super().__init__(model, layer, batch_size, progress, reshape, precision)
        self.variant = variant
        self.paper = variant == "paper"
        mean_t, std_t = normalisation(model, mean, std, device=next(model.parameters()).device)
        self.mean, self.std = mean_t.view(-1, 1, 1), std_t.view(-1, 1, 1)

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        logits, output = self.forward(x)
        acts = self.as_maps(output)
        targets = resolve_targets(targets, logits)
        with torch.no_grad():
            scores = self.channel_scores(x, acts, targets)
        return self.combine(scores if self.paper else scores.softmax(dim=1), acts)

    def channel_scores(self, x: torch.Tensor, acts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The target's score on each channel's masked image, (B, K)."""
        b, k = acts.shape[:2]
        base = x.float() * self.std + self.mean if self.paper else x.float()
        blank = self.masked(base[:1], torch.zeros_like(base[:1, :1]), x.dtype)
        scores = self.score(self.run_model(blank).expand(b, -1), targets).repeat_interleave(k)
        flat = acts.flatten(2)
        jobs = (flat.amax(-1) > flat.amin(-1)).flatten().nonzero().squeeze(1)  # non-constant channels
        batches = tqdm(jobs.split(self.batch_size), "Score-CAM", unit="batch", disable=not self.progress, leave=False)
        for chunk in batches:
            image, channel = chunk // k, chunk % k
            masks = F.interpolate(acts[image, channel][:, None], size=x.shape[-2:], mode="bilinear",
                                  align_corners=not self.paper)
            scores[chunk] = self.score(self.run_model(self.masked(base[image], minmax(masks), x.dtype)), targets[image])
        return scores.view(b, k)

    def masked(self, base: torch.Tensor, masks: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Model inputs: pixel-space images times masks, re-normalised (paper), or normalised
        tensors times masks (pytorch_grad_cam)."""
        out = base * masks
        return ((out - self.mean) / self.std if self.paper else out).to(dtype)

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-row score of the target: softmax probability (paper) or logit (pytorch_grad_cam)."""
        return target_scores(logits, targets, "prob" if self.paper else "logit").float()
