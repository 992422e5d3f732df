"""Image transforms for real data: evaluation from the backbone's timm data config, and the
paper's training augmentation (``ftorres11/CA_Stream:lib/data.py`` ``imagenet_trainer``)."""
from __future__ import annotations

from typing import Any, Callable

from timm.data import create_transform, resolve_data_config
from torchvision import transforms as T

from ..models import data_config_of  # noqa: F401  (re-exported: the data side of a model)


def eval_transform(data_config: dict[str, Any]) -> Callable:
    """timm's evaluation transform: resize to ``size / crop_pct``, centre crop, tensor, normalise."""
    return create_transform(**data_config, is_training=False)


def paper_train_transform(data_config: dict[str, Any]) -> Callable:
    """The paper's augmentation at the config's input size.

    Resize to a square (aspect ratio not kept), random-resized crop (default scale 0.08-1),
    horizontal flip, tensor, brightness jitter 0.4, normalisation with the config's mean/std.
    """
    size = data_config["input_size"][-1]
    return T.Compose([
        T.Resize((size, size)),
        T.RandomResizedCrop(size),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.ColorJitter(brightness=0.4),
        T.Normalize(data_config["mean"], data_config["std"]),
    ])


def imagenet_data_config(image_size: int = 224, resize: int = 256) -> dict[str, Any]:
    """The data config of an ImageNet backbone evaluated at ``image_size`` after resizing to ``resize``."""
    return resolve_data_config({"input_size": (3, image_size, image_size), "crop_pct": image_size / resize,
                                "interpolation": "bilinear"})
