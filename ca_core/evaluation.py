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
  ones :func:`read_results` returns;
* ``calibration.json``: the softmax temperature fitted on the validation split and the calibration
  on the test split (:func:`calibrate`);
* ``<method>/road.npz``, ``<method>/sanity.npz`` (primary models): ROAD and the parameter
  randomisation check on the first images (:func:`evaluate_extras`).

Every file is written atomically and carries a key (the caller's fingerprint of what produced it):
an interrupted run resumes at the first missing chunk, and a changed key never mixes with old results.
"""
from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .metrics import PROTOCOLS, calibration_summary, cascading_randomisation, evaluate_maps, fit_temperature, reliability, road
from .models import backbone_of
from .saliency import METHODS, explain
from .utils import atomic_write, autocast, check_labels, check_precision, progress_bar, write_json

PREDICTIONS_FILE = "predictions.npz"
MANIFEST_FILE = "manifest.json"
CALIBRATION_FILE = "calibration.json"
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
        calibration: fit a softmax temperature per model on the validation split (Guo et al. 2017)
            and compute every probability-based metric also on the temperature-scaled probabilities,
            from the same forward passes (keys suffixed ``_cal``); labelled data only.
        road_images: ROAD (Rong et al. 2022; 1 + 18 forward passes per image at the default
            percentiles) of each method on the primary models, on the first ``road_images`` evaluated
            images, from the saved maps (0: off).
        road_noise: the standard deviation of ROAD's noisy linear imputation.
        sanity_images: the model parameter randomisation check (Adebayo et al. 2018) of each method
            on the primary models, on the first ``sanity_images`` test images (0: off); a method is
            explained once per randomisation step.
        equivalence_margin: the margin (points) within which "CA keeps the accuracy of GAP" holds
            (two one-sided tests).
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
    calibration: bool = True
    road_images: int = 100
    road_noise: float = 0.01
    sanity_images: int = 8
    equivalence_margin: float = 1.0

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
        for name in ("road_images", "sanity_images", "road_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0 (0 turns it off), got {getattr(self, name)}")
        if not self.equivalence_margin > 0:
            raise ValueError(f"equivalence_margin: must be > 0 points, got {self.equivalence_margin}")


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
        for images, target, _ in progress_bar(batches, desc="predict", total=len(loader), disable=not progress, leave=False):
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
                      cfg: EvalConfig, device: torch.device, predictions: np.ndarray | None = None,
                      temperature: float | None = None) -> dict[str, np.ndarray]:
    """Saliency maps and every per-image metric for ``dataset[indices]``.

    The explained class is the label, or with ``cfg.targets == "predicted"`` the model's prediction,
    taken from ``predictions`` (one per image of ``dataset``). ``temperature``: the model's fitted
    softmax temperature, for the calibrated copies of the metrics (:func:`ca_core.metrics.evaluate_maps`).
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
                               batch_size=cfg.batch_size, masks=masks, precision=cfg.precision, temperature=temperature)
        part = {k: v.detach().cpu().numpy() for k, v in values.items()}
        part.update(maps=maps.detach().cpu().numpy().astype(np.float16), label=labels.cpu().numpy(),
                    target=targets.cpu().numpy())
        parts.append(part)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["index"] = np.asarray(indices)
    return out


def evaluate_model(model: nn.Module, pooling: str, dataset: Dataset, cfg: EvalConfig,
                   out_dir: Path, key: str, progress: bool = True, label: str = "", extra_seed: bool = False,
                   calibration_set: Dataset | None = None) -> None:
    """Predictions and every method's results for one trained model, resuming from saved chunks.

    ``key`` identifies what produced the results (settings, checkpoints, code); a file written under
    another key is recomputed. ``extra_seed``: the model is a CA stream of a run's non-primary seed
    (:func:`methods_for`); the primary models also get ROAD and the sanity check
    (:func:`evaluate_extras`). ``calibration_set``: the validation split, on which the model's softmax
    temperature is fitted (:func:`calibrate`) when ``cfg.calibration`` is on and the data is labelled.

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
        arrays = {k: pred[k].cpu().numpy() for k in ("label", "pred", "logits")}
        if "correct" in pred:
            arrays["correct"] = pred["correct"].cpu().numpy().astype(np.float32)
        if rank == 0:
            save_npz(out_dir / PREDICTIONS_FILE, arrays, key)
    temperature = None
    if calibration_set is not None and cfg.calibration and cfg.targets == "label":
        temperature = calibrate(model, calibration_set, arrays, cfg, out_dir, key)["temperature"]
    jobs = [(m, i, range(s, min(s + cfg.chunk_size, n)))
            for m in methods_for(pooling, cfg, extra_seed)
            for n in [images_for(m, cfg, len(dataset))]
            for i, s in enumerate(range(0, n, cfg.chunk_size))]
    mine = [job for j, job in enumerate(jobs) if j % size == rank]
    for method, i, chunk in progress_bar(mine, desc=f"{label} saliency+metrics", disable=not (progress and rank == 0)):
        path = out_dir / method / f"part-{i:05d}.npz"
        if read_npz(path, key) is None:
            save_npz(path, explain_and_score(model, method, dataset, chunk, cfg, device, arrays["pred"], temperature), key)
    distributed.barrier()
    if rank == 0:  # what read_results returns: these chunks of this key only
        for method in dict.fromkeys(m for m, _, _ in jobs):
            names = [f"part-{i:05d}.npz" for m, i, _ in jobs if m == method]
            write_json(out_dir / method / MANIFEST_FILE, {"key": key, "parts": names,
                                                          "images": images_for(method, cfg, len(dataset))})
        if not extra_seed:
            evaluate_extras(model, pooling, dataset, cfg, out_dir, key, progress, label)
    distributed.barrier()


# ---------------------------------------------------------------------------------------------
# Calibration, ROAD and the sanity check of the primary models


def calibrate(model: nn.Module, val_set: Dataset, test: dict[str, np.ndarray], cfg: EvalConfig,
              out_dir: Path, key: str) -> dict[str, Any]:
    """The model's calibration record (``calibration.json``), computed once per key: the softmax
    temperature fitted on ``val_set`` (minimum NLL), and on the test split (``test``: the arrays of
    ``predictions.npz``) accuracy, mean confidence, NLL, ECE and the reliability bins, raw and at
    the fitted temperature."""
    path = out_dir / CALIBRATION_FILE
    record = read_json(path)
    if record is not None and record.get("key") == key:
        return record
    val = predict(model, val_set, cfg.batch_size, precision=cfg.precision)
    temperature = fit_temperature(val["logits"], val["label"])
    logits, labels = torch.from_numpy(test["logits"]), torch.from_numpy(test["label"]).long()
    record = {"key": key, "temperature": temperature, "n_val": len(val_set), "n_test": len(labels)}
    for name, t in (("raw", 1.0), ("calibrated", temperature)):
        record[name] = plain(calibration_summary(logits, labels, t))
        record[f"reliability_{name}"] = plain(reliability(logits, labels, t))
    if distributed.is_main():
        write_json(path, record)
    return record


def plain(record: Any) -> Any:
    """A dataclass of floats and arrays as JSON-able data (arrays as lists)."""
    return {k: v.tolist() if isinstance(v, (np.ndarray, torch.Tensor)) else v for k, v in asdict(record).items()}


def evaluate_extras(model: nn.Module, pooling: str, dataset: Dataset, cfg: EvalConfig, out_dir: Path,
                    key: str, progress: bool = True, label: str = "") -> None:
    """ROAD (from the saved maps) and the sanity check of every method of a primary model, on the
    first ``cfg.road_images`` / ``cfg.sanity_images`` images, each written once per key to
    ``<method>/road.npz`` and ``<method>/sanity.npz``."""
    jobs = [(m, kind) for m in methods_for(pooling, cfg) for kind, n in (("road", cfg.road_images),
                                                                       ("sanity", cfg.sanity_images)) if n]
    todo = [(m, kind) for m, kind in jobs if read_npz(out_dir / m / f"{kind}.npz", key) is None]
    for method, kind in progress_bar(todo, desc=f"{label} ROAD+sanity", disable=not progress):
        results = read_results(out_dir / method)
        n = min(len(results["index"]), cfg.road_images if kind == "road" else cfg.sanity_images)
        images = torch.stack([dataset[int(i)][0] for i in results["index"][:n]]).to(next(model.parameters()).device)
        targets = torch.as_tensor(results["target"][:n], device=images.device).long()
        if kind == "road":
            maps = torch.as_tensor(results["maps"][:n], device=images.device).float()
            arrays = {k: v.cpu().numpy() for k, v in road(model, images, maps, targets, noise=cfg.road_noise,
                                                          batch_size=cfg.batch_size, seed=cfg.seed).items()}
        else:
            check = cascading_randomisation(model, images, targets, method, seed=cfg.seed, **method_options(method, cfg))
            arrays = {"steps": np.array(check.steps), "correlations": check.correlations}
        save_npz(out_dir / method / f"{kind}.npz", {**arrays, "index": results["index"][:n]}, key)


def read_extra(folder: Path, kind: str) -> dict[str, np.ndarray] | None:
    """``road`` or ``sanity`` results of one method folder, if written under its manifest's key."""
    listed = read_json(Path(folder) / MANIFEST_FILE)
    return None if listed is None else read_npz(Path(folder) / f"{kind}.npz", listed.get("key"))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` when missing or unreadable (to be recomputed)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
