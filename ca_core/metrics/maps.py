"""``evaluate_maps``: every metric of the paper for a batch of images and saliency maps.

One clean forward pass gives Y (and the predictions when no targets are given); it is shared by
AD/AG/AI and by the two clean points of the Insertion/Deletion curves. All forward passes run
under ``torch.inference_mode`` in chunks of ``batch_size`` with the model in eval mode.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from ..models import normalisation
from ..saliency import upsample
from .causal import CALIBRATED, CURVES, causal_curves
from .confidence import confidence_metrics, masked_probs
from .localisation import energy_pointing_game, paper_tolerance, pointing_game
from .protocols import Protocol, get_protocol
from ..utils import Autocast, check_labels, check_precision, chunks, target_scores

MAP_TOLERANCE = 1e-5  # how far outside [0, 1] a map value may stray from rounding


def normalised_aucs(results: dict[str, torch.Tensor], suffix: str = "") -> dict[str, torch.Tensor]:
    """Insertion and Deletion divided by the full-image score of each image (the curve's clean point:
    the last of insertion, the first of deletion): ``"insertion_norm"``/``"deletion_norm"`` (+ suffix).

    A model that gives every image a higher probability raises Insertion and Deletion together;
    divided by that probability, the curves compare how the map orders the pixels.
    """
    clean = {"insertion": results[f"insertion_curve{suffix}"][:, -1],
             "deletion": results[f"deletion_curve{suffix}"][:, 0]}
    return {f"{name}_norm{suffix}": (results[f"{name}{suffix}"]
                                     / clean[name].clamp_min(torch.finfo(clean[name].dtype).tiny))
            for name in CURVES}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (BatchNorm running statistics), restoring its mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_images(images: torch.Tensor) -> None:
    """Images must be a non-empty (B,C,H,W) floating tensor."""
    if (not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point()
            or len(images) == 0):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor (B, C, H, W) with B >= 1, got {shape}")


def check_maps(maps: torch.Tensor, n_images: int) -> torch.Tensor:
    """Maps must be (B,h,w), finite and within [0,1]; returned clamped to [0,1] (rounding only)."""
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or len(maps) != n_images:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a tensor (B, h, w) with B = {n_images} images, got {shape}")
    bad = ~torch.isfinite(maps).flatten(1).all(dim=1)
    if bad.any():
        raise ValueError(f"maps contain NaN or inf (images {bad.nonzero()[:, 0].tolist()[:10]})")
    outside = ((maps < -MAP_TOLERANCE) | (maps > 1 + MAP_TOLERANCE)).flatten(1).any(dim=1)
    if outside.any():
        raise ValueError(f"maps must lie in [0, 1] (min-max normalise them); "
                         f"images {outside.nonzero()[:, 0].tolist()[:10]} "
                         f"range over [{maps.min().item():.4g}, {maps.max().item():.4g}]")
    return maps.float().clamp(0, 1)


def check_masks(masks: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Masks must be (B,H,W) bool (or 0/1) at the images' size."""
    if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != shape:
        got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a bool tensor {shape} (one (H, W) mask per image), got {got}")
    if masks.dtype != torch.bool and not ((masks == 0) | (masks == 1)).all():
        raise ValueError(f"masks must be bool or 0/1, got {masks.dtype} with other values")
    return masks.bool()


def evaluate_maps(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor | Sequence[int] | None,
    *,
    protocol: str | Protocol = "paper",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 64,
    masks: torch.Tensor | None = None,
    precision: str = "fp32",
    temperature: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image AD, AG, AI, Insertion, Deletion (and localisation) of saliency maps.

    Every one of these metrics reads the model's softmax probability, so it moves with the model's
    confidence whatever the map. Two views help separate the two: the *normalised* Insertion and
    Deletion (each AUC divided by the target's full-image probability Y, so a model that is more
    confident everywhere does not score higher by that alone), and with ``temperature`` every metric
    again on the temperature-scaled probabilities softmax(z / T) (a model at matched calibration),
    computed from the same forward passes.

    Args:
        model: a classifier returning logits (GAP or CA-Stream model); run in eval mode.
        images: (B,C,H,W) normalised images, on the model's device.
        maps: (B,h,w) saliency maps in [0,1] at any resolution (upsampled bilinearly inside).
        targets: (B,) class indices (the labels: the paper's default); ``None`` uses the
            classes predicted on the clean images.
        protocol: ``"paper"``, ``"rise"`` or a :class:`Protocol`.
        mean, std: the images' normalisation; default: the backbone's timm data config.
        batch_size: images per forward pass, also for perturbed images (bounds the memory).
        masks: optional (B,H,W) bool ground-truth masks at the image size, for localisation.
        precision: ``"fp32"`` (the reported numbers), ``"bf16"`` or ``"fp16"`` (CUDA): the autocast
            dtype of the model's forward passes; masking, blurring and scores stay float32.
        temperature: a softmax temperature (e.g. :func:`ca_core.metrics.fit_temperature` on validation
            logits) for the calibrated copies of the metrics (keys suffixed ``_cal``).

    Returns:
        ``"ad"``, ``"ag"``, ``"ai"`` (fractions; ai is 0/1), ``"insertion"``, ``"deletion"``
        (normalised AUCs), each (B,); ``"insertion_norm"``, ``"deletion_norm"`` (the AUCs divided
        by the full-image probability, (B,); protocols that score probabilities only); ``"insertion_curve"``,
        ``"deletion_curve"`` (B, n_points);
        with ``temperature`` the same keys suffixed ``_cal`` (curves: ``"insertion_curve_cal"``);
        with masks also ``"pointing"`` (0/1, no margin), ``"pointing_tol"`` (0/1, with the usual
        margin of 15 px at 224 px, scaled) and ``"energy"`` (fraction), each (B,).
    """
    protocol = get_protocol(protocol)
    check_images(images)
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n_images, channels, height, width = images.shape
    maps = upsample(check_maps(maps, n_images).to(images.device), (height, width)).to(images.dtype)
    if masks is not None:
        masks = check_masks(masks, (n_images, height, width)).to(images.device)
    mean_t, std_t = normalisation(model, mean, std, channels, images.device)
    net = model if check_precision(precision, images.device) == "fp32" else Autocast(model, precision)
    with eval_mode(model), torch.inference_mode():
        clean_logits = torch.cat([net(images[s]) for s in chunks(n_images, batch_size)])
        targets = (clean_logits.argmax(dim=1) if targets is None
                   else check_labels(targets, n_images, clean_logits.shape[1], images.device))
        scales = {"": 1.0} | ({CALIBRATED: temperature} if temperature is not None else {})
        masked = masked_probs(net, images, maps, targets, masking=protocol.masking, mean=mean_t, std=std_t,
                              batch_size=batch_size, temperatures=tuple(scales.values()))
        results = causal_curves(net, images, maps, targets, protocol=protocol, batch_size=batch_size,
                                clean_logits=clean_logits, temperature=temperature)
        for row, (suffix, t) in zip(masked, scales.items()):
            clean = target_scores(clean_logits, targets, temperature=t)
            results.update({f"{k}{suffix}": v for k, v in confidence_metrics(clean, row).items()})
            if protocol.score == "prob":  # a logit can be 0 or negative: no ratio then
                results.update(normalised_aucs(results, suffix))
        if masks is not None:
            results.update(pointing=pointing_game(maps, masks), energy=energy_pointing_game(maps, masks),
                           pointing_tol=pointing_game(maps, masks, paper_tolerance(height, width)))
    return {name: value.clone() for name, value in results.items()}  # plain tensors, usable outside inference mode
