"""Real image data: class-folder trees (ImageNet train/val), ``path,label`` list files (the form of
the paper's ImageNet-val list) and MIT Indoor 67 with its official split files; and the settings
that describe such data (:class:`FolderData`, :class:`Mit67Data`: the ``data`` section of a profile).

Every loader checks its input up front and names what is wrong: a missing root or list file, a
class folder without images, a list line that does not parse, a listed file that does not exist,
a label outside the model's classes. A corrupt image fails when it is read, naming the file,
unless ``skip_corrupt=True``: then every image is decoded once at construction, the unreadable
ones are left out, counted in ``skipped`` and reported with a warning.
"""
from __future__ import annotations

import csv
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image
from torch.utils.data import Dataset

from ..utils import FieldError, check_labels
from .transforms import eval_transform, imagenet_data_config, paper_train_transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MIT67_SPLITS = {"train": "TrainImages.txt", "test": "TestImages.txt"}


def read_image(path: str | Path) -> Image.Image:
    """Decode an image file to RGB, or raise ``ValueError`` naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err} (skip_corrupt=True leaves unreadable images out)") from err


def _readable(path: str) -> bool:
    try:
        read_image(path)
        return True
    except ValueError:
        return False


class ImageFiles(Dataset):
    """Labelled image files; items are ``(transform(image), label)``.

    Attributes:
        samples: ``(path, label)`` pairs, in order.
        targets: the labels.
        classes: class names, indexed by label.
        skipped: paths left out as unreadable (only with ``skip_corrupt=True``).
    """

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform: Callable | None = None,
                 skip_corrupt: bool = False, threads: int = 8) -> None:
        self.skipped: list[str] = []
        if skip_corrupt:
            with ThreadPoolExecutor(threads) as pool:
                ok = list(pool.map(_readable, [p for p, _ in samples]))
            self.skipped = [p for (p, _), good in zip(samples, ok) if not good]
            samples = [s for s, good in zip(samples, ok) if good]
            if self.skipped:
                warnings.warn(f"skipped {len(self.skipped)} unreadable image(s), e.g. {self.skipped[0]}", stacklevel=2)
        self.samples, self.classes, self.transform = samples, classes, transform
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        image = read_image(path)
        return (self.transform(image) if self.transform else image), label


def _existing_dir(root: str | Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} not found: {root}")
    return root


def _check_labels(samples: list[tuple[str, int]], num_classes: int | None, source: str) -> None:
    check_labels([label for _, label in samples], None, num_classes, what=source, names=[path for path, _ in samples])


def image_folder(root: str | Path, transform: Callable | None = None, skip_corrupt: bool = False,
                 num_classes: int | None = None) -> ImageFiles:
    """An ImageNet-style tree ``root/<class>/<image>``; classes in sorted order are labels 0, 1, ..."""
    root = _existing_dir(root, "image folder root")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders")
    samples, empty = [], []
    for label, name in enumerate(classes):
        files = sorted(str(f) for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        empty += [] if files else [name]
        samples += [(f, label) for f in files]
    if empty:
        raise ValueError(f"image folder {root}: class folder(s) without images: {', '.join(empty)} "
                         f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    if num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"image folder {root} has {len(classes)} classes but the model has {num_classes}")
    return ImageFiles(samples, classes, transform, skip_corrupt)


def read_list(list_file: str | Path, root: str | Path | None = None) -> list[tuple[str, int]]:
    """``(path, label)`` pairs of a ``path,label`` list (an optional header line is allowed).

    Paths are relative to ``root`` (default: the list file's folder); every listed file must exist.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"list file not found: {list_file}")
    root = _existing_dir(root, "image root") if root is not None else list_file.parent
    samples = []
    with list_file.open(newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ValueError(f"{list_file}:{line_no}: expected 'path,label', got {','.join(row)!r}")
            path, label = row[0].strip(), row[1].strip()
            if not label.lstrip("-").isdigit():
                if line_no == 1:
                    continue  # header
                raise ValueError(f"{list_file}:{line_no}: label {label!r} is not an integer")
            full = root / path
            if not full.is_file():
                raise FileNotFoundError(f"{list_file}:{line_no}: image {full} not found")
            samples.append((str(full), int(label)))
    if not samples:
        raise ValueError(f"list file {list_file} lists no images")
    return samples


def list_dataset(list_file: str | Path, root: str | Path | None = None, transform: Callable | None = None,
                 skip_corrupt: bool = False, num_classes: int | None = None) -> ImageFiles:
    """Images listed as ``path,label`` lines (e.g. the paper's ImageNet-val list)."""
    samples = read_list(list_file, root)
    _check_labels(samples, num_classes, str(list_file))
    classes = [str(i) for i in range(num_classes or max(label for _, label in samples) + 1)]
    return ImageFiles(samples, classes, transform, skip_corrupt)


def mit67(root: str | Path, split: str = "test", transform: Callable | None = None,
          skip_corrupt: bool = False) -> ImageFiles:
    """MIT Indoor 67: ``root/Images/<class>/<file>`` and the official ``TrainImages.txt``/``TestImages.txt``.

    Each split-file line is ``<class>/<file>``; classes are the sorted folders of ``root/Images``.
    """
    if split not in MIT67_SPLITS:
        raise ValueError(f"MIT67 split must be one of {tuple(MIT67_SPLITS)}, got {split!r}")
    images = _existing_dir(Path(root) / "Images", "MIT67 image folder")
    classes = sorted(d.name for d in images.iterdir() if d.is_dir())
    index = {name: i for i, name in enumerate(classes)}
    split_file = Path(root) / MIT67_SPLITS[split]
    if not split_file.is_file():
        raise FileNotFoundError(f"MIT67 split file not found: {split_file}")
    samples = []
    for line_no, line in enumerate(split_file.read_text().splitlines(), start=1):
        rel = line.strip()
        if not rel:
            continue
        name = rel.split("/")[0]
        if name not in index:
            raise ValueError(f"{split_file}:{line_no}: class {name!r} has no folder in {images}")
        if not (images / rel).is_file():
            raise FileNotFoundError(f"{split_file}:{line_no}: image {images / rel} not found")
        samples.append((str(images / rel), index[name]))
    if not samples:
        raise ValueError(f"MIT67 split file {split_file} lists no images")
    return ImageFiles(samples, classes, transform, skip_corrupt)


def mit67_splits(root: str | Path, image_size: int = 224, resize: int = 256,
                 skip_corrupt: bool = False) -> dict[str, ImageFiles]:
    """MIT Indoor 67 as ``train`` (the official training list, the paper's augmentation) and
    ``val``/``test`` (the official test list, resize + centre crop), as the paper uses it."""
    cfg = imagenet_data_config(image_size, resize)
    test = mit67(root, "test", eval_transform(cfg), skip_corrupt)
    return {"train": mit67(root, "train", paper_train_transform(cfg), skip_corrupt), "val": test, "test": test}


def imagenet_splits(train_root: str | Path, val_root: str | Path, val_list: str | Path | None, image_size: int = 224,
                    resize: int = 256, num_classes: int | None = None,
                    skip_corrupt: bool = False) -> dict[str, ImageFiles]:
    """ImageNet-style data as ``train`` (class folders, the paper's augmentation) and ``val``/``test``
    (the ``path,label`` list, or class folders when ``val_list`` is ``None``; resize + centre crop).
    ImageNet has no labelled test set: as in the paper, results are reported on the validation
    images, so ``test`` is the same data set as ``val``."""
    cfg = imagenet_data_config(image_size, resize)
    train_set = image_folder(train_root, paper_train_transform(cfg), skip_corrupt, num_classes)
    val_set = imagenet_val(val_root, val_list, image_size, resize, num_classes or len(train_set.classes), skip_corrupt)
    if val_list is None and val_set.classes != train_set.classes:
        only = sorted(set(train_set.classes) ^ set(val_set.classes))
        raise ValueError(f"class folders differ between {train_root} and {val_root}: {', '.join(only[:10])} "
                         "are in one only (labels follow the sorted folder names, so both need the same classes)")
    return {"train": train_set, "val": val_set, "test": val_set}


def imagenet_val(val_root: str | Path, val_list: str | Path | None, image_size: int, resize: int, num_classes: int,
                 skip_corrupt: bool = False) -> ImageFiles:
    """The ``val``/``test`` split of :func:`imagenet_splits` alone, without scanning the training folders."""
    transform = eval_transform(imagenet_data_config(image_size, resize))
    if val_list is None:
        return image_folder(val_root, transform, skip_corrupt, num_classes)
    return list_dataset(val_list, val_root, transform, skip_corrupt, num_classes)


# ---------------------------------------------------------------------------------------------
# Settings of real data


@dataclass
class FolderData:
    """Real images: a training tree of class folders, and validation images either listed in
    ``val_list`` (``path,label`` lines, paths relative to ``val_root``: ImageNet's validation list)
    or, without a list, in class folders under ``val_root`` with the training set's classes
    (:func:`imagenet_splits`).

    The paper evaluates on the 50,000 ILSVRC-2012 validation images of its list at 224 px. These
    data have no object masks: the localisation parts of the book say so and are left out.
    """

    train_root: Path
    val_root: Path
    val_list: Path | None = None
    num_classes: int = 1000
    image_size: int = 224
    resize: int = 256

    def __post_init__(self) -> None:
        _check_sizes(self)

    def paths(self) -> dict[str, Path]:
        """The data paths this spec needs, by key name."""
        paths = {"train_root": self.train_root, "val_root": self.val_root, "val_list": self.val_list}
        return {key: path for key, path in paths.items() if path is not None}


@dataclass
class Mit67Data:
    """MIT Indoor 67 as the paper uses it: ``root/Images/<class>/<file>`` and the official split files
    ``root/TrainImages.txt`` and ``root/TestImages.txt``; evaluated on the test list (:func:`mit67_splits`)."""

    root: Path
    num_classes: int = 67
    image_size: int = 224
    resize: int = 256

    def __post_init__(self) -> None:
        _check_sizes(self)

    def paths(self) -> dict[str, Path]:
        """The data paths this spec needs, by key name."""
        return {"root": self.root}


def _check_sizes(spec: FolderData | Mit67Data) -> None:
    """The range checks of both real-data specs: positive sizes, and a resize no smaller than the crop."""
    for name in ("num_classes", "image_size", "resize"):
        if getattr(spec, name) <= 0:
            raise FieldError(name, f"{name}: must be positive, got {getattr(spec, name)}")
    if spec.resize < spec.image_size:
        raise FieldError("resize", f"resize: must be >= image_size ({spec.image_size}), got {spec.resize}")
