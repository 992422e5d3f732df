"""The live explorer: the book's explorer backed by a Jupyter kernel.

The static explorer (:mod:`ca_core.repro.explorer`) replays pre-rendered views. This one computes
them on demand for any image the chosen backbone offers or an uploaded one, any registered saliency
method and every pooling the backbone has: the maps (:func:`ca_core.saliency.explain`), their scores
and curves (:func:`ca_core.metrics.evaluate_maps`), drawn by the same
:func:`ca_core.repro.figures.explorer_image`, with the GAP model's top classes.

It opens on a real ImageNet CNN (:data:`REAL_BACKBONE`: timm's ``tf_efficientnet_lite0`` with its
ImageNet weights, GAP only, on scikit-image's sample photos), so that a photo of one's own is
explained by a network that knows ImageNet's classes; the run's models, GAP and CA-Stream side by
side on their test images, are the other choices. ``notebooks/explore_live.ipynb`` opens it
(``jupyter lab``).

Example:
    >>> from ca_core.repro.notebook import setup
    >>> from ca_core.repro.live_explorer import live_explorer
    >>> live_explorer(setup("default"))  # doctest: +SKIP
"""
from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import torch
from PIL import Image, UnidentifiedImageError
from timm.data import create_transform
from torch import nn
from torch.utils.data import Dataset

from ..data import PhotosConfig, PhotosDataset
from ..evaluation import method_options
from ..metrics import evaluate_maps
from ..models import POOLINGS, data_config_of
from ..saliency import METHODS, explain
from ..utils import default_device
from ..weights import load_real_model
from . import paper
from .experiment import class_names, eval_split, load_trained
from .figures import explorer_image
from .photos_page import imagenet_names, pixels
from .runs import Run
from .views import scores_caption

#: Per-image values of :func:`evaluate_maps` shown as scores (the curves are drawn).
SCORES = ("ad", "ag", "ai", "insertion", "deletion", "pointing_tol", "energy")
#: The real ImageNet CNN's entry in the backbone menu, the default.
REAL_BACKBONE = "tf_efficientnet_lite0 (ImageNet)"
#: How many of the GAP model's most probable classes are listed.
TOP = 5
#: What the CA panel says for a backbone without a CA-Stream.
NO_STREAM = "no CA-Stream trained\nfor this backbone"


@dataclass(frozen=True)
class Backbone:
    """A backbone the explorer offers: its models, the images it shows and the names of its classes.

    Attributes:
        models: by pooling, in eval mode on one device: ``{"gap": model, "ca": model}``, or only
            ``"gap"`` for a network without a trained CA-Stream.
        images: items ``(image, label[, mask])`` normalised as the models want; a label of -1
            (unlabelled photos) explains the GAP model's prediction.
        names: a display name per class index.
        kind: what one of ``images`` is called in the controls (``"test image"``, ``"photo"``).
    """

    models: Mapping[str, nn.Module]
    images: Dataset
    names: Sequence[str]
    kind: str = "test image"


class LiveExplorer(widgets.VBox):
    """Controls (image, upload, backbone, method) above the view of the choice: the GAP and CA maps
    side by side, their curves and scores, and the GAP model's top classes.

    Every change recomputes each pooling's map, scores and curves for the current image.
    ``result[pooling]`` holds the last ``map`` (h, w), ``scores`` and ``curves`` (``None`` where the
    pooling has no such map: raw attention under GAP, any map of a backbone without a CA-Stream),
    ``target`` the class explained: the label of a test image, or the GAP model's prediction for an
    unlabelled photo or an uploaded image.

    Args:
        backbones: the choices of the backbone menu, the first one shown first.
        methods: the registered methods offered, in order.
        options: keyword arguments of :func:`explain` per method (e.g. Score-CAM's batch size).
        protocol: the metrics' protocol (``"paper"``).
        batch_size: images per forward pass of the metrics.
    """

    def __init__(self, backbones: Mapping[str, Backbone], methods: Sequence[str],
                 options: Mapping[str, dict[str, Any]] | None = None, protocol: str = "paper",
                 batch_size: int = 64) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown saliency methods {unknown}; registered: {', '.join(METHODS)}")
        self.backbones = dict(backbones)
        self.options, self.protocol, self.batch_size = dict(options or {}), protocol, batch_size
        style = {"description_width": "initial"}
        first = next(iter(self.backbones.values()))
        self.index = widgets.BoundedIntText(value=0, min=0, max=len(first.images) - 1, description=first.kind,
                                            style=style, layout=widgets.Layout(width="11em"))
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your image")
        self.backbone = widgets.Dropdown(options=list(self.backbones), description="backbone", style=style)
        self.method = widgets.Dropdown(options=[(paper.METHOD_LABELS.get(m, m), m) for m in methods],
                                       description="method", style=style)
        self.view = widgets.Image(format="png")
        self.top = widgets.HTML()
        self.scores = widgets.HTML()
        self.status = widgets.HTML()
        self.progress = widgets.Output()  # Score-CAM's and Opti-CAM's progress bars
        self.uploaded: Image.Image | None = None
        self.result: dict[str, dict[str, Any] | None] = {}
        self.target = -1
        self.index.observe(self._on_index, "value")
        self.upload.observe(self._on_upload, "value")
        self.backbone.observe(self._on_backbone, "value")
        self.method.observe(lambda _: self.refresh(), "value")
        controls = widgets.HBox([self.index, self.upload, self.backbone, self.method],
                                layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([controls, self.status, self.top, self.view, self.scores, self.progress])
        self.refresh()

    @property
    def choice(self) -> Backbone:
        """The backbone chosen."""
        return self.backbones[self.backbone.value]

    def _gap(self) -> nn.Module:
        return self.choice.models["gap"]

    def _on_index(self, _: Any) -> None:
        self.uploaded = None
        self.refresh()

    def _on_backbone(self, _: Any) -> None:
        """Offer the new backbone's images (an uploaded image stays, as that backbone's input)."""
        self.index.unobserve(self._on_index, "value")
        self.index.description, self.index.max = self.choice.kind, len(self.choice.images) - 1  # clamps the value
        self.index.observe(self._on_index, "value")
        self.refresh()

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        try:
            self.uploaded = self.read_upload(bytes(files[0]["content"]))
        except ValueError as err:  # a damaged or foreign file: say so where the user looks, keep the view
            self.status.value = f"<b>{html.escape(files[0].get('name', 'upload'))}</b>: {html.escape(str(err))}"
            return
        self.refresh()

    @staticmethod
    def read_upload(data: bytes) -> Image.Image:
        """An uploaded image file as an RGB image; a file PIL cannot read fully is a ``ValueError``."""
        try:
            return Image.open(io.BytesIO(data)).convert("RGB")
        except UnidentifiedImageError as err:
            raise ValueError(f"the uploaded file is not an image PIL can read: {err}") from None
        except OSError as err:  # e.g. a file cut short in transfer: the header reads, the pixels do not
            raise ValueError(f"the uploaded image is damaged or truncated ({err}): upload it again") from None

    def model_input(self, image: Image.Image) -> torch.Tensor:
        """An image as the chosen backbone's input (3, H, W): squashed whole to the size of its images,
        interpolated and normalised as its models want (as :class:`ca_core.data.PhotosDataset` does)."""
        height, width = self.choice.images[0][0].shape[-2:]
        config = data_config_of(self._gap())
        transform = create_transform(input_size=(3, height, width), interpolation=config["interpolation"],
                                     mean=config["mean"], std=config["std"], crop_pct=1.0, crop_mode="squash")
        return transform(image)

    def current(self) -> tuple[torch.Tensor, int, torch.Tensor | None, str]:
        """The image shown (1, 3, H, W) on the models' device, its target, mask and title."""
        device = next(self._gap().parameters()).device
        if self.uploaded is not None:
            x = self.model_input(self.uploaded)[None].to(device)
            target = self.prediction(x)
            return x, target, None, f"your image: predicted {self.choice.names[target]}"
        i, images = self.index.value, self.choice.images
        image, label, *mask = images[i]
        label = int(label)
        x, masks = image[None].to(device), (mask[0][None].to(device) if mask else None)
        name = f"{self.choice.kind} #{i}" + (f" ({images.names[i]})" if hasattr(images, "names") else "")
        if label < 0:
            target = self.prediction(x)
            return x, target, masks, f"{name}: predicted {self.choice.names[target]}"
        return x, int(label), masks, f"{name}: {self.choice.names[label]}"

    def prediction(self, x: torch.Tensor) -> int:
        """The GAP model's class for one image (1, 3, H, W)."""
        with torch.no_grad():
            return int(self._gap()(x).argmax(1))

    def top_classes(self, x: torch.Tensor) -> list[tuple[str, float]]:
        """The GAP model's :data:`TOP` most probable classes for one image, with their probabilities."""
        with torch.no_grad():
            probs = self._gap()(x).softmax(dim=1)[0]
        values, indices = probs.topk(min(TOP, len(probs)))
        return [(self.choice.names[i], p) for p, i in zip(values.tolist(), indices.tolist())]

    def compute(self, model: nn.Module, x: torch.Tensor, target: int, masks: torch.Tensor | None) -> dict[str, Any]:
        """One pooling's map, scores and curves for the current image and method."""
        method = self.method.value
        targets = torch.tensor([target], device=x.device)
        with self.progress:
            maps = explain(model, x, method, targets=targets, progress=method == "scorecam",
                           **self.options.get(method, {}))
        values = evaluate_maps(model, x, maps, targets, protocol=self.protocol, batch_size=self.batch_size, masks=masks)
        return {"map": maps[0].cpu().numpy(), "scores": {k: float(values[k][0]) for k in SCORES if k in values},
                "curves": {k: values[f"{k}_curve"][0].cpu().numpy() for k in ("insertion", "deletion")}}

    def refresh(self) -> None:
        """Recompute and redraw every pooling of the chosen backbone for the current choice."""
        x, target, masks, title = self.current()
        models, names = self.choice.models, self.choice.names
        self.target = target
        status = f"<b>{html.escape(title)}</b> · explaining class <i>{html.escape(names[target])}</i>"
        self.status.value = f"{status} · computing ..."
        self.top.value = "top classes (GAP model): " + " · ".join(
            f"{html.escape(name)} <b>{100 * p:.1f} %</b>" for name, p in self.top_classes(x))
        self.progress.clear_output()
        attention_only = METHODS[self.method.value].kind == "attention"
        self.result = {p: None if p not in models or (attention_only and p == "gap") else
                       self.compute(models[p], x, target, masks) for p in POOLINGS}
        mask = None if masks is None else masks[0].cpu().numpy()
        notes = {p: NO_STREAM for p in POOLINGS if p not in models}
        maps = {p: r and r["map"] for p, r in self.result.items()}
        curves = {p: r and r["curves"] for p, r in self.result.items()}
        self.view.value = explorer_image(pixels(x, self._gap())[0], mask, maps, curves, self.method.label, notes)
        self.scores.value = scores_caption({p.upper(): r and r["scores"] for p, r in self.result.items()
                                            if p in models})
        self.status.value = status


def real_backbone(model: nn.Module | None = None) -> Backbone:
    """The real ImageNet CNN (default: timm's ``tf_efficientnet_lite0`` with its ImageNet weights,
    :func:`ca_core.weights.load_real_model`, on the best available device), GAP only, on scikit-image's
    sample photos at 224 px, with ImageNet's class names."""
    model = load_real_model().to(default_device()) if model is None else model
    return Backbone({"gap": model}, PhotosDataset(PhotosConfig(), data_config_of(model)), imagenet_names(), "photo")


def live_explorer(run: Run, methods: Sequence[str] | None = None) -> LiveExplorer:
    """The live explorer on the real ImageNet CNN (:data:`REAL_BACKBONE`, shown first) and a run's
    trained primary-seed models on its test split (every registered method unless ``methods`` is
    given; the profile's evaluation options)."""
    profile = run.profile
    test = eval_split(profile)
    names = class_names(test, profile.data.num_classes)
    trained = {b: Backbone({p: load_trained(run, b, p) for p in POOLINGS}, test, names) for b in profile.models}
    methods = list(methods or METHODS)
    return LiveExplorer({REAL_BACKBONE: real_backbone(), **trained}, methods,
                        {m: method_options(m, profile.eval) for m in methods}, profile.eval.protocol,
                        profile.eval.batch_size)
