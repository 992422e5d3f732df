"""A profile's experiment: its data splits, the training of every backbone and the evaluation of every
trained model of a :class:`~ca_core.repro.runs.Run`, in its run folder.

The data functions take the :class:`~ca_core.repro.config.Profile` (they need its settings and its
root only); everything that reads or writes the run folder (checkpoints, logs, results) takes the
:class:`~ca_core.repro.runs.Run`, which owns that folder's layout.

With ``pretrained: true`` (the ImageNet profile) the GAP model is timm's pretrained backbone and
only the CA-Stream trains, as in the paper.
"""
from __future__ import annotations

import dataclasses
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .. import data
from ..data import FolderData, Mit67Data, PhotosConfig
from ..distributed import is_main
from ..evaluation import evaluate_model, read_json
from ..models import backbone_of, compose, read_checkpoint
from ..provenance import state_digest
from ..training import checkpoint_file, train
from ..utils import default_device, seed_everything, set_aside, write_json
from .config import Profile
from .keys import evaluation_key, evaluation_settings, stage_key, weights_digest
from .runs import PROVENANCE_FILE, Run, read_log

SHAPES_ROOT = Path("data/shapes")
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------
# Data


def datasets(profile: Profile, splits: tuple[str, ...] = SPLITS, shapes_root: Path | None = None) -> dict[str, Dataset]:
    """The profile's data splits, loading only those in ``splits`` (the training split is the large one);
    relative data paths, and the generated data's cache (``shapes_root``, default ``data/shapes``), lie
    under the profile's root."""
    spec, at, inputs = profile.data, profile.path, profile.input_config
    if isinstance(spec, PhotosConfig):  # unlabelled: one set of photos, whatever the split
        folder = None if spec.folder is None else str(at(Path(spec.folder)))
        photos = data.PhotosDataset(dataclasses.replace(spec, folder=folder), inputs)
        return {split: photos for split in splits}
    if isinstance(spec, Mit67Data):
        sets = data.mit67_splits(at(spec.root), spec.image_size, spec.resize)
        return {split: sets[split] for split in splits}
    if not isinstance(spec, FolderData):
        root = at(shapes_root or SHAPES_ROOT)
        return {split: data.shapes_dataset(spec, split, root, inputs["mean"], inputs["std"]) for split in splits}
    val_list = None if spec.val_list is None else at(spec.val_list)
    if "train" in splits:
        sets = data.imagenet_splits(at(spec.train_root), at(spec.val_root), val_list, spec.image_size, spec.resize,
                                    spec.num_classes)
        return {split: sets[split] for split in splits}
    val = data.imagenet_val(at(spec.val_root), val_list, spec.image_size, spec.resize, spec.num_classes)
    return {split: val for split in splits}


def eval_split(profile: Profile) -> Dataset:
    """The profile's test split alone: the images evaluated and shown."""
    return datasets(profile, ("test",))["test"]


def class_names(dataset: Dataset, n: int) -> list[str]:
    """A display name per class index: the dataset's ``classes`` when it has them, else the indices."""
    names = list(getattr(dataset, "classes", None) or [])
    return names if len(names) == n else [str(i) for i in range(n)]


def rgb(image: torch.Tensor, dataset: Dataset | None = None) -> np.ndarray:
    """A normalised (3, H, W) image of ``dataset`` (its ``mean`` and ``std``; default ImageNet's) as an
    (H, W, 3) array in [0, 1] for display."""
    norm = {k: getattr(dataset, k) for k in ("mean", "std") if hasattr(dataset, k)}
    return data.denormalize(image.detach().cpu(), **norm).clamp(0, 1).permute(1, 2, 0).numpy()


def describe_data(profile: Profile, sets: dict[str, Dataset]) -> str:
    """A Markdown paragraph: the data kind, split sizes, classes and image size."""
    sizes = ", ".join(f"{split} {len(ds)}" for split, ds in sets.items())
    names = class_names(sets["test"], profile.num_classes)
    x = sets["test"][0][0]
    return (f"**{profile.data_kind}** data, {len(names)} classes ({', '.join(names[:12])}"
            f"{', …' if len(names) > 12 else ''}); images {x.shape[-1]}×{x.shape[-2]} px; "
            f"split sizes: {sizes}.")


# ---------------------------------------------------------------------------------------------
# Models and training


def load_trained(run: Run, backbone: str, pooling: str, seed: int | None = None,
                 device: torch.device | None = None, ablation: str | None = None) -> nn.Module:
    """The trained GAP or CA model of a backbone (or the CA stream of a labelled ``ablation``), in
    eval mode on ``device`` (default: the best available)."""
    profile = run.profile
    gap_checkpoint = run.checkpoint_path(backbone, "gap") if profile.trains_gap(backbone) else None
    model = compose(backbone, pooling, profile.num_classes, profile.pretrained_for(backbone), gap_checkpoint,
                    run.checkpoint_path(backbone, "ca", seed, ablation) if pooling == "ca" else None)
    return model.to(device or default_device()).eval()


def initial_model(run: Run, backbone: str, stage: str, seed: int | None = None) -> nn.Module:
    """The model a training stage starts from: seeded as :func:`train_all` seeds it, on the CPU.

    For ``stage="ca"`` that is the trained GAP backbone with a freshly initialised stream.
    """
    profile = run.profile
    seed_everything(profile.train.for_backbone(backbone).seed if seed is None else seed)
    return compose(backbone, stage, profile.num_classes, profile.pretrained_for(backbone),
                   start_checkpoint(run, backbone, stage))


def start_checkpoint(run: Run, backbone: str, stage: str) -> Path | None:
    """The trained GAP checkpoint a stage starts from: ``None`` for the GAP stage itself and for a
    stream on pretrained weights used as they are (the model then starts from those)."""
    return run.checkpoint_path(backbone, "gap") if stage == "ca" and run.profile.trains_gap(backbone) else None


def train_all(run: Run, progress: bool = True) -> list[dict[str, Any]]:
    """Train GAP (unless pretrained and used as is) then CA for every backbone; rows of final validation accuracy.

    A profile with ``models_from`` trains nothing: its rows describe the other profile's models.
    """
    profile = run.profile
    if profile.models_from:
        return trained_elsewhere(run)
    sets = datasets(profile, ("train", "val"))
    rows = []
    for backbone, stage, seed in run.trained_models():
        if stage == "gap" and not profile.trains_gap(backbone):
            if run.log_path(backbone, stage).is_file():  # local weights with their training log
                rows.append(_logged_row(run, backbone, stage, seed))
            continue
        cfg = profile.train.for_backbone(backbone)
        cfg = cfg if seed is None else dataclasses.replace(cfg, seed=seed)
        rows.append(_train_stage(run, sets, backbone, stage, cfg, seed, None, progress))
    for backbone, name in run.ablations():
        cfg = dataclasses.replace(profile.train.for_backbone(backbone), seed=profile.seeds[0],
                                  **profile.ablations[name].train)
        rows.append(_train_stage(run, sets, backbone, "ca", cfg, None, name, progress))
    return rows


def _train_stage(run: Run, sets: dict[str, Dataset], backbone: str, stage: str, cfg: Any,
                 seed: int | None, ablation: str | None, progress: bool) -> dict[str, Any]:
    """Train (or resume, or adopt) one stage; its row of :func:`train_all`. A stage kept stale on
    request (``keep_stale``) is not touched: its row comes from its log."""
    model = initial_model(run, backbone, stage, cfg.seed)  # seeded, whatever ran before in this process
    folder = run.stage_dir(backbone, stage, seed, ablation)
    name = folder.relative_to(run.train_folder).as_posix()
    key = stage_key(run.profile, backbone, stage, cfg, model, start_checkpoint(run, backbone, stage))
    kept = prepare_stage(folder, key,
                         keep=name in run.profile.keep_stale,
                         backbone=state_digest(backbone_of(model).state_dict()) if stage == "ca" else None)
    label = stage.upper() if ablation is None else f"CA (ablation: {ablation})"
    label += " (linear probe)" if stage == "gap" and cfg.gap_trains == "classifier" else ""
    if kept:
        return {**_logged_row(run, backbone, stage, seed, ablation), "Stage": f"{label} (kept stale)"}
    result = train(cfg, model, sets["train"], sets["val"], folder, stage=stage, progress=progress)
    return {"Backbone": backbone, "Stage": label, "Seed": cfg.seed, **_result_cells(result)}


def trained_elsewhere(run: Run) -> list[dict[str, Any]]:
    """The rows of :func:`train_all` for the models of ``profile.models_from``, from their training logs;
    a :class:`FileNotFoundError` naming the command to run when one of them is not trained yet."""
    profile, rows = run.profile, []
    for backbone, stage, seed in run.trained_models():
        if stage == "gap" and not profile.trains_gap(backbone):
            continue
        path = run.checkpoint_path(backbone, stage, seed)
        if not path.is_file():
            raise FileNotFoundError(
                f"profile {profile.name} evaluates the models of profile {profile.models_from} (models_from), but "
                f"{path} does not exist: train them first (python -m ca_core.pipeline --profile {profile.models_from})")
        rows.append(_logged_row(run, backbone, stage, seed))
    return rows


def _logged_row(run: Run, backbone: str, stage: str, seed: int | None,
                ablation: str | None = None) -> dict[str, Any]:
    """A row of :func:`train_all` for a stage trained earlier, from its ``log.jsonl``."""
    profile = run.profile
    log = read_log(run.log_path(backbone, stage, seed, ablation))
    last = log[-1] if log else {}
    result = {**last, "epochs_done": len(log), "time_s": round(sum(r["time_s"] for r in log), 2)}
    weights = profile.pretrained_for(backbone) if stage == "gap" and not profile.trains_gap(backbone) else None
    name = stage.upper() + (f" (pretrained: {profile.shown(weights.parent)})" if isinstance(weights, Path) else "")
    return {"Backbone": backbone, "Stage": name,
            "Seed": seed if seed is not None else profile.train.for_backbone(backbone).seed, **_result_cells(result)}


def _result_cells(result: dict[str, Any]) -> dict[str, Any]:
    """A training result (:func:`ca_core.training.train`) as table cells, accuracies in percent."""
    percent = {k: 100 * result[k] for k in ("train_acc", "val_acc") if k in result}
    return {"Epochs": result.get("epochs_done"), "Train loss": result.get("train_loss"),
            "Train acc. %": percent.get("train_acc"), "Val. acc. %": percent.get("val_acc"),
            "Time (s)": result.get("time_s")}


# ---------------------------------------------------------------------------------------------
# Evaluation


def prepare_stage(folder: Path, key: str, keep: bool = False, backbone: str | None = None) -> bool:
    """Keep ``folder`` (a finished or resumable stage) only if it was made for ``key``; otherwise
    move it aside (:func:`ca_core.utils.set_aside`, never deleted) so the stage trains again under
    the current code and settings. Return whether a finished stage made for another key is kept.

    ``keep`` (the profile's ``keep_stale``): a finished stage made for another key is kept whatever
    changed, with a warning, and its record says so (``kept_stale``), so the book can mark what
    depends on it; the caller then leaves it untouched. Not a CA stream whose frozen backbone
    differs from ``backbone`` (the digest of the one it would now run on): it would be composed onto
    weights it never saw, so it is moved aside and trained again, with a warning saying why.
    """
    record = folder / PROVENANCE_FILE
    if folder.exists():
        made = read_json(record) or {}
        if made.get("key") == key:
            if made.pop("kept_stale", None):  # the code is back to what made it
                write_json(record, made)
            return False
        finished = made.get("key") and checkpoint_file(folder).is_file()
        if keep and finished and _trained_on(folder, backbone):
            warnings.warn(f"{folder} was trained by other code or settings: kept, as keep_stale asks; "
                          "the book marks the numbers that depend on it", stacklevel=2)
            write_json(record, {**made, "kept_stale": {"current_key": key}})
            return True
        why = ("has no readable record of what made it" if not made.get("key")
               else "is a stream trained on other backbone weights, which keep_stale cannot keep" if keep and finished
               else "was trained by other code or settings")
        aside = set_aside(folder)
        warnings.warn(f"{folder} {why}: moved aside to {aside} (nothing deleted) and trained again; "
                      f"discard it with `rm -r {aside}`, or move it back to reuse it under `keep_stale`", stacklevel=2)
    write_json(record, {"key": key, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return False


def _trained_on(folder: Path, backbone: str | None) -> bool:
    """Whether the stage's checkpoint was trained on the backbone of digest ``backbone`` (``None``:
    a GAP stage, nothing to check; a stream that records no digest cannot be checked and passes)."""
    return backbone is None or read_checkpoint(checkpoint_file(folder))[1].get("backbone_digest") in (None, backbone)


def evaluate_all(run: Run, progress: bool = True) -> Path:
    """Evaluate every trained model (backbone x pooling x seed, then the ablations) of ``run`` on its
    test split, every method its pooling has; return the run's eval folder."""
    profile = run.profile
    cfg = profile.eval
    sets = datasets(profile, ("val", "test"))
    test = sets["test"]
    for backbone, pooling, seed in run.trained_models():
        model = load_trained(run, backbone, pooling, seed)
        key = evaluation_key(profile, run.checkpoints(backbone, pooling, seed),
                             weights_digest(profile, backbone, model))
        folder = run.model_dir(backbone, pooling, seed)
        evaluate_model(model, pooling, test, cfg, folder, key, progress, label=f"{backbone}/{folder.name}",
                       extra_seed=seed not in (None, profile.seeds[0]), calibration_set=sets["val"])
    for backbone, name in run.ablations():
        model = load_trained(run, backbone, "ca", ablation=name)
        key = evaluation_key(profile, run.checkpoints(backbone, "ca", ablation=name),
                             weights_digest(profile, backbone, model))
        evaluate_model(model, "ca", test, cfg, run.model_dir(backbone, "ca", ablation=name), key, progress,
                       label=f"{backbone}/ca-{name}", extra_seed=True, calibration_set=sets["val"])
    if is_main():
        write_json(run.eval_folder / "settings.json", evaluation_settings(profile))
    return run.eval_folder
