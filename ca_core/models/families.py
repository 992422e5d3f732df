"""Backbone families: where the CA-Stream taps a timm backbone, and where CAMs look.

The paper's families (ResNet, ConvNeXt) are recognised from the timm model class and keep the
paper's placements (:data:`FAMILIES`). Any other timm CNN (EfficientNet, MobileNet, RegNet, ...)
gets a family derived from timm's own ``feature_info`` (:func:`timm_family`), so that it needs no
module names either.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import timm.data
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
    """The :class:`Family` of a timm backbone: the paper's for a ResNet or ConvNeXt, else the one
    derived from timm's ``feature_info`` (:func:`timm_family`); ``None`` for a model that is neither."""
    for family in FAMILIES.values():
        if isinstance(backbone, family.model_class):
            return family
    return timm_family(backbone)


def timm_family(backbone: nn.Module) -> Family | None:
    """The family of any timm CNN, from timm's ``feature_info`` (the stem, then each reduction stage).

    Taps: every ``feature_info`` module but the last, then the map the backbone's global pooling
    reads (:func:`pooled_map`), which is also the CAM layer. The last ``feature_info`` entry is not
    always that map: EfficientNet's is ``blocks.6`` (320 channels), while ``conv_head`` and ``bn2``
    (1280 channels) still follow before the pooling. ``None`` when the backbone has no
    ``feature_info`` or its features are not such a map (a ViT's tokens).
    """
    info = getattr(backbone, "feature_info", None)
    pooled = pooled_map(backbone) if isinstance(info, list) and info else None
    if pooled is None:
        return None
    taps = tuple(entry["module"] for entry in info[:-1]) + (pooled,)
    return Family(type(backbone).__name__.lower(), type(backbone), taps, pooled)


def pooled_map(backbone: nn.Module) -> str | None:
    """The name of the module whose output ``backbone.forward_features`` returns: the (B, C, H, W)
    map that the global pooling reads. ``None`` when there is no such map or module.

    Found by one ``forward_features`` on a blank image of the model's input size (eval mode, no
    gradient), with a hook on every module. Several modules return that very tensor (a stage, its
    last block, the block's activation, a pass-through ``Identity`` after the stage); one whose
    output a later module changed in place (a BatchNorm before an in-place ReLU) is not it. Of
    the rest: timm's name of the last stage (the last ``feature_info`` entry) when it is one, else
    the outermost (the first in ``named_modules`` order).
    """
    outputs: dict[str, tuple[torch.Tensor, int]] = {}
    handles = [module.register_forward_hook(partial(_remember, outputs, name))
               for name, module in backbone.named_modules() if name]
    modes = {module: module.training for module in backbone.modules()}
    p = next(backbone.parameters())
    x = torch.zeros(1, *timm.data.resolve_model_data_config(backbone)["input_size"], dtype=p.dtype, device=p.device)
    try:
        backbone.eval()
        # inference_mode off: its tensors have no version counter (a model used under inference_mode)
        with torch.inference_mode(False), torch.no_grad():
            features = backbone.forward_features(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        return None
    names = [name for name, _ in backbone.named_modules()
             if name in outputs and outputs[name][0] is features and outputs[name][1] == features._version]
    info = getattr(backbone, "feature_info", None)
    last_stage = info[-1]["module"] if isinstance(info, list) and info else None
    return last_stage if last_stage in names else next(iter(names), None)


def _remember(outputs: dict[str, tuple[torch.Tensor, int]], name: str, module: nn.Module, inputs: tuple,
              output: object) -> None:
    """Forward hook of :func:`pooled_map`: a module's output tensor and its version (in-place edits count)."""
    if isinstance(output, torch.Tensor):
        outputs[name] = (output, output._version)


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
