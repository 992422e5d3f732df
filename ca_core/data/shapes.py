"""The embedded data set: procedurally generated shapes with a ground-truth mask.

Each image holds one *class object* (one of :data:`SHAPE_NAMES`, a filled shape at a random position,
scale, rotation and colour) over a cluttered, textured background crossed by *distractors*
(line segments of random colour, width and direction, drawn independently of the label). A
classifier therefore has to find the object, and a saliency map can be scored against its mask.

Rendering is vectorised in torch: every shape is an implicit inside-test on a rotated, scaled
coordinate grid, evaluated for a whole chunk of images at once at twice the resolution and then
box-filtered (anti-aliased edges and an exact mask). Images are generated from ``(seed, split)``:
with the same configuration the bytes are identical. A split is cached under ``root`` as one tensor
file per split plus ``manifest.json``: measured on the 2-core machine, generating costs about 2 ms per
56-px image, writing PNG files 3 ms and reading them back 0.2 ms, while loading the cached tensors
takes about 10 us per image, so the cache beats both regeneration and an image-folder layout.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from ..provenance import code_digest, digest
from ..utils import FieldError, announce, atomic_write

SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart", "ellipse", "arrow")
SPLITS = ("train", "val", "test")
MEAN = IMAGENET_DEFAULT_MEAN  # the timm default normalisation, the same as the mini backbones' data config
STD = IMAGENET_DEFAULT_STD
SUPERSAMPLE = 2
CHUNK = 256  # images rendered at once; fixed so that the bytes do not depend on memory


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that determines the generated data set (the same config gives the same bytes).

    Attributes:
        seed: base seed; each split draws from its own stream.
        image_size: side in pixels.
        num_classes: how many of :data:`SHAPE_NAMES` are used (the first ``num_classes``).
        train, val, test: number of images per split.
        scale: range of the object's radius as a fraction of the image side.
        distractors: range (inclusive) of the number of distractor segments per image.
        texture: largest colour difference (per channel, 0-1 units) between the two colours of a
            background's pattern; lower values give calmer backgrounds.
        noise: standard deviation of the per-pixel background noise (0-1 intensity units).
    """

    seed: int = 0
    image_size: int = 56
    num_classes: int = 10
    train: int = 30000
    val: int = 500
    test: int = 1000
    scale: tuple[float, float] = (0.24, 0.38)
    distractors: tuple[int, int] = (1, 3)
    texture: float = 0.35
    noise: float = 0.04

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(SHAPE_NAMES):
            raise FieldError("num_classes", f"num_classes must be in 2..{len(SHAPE_NAMES)}, got {self.num_classes}")
        if self.image_size < 16:
            raise FieldError("image_size", f"image_size must be >= 16 pixels, got {self.image_size}")
        for split in SPLITS:
            if getattr(self, split) < 0:
                raise FieldError(split, f"{split} size must be >= 0, got {getattr(self, split)}")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 0.5:
            raise FieldError("scale", f"scale must satisfy 0 < lo <= hi <= 0.5, got {self.scale}")
        if not 0 <= self.distractors[0] <= self.distractors[1]:
            raise FieldError("distractors", f"distractors must be a range 0 <= lo <= hi, got {self.distractors}")
        for name in ("texture", "noise"):
            if not 0 <= getattr(self, name) <= 1:
                raise FieldError(name, f"{name} must be in [0, 1], got {getattr(self, name)}")

    def size_of(self, split: str) -> int:
        """Number of images of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self, split)


def _inside(name: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-test of shape ``name`` in its own frame (radius about 1): bool tensor like ``u``."""
    r = torch.hypot(u, v)
    if name == "circle":
        return r <= 0.9
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) <= 0.72
    if name == "triangle":
        angles = [math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)]
        return torch.stack([u * math.cos(a) + v * math.sin(a) for a in angles]).amax(0) <= 0.5
    if name == "star":
        sector = torch.remainder(torch.atan2(v, u) * 5 / (2 * math.pi) + 0.25, 1.0)  # tip where the fraction is 0.5
        return r <= 0.38 + 0.62 * (1 - 2 * (sector - 0.5).abs()) ** 2
    if name == "cross":
        return ((u.abs() <= 0.28) & (v.abs() <= 0.9)) | ((v.abs() <= 0.28) & (u.abs() <= 0.9))
    if name == "ring":
        return (r >= 0.5) & (r <= 0.9)
    if name == "crescent":
        return (r <= 0.9) & (torch.hypot(u - 0.45, v) >= 0.72)
    if name == "heart":
        x, y = u * 1.15, -v * 1.15 + 0.1
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    if name == "ellipse":
        return (u / 0.95) ** 2 + (v / 0.42) ** 2 <= 1
    if name == "arrow":
        shaft = (v.abs() <= 0.18) & (u >= -0.9) & (u <= 0.2)
        head = (u >= 0.2) & (u <= 0.9) & (v.abs() <= 0.55 * (0.9 - u) / 0.7)
        return shaft | head
    raise ValueError(f"unknown shape {name!r}; known: {SHAPE_NAMES}")


def _split_seed(cfg: ShapesConfig, split: str, chunk: int) -> int:
    """A seed per (config seed, split, chunk), stable across runs and platforms."""
    digest = hashlib.sha256(f"{cfg.seed}/{split}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [0, 1] of a ``size`` x ``size`` grid (x to the right, y down)."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x, y


def _background(g: torch.Generator, n: int, x: torch.Tensor, y: torch.Tensor, texture: float,
                noise: float) -> torch.Tensor:
    """Textured backgrounds (n, 3, S, S): two colours mixed by a product of two gratings, plus noise."""
    base = torch.rand(n, 1, 3, 1, 1, generator=g)
    colours = (base + texture * (torch.rand(n, 2, 3, 1, 1, generator=g) - 0.5)).clamp(0, 1)
    pattern = torch.ones(n, 1, *x.shape)
    for _ in range(2):
        angle = torch.rand(n, 1, 1, 1, generator=g) * math.pi
        freq = 2 + torch.rand(n, 1, 1, 1, generator=g) * 10
        phase = torch.rand(n, 1, 1, 1, generator=g) * 2 * math.pi
        wave = torch.sin(2 * math.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
        pattern = pattern * (0.5 + 0.5 * wave)
    image = colours[:, 0] + (colours[:, 1] - colours[:, 0]) * pattern
    return image + noise * torch.randn(image.shape, generator=g)


def _distractors(g: torch.Generator, image: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 count: tuple[int, int]) -> torch.Tensor:
    """Images with up to ``count[1]`` line segments painted over them (the label plays no part)."""
    n, k = image.shape[0], count[1]
    if k == 0:
        return image
    present = torch.arange(k) < torch.randint(count[0], k + 1, (n, 1), generator=g)  # (n, k)
    a = torch.rand(n, k, 2, 1, 1, generator=g)
    d = torch.rand(n, k, 2, 1, 1, generator=g) - a
    width = 0.01 + 0.025 * torch.rand(n, k, 1, 1, generator=g)
    colour = torch.rand(n, k, 3, generator=g)
    t = (((x - a[:, :, 0]) * d[:, :, 0] + (y - a[:, :, 1]) * d[:, :, 1]) / (d * d).sum(2).clamp_min(1e-6)).clamp(0, 1)
    dist = torch.hypot(x - a[:, :, 0] - t * d[:, :, 0], y - a[:, :, 1] - t * d[:, :, 1])
    on = (dist <= width) & present[:, :, None, None]  # (n, k, S, S)
    top = (on * torch.arange(1, k + 1).view(1, k, 1, 1)).amax(1)  # 1 + index of the last segment drawn, 0 if none
    painted = torch.gather(colour, 1, (top.clamp_min(1) - 1).flatten(1)[..., None].expand(-1, -1, 3))
    painted = painted.transpose(1, 2).reshape(image.shape)
    return torch.where(top[:, None] > 0, painted, image)


def _objects(
    g: torch.Generator, labels: torch.Tensor, x: torch.Tensor, y: torch.Tensor, scale: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage (n, S, S) of each image's class object and its colour (n, 3, 1, 1)."""
    n = labels.shape[0]
    radius = scale[0] + (scale[1] - scale[0]) * torch.rand(n, 1, 1, generator=g)
    centre = radius[..., None] + (1 - 2 * radius[..., None]) * torch.rand(n, 2, 1, 1, generator=g)
    angle = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    colour = torch.rand(n, 3, 1, 1, generator=g)
    dx, dy = x - centre[:, 0], y - centre[:, 1]
    u = (dx * torch.cos(angle) + dy * torch.sin(angle)) / radius
    v = (-dx * torch.sin(angle) + dy * torch.cos(angle)) / radius
    inside = torch.zeros(n, *x.shape, dtype=torch.bool)
    for c in labels.unique().tolist():
        rows = labels == c
        inside[rows] = _inside(SHAPE_NAMES[c], u[rows], v[rows])
    return inside, colour


def _contrast(colour: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Flip an object colour to its complement where it is too close to the mean background colour."""
    mean = background.mean(dim=(2, 3), keepdim=True)
    close = (colour - mean).abs().amax(dim=1, keepdim=True) < 0.35
    return torch.where(close, 1 - colour, colour)


def render_chunk(cfg: ShapesConfig, split: str, chunk: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``n`` images of one chunk: (uint8 images (n,3,H,W), labels (n,), bool masks (n,H,W)).

    Background and distractors are drawn at the output resolution; the object's coverage is
    computed at ``SUPERSAMPLE`` times that and box-filtered, then used as an alpha matte.
    """
    g = torch.Generator().manual_seed(_split_seed(cfg, split, chunk))
    x, y = _grid(cfg.image_size)
    labels = torch.randint(cfg.num_classes, (n,), generator=g)
    image = _distractors(g, _background(g, n, x, y, cfg.texture, cfg.noise), x, y, cfg.distractors)
    inside, colour = _objects(g, labels, *_grid(cfg.image_size * SUPERSAMPLE), cfg.scale)
    coverage = F.avg_pool2d(inside[:, None].float(), SUPERSAMPLE)
    image = image + coverage * (_contrast(colour, image) - image)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8), labels, coverage[:, 0] >= 0.5


def generate(cfg: ShapesConfig, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole split: uint8 images (N,3,H,W), int64 labels (N,), bool masks (N,H,W)."""
    total = cfg.size_of(split)
    parts = [render_chunk(cfg, split, i, min(CHUNK, total - start)) for i, start in enumerate(range(0, total, CHUNK))]
    if not parts:
        s = cfg.image_size
        return (torch.empty(0, 3, s, s, dtype=torch.uint8), torch.empty(0, dtype=torch.int64),
                torch.empty(0, s, s, dtype=torch.bool))
    return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]


def normalize(images: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """uint8 or [0,1] images (..., 3, H, W) to the normalised float tensor the models take."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    return (x - torch.tensor(mean, device=x.device).view(3, 1, 1)) / torch.tensor(std, device=x.device).view(3, 1, 1)


def denormalize(x: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """Normalised images (..., 3, H, W) back to [0, 1] pixel space."""
    mean_t = torch.tensor(mean, device=x.device, dtype=x.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=x.dtype).view(3, 1, 1)
    return (x * std_t + mean_t).clamp(0, 1)


class ShapesDataset(Dataset):
    """One split held in memory as uint8; items are ``(normalised image (3,H,W), label, mask (H,W))``.

    ``mean``, ``std``: the normalisation of the models that read it (their timm data config: ImageNet's
    for the mini backbones, 0.5 for the TensorFlow-ported EfficientNet-Lite0).
    """

    def __init__(self, cfg: ShapesConfig, split: str, images: torch.Tensor, targets: torch.Tensor,
                 masks: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> None:
        self.cfg, self.split = cfg, split
        self.images, self.targets, self.masks = images, targets, masks
        self.mean, self.std = tuple(mean), tuple(std)
        self.classes = list(SHAPE_NAMES[: cfg.num_classes])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        return normalize(self.images[i], self.mean, self.std), int(self.targets[i]), self.masks[i]


def cache_key(cfg: ShapesConfig) -> str:
    """Folder name of a configuration's cache: a short hash of every field and of the generator's
    code (this module and what it imports), so an edited generator never serves old images."""
    return digest(asdict(cfg), code_digest(__name__))[:12]


def _write_manifest(folder: Path, cfg: ShapesConfig) -> None:
    """``manifest.json``: the configuration, class names and split sizes, for people and tools."""
    manifest = {"config": asdict(cfg), "classes": list(SHAPE_NAMES[: cfg.num_classes]),
                "splits": {s: cfg.size_of(s) for s in SPLITS}, "files": {s: f"{s}.pt" for s in SPLITS}}
    atomic_write(folder / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))


def shapes_dataset(cfg: ShapesConfig, split: str, root: str | Path | None = "data/shapes",
                   mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> ShapesDataset:
    """The ``split`` of the generated data set, read from the cache under ``root`` or generated and cached,
    normalised with ``mean`` and ``std``.

    ``root=None`` generates in memory without caching. The cache lives in
    ``root/<cache_key(cfg)>/{split}.pt`` with a ``manifest.json`` beside it.
    """
    cfg.size_of(split)  # validates the split name
    if root is None:
        return ShapesDataset(cfg, split, *generate(cfg, split), mean, std)
    folder = Path(root) / cache_key(cfg)
    path = folder / f"{split}.pt"
    if path.is_file():
        try:
            data = torch.load(path, weights_only=True)
            return ShapesDataset(cfg, split, data["images"], data["targets"], data["masks"], mean, std)
        except Exception as err:  # a cut-short or foreign file: the cache is regenerated, deterministically
            announce(f"unreadable shapes cache {path} ({type(err).__name__}): generating it again")
    images, targets, masks = generate(cfg, split)
    data = {"images": images, "targets": targets, "masks": masks}
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    _write_manifest(folder, cfg)
    return ShapesDataset(cfg, split, images, targets, masks, mean, std)
