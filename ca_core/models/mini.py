"""Small timm architectures for the embedded experiment, registered in timm's model registry.

The paper's backbones end on a 7x7 map at 224 px (total stride 32). Trained from scratch on
this machine's CPU, the embedded experiment works at 64 px, so these variants downsample 8x
instead: ``resnet_mini`` is a timm ResNet (BasicBlock) whose stem keeps full resolution (3x3
stride-1 conv, no max-pool), ``convnext_mini`` a timm ConvNeXt with a 1x1 patch stem. Both end
on an 8x8 map at 64 px and keep their family's module names, so the CA-Stream taps and CAM
layers of :data:`ca_core.models.FAMILIES` apply unchanged.

``build_model("resnet_mini", num_classes=10)`` works once ``ca_core.models`` is imported.
"""
from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

INPUT_SIZE = 64  # pixels; the last feature map is INPUT_SIZE / 8 on a side


def _cfg(first_conv: str, classifier: str) -> dict:
    """Pretrained-config entry (no weights): tells timm's data config the input size and normalisation."""
    return {
        "url": "", "num_classes": 10, "input_size": (3, INPUT_SIZE, INPUT_SIZE),
        "pool_size": (INPUT_SIZE // 8, INPUT_SIZE // 8), "crop_pct": 1.0, "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": first_conv, "classifier": classifier, "license": "mit",
    }


default_cfgs = generate_default_cfgs({
    "resnet_mini": _cfg("conv1", "fc"),
    "convnext_mini": _cfg("stem.0", "head.fc"),
})


def _full_resolution_stem(model: ResNet) -> ResNet:
    """Replace the 7x7 stride-2 stem conv and the max-pool by a 3x3 stride-1 conv and an identity.

    The identity keeps the module name ``maxpool``, the CA-Stream's first tap.
    """
    width = model.conv1.out_channels
    model.conv1 = nn.Conv2d(model.conv1.in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    model.feature_info = [{**info, "reduction": info["reduction"] // 4} for info in model.feature_info]
    return model


@register_model
def resnet_mini(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet with one BasicBlock per stage, widths 32-64-128-256, total stride 8."""
    args = dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_width=32)
    model = build_model_with_cfg(ResNet, "resnet_mini", pretrained, **dict(args, **kwargs))
    return _full_resolution_stem(model)


@register_model
def convnext_mini(pretrained: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt with depths 1-1-2-1, dims 32-64-128-256 and a 1x1 patch stem: total stride 8."""
    args = dict(depths=(1, 1, 2, 1), dims=(32, 64, 128, 256), patch_size=1)
    return build_model_with_cfg(
        ConvNeXt, "convnext_mini", pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True), **dict(args, **kwargs),
    )
