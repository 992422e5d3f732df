"""Training: the GAP backbone from scratch (stage ``gap``) and the CA-Stream on it (stage ``ca``).

Stage ``ca`` is the paper's recipe: only the stream (class token and CA blocks) trains, on the
frozen backbone and classifier, with SGD (lr 0.1, momentum 0.9, weight decay 1e-4), the learning
rate divided by 10 at one third and two thirds of the training steps (of the epochs, when their
number is a multiple of three, as the paper's 90), cross-entropy, at the configured ``precision``.
Stage ``gap`` trains what a backbone lacks: the whole model from scratch for the embedded
experiment, whose backbones have no pretrained weights, or (``gap_trains: classifier``) only a new
linear classifier on a pretrained backbone's frozen features, when the data's classes are not the
ones it was trained on (the ``transfer`` profile). It uses AdamW with a one-cycle schedule, which
trains small CNNs from scratch in few epochs.

Every epoch ends with an atomic checkpoint (``state.pt``: trainable weights, optimizer, scheduler,
gradient scaler, RNG states, epoch and the log) and a rewrite of ``log.jsonl`` (one JSON record per
epoch). Calling :func:`train` again with the same ``out_dir`` resumes after the last finished
epoch; on CPU the result is bit-identical to an uninterrupted run. The finished model is saved
with :func:`ca_core.save_model` as ``model.safetensors``.

Under ``torchrun --nproc_per_node N`` the same code trains with DDP. Every process cuts the same
seeded permutation into the same global batches of ``batch_size`` (the last one may be short) and
takes its contiguous share of each (:func:`ca_core.distributed.rank_share`): no item is padded or
repeated, whatever the data set's size. Each rank's loss is its share's summed cross-entropy times
``N / len(global batch)``, so DDP's gradient average is the global batch's mean, as in one process;
a rank whose share is empty (a last batch smaller than ``N``) runs one stand-in item with weight 0
to take part in the gradient exchange. Results therefore do not depend on the number of
processes: exactly so for the CA stage, whose BatchNorm layers are frozen; in the GAP stage
BatchNorm layers become ``SyncBatchNorm`` on GPUs (on CPU, torch cannot sync them, and each process
normalises with its own share of the batch).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import distributed
from .prediction import batches_on, num_classes_of, predict
from .models import POOLINGS, is_ca_model, save_model
from .utils import (FieldError, atomic_write, autocast, check_labels, check_precision, progress_bar, rng_states,
                     seed_everything, set_rng_states)

STAGES = POOLINGS  # stage "gap" trains a GAP model, stage "ca" the stream of a CA model
STATE_FILE = "state.pt"
MODEL_FILE = "model.safetensors"
LOG_FILE = "log.jsonl"
# Fields that only change speed or display; a resumed run may change them.
RUNTIME_FIELDS = ("eval_batch_size", "num_workers")
OPTIMIZERS = ("sgd", "adamw")  # of stage ca; stage gap always uses AdamW
GAP_TRAINS = ("all", "classifier")  # what stage gap trains: the whole model, or a linear probe


@dataclass
class TrainConfig:
    """Settings of both training stages (the ``train`` section of a profile).

    Attributes:
        epochs, lr, momentum, weight_decay: stage ``ca``, the paper's SGD recipe (lr x0.1 at 1/3 and 2/3 of the steps).
        optimizer: stage ``ca``: ``"sgd"`` (the paper's recipe above) or ``"adamw"`` (the authors' alternative
            recipe ``vit_mod``: AdamW with ``lr`` and ``weight_decay``, warm-up then cosine decay, here a
            one-cycle schedule with 10 % warm-up; ``momentum`` is unused).
        label_smoothing: stage ``ca``, of the cross-entropy (the paper: 0). The logged training loss includes it.
        gap_epochs, gap_lr, gap_weight_decay: stage ``gap``: AdamW, one-cycle schedule.
        gap_trains: what stage ``gap`` trains: ``"all"`` (the whole model, from scratch) or
            ``"classifier"`` (a linear probe: only the classifier, on the frozen features of a
            pretrained backbone whose BatchNorm statistics stay as they are).
        per_model: settings of particular backbones, e.g. ``{convnext_mini: {gap_epochs: 5, lr: 0.003}}``
            (architectures need different amounts of training or step sizes); see :meth:`for_backbone`.
        batch_size: global batch size (each DDP process takes its contiguous share of every batch).
        eval_batch_size: batch size of the per-epoch validation.
        num_workers: DataLoader worker processes (0 loads in the training process).
        precision: ``"fp32"``, ``"bf16"`` (autocast to bfloat16, CPU or GPU) or ``"fp16"`` (CUDA only:
            float16 autocast with gradient scaling); weights and optimizer state stay float32.
        seed: seeds weights' updates, data order and augmentation.
    """

    epochs: int = 90
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    label_smoothing: float = 0.0
    gap_epochs: int = 2
    gap_lr: float = 3e-3
    gap_weight_decay: float = 0.05
    gap_trains: str = "all"
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_size: int = 256
    eval_batch_size: int = 256
    num_workers: int = 0
    precision: str = "fp32"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "gap_epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise FieldError(name, f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "gap_lr"):
            if getattr(self, name) <= 0:
                raise FieldError(name, f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("momentum", "weight_decay", "gap_weight_decay", "num_workers"):
            if getattr(self, name) < 0:
                raise FieldError(name, f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.gap_trains not in GAP_TRAINS:
            raise FieldError("gap_trains", f"gap_trains: must be one of {GAP_TRAINS}, got {self.gap_trains!r}")
        if self.optimizer not in OPTIMIZERS:
            raise FieldError("optimizer", f"optimizer: must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 <= self.label_smoothing < 1:
            raise FieldError("label_smoothing", f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        with FieldError.of("precision"):
            check_precision(self.precision)
        known = [f.name for f in dataclasses.fields(self) if f.name != "per_model"]
        for backbone, overrides in self.per_model.items():
            for key in overrides:
                if key not in known:
                    raise FieldError("per_model",
                                     f"per_model: {backbone}.{key} is not a train setting; known: {', '.join(known)}")

    def for_backbone(self, backbone: str) -> "TrainConfig":
        """The settings ``backbone`` trains with: these, updated by its entry of ``per_model``."""
        return dataclasses.replace(self, per_model={}, **self.per_model.get(backbone, {}))

    def epochs_of(self, stage: str) -> int:
        """Number of epochs of ``stage``."""
        return self.gap_epochs if stage == "gap" else self.epochs


def checkpoint_file(out_dir: str | Path) -> Path:
    """The final model file that :func:`train` writes in ``out_dir``."""
    return Path(out_dir) / MODEL_FILE


# ---------------------------------------------------------------------------------------------
# Checks


def check_dataset_labels(dataset: Dataset, num_classes: int, name: str) -> None:
    """Raise if a label of ``dataset`` (its ``targets``) is outside ``0..num_classes-1``, naming the item."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        samples = getattr(dataset, "samples", None)
        check_labels(targets, None, num_classes, what=f"{name} set",
                     names=None if samples is None else [path for path, *_ in samples])


def check_stage(model: nn.Module, stage: str) -> None:
    """Stage ``gap`` trains a GAP model, stage ``ca`` a CA-Stream model."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if is_ca_model(model) != (stage == "ca"):
        kind = "CA-Stream" if is_ca_model(model) else "GAP"
        raise ValueError(f"stage {stage!r} cannot train a {kind} model; build it with pooling={stage!r}")


# ---------------------------------------------------------------------------------------------
# Recipe


def make_optimizer(cfg: TrainConfig, stage: str, params: list[nn.Parameter], steps_per_epoch: int):
    """The stage's optimizer and a scheduler that steps once per batch."""
    total = cfg.epochs_of(stage) * steps_per_epoch
    if stage == "gap":
        return _adamw_one_cycle(params, cfg.gap_lr, cfg.gap_weight_decay, total, warm_up=0.2)
    if cfg.optimizer == "adamw":
        return _adamw_one_cycle(params, cfg.lr, cfg.weight_decay, total, warm_up=0.1)
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    milestones = [round(total * k / 3) for k in (1, 2)]  # epoch boundaries when 3 divides epochs
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)


def _adamw_one_cycle(params: list[nn.Parameter], lr: float, weight_decay: float, total: int, warm_up: float):
    """AdamW whose lr rises for the first ``warm_up`` fraction of ``total`` steps, then anneals (cosine)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=warm_up)


def trainable_module(model: nn.Module) -> nn.Module:
    """What a stage changes and a checkpoint holds: the stream (CA) or the whole model (GAP)."""
    return model.stream if is_ca_model(model) else model


def freeze_features(model: nn.Module) -> None:
    """A linear probe: only the classifier of a GAP model trains; the features are frozen, weights and
    BatchNorm statistics (call :func:`probe_mode` after every ``model.train()``)."""
    classifier = model.backbone.get_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in classifier.parameters():
        p.requires_grad_(True)


def probe_mode(model: nn.Module) -> None:
    """Evaluation mode for the frozen features of a linear probe, training mode for its classifier."""
    model.eval()
    model.backbone.get_classifier().train()


# ---------------------------------------------------------------------------------------------
# State


def read_state(out_dir: Path, cfg: TrainConfig, stage: str) -> dict[str, Any] | None:
    """The last checkpoint in ``out_dir``, after checking it was written by the same settings."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # written by this module
    except Exception as err:
        raise ValueError(f"cannot read training checkpoint {path}: {err}") from err
    mine = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_FIELDS}
    theirs = {k: v for k, v in state["config"].items() if k not in RUNTIME_FIELDS}
    changed = [f"{k}: {theirs.get(k)!r} -> {v!r}" for k, v in mine.items() if theirs.get(k) != v]
    if state["stage"] != stage or changed:
        what = f"stage {state['stage']!r} -> {stage!r}" if state["stage"] != stage else "; ".join(changed)
        raise ValueError(f"{path} belongs to a run with other settings ({what}); use another output "
                         "folder or delete it to start over")
    return state


def write_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write the checkpoint, then the log it contains, each atomically."""
    atomic_write(out_dir / STATE_FILE, lambda tmp: torch.save(state, tmp))
    text = "".join(json.dumps(r) + "\n" for r in state["log"])
    atomic_write(out_dir / LOG_FILE, lambda tmp: Path(tmp).write_text(text))


# ---------------------------------------------------------------------------------------------
# Training


def epoch_batches(n: int, cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """The global batches of ``epoch``: a permutation of ``range(n)`` seeded by ``cfg.seed + epoch``,
    cut into pieces of ``cfg.batch_size`` (the last one may be shorter)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
    return [order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]


def _loader(dataset: Dataset, cfg: TrainConfig, epoch: int, device: torch.device) -> tuple[DataLoader, list[float]]:
    """This rank's share of each global batch of ``epoch``, and each share's loss weight.

    The weight is ``world size / len(global batch)`` (0 for the stand-in item of an empty share),
    so the ranks' weighted loss sums average to the global batch's mean loss.
    """
    rank, size = distributed.world()
    shares, weights = [], []
    for batch in epoch_batches(len(dataset), cfg, epoch):
        share = distributed.rank_share(batch, rank, size)
        shares.append(share or batch[:1])
        weights.append(size / len(batch) if share else 0.0)
    loader = DataLoader(dataset, batch_sampler=shares, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    return loader, weights


def _result(stage: str, epochs: int, log: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of a run: the last epoch's record and the total time."""
    last = log[-1] if log else {}
    return {"stage": stage, "epochs": epochs, "epochs_done": len(log),
            **{k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in last},
            "time_s": round(sum(r["time_s"] for r in log), 2)}


def train(
    cfg: TrainConfig,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: str | Path,
    stage: str = "gap",
    progress: bool = True,
    until_epoch: int | None = None,
) -> dict[str, Any]:
    """Train ``model`` for one stage, resuming from ``out_dir`` when it holds a checkpoint.

    Args:
        cfg: both stages' settings.
        model: a GAP model (stage ``gap``) or a CA-Stream model on the trained backbone (stage ``ca``).
        train_set, val_set: items ``(image, label, ...)``; labels must fit the model's classifier.
        out_dir: folder of ``state.pt``, ``log.jsonl`` and the final ``model.safetensors``.
        stage: ``"gap"`` or ``"ca"``.
        progress: show tqdm bars (rank 0 only).
        until_epoch: stop after this many epochs, leaving a resumable run (time-limited jobs).

    Returns:
        ``stage``, ``epochs``, ``epochs_done``, last ``train_loss``/``train_acc``/``val_loss``/``val_acc``
        (accuracies as fractions) and the total ``time_s``. ``model`` holds the trained weights.
    """
    check_stage(model, stage)
    classes = num_classes_of(model)
    check_dataset_labels(train_set, classes, "train")
    check_dataset_labels(val_set, classes, "validation")
    device = distributed.setup()
    rank, size = distributed.world()
    out_dir = Path(out_dir)
    epochs = cfg.epochs_of(stage)
    smoothing = cfg.label_smoothing if stage == "ca" else 0.0
    seed_everything(cfg.seed)
    model.to(device)
    probe = stage == "gap" and cfg.gap_trains == "classifier"
    if probe:
        freeze_features(model)
    elif stage == "gap" and size > 1 and device.type == "cuda":
        # BatchNorm statistics over the global batch, as in one process (torch syncs them on GPUs only).
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    part = trainable_module(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = make_optimizer(cfg, stage, params, -(-len(train_set) // cfg.batch_size))
    check_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    state = read_state(out_dir, cfg, stage)
    log: list[dict[str, Any]] = []
    if state is not None:
        part.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        log = state["log"]
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if size > 1
           else model)
    stop = epochs if until_epoch is None else min(epochs, until_epoch)
    for epoch in range(len(log), stop):
        start, lr = time.perf_counter(), opt.param_groups[0]["lr"]
        net.train()
        if probe:
            probe_mode(model)
        sums = torch.zeros(3, device=device)  # loss sum, correct, images
        loader, weights = _loader(train_set, cfg, epoch, device)
        batches = progress_bar(zip(batches_on(loader, device, classes), weights), desc=f"{stage} {epoch + 1}/{epochs}",
                               total=len(loader), disable=not (progress and rank == 0), leave=False)
        for (images, labels, _), weight in batches:
            with autocast(device, cfg.precision):
                logits = net(images)
                loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss_sum * weight).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            real = float(weight > 0)  # a stand-in item counts nowhere
            sums += real * torch.stack([loss_sum.detach(), (logits.argmax(1) == labels).sum(),
                                        torch.tensor(len(labels), device=device)])
        loss_sum, correct, seen = distributed.all_sum(sums).tolist()
        val = predict(model, val_set, cfg.eval_batch_size, cfg.num_workers, precision=cfg.precision)
        log.append({"stage": stage, "epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                    "val_loss": val["loss"].mean().item(), "val_acc": val["correct"].float().mean().item(),
                    "lr": lr, "time_s": round(time.perf_counter() - start, 3)})
        if rank == 0:
            write_state(out_dir, {"stage": stage, "epoch": epoch + 1, "config": asdict(cfg), "model": part.state_dict(),
                                  "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                  "scaler": scaler.state_dict(), "rng": rng_states(), "log": log})
            if progress:
                r = log[-1]
                tqdm.write(f"{stage} epoch {r['epoch']}/{epochs}: loss {r['train_loss']:.4f} "
                           f"train {r['train_acc']:.2%} val {r['val_acc']:.2%} ({r['time_s']:.1f} s)")
        distributed.barrier()
    model.eval()
    if len(log) == epochs and rank == 0 and not checkpoint_file(out_dir).is_file():
        save_model(model, checkpoint_file(out_dir),
                   extra={"stage": stage, "epochs": epochs, "val_acc": log[-1]["val_acc"]})
    distributed.barrier()
    return _result(stage, epochs, log)
