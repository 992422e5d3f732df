"""ROAD: RemOve And Debias (Rong et al., ICML 2022), as pytorch-grad-cam 1.5 computes it.

ROAD removes a map's most (MoRF) or least (LeRF) relevant pixels and fills them by *noisy linear
imputation*: each removed pixel becomes the weighted mean of its 8 neighbours, removed ones
included, so the removed region is a sparse linear system (a discrete Laplace equation whose
boundary values are the kept pixels). Unlike a constant fill, the imputed region hardly shows
the removal's shape, which would otherwise tell the classifier where the map pointed (the
paper's "class information leakage").

The systems are solved per (image, curve, percentile) on the CPU, directly in float64 with
``scipy.sparse`` as pytorch-grad-cam does, so both give the same images; the perturbed images are
then forwarded ``batch_size`` at a time on the model's device.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve
from torch import nn

from ..saliency import upsample
from ..utils import check_labels, chunks, target_scores
from .maps import check_images, check_maps, eval_mode

#: ROAD's imputation weights of the 8 neighbours, by (row, column) offset: 1/6 for the 4 edge
#: neighbours, 1/12 for the 4 diagonal ones (they sum to 1).
NEIGHBOURS: dict[tuple[int, int], float] = {
    (-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6,
    (0, 1): 1 / 6, (1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12,
}
CURVES = ("morf", "lerf")


def neighbour_weights(height: int, width: int) -> sp.csr_matrix:
    """(HW, HW) sparse matrix whose row i holds the :data:`NEIGHBOURS` weights of pixel i's
    neighbours inside the image (row-major pixel order); built once per image size."""
    rows, cols = np.divmod(np.arange(height * width), width)
    weights, sources, neighbours = [], [], []
    for (dr, dc), weight in NEIGHBOURS.items():
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        weights.append(np.full(inside.sum(), weight))
        sources.append(np.flatnonzero(inside))
        neighbours.append((r * width + c)[inside])
    entries = (np.concatenate(weights), (np.concatenate(sources), np.concatenate(neighbours)))
    return sp.csr_matrix(entries, shape=(height * width, height * width))


def removal_masks(saliency: np.ndarray, percentiles: np.ndarray) -> np.ndarray:
    """(2, P, H, W) bool: the pixels of one (H, W) map removed at each percentile, MoRF then LeRF.

    MoRF at p removes the pixels whose value is at least the map's p-th percentile (numpy's
    linear interpolation), LeRF the same of ``1 - map``: pytorch-grad-cam's rule, which keeps
    the values strictly below the threshold, so ties with it are removed.
    """
    relevance = np.stack([saliency, 1 - saliency])
    thresholds = np.percentile(relevance.reshape(2, -1), percentiles, axis=1).T  # (2, P)
    return relevance[:, None] >= thresholds[:, :, None, None]


def imputed_values(image: np.ndarray, removed: np.ndarray, weights: sp.csr_matrix) -> np.ndarray:
    """(n_removed, C) float64: the linear imputation of the ``removed`` pixels of a (C, H, W) image.

    For each removed pixel i, with N(i) its neighbours inside the image and w the weights,
    ``sum_{j in N(i)} w_ij x_i - sum_{j in N(i) removed} w_ij x_j = sum_{j in N(i) kept} w_ij image_j``:
    one system per image and mask, shared by the C channels (right-hand sides). With no pixel kept
    the system is singular (any constant solves it) and every value is 0, the normalisation mean:
    the solution pytorch-grad-cam's ``spsolve`` returns there.
    """
    removed = removed.ravel()
    pixels = image.reshape(len(image), -1).T  # (HW, C)
    if removed.all():
        return np.zeros_like(pixels)
    coupling = weights[removed]
    system = sp.diags(np.asarray(coupling.sum(axis=1)).ravel()) - coupling[:, removed]
    rhs = coupling[:, ~removed] @ pixels[~removed]
    return spsolve(system.tocsc(), rhs).reshape(len(rhs), -1)


def perturbed_images(images: torch.Tensor, maps: torch.Tensor, percentiles: np.ndarray, noise: float,
                     generator: torch.Generator) -> Iterator[torch.Tensor]:
    """The (C, H, W) CPU images of every (image, curve, percentile) job, image-major, curve in
    :data:`CURVES` order: removed pixels imputed, plus ``noise`` times a standard normal draw
    from ``generator`` (one draw per job, in job order, so the noise does not depend on batching)."""
    weights = neighbour_weights(*images.shape[-2:])
    for image, saliency in zip(images, maps):
        pixels = image.cpu()
        values = pixels.double().numpy()
        for removed in removal_masks(saliency.numpy(), percentiles).reshape(-1, *saliency.shape):
            imputed = torch.from_numpy(imputed_values(values, removed, weights))
            imputed += noise * torch.randn(imputed.shape, generator=generator, dtype=imputed.dtype)
            perturbed = pixels.clone()
            perturbed[:, torch.from_numpy(removed)] = imputed.T.to(pixels.dtype)
            yield perturbed


def job_scores(model: nn.Module, jobs: Iterator[torch.Tensor], targets: torch.Tensor,
               batch_size: int) -> torch.Tensor:
    """The target probability on each job's image (``targets``: one class per job), the images
    stacked and forwarded ``batch_size`` at a time on the targets' device."""
    scores = []
    for s in chunks(len(targets), batch_size):
        batch = torch.stack(list(itertools.islice(jobs, s.stop - s.start))).to(targets.device)
        scores.append(target_scores(model(batch), targets[s]))
    return torch.cat(scores)


def check_road_options(percentiles: Sequence[float], noise: float, batch_size: int) -> np.ndarray:
    """Percentiles as a float64 array, after checking they lie in (0, 100), ``noise >= 0`` and
    ``batch_size >= 1``; a :class:`ValueError` naming the offending option otherwise."""
    try:
        values = np.asarray(percentiles, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.ndim != 1 or len(values) == 0 or not ((values > 0) & (values < 100)).all():
        raise ValueError(f"percentiles must be a non-empty sequence of numbers in (0, 100), got {percentiles!r}")
    if not (isinstance(noise, (int, float)) and 0 <= noise < math.inf):
        raise ValueError(f"noise must be a finite number >= 0 (the imputation's noise std), got {noise!r}")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return values


def road(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    percentiles: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    noise: float = 0.01,
    *,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per-image ROAD MoRF, LeRF and combined scores of saliency maps, averaged over percentiles.

    The numbers of pytorch-grad-cam's ``ROADMostRelevantFirstAverage``,
    ``ROADLeastRelevantFirstAverage`` and ``ROADCombined`` with ``ClassifierOutputSoftmaxTarget``
    (whose imputer adds ``noise=0.01`` from the global RNG; at ``noise=0`` the two agree to
    float32 rounding). With S the map upsampled to the image, q_p(.) numpy's p-th percentile of a
    map's values and P(x) the target's softmax probability::

        R_p^MoRF = {i : S_i >= q_p(S)}              (about the (100 - p) % most relevant pixels)
        R_p^LeRF = {i : 1 - S_i >= q_p(1 - S)}      (about the (100 - p) % least relevant pixels)
        x_i = sum_{j in N(i)} w_ij x_j / sum_{j in N(i)} w_ij   for i in R,   x_j = image_j otherwise
        x~_i = x_i + noise * e_i,   e_i ~ N(0, 1), for i in R
        morf = mean_p [P(x~ for R_p^MoRF) - P(image)]            (lower is better)
        lerf = mean_p [P(x~ for R_p^LeRF) - P(image)]            (higher is better)
        combined = (lerf - morf) / 2                              (higher is better)

    N(i) are the 8 neighbours of pixel i inside the image, w = 1/6 for edge and 1/12 for diagonal
    neighbours; ties with the threshold are removed, so a constant map removes every pixel (then
    imputed as 0, the normalisation mean). Note that percentile p removes the pixels *above* it:
    MoRF at 10 removes about 90 % of the image, the reverse of the paper's reading; averages over
    the default, symmetric percentiles are unaffected.

    Cost: 1 clean + 2 x len(percentiles) perturbed forward passes per image (19 at the default),
    and as many sparse linear solves on the CPU (the removed pixels are the unknowns).

    Args:
        model: a classifier returning logits; run in eval mode under ``torch.inference_mode``.
        images: (B,C,H,W) normalised images, on the model's device.
        maps: (B,h,w) saliency maps in [0,1] at any resolution (upsampled bilinearly inside).
        targets: (B,) class indices whose probability is read.
        percentiles: the thresholds p, each in (0, 100).
        noise: standard deviation of the Gaussian noise added to the imputed pixels (>= 0).
        batch_size: perturbed images per forward pass (bounds the memory used).
        seed: seed of the noise's CPU ``torch.Generator``: equal inputs give equal noise, on any
            device and at any ``batch_size``.

    Returns:
        ``"morf"``, ``"lerf"``, ``"combined"``: (B,) float tensors on the images' device.

    Example:
        >>> from ca_core import build_model
        >>> from ca_core.metrics.road import road
        >>> model = build_model("resnet_mini", "gap", num_classes=5).eval()
        >>> images, maps = torch.randn(2, 3, 56, 56), torch.rand(2, 7, 7)
        >>> scores = road(model, images, maps, targets=[0, 3], percentiles=(20, 50, 80))
        >>> sorted(scores), scores["combined"].shape
        (['combined', 'lerf', 'morf'], torch.Size([2]))
    """
    check_images(images)
    percentiles = check_road_options(percentiles, noise, batch_size)
    n_images = len(images)
    maps = upsample(check_maps(maps, n_images).cpu(), images.shape[-2:])
    generator = torch.Generator().manual_seed(seed)
    with eval_mode(model), torch.inference_mode():
        clean_logits = torch.cat([model(images[s]) for s in chunks(n_images, batch_size)])
        targets = check_labels(targets, n_images, clean_logits.shape[1], images.device)
        clean = target_scores(clean_logits, targets)
        jobs = perturbed_images(images, maps, percentiles, noise, generator)
        perturbed = job_scores(model, jobs, targets.repeat_interleave(len(CURVES) * len(percentiles)), batch_size)
        change = perturbed.view(n_images, len(CURVES), len(percentiles)) - clean[:, None, None]
    morf, lerf = change.mean(dim=2).unbind(dim=1)  # outside inference mode: plain tensors
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}
