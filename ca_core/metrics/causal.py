"""Insertion and Deletion (RISE causal metrics), batched over images x steps.

Pixels are ranked by the saliency map (upsampled to the image size), highest first, ties in
increasing pixel index (row-major). Point ``k`` of a curve has the ``k * step`` top-ranked pixels
changed: deletion replaces them by the deletion substrate, insertion starts from the insertion
substrate and puts them back. The score is read at every point, from no pixel changed to all.

Every perturbed image is a ``torch.where`` between the image and its substrate, selected by
comparing the pixel ranks with the step's threshold, so perturbed images are built on the device
for a whole chunk of (image, curve, point) jobs at once; only ``batch_size`` of them exist at a time.
The two points equal to the clean image (last of insertion, first of deletion) reuse the clean
forward pass instead of running it again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .protocols import Protocol
from .scoring import chunks, class_scores

CURVES = ("insertion", "deletion")


def blur_kernel(size: int, sigma: float, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """RISE's blur kernel (size, size): a centred delta filtered by a Gaussian of ``sigma``.

    RISE builds it as ``scipy.ndimage.gaussian_filter`` of a ``size x size`` array holding a
    single 1 at its centre: a separable Gaussian truncated at ``4 sigma``, with ``"reflect"``
    borders (``d c b a | a b c d | d c b a``). When ``sigma`` is large against ``size`` the
    reflections fold the Gaussian's tails back in and the kernel is nearly uniform (5x5, sigma 5:
    every weight 0.04 to four decimals, i.e. a box filter). This is the same construction in torch
    (float64, then cast), so scipy is not needed at run time.
    """
    radius = int(4.0 * sigma + 0.5)  # scipy's default truncate=4.0
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    # 1-D correlation of the centred delta: output[i] = sum of weights whose source index
    # i + offset, folded back into [0, size) by reflection, is the centre.
    source = torch.arange(size)[:, None] + offsets.long()[None, :]
    source = source.remainder(2 * size)
    source = torch.where(source < size, source, 2 * size - 1 - source)
    line = (weights * (source == size // 2)).sum(dim=1)
    return torch.outer(line, line).to(dtype=dtype, device=device)


def blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of (B,C,H,W) images filtered by a (k,k) kernel with zero padding, same size."""
    channels = images.shape[1]
    weight = kernel.to(images)[None, None].expand(channels, 1, -1, -1)
    return F.conv2d(images, weight, padding=kernel.shape[-1] // 2, groups=channels)


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel of (B,H,W) maps, 0 = most salient; ties in increasing row-major index."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(flat.shape[1], device=maps.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions).view_as(maps)


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at equally spaced points of [0, 1] (trapezoid rule), last dim.

    Equals ``(sum - first/2 - last/2) / (n - 1)``, the paper's and RISE's normalised AUC.
    """
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[-1] - 1), dim=-1)


def _substrates(protocol: Protocol, images: torch.Tensor, inverse: torch.Tensor,
                kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Insertion and deletion substrates for a chunk's jobs, from its distinct ``images``.

    Blurred copies are computed once per distinct image and gathered by ``inverse``; the zero
    substrate is a broadcastable scalar.
    """
    kinds = (protocol.insertion_substrate, protocol.deletion_substrate)
    choices = {"zeros": images.new_zeros(())}
    if "blur" in kinds:
        choices["blur"] = blur(images, kernel)[inverse]
    return choices[kinds[0]], choices[kinds[1]]


def _jobs(n_images: int, n_points: int, skip_clean: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(image, curve, point) of every perturbed forward pass, image-major; curve indexes ``CURVES``.

    With ``skip_clean`` the two points that show the clean image (the last of insertion, the
    first of deletion) are left out.
    """
    image, curve, point = (g.flatten() for g in torch.meshgrid(
        torch.arange(n_images, device=device), torch.arange(len(CURVES), device=device),
        torch.arange(n_points, device=device), indexing="ij",
    ))
    if skip_clean:
        clean = torch.where(curve == CURVES.index("insertion"), point == n_points - 1, point == 0)
        image, curve, point = image[~clean], curve[~clean], point[~clean]
    return image, curve, point


def causal_curves(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
    protocol: Protocol, batch_size: int = 64, clean_logits: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Insertion and Deletion curves, each (B, n_points), and their AUCs, each (B,).

    Args:
        model: classifier in eval mode (called under the caller's ``torch.inference_mode``).
        images: (B,C,H,W) normalised images.
        maps: (B,H,W) saliency maps at the image size.
        targets: (B,) class indices whose score is recorded.
        protocol: steps, substrates, blur kernel and score kind.
        batch_size: perturbed images per forward pass (bounds the memory used).
        clean_logits: (B,K) logits of the clean images, when already computed, to reuse them.
    """
    n_images, _, height, width = images.shape
    n_points, step = protocol.n_points(height, width), protocol.pixels_per_step(width)
    kernel = blur_kernel(protocol.blur_size, protocol.blur_sigma, dtype=images.dtype, device=images.device)
    image, curve, point = _jobs(n_images, n_points, clean_logits is not None, images.device)
    curves = images.new_empty(n_images, len(CURVES), n_points)
    for s in chunks(len(image), batch_size):
        uniq, inverse = torch.unique(image[s], return_inverse=True)
        originals, ranks = images[uniq][inverse], pixel_ranks(maps[uniq])[inverse]
        insertion = (curve[s] == CURVES.index("insertion"))[:, None, None, None]
        substrate = torch.where(insertion, *_substrates(protocol, images[uniq], inverse, kernel))
        changed = (ranks < point[s, None, None] * step)[:, None]
        perturbed = torch.where(changed != insertion, substrate, originals)
        scores = class_scores(model(perturbed), targets[image[s]], protocol.score)
        curves[image[s], curve[s], point[s]] = scores.to(curves.dtype)
    if clean_logits is not None:
        clean = class_scores(clean_logits, targets, protocol.score).to(curves.dtype)
        curves[:, CURVES.index("insertion"), -1] = clean
        curves[:, CURVES.index("deletion"), 0] = clean
    result = {f"{name}_curve": curves[:, i] for i, name in enumerate(CURVES)}
    result.update({name: auc(curves[:, i]) for i, name in enumerate(CURVES)})
    return result
