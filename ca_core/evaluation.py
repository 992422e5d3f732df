"""The evaluation loop of trained models: predictions, then saliency maps and every metric per image.

:func:`predict` is the one prediction loop (training-time validation and test accuracy, one process
or sharded under DDP). :func:`evaluate_model` evaluates one trained model for a run: its predictions
on a test set and, for each saliency method, maps and every metric of
:func:`ca_core.metrics.evaluate_maps` per image. Results are per image, so that tables can carry
confidence intervals and GAP and CA can be compared with paired tests on the same images. They are
written into one folder per model:

* ``predictions.npz``: label, prediction and (with ``targets="label"``) correctness on the test split;
* ``<method>/part-NNNNN.npz``: for each chunk of ``chunk_size`` test images, the image indices,
  labels, the explained classes (``target``), every metric (including the insertion/deletion curves) and the saliency maps at the
  target layer's resolution (float16);
* ``<method>/manifest.json``: the key and the chunks of the last completed evaluation, the only
  ones :func:`read_results` returns.

Every file is written atomically and carries a key (the caller's fingerprint of what produced it):
an interrupted run resumes at the first missing chunk, and a changed key never mixes with old results.
"""
from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .metrics import PROTOCOLS, evaluate_maps
from .models import backbone_of
from .saliency import METHODS, explain
from .utils import atomic_write, autocast, check_labels, check_precision, progress_bar, write_json

PREDICTIONS_FILE = "predictions.npz"
MANIFEST_FILE = "manifest.json"
#: What a map explains: the ground-truth label, or the model's prediction (see :class:`EvalConfig`).
TARGETS = ("label", "predicted")


@dataclass
class EvalConfig:
    """The ``eval`` section of a profile.

    Attributes:
        methods: saliency methods (keys of ``ca_core.saliency.METHODS``); ``"attention"`` (the raw
            attention of the last CA block) is evaluated for CA models only.
        num_images: evaluate saliency on the first ``num_images`` test images (``None``: all);
            accuracy always uses the whole test split.
        batch_size: images per saliency/metric batch.
        scorecam_batch_size: masked images per forward pass of Score-CAM (one per channel and image;
            large batches are several times faster than ``batch_size``-sized ones on a CPU).
        method_images: an optional cap on the evaluated images of a method, e.g. ``{scorecam: 50}``
            (Score-CAM needs one forward pass per channel and image).
        chunk_size: images per saved result file (the unit of resumption).
        protocol: the metric conventions (``ca_core.metrics`` protocol name; ``"paper"`` reproduces the paper).
        scorecam_variant: ``"paper"`` (the authors' Score-CAM) or ``"pytorch_grad_cam"``.
        n_boot: bootstrap resamples for confidence intervals and paired tests.
        seed: seed of the bootstrap.
        figure_images: how many test images the qualitative grids and the explorer show.
        precision: the autocast dtype of the evaluation's forward passes: ``"fp32"`` (default: the
            reported numbers), ``"bf16"``, or ``"fp16"`` (CUDA).
        extra_seed_methods: the methods evaluated on the CA streams of a run's other training seeds
            (``None``: all); e.g. the paper's CAMs only, which its claims are about.
        targets: the class each map explains and each metric scores: ``"label"`` (the ground truth,
            as in the paper) or ``"predicted"`` (the model's own prediction: for data whose classes
            are not the model's, e.g. MIT 67 images shown to ImageNet models; no accuracy then).
    """

    methods: tuple[str, ...] = ("attention", "gradcam", "gradcampp", "scorecam")
    num_images: int | None = None
    batch_size: int = 32
    scorecam_batch_size: int = 256
    method_images: dict[str, int] = field(default_factory=dict)
    chunk_size: int = 500
    protocol: str = "paper"
    scorecam_variant: str = "paper"
    n_boot: int = 1000
    seed: int = 0
    figure_images: int = 6
    precision: str = "fp32"
    extra_seed_methods: tuple[str, ...] | None = None
    targets: str = "label"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.targets not in TARGETS:
            raise ValueError(f"targets: expected one of {', '.join(map(repr, TARGETS))}, got {self.targets!r}")
        for method in self.methods:
            if method not in METHODS:
                raise ValueError(f"methods: unknown method {method!r}; known: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: listed twice in {list(self.methods)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if self.scorecam_variant not in ("paper", "pytorch_grad_cam"):
            raise ValueError(f"scorecam_variant: expected 'paper' or 'pytorch_grad_cam', got {self.scorecam_variant!r}")
        for method, n in self.method_images.items():
            if method not in self.methods or n <= 0:
                raise ValueError(f"method_images: expected positive caps for methods of {list(self.methods)}, "
                                 f"got {method}: {n}")
        for name in ("batch_size", "scorecam_batch_size", "chunk_size", "n_boot", "figure_images"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        unknown = set(self.extra_seed_methods or ()) - set(self.methods)
        if unknown:
            raise ValueError(f"extra_seed_methods: {sorted(unknown)} are not among methods {list(self.methods)}")
        if self.num_images is not None and self.num_images <= 0:
            raise ValueError(f"num_images: must be positive or null, got {self.num_images}")


def methods_for(pooling: str, cfg: EvalConfig, extra_seed: bool = False) -> tuple[str, ...]:
    """The methods evaluated for a pooling (raw attention exists only for CA), on the primary model
    or (``extra_seed``) on a CA stream of another training seed."""
    chosen = cfg.extra_seed_methods if extra_seed and cfg.extra_seed_methods is not None else cfg.methods
    return tuple(m for m in chosen if pooling == "ca" or m != "attention")


def method_options(method: str, cfg: EvalConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`ca_core.saliency.explain` for ``method``."""
    if method == "scorecam":
        return {"variant": cfg.scorecam_variant, "batch_size": cfg.scorecam_batch_size, "precision": cfg.precision}
    return {"batch_size": cfg.batch_size, "precision": cfg.precision}


def images_for(method: str, cfg: EvalConfig, available: int) -> int:
    """How many test images ``method`` is evaluated on (the first ones, the same for GAP and CA)."""
    return min(available, cfg.num_images or available, cfg.method_images.get(method, available))


# ---------------------------------------------------------------------------------------------
# Predictions


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
    """Per-image ``label``, ``pred``, ``loss`` and ``correct`` for the whole ``dataset``, in its order.

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
    preds, losses, labels = [], [], []
    with autocast(device, precision):
        batches = batches_on(loader, device, num_classes_of(model) if labelled else None)
        for images, target, _ in progress_bar(batches, desc="predict", total=len(loader), disable=not progress, leave=False):
            logits = model(images).float()
            preds.append(logits.argmax(1))
            if labelled:
                losses.append(F.cross_entropy(logits, target, reduction="none"))
            labels.append(target)
    model.train(was_training)
    empty = torch.empty(0, device=device)
    pred = torch.cat(preds) if preds else empty.long()
    label = torch.cat(labels) if labels else empty.long()
    out = {"label": label, "pred": pred}
    if labelled:
        out |= {"loss": torch.cat(losses) if losses else empty, "correct": pred == label}
    return {k: distributed.gather_per_image(v, len(dataset)) for k, v in out.items()}


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy (fraction) of ``model`` on ``dataset``."""
    return predict(model, dataset, batch_size)["correct"].float().mean().item()


# ---------------------------------------------------------------------------------------------
# Result files


def save_npz(path: Path, arrays: dict[str, np.ndarray], key: str) -> None:
    """Write ``arrays`` plus their key to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, fingerprint=np.array(key), **arrays)
    atomic_write(path, write)


def read_npz(path: Path, key: str | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of ``path``, or ``None`` if missing, written under another key, or unreadable
    (a truncated or corrupt file: warned about, so that the caller recomputes it)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"unreadable result file {path} ({type(err).__name__}: {err}); it will be recomputed",
                      stacklevel=2)
        return None
    if key is not None and str(data.pop("fingerprint")) != key:
        return None
    data.pop("fingerprint", None)
    return data


def read_predictions(folder: Path) -> dict[str, np.ndarray]:
    """``predictions.npz`` of one model's folder (label, pred, correct per test image)."""
    data = read_npz(Path(folder) / PREDICTIONS_FILE)
    if data is None:
        raise FileNotFoundError(f"no predictions at {Path(folder) / PREDICTIONS_FILE}: run the evaluation first")
    return data


def read_results(folder: Path) -> dict[str, np.ndarray]:
    """Per-image results of one model's method folder: exactly the chunks its manifest lists, each
    checked to carry the manifest's key, concatenated in order (files of other runs are ignored)."""
    manifest = Path(folder) / MANIFEST_FILE
    try:
        listed = json.loads(manifest.read_text())
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"no complete results in {folder} ({manifest.name}: {err}): run the evaluation first") from None
    parts = [read_npz(Path(folder) / name, listed["key"]) for name in listed["parts"]]
    if not parts or any(p is None for p in parts):
        raise FileNotFoundError(f"results in {folder} are incomplete or stale (a chunk is missing or from "
                                "other settings): run the evaluation again")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------------------------------------
# The loop


def explain_and_score(model: nn.Module, method: str, dataset: Dataset, indices: range,
                      cfg: EvalConfig, device: torch.device, predictions: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Saliency maps and every per-image metric for ``dataset[indices]``.

    The explained class is the label, or with ``cfg.targets == "predicted"`` the model's prediction,
    taken from ``predictions`` (one per image of ``dataset``).
    """
    if cfg.targets == "predicted" and predictions is None:
        raise ValueError("targets='predicted' needs the model's predictions of the whole dataset")
    parts: list[dict[str, np.ndarray]] = []
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=cfg.batch_size, shuffle=False)
    start = indices.start
    for images, labels, masks in batches_on(loader, device):
        if cfg.targets == "predicted":
            targets = torch.as_tensor(predictions[start : start + len(labels)], device=device).long()
        else:
            targets = labels
        start += len(labels)
        maps = explain(model, images, method, targets=targets, **method_options(method, cfg))
        values = evaluate_maps(model, images, maps, targets, protocol=cfg.protocol,
                               batch_size=cfg.batch_size, masks=masks, precision=cfg.precision)
        part = {k: v.detach().cpu().numpy() for k, v in values.items()}
        part.update(maps=maps.detach().cpu().numpy().astype(np.float16), label=labels.cpu().numpy(),
                    target=targets.cpu().numpy())
        parts.append(part)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["index"] = np.asarray(indices)
    return out


def evaluate_model(model: nn.Module, pooling: str, dataset: Dataset, cfg: EvalConfig,
                   out_dir: Path, key: str, progress: bool = True, label: str = "", extra_seed: bool = False) -> None:
    """Predictions and every method's results for one trained model, resuming from saved chunks.

    ``key`` identifies what produced the results (settings, checkpoints, code); a file written under
    another key is recomputed. ``extra_seed``: the model is a CA stream of a run's non-primary seed
    (:func:`methods_for`).

    Under DDP (``torchrun``) the chunks are shared out round-robin over the ranks: each rank computes
    and writes its own chunks (the same files, with the same contents, as one process would), so a
    killed job run again redoes only the chunks that are missing; rank 0 writes the manifests once
    every rank is done.
    """
    device = next(model.parameters()).device
    rank, size = distributed.world()
    model.eval()
    arrays = read_npz(out_dir / PREDICTIONS_FILE, key)
    if arrays is None:
        pred = predict(model, dataset, cfg.batch_size, precision=cfg.precision, progress=progress,
                       labelled=cfg.targets == "label")
        arrays = {"label": pred["label"].cpu().numpy(), "pred": pred["pred"].cpu().numpy()}
        if "correct" in pred:
            arrays["correct"] = pred["correct"].cpu().numpy().astype(np.float32)
        if rank == 0:
            save_npz(out_dir / PREDICTIONS_FILE, arrays, key)
    jobs = [(m, i, range(s, min(s + cfg.chunk_size, n)))
            for m in methods_for(pooling, cfg, extra_seed)
            for n in [images_for(m, cfg, len(dataset))]
            for i, s in enumerate(range(0, n, cfg.chunk_size))]
    mine = [job for j, job in enumerate(jobs) if j % size == rank]
    for method, i, chunk in progress_bar(mine, desc=f"{label} saliency+metrics", disable=not (progress and rank == 0)):
        path = out_dir / method / f"part-{i:05d}.npz"
        if read_npz(path, key) is None:
            save_npz(path, explain_and_score(model, method, dataset, chunk, cfg, device, arrays["pred"]), key)
    distributed.barrier()
    if rank == 0:  # what read_results returns: these chunks of this key only
        for method in dict.fromkeys(m for m, _, _ in jobs):
            names = [f"part-{i:05d}.npz" for m, i, _ in jobs if m == method]
            write_json(out_dir / method / MANIFEST_FILE, {"key": key, "parts": names,
                                                          "images": images_for(method, cfg, len(dataset))})
    distributed.barrier()
