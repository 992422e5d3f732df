"""Backbone families: where the CA-Stream taps a timm backbone, and where CAMs look.

A family is recognised from the timm model class. Adding one is a new :class:`Family` entry in
:data:`FAMILIES`; any other timm CNN works when the caller names its tap modules.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
from torch import nn
from timm.models.convnext import ConvNeXt
from timm.models.resnet import ResNet


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    """Channels-last activations (B, H, W, C) of a pointwise Linear to (B, C, H, W)."""
    return x.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Family:
    """Tap points of the stream, the paper's CAM target layer and how the authors' code initialises
    the stream's projections for one backbone family.

    ``projection_std``: ``None`` keeps the CA blocks' own init (xavier-uniform weight, PyTorch's default
    bias: the authors' ResNet stream); a number re-initialises every block's projection from a normal
    of that std (``trunc_normal_(std=0.02)``) with zero bias, as the model-wide init loop of the
    authors' ConvNeXt stream does after building its blocks (paper.md §1.2).
    """

    name: str
    model_class: type
    taps: tuple[str, ...]
    cam_layer: str
    projection_std: float | None = None


FAMILIES: dict[str, Family] = {
    # Stem after max-pool, then the output of every stage (paper.md §1.4).
    "resnet": Family("resnet", ResNet, ("maxpool", "layer1", "layer2", "layer3", "layer4"), "layer4.-1"),
    # Stem, input of stage 2 and 3 (after their downsample), output of stage 4 (paper.md §1.5).
    # CAMs: second pointwise layer of the last block, before layer-scale (§3). It is a
    # channels-last Linear (convnext_tiny and up) or a 1x1 Conv2d (conv_mlp: atto to nano).
    "convnext": Family(
        "convnext",
        ConvNeXt,
        ("stem", "stages.1.downsample", "stages.2.downsample", "stages.3"),
        "stages.3.blocks.-1.mlp.fc2",
        projection_std=0.02,
    ),
}


def family_of(backbone: nn.Module) -> Family | None:
    """The :class:`Family` of a timm backbone, or ``None`` when it is not a known family."""
    for family in FAMILIES.values():
        if isinstance(backbone, family.model_class):
            return family
    return None


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """Resolve a dotted module path in which integers may be negative (``"layer4.-1"``)."""
    module = model
    for part in path.split("."):
        try:
            if part.lstrip("-").isdigit():
                module = module[int(part)]  # type: ignore[index]
            else:
                module = getattr(module, part)
        except (AttributeError, IndexError, TypeError) as err:
            raise ValueError(f"module path {path!r}: no submodule {part!r} in {type(module).__name__}") from err
    if not isinstance(module, nn.Module):
        raise ValueError(f"module path {path!r} names a {type(module).__name__}, not a module")
    return module
