"""The real-photos page: timm's ``tf_efficientnet_lite0`` with its real ImageNet weights (GAP, as timm
ships it: :func:`ca_core.weights.load_real_model`) explains scikit-image's sample photos with every CAM
method and the two baselines, each map explaining the model's own prediction.

The page shows that the library runs on a real network and natural photos; a handful of photos is no
evidence for or against any method. It reads no run artefact (every profile shows the same photos,
scored under the profile's protocol) and downloads nothing. Its size (:class:`PhotosPage`) keeps it
under two minutes of ``make book`` on 2 CPU cores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from timm.data import ImageNetInfo
from torch import nn

from ..data import PhotosConfig, PhotosDataset
from ..metrics import evaluate_maps
from ..models import data_config_of, normalisation
from ..saliency import METHODS, explain
from ..utils import default_device
from ..weights import load_real_model
from . import paper
from .config import Profile
from .figures import BOOK_WIDTH, CMAP, show_overlay

Row = dict[str, Any]

#: Every CAM method of :data:`ca_core.saliency.METHODS`, then the baselines (raw attention needs a CA-Stream).
PAGE_METHODS: tuple[str, ...] = tuple(m for kind in ("cam", "baseline")
                                      for m, cls in METHODS.items() if cls.kind == kind)

#: Methods run on their first photos only, and why: on every photo, Score-CAM alone would cost more
#: than the rest of the page (on 2 CPU cores, about 60 s against 45 s).
PHOTO_LIMITS: dict[str, int] = {"scorecam": 2}
COSTS: dict[str, str] = {
    "scorecam": "one forward pass per channel of the 1,280-channel CAM map (channels constant over the map "
                "are skipped), several hundred per photo",
}


@dataclass(frozen=True)
class PhotosPage:
    """What the page computes.

    Attributes:
        photos: the photos and their size: scikit-image's five default photos squashed to 160 px, where
            the metrics' forward passes cost half of those at 224 px (the CAM map is 5 x 5). The model
            was trained at 224 px, so a prediction can differ from the one at 224 px (the astronaut's does).
        methods: the saliency methods, in the order shown.
        photo_limits: methods run on their first ``n`` photos only, for their cost (:data:`COSTS`).
        protocol: the metrics' protocol (:mod:`ca_core.metrics.protocols`).
        scorecam_variant: Score-CAM's variant (:mod:`ca_core.saliency.scorecam`).
        batch_size: images per forward pass (Score-CAM: masked photos per forward pass).
        top: how many classes the table of predictions lists per photo.
    """

    photos: PhotosConfig = PhotosConfig(image_size=160)
    methods: tuple[str, ...] = PAGE_METHODS
    photo_limits: Mapping[str, int] = field(default_factory=lambda: dict(PHOTO_LIMITS))
    protocol: str = "paper"
    scorecam_variant: str = "paper"
    batch_size: int = 64
    top: int = 5

    def photos_for(self, method: str, available: int) -> int:
        """How many of the ``available`` photos (the first ones) ``method`` explains."""
        return min(available, self.photo_limits.get(method, available))

    def options(self, method: str) -> dict[str, Any]:
        """Keyword arguments of :func:`ca_core.saliency.explain` for ``method``."""
        return {"batch_size": self.batch_size} | ({"variant": self.scorecam_variant} if method == "scorecam" else {})


def page_for(profile: Profile) -> PhotosPage:
    """The page under ``profile``: its metrics' protocol and Score-CAM variant, so that the numbers are
    measured as the book's others are; everything else is :class:`PhotosPage`'s default."""
    return PhotosPage(protocol=profile.eval.protocol, scorecam_variant=profile.eval.scorecam_variant)


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """ImageNet-1k's class descriptions by index (``"tabby, tabby cat"``), as timm ships them (offline)."""
    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def short_name(index: int) -> str:
    """A class's first synonym (``"tabby"``), for titles."""
    return imagenet_names()[index].split(",")[0]


def pixels(images: torch.Tensor, model: nn.Module) -> np.ndarray:
    """Normalised images (B, 3, H, W) as (B, H, W, 3) in [0, 1] for display, de-normalised as ``model``
    normalises (mean = std = 0.5 for the real EfficientNet-Lite0, ImageNet's for the shapes models)."""
    mean, std = normalisation(model, channels=3, device=images.device)
    return (images.detach() * std[:, None, None] + mean[:, None, None]).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class ExplainedPhotos:
    """What the page shows, computed once by :func:`explain_photos` (tensors on the CPU).

    Attributes:
        page: the settings it was computed with.
        names: the photos' names.
        images: (N, 3, S, S) the model's inputs.
        pixels: (N, S, S, 3) the same photos in [0, 1], for display.
        probs: (N, 1000) the model's softmax probabilities on the photos.
        maps: per method, (n, h, w) maps of its first ``n`` photos, explaining the predicted class.
        metrics: per method, :func:`ca_core.metrics.evaluate_maps`'s per-photo values for those maps.
    """

    page: PhotosPage
    names: list[str]
    images: torch.Tensor
    pixels: np.ndarray
    probs: torch.Tensor
    maps: dict[str, torch.Tensor]
    metrics: dict[str, dict[str, torch.Tensor]]

    @property
    def targets(self) -> torch.Tensor:
        """The class explained per photo: the model's prediction."""
        return self.probs.argmax(dim=1)


def explain_photos(page: PhotosPage, model: nn.Module | None = None) -> ExplainedPhotos:
    """Every method's maps and metrics on the page's photos, for the model's predicted class.

    ``model``: a classifier of ImageNet's 1000 classes in eval mode (default: the real
    EfficientNet-Lite0 on the best available device); the photos are normalised as it wants.
    """
    model = load_real_model().to(default_device()) if model is None else model
    device = next(model.parameters()).device
    photos = PhotosDataset(page.photos, data_config_of(model))
    images = torch.stack([photos[i][0] for i in range(len(photos))])
    x = images.to(device)
    with torch.inference_mode():
        probs = model(x).softmax(dim=1)
    targets = probs.argmax(dim=1)
    maps, metrics = {}, {}
    for method in page.methods:
        n = page.photos_for(method, len(photos))
        method_maps = explain(model, x[:n], method, targets=targets[:n], **page.options(method))
        values = evaluate_maps(model, x[:n], method_maps, targets[:n], protocol=page.protocol,
                               batch_size=page.batch_size)
        maps[method], metrics[method] = method_maps.cpu(), {k: v.cpu() for k, v in values.items()}
    return ExplainedPhotos(page, photos.names, images, pixels(images, model), probs.cpu(), maps, metrics)


def describe(result: ExplainedPhotos) -> str:
    """A Markdown paragraph: the photos, their size, the CAM map's size and which methods ran on fewer photos."""
    page, n = result.page, len(result.names)
    side, (h, w) = page.photos.image_size, next(iter(result.maps.values())).shape[-2:]
    limited = [m for m in page.methods if page.photos_for(m, n) < n]
    text = (f"**{n} photos** ({', '.join(result.names)}), each squashed whole to {side} × {side} px, where the "
            f"CAM layer's map is {h} × {w}; the metrics follow the *{page.protocol}* protocol and explain each "
            f"photo's top-1 class.")
    for method in limited:
        k = page.photos_for(method, n)
        text += (f" {paper.METHOD_LABELS.get(method, method)} runs on the first {k} photo{'s' * (k > 1)} only "
                 f"({', '.join(result.names[:k])}), for its cost: {COSTS.get(method, 'more than the others')}.")
    return text


def top_classes_table(result: ExplainedPhotos) -> list[Row]:
    """Per photo, the model's top classes with ImageNet's names and their probabilities (%)."""
    values, indices = result.probs.topk(result.page.top, dim=1)
    return [{"Photo": name} | {f"Top-{k + 1}": f"{imagenet_names()[i]} ({100 * p:.1f} %)"
                               for k, (p, i) in enumerate(zip(v.tolist(), c.tolist()))}
            for name, v, c in zip(result.names, values, indices)]


def metrics_table(result: ExplainedPhotos) -> list[Row]:
    """Per method, every metric of the paper (%) averaged over the photos it explained."""
    rows = []
    for method in result.page.methods:
        values = result.metrics[method]
        rows.append({"Method": paper.METHOD_LABELS.get(method, method), "Photos": len(result.maps[method])}
                    | {paper.METRIC_LABELS[k]: 100 * float(values[k].mean()) for k in paper.METRICS})
    return rows


def photos_grid(result: ExplainedPhotos) -> Figure:
    """Methods (rows) x photos (columns): the photos titled with their top-1 class, then every method's
    map with that photo's Insertion and Deletion (%) below it; a method that did not run on a photo
    says so."""
    methods, n = result.page.methods, len(result.names)
    label_width = 1.3
    size = min(1.55, (BOOK_WIDTH - label_width) / n)
    height = (size + 0.25) * (len(methods) + 1) + 0.5  # 0.25: the Insertion/Deletion line under each map
    fig, axes = plt.subplots(len(methods) + 1, n, figsize=(size * n + label_width, height), squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    top = result.probs.max(dim=1)
    for j, (name, image) in enumerate(zip(result.names, result.pixels)):
        label = f"{name}\n{short_name(int(top.indices[j]))} ({100 * float(top.values[j]):.0f} %)"
        show_overlay(axes[0, j], image, None, label, fontsize=8)
        for r, method in enumerate(methods, 1):
            ax, maps = axes[r, j], result.maps[method]
            if j < len(maps):
                show_overlay(ax, image, maps[j].numpy())
                values = result.metrics[method]
                insertion, deletion = (100 * float(values[k][j]) for k in ("insertion", "deletion"))
                ax.set_xlabel(f"I {insertion:.0f} · D {deletion:.0f}", fontsize=7, labelpad=1)
            else:
                show_overlay(ax, image * 0.35, None)
                ax.text(0.5, 0.5, "not run\n(cost)", transform=ax.transAxes, ha="center", va="center", color="white",
                        fontsize=8)
    axes[0, 0].set_ylabel("photo ·\ntop-1 class", fontsize=9, rotation=0, ha="right", va="center")
    for r, method in enumerate(methods, 1):
        label = paper.METHOD_LABELS.get(method, method).replace(" (", "\n(")
        axes[r, 0].set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
    mappable = plt.cm.ScalarMappable(cmap=CMAP, norm=plt.Normalize(0, 1))
    fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.5, aspect=30, pad=0.01, location="bottom",
                 label="saliency (min-max) · below each map: Insertion · Deletion (%)")
    return fig
