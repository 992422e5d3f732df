"""The one prediction loop: per-image labels, predictions and logits of a model on a dataset.

Training (validation accuracy) and the evaluation (accuracy, calibration, the explained classes)
both use :func:`predict`, one process or sharded under DDP. It lives apart from
:mod:`ca_core.evaluation` so that the training loop, and so a training stage's key
(:func:`ca_core.provenance.code_digest`), does not depend on the saliency methods, metrics or
statistics the evaluation imports.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .models import backbone_of
from .utils import autocast, check_labels, progress_bar


def num_classes_of(model: nn.Module) -> int:
    """Width of the model's classifier."""
    return int(backbone_of(model).num_classes)


def batches_on(loader: Iterable, device: torch.device, num_classes: int | None = None
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(images, labels, masks) on ``device`` from batches ``(images, labels[, masks])``; labels are
    checked on the CPU against the classifier; masks are ``None`` for data without them."""
    for images, labels, *masks in loader:
        labels = check_labels(labels, None, num_classes, what="a batch's labels")
        yield (images.to(device, non_blocking=True), labels.to(device, non_blocking=True),
               masks[0].to(device).bool() if masks else None)


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256, num_workers: int = 0,
            precision: str = "fp32", progress: bool = False, labelled: bool = True) -> dict[str, torch.Tensor]:
    """Per-image ``label``, ``pred``, ``logits``, ``loss`` and ``correct`` for the whole ``dataset``, in its order.

    ``labelled=False``: the data's labels are not the model's classes (another data set's images):
    they are kept as given but not checked against the classifier, and ``loss``/``correct`` are left out.

    Under DDP each rank predicts its shard (:func:`ca_core.distributed.shard_indices`) and every
    rank receives all images' results (:func:`ca_core.distributed.gather_per_image`). ``precision``:
    the autocast dtype of the forward passes (:data:`ca_core.utils.PRECISIONS`).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    shard = Subset(dataset, list(distributed.shard_indices(len(dataset))))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers)
    preds, losses, labels, all_logits = [], [], [], []
    with autocast(device, precision):
        batches = batches_on(loader, device, num_classes_of(model) if labelled else None)
        for images, target, _ in progress_bar(batches, desc="predict", total=len(loader), disable=not progress,
                                              leave=False):
            logits = model(images).float()
            all_logits.append(logits)
            preds.append(logits.argmax(1))
            if labelled:
                losses.append(F.cross_entropy(logits, target, reduction="none"))
            labels.append(target)
    model.train(was_training)
    empty = torch.empty(0, device=device)
    pred = torch.cat(preds) if preds else empty.long()
    label = torch.cat(labels) if labels else empty.long()
    out = {"label": label, "pred": pred,
           "logits": torch.cat(all_logits) if all_logits else empty.view(0, num_classes_of(model))}
    if labelled:
        out |= {"loss": torch.cat(losses) if losses else empty, "correct": pred == label}
    return {k: distributed.gather_per_image(v, len(dataset)) for k, v in out.items()}


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy (fraction) of ``model`` on ``dataset``."""
    return predict(model, dataset, batch_size)["correct"].float().mean().item()
