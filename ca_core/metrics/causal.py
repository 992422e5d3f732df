"""Insertion and Deletion (RISE causal metrics), batched over images x steps.

Pixels are ranked by the saliency map (upsampled to the image size), highest first, ties in
increasing pixel index (row-major). Point ``k`` of a curve has the ``k * step`` top-ranked pixels
changed: deletion replaces them by the deletion substrate, insertion starts from the insertion
substrate and puts them back. The score is read at every point, from no pixel changed to all.

The (image, curve, point) jobs are run in chunks of ``batch_size``. Within a chunk, the jobs of
one image and curve are written by a single ``torch.where`` into a reused input buffer: the pixel
ranks compared with every point's threshold select, per pixel, the image or its substrate. So
perturbed images are built on the device with no loop over pixels or steps, and only
``batch_size`` of them exist at a time.
The two points equal to the clean image (last of insertion, first of deletion) reuse the clean
forward pass instead of running it again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .protocols import Protocol
from ..utils import chunks, target_scores

CURVES = ("insertion", "deletion")
#: The key suffix of the metrics on temperature-scaled (calibrated) scores.
CALIBRATED = "_cal"


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


def _substrate(kind: str, image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The substrate of one (C,H,W) image: its blurred copy, or a broadcastable zero."""
    return blur(image[None], kernel)[0] if kind == "blur" else image.new_zeros(())


def _jobs(n_images: int, n_points: int, skip_clean: bool) -> tuple[torch.Tensor, ...]:
    """(image, curve, point) of every perturbed forward pass, image-major; curve indexes ``CURVES``.

    With ``skip_clean`` the two points that show the clean image (the last of insertion, the
    first of deletion) are left out. Built on the CPU: only the chunk layout depends on it.
    """
    image, curve, point = (g.flatten() for g in torch.meshgrid(
        torch.arange(n_images), torch.arange(len(CURVES)), torch.arange(n_points), indexing="ij",
    ))
    if skip_clean:
        clean = torch.where(curve == CURVES.index("insertion"), point == n_points - 1, point == 0)
        image, curve, point = image[~clean], curve[~clean], point[~clean]
    return image, curve, point


def _segments(image: torch.Tensor, curve: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Runs of consecutive jobs on the same (image, curve): ``(start, stop, image, curve)``."""
    keys, counts = torch.unique_consecutive(image * len(CURVES) + curve, return_counts=True)
    stops = counts.cumsum(0)
    return [(stop - count, stop, key // len(CURVES), key % len(CURVES))
            for key, count, stop in zip(keys.tolist(), counts.tolist(), stops.tolist())]


def causal_curves(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
    protocol: Protocol, batch_size: int = 64, clean_logits: torch.Tensor | None = None,
    temperature: float | None = None,
) -> dict[str, torch.Tensor]:
    """Insertion and Deletion curves, each (B, n_points), and their AUCs, each (B,).

    With ``temperature``, the same curves and AUCs of the temperature-scaled scores too (keys
    suffixed ``_cal``), read from the same forward passes.

    Args:
        model: classifier in eval mode (called under the caller's ``torch.inference_mode``).
        images: (B,C,H,W) normalised images.
        maps: (B,H,W) saliency maps at the image size.
        targets: (B,) class indices whose score is recorded.
        protocol: steps, substrates, blur kernel and score kind.
        batch_size: perturbed images per forward pass (bounds the memory used).
        clean_logits: (B,K) logits of the clean images, when already computed, to reuse them.
        temperature: a softmax temperature (e.g. fitted on validation data) for the ``_cal`` keys.
    """
    n_images, _, height, width = images.shape
    n_points, step = protocol.n_points(height, width), protocol.pixels_per_step(width)
    kernel = blur_kernel(protocol.blur_size, protocol.blur_sigma, dtype=images.dtype, device=images.device)
    substrates = (protocol.insertion_substrate, protocol.deletion_substrate)
    jobs = _jobs(n_images, n_points, clean_logits is not None)
    image, curve, point = (j.to(images.device) for j in jobs)
    thresholds = point * step
    scales = {"": 1.0} | ({CALIBRATED: temperature} if temperature is not None else {})
    curves = images.new_empty(len(scales), n_images, len(CURVES), n_points)
    buffer = images.new_empty(min(batch_size, len(image)), *images.shape[1:])  # reused by every chunk
    ranked = None  # (image index, its pixel ranks): jobs are image-major, so each image is ranked once
    for s in chunks(len(image), batch_size):
        batch = buffer[: s.stop - s.start]
        for start, stop, i, c in _segments(jobs[0][s], jobs[1][s]):
            if ranked is None or ranked[0] != i:
                ranked = (i, pixel_ranks(maps[i : i + 1]))
            changed = (ranked[1] < thresholds[s][start:stop, None, None])[:, None]
            substrate = _substrate(substrates[c], images[i], kernel)
            shown, hidden = (images[i], substrate) if CURVES[c] == "insertion" else (substrate, images[i])
            torch.where(changed, shown, hidden, out=batch[start:stop])
        logits = model(batch)
        for j, t in enumerate(scales.values()):
            curves[j, image[s], curve[s], point[s]] = target_scores(logits, targets[image[s]], protocol.score,
                                                                    t).to(curves.dtype)
    result = {}
    for j, (suffix, t) in enumerate(scales.items()):
        if clean_logits is not None:
            clean = target_scores(clean_logits, targets, protocol.score, t).to(curves.dtype)
            curves[j, :, CURVES.index("insertion"), -1] = clean
            curves[j, :, CURVES.index("deletion"), 0] = clean
        result.update({f"{name}_curve{suffix}": curves[j, :, i] for i, name in enumerate(CURVES)})
        result.update({f"{name}{suffix}": auc(curves[j, :, i]) for i, name in enumerate(CURVES)})
    return result
