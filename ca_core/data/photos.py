"""Natural photos to explain: scikit-image's sample photos (shipped in its wheel, read offline) and
optionally a folder of one's own images.

The photos have no labels: items are ``(image, -1)``, and their maps explain the model's own
prediction (``explain(..., targets=None)``). The normalisation and interpolation are the model's
(its timm data config: mean = std = 0.5 for the real EfficientNet-Lite0, ImageNet's for the shapes
models); the geometry is the :class:`PhotosConfig`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timm.data import create_transform
from torch.utils.data import Dataset

from ..utils import FieldError
from .folders import IMAGE_EXTENSIONS, read_image

SAMPLE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left")
SKIMAGE = "scikit-image==0.26.0"
NO_LABEL = -1


@dataclass(frozen=True)
class PhotosConfig:
    """Which photos, and how they become model inputs.

    Attributes:
        names: scikit-image sample images, by file name without extension (the files in
            ``skimage.data.data_dir``: the RGB photos chelsea, coffee, astronaut, rocket,
            motorcycle_left, motorcycle_right, hubble_deep_field, retina; gray ones become RGB).
        folder: a folder of one's own images (any of ``IMAGE_EXTENSIONS``, sorted by name), read after
            the samples; ``None`` for none.
        image_size: side of the square model input, in pixels.
        resize: ``None`` squashes the whole photo to the square (the aspect ratio is not kept), so
            that a map covers every pixel; a side in pixels resizes the shorter side to it and crops
            the centre, as ImageNet evaluation does (256 for 224).
    """

    names: tuple[str, ...] = SAMPLE_PHOTOS
    folder: str | None = None
    image_size: int = 224
    resize: int | None = None

    def __post_init__(self) -> None:
        if not self.names and self.folder is None:
            raise ValueError("no photos: give sample names or a folder")
        if self.image_size < 16:
            raise FieldError("image_size", f"image_size must be >= 16 pixels, got {self.image_size}")
        if self.resize is not None and self.resize < self.image_size:
            raise FieldError("resize",
                             f"resize ({self.resize}) must be at least image_size ({self.image_size}), "
                             f"or None to squash")


def sample_photo(name: str) -> Path:
    """The file of scikit-image's sample image ``name`` (read from its installed wheel, never downloaded)."""
    try:
        import skimage.data
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"the sample photos come with scikit-image: pip install {SKIMAGE}") from err
    files = {f.stem: f for f in Path(skimage.data.data_dir).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS}
    if name not in files:
        raise ValueError(f"no scikit-image sample photo {name!r}; the installed ones: {', '.join(sorted(files))}")
    return files[name]


def folder_photos(folder: str | Path) -> list[Path]:
    """The images of ``folder`` (not its sub-folders), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"photo folder {folder} has no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return files


class PhotosDataset(Dataset):
    """Unlabelled photos as model inputs: items are ``(image (3, S, S), -1)``.

    Args:
        config: which photos and their size.
        data_config: the model's timm data config (``ca_core.models.data_config_of(model)``), whose
            ``mean``, ``std`` and ``interpolation`` are used.

    Attributes:
        names: a display name per photo (the sample's name or the file's stem).
        paths: the image files, in order.
        mean, std: the normalisation, to show the images (:func:`ca_core.data.denormalize`).
    """

    def __init__(self, config: PhotosConfig, data_config: dict[str, Any]) -> None:
        self.paths = [sample_photo(n) for n in config.names] + (folder_photos(config.folder) if config.folder else [])
        self.names = [p.stem for p in self.paths]
        self.mean, self.std = tuple(data_config["mean"]), tuple(data_config["std"])
        size = config.image_size
        self.transform = create_transform(
            input_size=(3, size, size), interpolation=data_config["interpolation"], mean=data_config["mean"],
            std=data_config["std"], crop_pct=1.0 if config.resize is None else size / config.resize,
            crop_mode="squash" if config.resize is None else "center")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_image(self.paths[i])), NO_LABEL
