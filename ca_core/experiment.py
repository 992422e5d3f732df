"""A profile's experiment: its datasets, its models and their checkpoints, the training of every
backbone, and the views of the results that the book's figures and explorer show.

Layout under ``runs/<profile>/``: ``train/<backbone>/<stage>/`` (checkpoints and ``log.jsonl`` of
:func:`ca_core.train.train`, stage ``gap`` then ``ca``) and ``eval/`` (:mod:`ca_core.evaluation`).
With ``pretrained: true`` (the ImageNet profile) the GAP model is timm's pretrained backbone and
only the CA-Stream trains, as in the paper.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from . import paper
from .evaluation import images_for, load_results, methods_for
from .models import build_model, default_device, load_model

SHAPES_ROOT = Path("data/shapes")
STAGES = ("gap", "ca")
SPLITS = ("train", "val", "test")
CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")


# ---------------------------------------------------------------------------------------------
# Data


def datasets(profile, splits: tuple[str, ...] = SPLITS) -> dict[str, Dataset]:
    """The profile's data splits, loading only those in ``splits`` (the training split is the large one)."""
    from . import data

    if profile.data_kind == "shapes":
        return {split: data.shapes_dataset(profile.data, split, root=SHAPES_ROOT) for split in splits}
    spec = profile.data
    if "train" in splits:
        sets = data.imagenet_splits(spec.train_root, spec.val_root, spec.val_list, spec.image_size, spec.resize,
                                    spec.num_classes)
        return {split: sets[split] for split in splits}
    val = data.imagenet_val(spec.val_root, spec.val_list, spec.image_size, spec.resize, spec.num_classes)
    return {split: val for split in splits}


def eval_split(profile) -> Dataset:
    """The profile's test split alone: the images evaluated and shown."""
    return datasets(profile, ("test",))["test"]


def class_names(dataset: Dataset, n: int) -> list[str]:
    """A display name per class index: the dataset's ``classes`` when it has them, else the indices."""
    names = list(getattr(dataset, "classes", None) or [])
    return names if len(names) == n else [str(i) for i in range(n)]


def num_classes(profile) -> int:
    """Classes of the profile's data."""
    return profile.data.num_classes


def rgb(profile, image: torch.Tensor) -> np.ndarray:
    """A normalised (3, H, W) image as an (H, W, 3) array in [0, 1] for display."""
    from .data import denormalize

    return denormalize(image.detach().cpu()).clamp(0, 1).permute(1, 2, 0).numpy()


def describe_data(profile, sets: dict[str, Dataset]) -> str:
    """A Markdown paragraph: the data kind, split sizes, classes and image size."""
    sizes = ", ".join(f"{split} {len(ds)}" for split, ds in sets.items())
    names = class_names(sets["test"], num_classes(profile))
    x = sets["test"][0][0]
    return (f"**{profile.data_kind}** data, {len(names)} classes ({', '.join(names[:12])}"
            f"{', …' if len(names) > 12 else ''}); images {x.shape[-1]}×{x.shape[-2]} px; "
            f"split sizes: {sizes}.")


# ---------------------------------------------------------------------------------------------
# Models and training


def stage_dir(profile, backbone: str, stage: str) -> Path:
    """``runs/<profile>/train/<backbone>/<stage>``."""
    return profile.run_dir / "train" / backbone / stage


def checkpoint_path(profile, backbone: str, stage: str) -> Path:
    """The checkpoint :func:`ca_core.train.train` leaves for a stage."""
    from .train import checkpoint_file

    return checkpoint_file(stage_dir(profile, backbone, stage))


def checkpoints(profile, backbone: str, pooling: str) -> list[Path]:
    """The checkpoint files a trained model of this pooling is made of (backbone first)."""
    trained_gap = [] if profile.pretrained else [checkpoint_path(profile, backbone, "gap")]
    return trained_gap + ([checkpoint_path(profile, backbone, "ca")] if pooling == "ca" else [])


def build(profile, backbone: str, pooling: str) -> nn.Module:
    """An untrained model of the profile (pretrained backbone weights when the profile says so)."""
    return build_model(backbone, pooling=pooling, num_classes=num_classes(profile), pretrained=profile.pretrained)


def load_trained(profile, backbone: str, pooling: str, device: torch.device | None = None) -> nn.Module:
    """The trained GAP or CA model of a backbone, in eval mode on ``device`` (default: the best available)."""
    gap = build(profile, backbone, "gap")
    if not profile.pretrained:
        load_model(gap, checkpoint_path(profile, backbone, "gap"))
    model = gap if pooling == "gap" else build_model(gap, "ca")
    if pooling == "ca":
        load_model(model, checkpoint_path(profile, backbone, "ca"))
    return model.to(device or default_device()).eval()


def train_all(profile, progress: bool = True) -> list[dict[str, Any]]:
    """Train GAP (unless pretrained) then CA for every backbone; rows of final validation accuracy."""
    from .train import seed_everything, train

    sets = datasets(profile, ("train", "val"))
    rows = []
    for backbone in profile.models:
        cfg = profile.train.for_backbone(backbone)
        for stage in STAGES:
            if stage == "gap" and profile.pretrained:
                continue
            seed_everything(cfg.seed)  # the initial weights, whatever ran before in this process
            model = build(profile, backbone, "gap") if stage == "gap" else build_model(
                load_trained(profile, backbone, "gap"), "ca")
            result = train(cfg, model, sets["train"], sets["val"], stage_dir(profile, backbone, stage),
                           stage=stage, progress=progress)
            rows.append({"Backbone": backbone, "Stage": stage.upper(), **_result_cells(result)})
    return rows


def _result_cells(result: dict[str, Any]) -> dict[str, Any]:
    """A training result (:func:`ca_core.train.train`) as table cells, accuracies in percent."""
    percent = {k: 100 * result[k] for k in ("train_acc", "val_acc") if k in result}
    return {"Epochs": result.get("epochs_done"), "Train loss": result.get("train_loss"),
            "Train acc. %": percent.get("train_acc"), "Val. acc. %": percent.get("val_acc"),
            "Time (s)": result.get("time_s")}


def train_logs(profile) -> dict[str, list[dict[str, Any]]]:
    """The ``log.jsonl`` records of every backbone and stage, labelled ``backbone · STAGE``."""
    logs = {}
    for backbone in profile.models:
        for stage in STAGES:
            path = stage_dir(profile, backbone, stage) / "log.jsonl"
            if path.is_file():
                logs[f"{backbone} · {stage.upper()}"] = [json.loads(line) for line in path.read_text().splitlines() if line]
    return logs


def curve_keys(logs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The losses and accuracies that the logs record per epoch, in :data:`CURVES` order."""
    return [k for k in CURVES if any(k in r for records in logs.values() for r in records)]


# ---------------------------------------------------------------------------------------------
# Views of the results for the figures and the explorer


def mean_curves(profile, backbone: str) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Insertion/deletion curves per (method label, pooling) of one backbone."""
    return {
        (paper.METHOD_LABELS[m], p): load_results(profile.run_dir, backbone, p, m)
        for m in profile.eval.methods for p in STAGES if m in methods_for(p, profile.eval)
    }


def shown_images(profile) -> tuple[list[int], list[np.ndarray], list[str]]:
    """Indices, RGB arrays and titles of the first ``figure_images`` evaluated test images."""
    test = eval_split(profile)
    names = class_names(test, num_classes(profile))
    n = min(profile.eval.figure_images, *(images_for(m, profile.eval, len(test)) for m in profile.eval.methods))
    items = [test[i] for i in range(n)]
    return list(range(n)), [rgb(profile, x) for x, *_ in items], [f"#{i} {names[y]}" for i, (_, y, *_) in enumerate(items)]


def saliency_columns(profile, backbone: str) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], list[str]]:
    """The qualitative grid of one backbone: images, and per column "method · pooling" their saved maps."""
    idx, rgbs, titles = shown_images(profile)
    columns = {}
    for method in profile.eval.methods:
        for pooling in STAGES:
            if method in methods_for(pooling, profile.eval):
                maps = load_results(profile.run_dir, backbone, pooling, method)["maps"]
                columns[f"{paper.METHOD_LABELS[method]}\n{pooling.upper()}"] = [maps[i].astype(np.float32) for i in idx]
    return rgbs, columns, titles


@torch.no_grad()
def depth_attention(profile, backbone: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Images, every CA block's attention (N, h, w) for them, and the blocks' tap names."""
    idx, rgbs, _ = shown_images(profile)
    model = load_trained(profile, backbone, "ca")
    test = eval_split(profile)
    x = torch.stack([test[i][0] for i in idx]).to(next(model.parameters()).device)
    attentions = [a.cpu().numpy() for a in model.forward_attention(x)]
    return rgbs, attentions, [f"block {k}\nafter {t}" for k, t in enumerate(model.taps, 1)]


def explorer_views(profile) -> tuple[dict[tuple[str, ...], bytes], dict[tuple[str, ...], str], list[str]]:
    """Pre-rendered explorer images and score captions, keyed (image, backbone, pooling, method)."""
    from .figures import explorer_image

    idx, rgbs, titles = shown_images(profile)
    images, captions = {}, {}
    for backbone in profile.models:
        for pooling in reversed(STAGES):  # CA first: the explorer opens on the stream's raw attention
            for method in profile.eval.methods:
                res = (load_results(profile.run_dir, backbone, pooling, method)
                       if method in methods_for(pooling, profile.eval) else None)
                for i, rgb_i, title in zip(idx, rgbs, titles):
                    key = (title, backbone, pooling.upper(), paper.METHOD_LABELS[method])
                    curves = None if res is None else {k: res[f"{k}_curve"][i] for k in ("insertion", "deletion")}
                    images[key] = explorer_image(rgb_i, None if res is None else res["maps"][i].astype(np.float32),
                                                 curves, f"{key[3]} · {key[2]}")
                    captions[key] = _scores_caption(res, i)
    return images, captions, ["image", "backbone", "pooling", "method"]


def _scores_caption(res: dict[str, np.ndarray] | None, i: int) -> str:
    """HTML with the image's scores (percent) for one map."""
    if res is None:
        return "<i>Raw attention exists only for the CA-Stream: choose pooling CA.</i>"
    keys = [k for k in (*paper.METRICS, "pointing", "energy") if k in res]
    labels = {**paper.METRIC_LABELS, "pointing": "pointing↑", "energy": "energy↑"}
    return " · ".join(f"{labels[k]} {100 * float(res[k][i]):.1f}" for k in keys)
