"""The live explorer: the book's explorer backed by a Jupyter kernel.

The static explorer (:mod:`ca_core.repro.explorer`) replays pre-rendered views. This one computes
them on demand for any test image or an uploaded one, any registered saliency method and both
poolings: the maps (:func:`ca_core.saliency.explain`), their scores and curves
(:func:`ca_core.metrics.evaluate_maps`), drawn by the same :func:`ca_core.repro.figures.explorer_image`.
``notebooks/explore_live.ipynb`` opens it (``jupyter lab``).

Example:
    >>> from ca_core.repro.notebook import setup
    >>> from ca_core.repro.live_explorer import live_explorer
    >>> live_explorer(setup("default"))  # doctest: +SKIP
"""
from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..evaluation import method_options
from ..metrics import evaluate_maps
from ..models import POOLINGS, normalisation
from ..saliency import METHODS, explain
from . import paper
from .config import Profile
from .experiment import class_names, eval_split, load_trained, rgb
from .figures import explorer_image
from .views import scores_caption

#: Per-image values of :func:`evaluate_maps` shown as scores (the curves are drawn).
SCORES = ("ad", "ag", "ai", "insertion", "deletion", "pointing_tol", "energy")


class LiveExplorer(widgets.VBox):
    """Controls (test image, upload, backbone, method) above the GAP and CA view of the choice.

    Every change recomputes both poolings' maps, scores and curves for the current image.
    ``result[pooling]`` holds the last ``map`` (h, w), ``scores`` and ``curves`` (``None`` where the
    pooling has no such map: raw attention under GAP), ``target`` the class explained: the label
    of a test image, or the GAP model's prediction for an uploaded one.

    Args:
        models: ``{backbone: {"gap": model, "ca": model}}``, in eval mode on one device.
        dataset: the test split, items ``(image, label[, mask])`` with normalised images.
        names: a display name per class index.
        methods: the registered methods offered, in order.
        options: keyword arguments of :func:`explain` per method (e.g. Score-CAM's batch size).
        protocol: the metrics' protocol (``"paper"``).
        batch_size: images per forward pass of the metrics.
    """

    def __init__(self, models: Mapping[str, Mapping[str, nn.Module]], dataset: Dataset, names: Sequence[str],
                 methods: Sequence[str], options: Mapping[str, dict[str, Any]] | None = None,
                 protocol: str = "paper", batch_size: int = 64) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown saliency methods {unknown}; registered: {', '.join(METHODS)}")
        self.models, self.dataset, self.names = models, dataset, list(names)
        self.options, self.protocol, self.batch_size = dict(options or {}), protocol, batch_size
        style = {"description_width": "initial"}
        self.index = widgets.BoundedIntText(value=0, min=0, max=len(dataset) - 1, description="test image",
                                            style=style, layout=widgets.Layout(width="11em"))
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your image")
        self.backbone = widgets.Dropdown(options=list(models), description="backbone", style=style)
        self.method = widgets.Dropdown(options=[(paper.METHOD_LABELS.get(m, m), m) for m in methods],
                                       description="method", style=style)
        self.view = widgets.Image(format="png")
        self.scores = widgets.HTML()
        self.status = widgets.HTML()
        self.progress = widgets.Output()  # Score-CAM's and Opti-CAM's progress bars
        self.uploaded: torch.Tensor | None = None
        self.result: dict[str, dict[str, Any] | None] = {}
        self.target = -1
        self.index.observe(self._on_index, "value")
        self.upload.observe(self._on_upload, "value")
        for control in (self.backbone, self.method):
            control.observe(lambda _: self.refresh(), "value")
        controls = widgets.HBox([self.index, self.upload, self.backbone, self.method],
                                layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([controls, self.status, self.view, self.scores, self.progress])
        self.refresh()

    def _on_index(self, _: Any) -> None:
        self.uploaded = None
        self.refresh()

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        try:
            self.uploaded = self.load_upload(bytes(files[0]["content"]))
        except ValueError as err:  # a damaged or foreign file: say so where the user looks, keep the view
            self.status.value = f"<b>{html.escape(files[0].get('name', 'upload'))}</b>: {html.escape(str(err))}"
            return
        self.refresh()

    def load_upload(self, data: bytes) -> torch.Tensor:
        """An uploaded image file as a normalised (3, H, W) tensor at the test images' size."""
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except UnidentifiedImageError as err:
            raise ValueError(f"the uploaded file is not an image PIL can read: {err}") from None
        except OSError as err:  # e.g. a file cut short in transfer: the header reads, the pixels do not
            raise ValueError(f"the uploaded image is damaged or truncated ({err}): upload it again") from None
        height, width = self.dataset[0][0].shape[-2:]
        pixels = torch.from_numpy(np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255)
        mean, std = normalisation(self._gap(), channels=3)
        return (pixels.permute(2, 0, 1) - mean[:, None, None]) / std[:, None, None]

    def _gap(self) -> nn.Module:
        return self.models[self.backbone.value]["gap"]

    def current(self) -> tuple[torch.Tensor, int, torch.Tensor | None, str]:
        """The image shown (1, 3, H, W) on the models' device, its target, mask and title."""
        device = next(self._gap().parameters()).device
        if self.uploaded is not None:
            x = self.uploaded[None].to(device)
            with torch.no_grad():
                target = int(self._gap()(x).argmax(1))
            return x, target, None, f"your image: predicted {self.names[target]}"
        image, label, *mask = self.dataset[self.index.value]
        masks = mask[0][None].to(device) if mask else None
        return image[None].to(device), int(label), masks, f"test image #{self.index.value}: {self.names[label]}"

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
        """Recompute and redraw both poolings for the current choice."""
        x, target, masks, title = self.current()
        self.target = target
        self.status.value = f"<b>{title}</b> · explaining class <i>{self.names[target]}</i> · computing ..."
        self.progress.clear_output()
        attention_only = METHODS[self.method.value].kind == "attention"
        self.result = {p: None if attention_only and p == "gap" else
                       self.compute(self.models[self.backbone.value][p], x, target, masks) for p in POOLINGS}
        image = rgb(x[0])
        mask = None if masks is None else masks[0].cpu().numpy()
        self.view.value = explorer_image(image, mask, {p: r and r["map"] for p, r in self.result.items()},
                                         {p: r and r["curves"] for p, r in self.result.items()}, self.method.label)
        self.scores.value = scores_caption({p.upper(): r and r["scores"] for p, r in self.result.items()})
        self.status.value = f"<b>{title}</b> · explaining class <i>{self.names[target]}</i>"


def live_explorer(profile: Profile, methods: Sequence[str] | None = None) -> LiveExplorer:
    """The live explorer over a profile's trained primary-seed models and its test split (every
    registered method unless ``methods`` is given; the profile's evaluation options)."""
    test = eval_split(profile)
    models = {b: {p: load_trained(profile, b, p) for p in POOLINGS} for b in profile.models}
    methods = list(methods or METHODS)
    return LiveExplorer(models, test, class_names(test, profile.data.num_classes), methods,
                        {m: method_options(m, profile.eval) for m in methods}, profile.eval.protocol,
                        profile.eval.batch_size)
