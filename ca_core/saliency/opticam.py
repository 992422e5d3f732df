"""Opti-CAM (Zhang et al., CVIU 2024, arXiv 2301.07002; the authors' code is hanwei0912/OptiCAM,
``util.py``): the channel weights of the CAM are optimised, per image, so that the image masked by
its own (upsampled, min-maxed) saliency map has the largest target logit.

Unlike the gradient CAMs it runs ``iterations`` forward and backward passes of the model per
image (on masked inputs), so its cost is about ``iterations`` times Grad-CAM's.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..models import normalisation
from ..utils import target_scores
from .base import CAMMethod, Reshape, minmax, register, resolve_targets, upsample

LOSSES = ("plain", "norm")


@register("opticam", "Opti-CAM")
class OptiCAM(CAMMethod):
    """Opti-CAM: a softmax-weighted sum of the CAM layer's ReLU'd channels, with weights fitted
    by Adam to maximise the target's logit on the masked image (the Opti-CAM paper's objective).

    For features F = ReLU(A) (B, K, h, w) of the clean image x (computed once, held fixed), target
    class c with logit f_c, and per-image weights w (K values, all 0.5 at the start)::

        S(w)    = sum_k softmax(w)_k F_k                              (h, w)
        M(w)    = min-max(upsample(S(w)))                             (H, W), bilinear, align_corners=False
        x_M     = normalise(denormalise(x) * M(w))                    masking in [0, 1] pixel space
        loss    = f_c(x) - f_c(x_M)   ("plain", default)   or   |f_c(x) - f_c(x_M)|   ("norm")
        w*      = Adam(loss, w; lr, iterations)
        map     = min-max(ReLU(S(w*)))                                (h, w), as the other CAMs

    The map is returned at the CAM layer's resolution (like every method here, so ``upsample`` and
    the metrics take it as they take Grad-CAM's); the metrics upsample it bilinearly with
    ``align_corners=False``, exactly as the optimisation did. ``upsample(map)`` differs from the
    optimised mask M(w*) only by an increasing affine rescaling (min-max before rather than after
    the upsampling), so both rank the pixels identically.

    Details:

    * targets: the given classes, else the prediction on the clean image.
    * all images of a chunk (``batch_size``) are optimised together in one batch; the per-image
      losses are summed for the backward pass, and Adam acts element-wise, so an image's weights
      follow its own gradient only: its map does not depend on its batch-mates (the model is in
      eval mode). Only w gets gradients (``torch.autograd.grad``), never the model's parameters.
      This holds up to floating-point rounding: many Adam steps amplify it (the "norm" loss bounces
      around its minimum |f_c(x) - f_c(x_M)| = 0), so the same image under another memory layout
      (channels-last) or convolution algorithm can end with visibly different weights; the maps
      are identical only where the model's per-image outputs are (CPU batch sizes, in the tests).
    * no early stopping: the authors' script stops the whole batch when the summed loss rises at a
      check point, which would make an image's map depend on its batch-mates; here every image
      takes all ``iterations`` steps.
    * ``mean``/``std`` (for de-normalising) default to the backbone's timm data config, as in
      Score-CAM's ``"paper"`` variant.
    * :attr:`last_losses`: after a call, the loss of every image (columns) at the start and after
      each step (rows), a (iterations + 1, B) float32 tensor; row 0 is at w = 0.5, the last row at
      the returned weights.

    Args:
        iterations: Adam steps per image (default 50, the authors' script value).
        lr: Adam learning rate (default 0.1, the authors' script value).
        loss: ``"plain"`` (default: maximise the masked logit, as the Opti-CAM paper and its authors'
            script, ``--name_loss plain``) or ``"norm"`` (keep the masked logit close to the clean one).

    Example:
        >>> from ca_core import build_model
        >>> from ca_core.saliency import explain, upsample
        >>> model = build_model("resnet_mini", "gap", num_classes=5).eval()
        >>> images = torch.randn(2, 3, 56, 56)
        >>> maps = explain(model, images, "opticam", targets=[1, 4], iterations=10)  # (2, 7, 7)
        >>> upsample(maps, 56).shape
        torch.Size([2, 56, 56])
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, batch_size: int = 32,
                 progress: bool = False, reshape: Reshape | None = None, precision: str = "fp32",
                 iterations: int = 50, lr: float = 0.1, loss: str = "plain",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown Opti-CAM loss {loss!r}; valid: {', '.join(LOSSES)}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        super().__init__(model, layer, batch_size, progress, reshape, precision)
        self.iterations, self.lr, self.loss = iterations, float(lr), loss
        mean_t, std_t = normalisation(model, mean, std, device=self.device)
        self.mean, self.std = mean_t.view(-1, 1, 1), std_t.view(-1, 1, 1)
        self.last_losses: torch.Tensor | None = None
        self._losses: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor, targets=None) -> torch.Tensor:
        self._losses = []
        try:
            maps = super().__call__(images, targets)
            self.last_losses = torch.cat(self._losses, dim=1).to(images.device)
        finally:
            self._losses = []
        return maps

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        logits, output = self.forward(x)
        targets = resolve_targets(targets, logits)
        feats = self.as_maps(output).clamp_min(0)
        clean = target_scores(logits, targets, "logit").float()
        base = x.float() * self.std + self.mean  # the images in [0, 1] pixel space
        w = torch.full(feats.shape[:2], 0.5, device=feats.device, requires_grad=True)
        optimiser = torch.optim.Adam([w], lr=self.lr)
        losses = feats.new_empty(self.iterations + 1, len(x))
        steps = tqdm(range(self.iterations), "Opti-CAM", unit="step", disable=not self.progress, leave=False)
        with torch.enable_grad():
            for step in steps:
                loss = self.objective(w, feats, base, clean, targets, x.dtype)
                (w.grad,) = torch.autograd.grad(loss.sum(), w)  # per-image losses: independent gradients
                optimiser.step()
                losses[step] = loss.detach()
        w = w.detach()
        with torch.no_grad():
            losses[-1] = self.objective(w, feats, base, clean, targets, x.dtype)
        self._losses.append(losses)
        return self.combine(w.softmax(dim=1), feats)

    @staticmethod
    def saliency(w: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """S(w) = sum_k softmax(w)_k F_k, (B, h, w), for weights (B, K) and features (B, K, h, w)."""
        return torch.einsum("bk,bkhw->bhw", w.softmax(dim=1), feats)

    def objective(self, w: torch.Tensor, feats: torch.Tensor, base: torch.Tensor, clean: torch.Tensor,
                  targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Per-image loss (B,) of the weights w: the target logit's change under the masking."""
        mask = minmax(upsample(self.saliency(w, feats), tuple(base.shape[-2:])))[:, None]
        masked = ((base * mask - self.mean) / self.std).to(dtype)
        diff = clean - target_scores(self.run_model(masked), targets, "logit").float()
        return diff.abs() if self.loss == "norm" else diff
