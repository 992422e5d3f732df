"""The evaluation loop of trained models: predictions, then saliency maps and every metric per image.

:func:`evaluate_model` evaluates one trained model for a run: its predictions
on a test set and, for each saliency method, maps and every metric of
:func:`ca_core.metrics.evaluate_maps` per image. Results are per image, so that tables can carry
confidence intervals and GAP and CA can be compared with paired tests on the same images. They are
written into one folder per model:

* ``evaluation.json``: the key the folder is evaluated for, and whether that evaluation completed:
  every reader returns results of a completed evaluation of that key only;
* ``predictions.npz``: label, prediction and (with ``targets="label"``) correctness on the test split;
* ``<method>/part-NNNNN.npz``: for each chunk of ``chunk_size`` test images, the image indices,
  labels, the explained classes (``target``), every metric (including the insertion/deletion curves) and the saliency
  maps at the target layer's resolution (float16);
* ``<method>/manifest.json``: the key and the chunks of the last completed evaluation, the only
  ones :func:`read_results` returns;
* ``calibration.json``: the softmax temperature fitted on the validation split and the calibration
  on the test split (:func:`calibrate`);
* ``<method>/road.npz``, ``<method>/sanity.npz`` (primary models): ROAD and the parameter
  randomisation check on the first images; ``<method>/localisation.npz`` (GAP models, with
  ``regime_images``): the regime check's localisation on more images (:func:`evaluate_extras`).

Every file is written atomically and carries a key (the caller's fingerprint of what produced it):
an interrupted run resumes at the first missing chunk, and a changed key never mixes with old results:
a folder evaluated for another key (or with no readable record) is moved aside, never deleted
(:func:`ca_core.utils.set_aside`), with one line saying so.
"""
from __future__ import annotations

import json
import warnings
import zipfile
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .metrics import (PROTOCOLS, calibration_summary, cascading_randomisation, energy_pointing_game, evaluate_maps,
                      fit_temperature, paper_tolerance, pointing_game, reliability, road)
from .prediction import batches_on, predict
from .saliency import METHODS, explain, upsample
from .utils import FieldError, announce, atomic_write, check_precision, progress_bar, set_aside, write_json

PREDICTIONS_FILE = "predictions.npz"
MANIFEST_FILE = "manifest.json"
CALIBRATION_FILE = "calibration.json"
#: A model folder's record: the key it is evaluated for and whether that evaluation completed.
RECORD_FILE = "evaluation.json"
#: What a map explains: the ground-truth label, or the model's prediction (see :class:`EvalConfig`).
TARGETS = ("label", "predicted")
#: The maps of the regime check (Grad-CAM on the GAP models against the centre prior).
REGIME_METHODS = ("gradcam", "centre")
#: The metadata of an :class:`EvalConfig` field that does not change what a result file holds (which
#: methods run, batch sizes, how results are summarised): left out of the evaluation's key.
SUMMARY = {"result": False}


@dataclass
class EvalConfig:
    """The ``eval`` section of a profile.

    Every field is part of an evaluation's key (a changed value recomputes the results) except those
    marked :data:`SUMMARY`.

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
        sanity_methods: the methods the randomisation check explains (``None``: every evaluated one);
            Score-CAM, one forward pass per channel and image at every step, can be left out where
            that is too slow (the book says which were checked).
        regime_images: the regime check's localisation (:data:`REGIME_METHODS` on the GAP models:
            pointing game and energy, from the maps alone, no faithfulness metric) on the first
            ``regime_images`` test images, where the evaluated images are too few to check a target
            (at 24 images a pointing rate has a standard error of 8 points); 0: on the evaluated images.
        equivalence_margin: the margin (points) within which "CA keeps the accuracy of GAP" holds
            (two one-sided tests).
    """

    methods: tuple[str, ...] = field(default=("attention", "gradcam", "gradcampp", "scorecam"), metadata=SUMMARY)
    num_images: int | None = None
    batch_size: int = field(default=32, metadata=SUMMARY)
    scorecam_batch_size: int = field(default=256, metadata=SUMMARY)
    method_images: dict[str, int] = field(default_factory=dict)
    chunk_size: int = 500
    protocol: str = "paper"
    scorecam_variant: str = "paper"
    n_boot: int = field(default=1000, metadata=SUMMARY)
    seed: int = 0
    figure_images: int = field(default=6, metadata=SUMMARY)
    precision: str = "fp32"
    extra_seed_methods: tuple[str, ...] | None = field(default=None, metadata=SUMMARY)
    targets: str = "label"
    calibration: bool = True
    road_images: int = 100
    road_noise: float = 0.01
    sanity_images: int = 8
    sanity_methods: tuple[str, ...] | None = None
    regime_images: int = 0
    equivalence_margin: float = field(default=1.0, metadata=SUMMARY)

    def __post_init__(self) -> None:
        with FieldError.of("precision"):
            check_precision(self.precision)
        if self.targets not in TARGETS:
            raise FieldError("targets",
                             f"targets: expected one of {', '.join(map(repr, TARGETS))}, got {self.targets!r}")
        for method in self.methods:
            if method not in METHODS:
                raise FieldError("methods", f"methods: unknown method {method!r}; known: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise FieldError("methods", f"methods: listed twice in {list(self.methods)}")
        if self.protocol not in PROTOCOLS:
            raise FieldError("protocol", f"protocol: unknown protocol {self.protocol!r}; known: {', '.join(PROTOCOLS)}")
        if self.scorecam_variant not in ("paper", "pytorch_grad_cam"):
            raise FieldError("scorecam_variant",
                             f"scorecam_variant: expected 'paper' or 'pytorch_grad_cam', got {self.scorecam_variant!r}")
        for method, n in self.method_images.items():
            if method not in self.methods or n <= 0:
                raise FieldError("method_images", f"method_images: expected positive caps for methods of "
                                                  f"{list(self.methods)}, got {method}: {n}")
        for name in ("batch_size", "scorecam_batch_size", "chunk_size", "n_boot", "figure_images"):
            if getattr(self, name) <= 0:
                raise FieldError(name, f"{name}: must be positive, got {getattr(self, name)}")
        unknown = set(self.extra_seed_methods or ()) - set(self.methods)
        if unknown:
            raise FieldError("extra_seed_methods",
                             f"extra_seed_methods: {sorted(unknown)} are not among methods {list(self.methods)}")
        if self.num_images is not None and self.num_images <= 0:
            raise FieldError("num_images", f"num_images: must be positive or null, got {self.num_images}")
        unknown = set(self.sanity_methods or ()) - set(self.methods)
        if unknown:
            raise FieldError("sanity_methods",
                             f"sanity_methods: {sorted(unknown)} are not among methods {list(self.methods)}")
        for name in ("road_images", "sanity_images", "road_noise", "regime_images"):
            if getattr(self, name) < 0:
                raise FieldError(name, f"{name}: must be >= 0 (0 turns it off), got {getattr(self, name)}")
        if not self.equivalence_margin > 0:
            raise FieldError("equivalence_margin",
                             f"equivalence_margin: must be > 0 points, got {self.equivalence_margin}")


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
    made_for = data.pop("fingerprint", None)
    if key is not None and (made_for is None or str(made_for) != key):  # another run's, or not ours at all
        return None
    return data


def completed_key(folder: Path) -> str:
    """The key of the completed evaluation of one model's folder (its ``evaluation.json``); a
    :class:`FileNotFoundError` naming the folder when it has none, or when the last one was interrupted."""
    record = read_json(Path(folder) / RECORD_FILE)
    if record is None or not isinstance(record.get("key"), str):
        raise FileNotFoundError(f"no evaluation recorded in {folder} ({RECORD_FILE} missing or unreadable): "
                                "run the evaluation first")
    if not record.get("complete"):
        raise FileNotFoundError(f"the evaluation in {folder} did not complete (interrupted?): run it again, it resumes")
    return record["key"]


def read_predictions(folder: Path) -> dict[str, np.ndarray]:
    """``predictions.npz`` of one model's folder (label, pred, correct per test image), of its
    completed evaluation only (:func:`completed_key`)."""
    data = read_npz(Path(folder) / PREDICTIONS_FILE, completed_key(folder))
    if data is None:
        raise FileNotFoundError(f"no predictions of the completed evaluation at {Path(folder) / PREDICTIONS_FILE}: "
                                "run the evaluation again")
    return data


def read_results(folder: Path) -> dict[str, np.ndarray]:
    """Per-image results of one model's method folder: exactly the chunks its manifest lists, each
    checked to carry the key of the model's completed evaluation, concatenated in order (files of
    other runs are ignored)."""
    return method_results(folder, completed_key(Path(folder).parent))


def method_results(folder: Path, key: str) -> dict[str, np.ndarray]:
    """The chunks of a method folder that its manifest lists under ``key``, concatenated in order."""
    manifest = Path(folder) / MANIFEST_FILE
    listed = read_json(manifest) or {}
    if listed.get("key") != key or not isinstance(listed.get("parts"), list):
        raise FileNotFoundError(f"no results of the completed evaluation in {folder} ({manifest.name} missing, "
                                "unreadable or of another evaluation): run the evaluation again")
    parts = [read_npz(Path(folder) / name, key) for name in listed["parts"]]
    if not parts or any(p is None for p in parts):
        raise FileNotFoundError(f"results in {folder} are incomplete or stale (a chunk is missing or from "
                                "other settings): run the evaluation again")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def read_calibration(folder: Path) -> dict[str, Any] | None:
    """One model folder's calibration record of its completed evaluation, or ``None`` when it has
    none (unlabelled data, calibration off)."""
    record = read_json(Path(folder) / CALIBRATION_FILE)
    return record if record is not None and record.get("key") == completed_key(folder) else None


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
    if rank == 0:
        start_record(out_dir, key)
    distributed.barrier()
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
            save_npz(path, explain_and_score(model, method, dataset, chunk, cfg, device, arrays["pred"], temperature),
                     key)
    distributed.barrier()
    if rank == 0:  # what read_results returns: these chunks of this key only
        for method in dict.fromkeys(m for m, _, _ in jobs):
            names = [f"part-{i:05d}.npz" for m, i, _ in jobs if m == method]
            write_json(out_dir / method / MANIFEST_FILE, {"key": key, "parts": names,
                                                          "images": images_for(method, cfg, len(dataset))})
        if not extra_seed:
            evaluate_extras(model, pooling, dataset, cfg, out_dir, key, progress, label)
        write_json(out_dir / RECORD_FILE, {**read_json(out_dir / RECORD_FILE), "complete": True,
                                           "finished": _now()})
    distributed.barrier()


def start_record(out_dir: Path, key: str) -> None:
    """Begin (or resume) the evaluation of ``key`` in ``out_dir``. A folder evaluated for another key,
    or holding files with no readable record, is moved aside (never deleted), announced in one line."""
    record = read_json(out_dir / RECORD_FILE)
    if record is not None and record.get("key") == key:
        if not record.get("complete"):
            announce(f"resuming the interrupted evaluation in {out_dir}")
        return
    if out_dir.is_dir() and any(out_dir.iterdir()):
        why = "was evaluated by other code, settings or checkpoints" if record else "has no readable record"
        aside = set_aside(out_dir)
        announce(f"{out_dir} {why}: evaluating again; the old results are kept in {aside} "
                 f"(discard them with `rm -r {aside}`)")
    write_json(out_dir / RECORD_FILE, {"key": key, "complete": False, "started": _now()})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    """The checks of a primary model, each written once per key to ``<method>/<kind>.npz``: ROAD (from
    the saved maps) and the sanity check of every method (of ``cfg.sanity_methods`` when set) on the
    first ``cfg.road_images`` / ``cfg.sanity_images`` evaluated images, and on a GAP model the regime
    check's localisation on the first ``cfg.regime_images`` test images (:func:`localisation`)."""
    def wanted(method: str, kind: str) -> bool:
        if kind == "road":
            return cfg.road_images > 0
        if kind == "sanity":
            return cfg.sanity_images > 0 and (cfg.sanity_methods is None or method in cfg.sanity_methods)
        return cfg.regime_images > 0 and pooling == "gap" and method in REGIME_METHODS

    jobs = [(m, kind) for m in methods_for(pooling, cfg) for kind in ("road", "sanity", "localisation")
            if wanted(m, kind)]
    todo = [(m, kind) for m, kind in jobs if read_npz(out_dir / m / f"{kind}.npz", key) is None]
    device = next(model.parameters()).device
    for method, kind in progress_bar(todo, desc=f"{label} checks", disable=not progress):
        if kind == "localisation":
            arrays = localisation(model, method, dataset, range(min(cfg.regime_images, len(dataset))), cfg, device)
        else:
            arrays = _check_evaluated(model, method, kind, dataset, cfg, method_results(out_dir / method, key), device)
        save_npz(out_dir / method / f"{kind}.npz", arrays, key)


def _check_evaluated(model: nn.Module, method: str, kind: str, dataset: Dataset, cfg: EvalConfig,
                     results: dict[str, np.ndarray], device: torch.device) -> dict[str, np.ndarray]:
    """ROAD (``kind="road"``, from the saved maps) or the sanity check of ``method`` on the first
    evaluated images (``results``: the method's saved per-image results)."""
    n = min(len(results["index"]), cfg.road_images if kind == "road" else cfg.sanity_images)
    images = torch.stack([dataset[int(i)][0] for i in results["index"][:n]]).to(device)
    targets = torch.as_tensor(results["target"][:n], device=device).long()
    if kind == "road":
        maps = torch.as_tensor(results["maps"][:n], device=device).float()
        arrays = {k: v.cpu().numpy() for k, v in road(model, images, maps, targets, noise=cfg.road_noise,
                                                      batch_size=cfg.batch_size, seed=cfg.seed).items()}
    else:
        check = cascading_randomisation(model, images, targets, method, seed=cfg.seed, **method_options(method, cfg))
        arrays = {"steps": np.array(check.steps), "correlations": check.correlations}
    return {**arrays, "index": results["index"][:n]}


def localisation(model: nn.Module, method: str, dataset: Dataset, indices: range, cfg: EvalConfig,
                 device: torch.device) -> dict[str, np.ndarray]:
    """Pointing game (with the usual margin) and energy of ``method``'s maps of the labelled classes on
    ``dataset[indices]``, from the maps alone: a localisation rate on more images than the faithfulness
    metrics can afford (a map costs one forward and backward pass; its metrics dozens of forwards)."""
    parts: dict[str, list[torch.Tensor]] = {"pointing_tol": [], "energy": [], "label": []}
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=cfg.batch_size, shuffle=False)
    for images, labels, masks in batches_on(loader, device):
        if masks is None:
            raise ValueError("the regime check's localisation (eval.regime_images) needs data with object masks")
        maps = upsample(explain(model, images, method, targets=labels, **method_options(method, cfg)), masks.shape[-2:])
        parts["pointing_tol"].append(pointing_game(maps, masks, paper_tolerance(*masks.shape[-2:])))
        parts["energy"].append(energy_pointing_game(maps, masks))
        parts["label"].append(labels)
    return {k: torch.cat(v).detach().cpu().numpy() for k, v in parts.items()} | {"index": np.asarray(indices)}


def read_extra(folder: Path, kind: str) -> dict[str, np.ndarray] | None:
    """``road``, ``sanity`` or ``localisation`` results of one method folder of the model's completed
    evaluation, or ``None`` when it has none (off, or not a primary model)."""
    return read_npz(Path(folder) / f"{kind}.npz", completed_key(Path(folder).parent))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` when missing or unreadable (to be recomputed)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
