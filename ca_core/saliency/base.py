"""Shared machinery of the saliency methods: the registry, the batched call, the target-layer
hook, target checking and the post-processing (ReLU, then per-image min-max to [0, 1]).

A method is a class registered under a name and a display name in :data:`METHODS`; adding one
(XGrad-CAM, Layer-CAM, ...) is a short file with a registered subclass of :class:`CAMMethod`
(channel weights from activations and gradients) or of :class:`SaliencyMethod`. Tables and figures
name a method by its ``label``, so a new one needs no edit anywhere else.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import backbone_of, family_of, get_submodule
from ..models.families import nhwc_to_nchw
from ..utils import Labels, autocast, check_labels, check_precision

METHODS: dict[str, type["SaliencyMethod"]] = {}

Reshape = Callable[[torch.Tensor], torch.Tensor]
Targets = Labels


def register(name: str, label: str):
    """Class decorator: make a method available to :func:`ca_core.saliency.explain` as ``name``,
    displayed as ``label`` (e.g. ``"Grad-CAM"``)."""
    def add(cls: type["SaliencyMethod"]) -> type["SaliencyMethod"]:
        cls.name, cls.label = name, label
        METHODS[name] = cls
        return cls
    return add


def minmax(x: torch.Tensor, dims: tuple[int, ...] = (-2, -1)) -> torch.Tensor:
    """Scale each slice over ``dims`` to [0, 1]; a constant slice becomes all zeros (never NaN)."""
    lo = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - lo
    return (x - lo) / span.clamp_min(torch.finfo(x.dtype).tiny)


def postprocess(cam: torch.Tensor) -> torch.Tensor:
    """The paper's CAM post-processing: ReLU, then per-image min-max of (B, h, w) maps."""
    return minmax(cam.clamp_min(0))


def upsample(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (B, h, w) maps to ``size`` (align_corners=False), e.g. to the input size."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, h, w), got shape {tuple(maps.shape)}")
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def resolve_targets(targets: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """The given targets after a range check against the logits, or the predicted classes."""
    if targets is None:
        return logits.argmax(dim=1)
    return check_labels(targets, len(logits), logits.shape[1], logits.device)


def resolve_layer(
    model: nn.Module, layer: nn.Module | str | None, reshape: Reshape | None
) -> tuple[nn.Module, Reshape | None]:
    """The target module (the family's CAM layer unless ``layer`` is given: the paper's for ResNet
    and ConvNeXt, the map the global pooling reads for any other timm CNN; a string is a dotted
    path in the backbone, e.g. ``"layer4.-1"``) and its reshape to NCHW.

    Without an explicit ``reshape``, a ``Linear`` layer's output is taken as channels-last (a
    Linear acts on the last axis: ConvNeXt's ``mlp.fc2``); timm's ``conv_mlp`` ConvNeXts (atto to
    nano) have a channels-first 1x1 Conv2d there instead.
    """
    backbone = backbone_of(model)
    if layer is None:
        # a GAP or CA model holds its backbone's family (deriving one runs the backbone once)
        family = model.family if model is not backbone else family_of(backbone)
        if family is None:
            raise ValueError(
                f"no default CAM layer for {type(backbone).__name__} (not a timm CNN whose forward_features "
                "returns a module's (B, C, H, W) map); pass layer= (a module or a dotted path in the backbone "
                "such as 'stages.3')"
            )
        module = get_submodule(backbone, family.cam_layer)
    elif isinstance(layer, str):
        module = get_submodule(backbone, layer)
    elif isinstance(layer, nn.Module):
        module = layer
    else:
        raise TypeError(f"layer must be a module, a dotted path or None, got {type(layer).__name__}")
    if reshape is None and isinstance(module, nn.Linear):
        reshape = nhwc_to_nchw
    return module, reshape


class SaliencyMethod:
    """A saliency method called on a batch of images: ``method(images, targets) -> (B, h, w)``.

    The call processes the images in chunks of ``batch_size`` in eval mode (each module's mode is
    restored afterwards), inside ``with self`` so subclasses can hold resources (hooks) that are
    released even when an exception is raised. Maps are float32 in [0, 1] on the images' device.
    """

    name = ""
    label = ""  # the display name; both set by :func:`register`
    kind = "cam"  # "cam", "attention" (the stream's own map) or "baseline" (ignores the image)

    def __init__(self, model: nn.Module, batch_size: int = 32, progress: bool = False, precision: str = "fp32") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size, self.progress = model, batch_size, progress
        self.device = next(model.parameters()).device
        self.precision = check_precision(precision, self.device)

    def run_model(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """The model's forward pass at the method's ``precision`` (autocast; maps are built in float32)."""
        with autocast(self.device, self.precision):
            return self.model(x, **kwargs)

    def explain_batch(self, x: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Maps (b, h, w) for one chunk of images already on the model's device and dtype."""
        raise NotImplementedError

    def __enter__(self) -> "SaliencyMethod":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, images: torch.Tensor, targets: Targets = None) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(images.shape)}")
        param = next(self.model.parameters())
        targets = None if targets is None else check_labels(targets, len(images), None, param.device)
        x = images.to(param.device, param.dtype)
        modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        try:
            with self:
                maps = []
                for start in range(0, len(x), self.batch_size):
                    chunk = slice(start, start + self.batch_size)
                    maps.append(self.explain_batch(x[chunk], None if targets is None else targets[chunk]))
        finally:
            for module, mode in modes.items():
                module.training = mode
        return torch.cat(maps).to(images.device)


class CAMMethod(SaliencyMethod):
    """A class activation map: a weighted sum of the target layer's channels, ReLU, min-max.

    As a context manager it holds one forward hook on the target layer (removed in ``__exit__``,
    also after exceptions). The hook records the layer's output only while :meth:`forward` is
    running. With ``track_grad`` the forward runs without a gradient tape up to the target layer
    and with one from there on, so the backward pass reaches exactly the activations (through
    the head, or through the CA stream for a CA model) and no parameter gradient is computed.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, batch_size: int = 32,
                 progress: bool = False, reshape: Reshape | None = None, precision: str = "fp32") -> None:
        super().__init__(model, batch_size, progress, precision)
        self.layer, self.reshape = resolve_layer(model, layer, reshape)
        self._handle = None
        self._armed = self._track_grad = False
        self._output: torch.Tensor | None = None

    def __enter__(self) -> "CAMMethod":
        # First in line, so that other hooks on the same module (a CA model's tap on "layer4")
        # see the output this hook returns, the one that carries the gradient.
        self._handle = self.layer.register_forward_hook(self._hook, prepend=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._output, self._armed = None, None, False

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not self._armed:
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"target layer {type(module).__name__} must output a tensor, got {type(output).__name__}")
        if self._output is not None:
            raise RuntimeError(f"target layer {type(module).__name__} ran more than once in one forward pass")
        if self._track_grad:
            torch.set_grad_enabled(True)  # undone when forward()'s no_grad block exits
            self._output = output.detach().requires_grad_()
            return self._output.clone()  # downstream in-place ops must not touch the leaf
        self._output = output.detach().clone()
        return None

    def forward(self, x: torch.Tensor, track_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the target layer's raw output for ``x`` (a leaf requiring grad if asked)."""
        self._armed, self._track_grad, self._output = True, track_grad, None
        try:
            with torch.no_grad():
                logits = self.run_model(x)
            output = self._output
        finally:
            self._armed, self._output = False, None
        if output is None:
            raise RuntimeError(f"target layer {type(self.layer).__name__} did not run in the model's forward pass")
        return logits, output

    def as_maps(self, output: torch.Tensor) -> torch.Tensor:
        """The layer output as float32 (B, K, h, w) channel maps (after the family's reshape)."""
        maps = output if self.reshape is None else self.reshape(output)
        if maps.ndim != 4:
            raise ValueError(
                f"target layer output has shape {tuple(maps.shape)}; CAMs need (B, K, h, w) maps "
                "(pass reshape= for token or channels-last outputs)"
            )
        return maps.float()

    def activations_and_gradients(
        self, x: torch.Tensor, targets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel maps A (B, K, h, w) and d(target logit)/dA for one chunk of images."""
        logits, leaf = self.forward(x, track_grad=True)
        targets = resolve_targets(targets, logits)
        score = logits.gather(1, targets[:, None]).sum()
        if not score.requires_grad:
            raise RuntimeError(f"the model's logits do not depend on target layer {type(self.layer).__name__}")
        (grad,) = torch.autograd.grad(score, leaf)
        return self.as_maps(leaf.detach()), self.as_maps(grad)

    @staticmethod
    def combine(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """ReLU(sum_k w_k A_k) min-maxed per image, for weights (B, K) and maps (B, K, h, w)."""
        return postprocess(torch.einsum("bk,bkhw->bhw", weights, acts))
