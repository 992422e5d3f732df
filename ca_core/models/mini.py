"""Small timm architectures for the embedded experiment, registered in timm's model registry.

The paper's backbones end on a 7x7 map at 224 px (total stride 32). The embedded experiment trains
from scratch on this machine's CPU at 56 px, so these variants stop downsampling at stride 8 with
timm's own ``output_stride=8`` (the last two stages keep the resolution): at 56 px the last feature
map is 7x7, as in the paper. timm dilates those stages' convolutions (by 2 and 4) so that ImageNet
weights stay valid at the finer stride; these backbones train from scratch, so :func:`undilate`
makes them plain convolutions again. Dilation spread every final feature over several times the
image (receptive field 195 px at 56 px for ``resnet_mini``, 115 px without), and the Grad-CAM maps
with it: on the default data Grad-CAM's pointing game rose from 77.8 to 88.0 % and its energy in
the object from 15.3 to 24.5 % without it (the book's training page). ``resnet_mini`` is a timm
ResNet of BasicBlocks, ``convnext_mini`` a timm ConvNeXt; both are narrow and shallow, and keep
their family's module names, so the CA-Stream taps and CAM layers of
:data:`ca_core.models.FAMILIES` apply unchanged.

Both are configured for training from scratch in a few hundred steps on a CPU: live residual
branches (no zero-init of a ResNet block's last BatchNorm, no layer scale in ConvNeXt blocks), He
init for ``convnext_mini`` in place of timm's std-0.02 init (made for long ImageNet schedules), and,
through timm's own ConvNeXt options, BatchNorm in the blocks (``conv_mlp=True``), ReLU and 3x3
depthwise kernels (7x7 ones are slow on a CPU). The book's training page
records the measurements behind these choices.

``build_model("resnet_mini", num_classes=10)`` works once ``ca_core.models`` is imported.
"""
from __future__ import annotations

from torch import nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.layers import Conv2dSame, LayerNorm2d
from timm.models.convnext import ConvNeXt
from timm.models.resnet import BasicBlock, ResNet

INPUT_SIZE = 56  # pixels; the last feature map is INPUT_SIZE / 8 = 7 on a side


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


def he_init(model: nn.Module) -> nn.Module:
    """He-normal init of every convolution and linear layer (zero biases); returns ``model``.

    Depthwise convolutions use fan-out mode, which PyTorch computes over all output channels, so
    their weights stay small as in a normal-width convolution.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            nn.init.kaiming_normal_(module.weight, mode="fan_out" if depthwise else "fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def undilate(model: nn.Module) -> nn.Module:
    """Make every dilated convolution a plain one whose output keeps its input's size (all run at
    stride 1); returns ``model``. The parameters (names, shapes, values) do not change and no random
    number is drawn, so checkpoints load and seeded runs initialise as before."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and max(module.dilation) > 1:
            if max(module.stride) > 1:
                raise ValueError(f"cannot undilate a strided convolution: {module}")
            model.set_submodule(name, _same_size(module))
    return model


def _same_size(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` without dilation, padded so that its output has the input's size: 'same' padding for
    odd kernels; for an even kernel (the ConvNeXt's last downsampling, 2x2) timm's ``Conv2dSame``,
    which pads the extra row and column after the input as PyTorch's 'same' does (the same
    numbers), but explicitly, where PyTorch's 'same' warns about the padded copy it makes."""
    if all(k % 2 for k in conv.kernel_size):
        conv.dilation, conv.padding = (1, 1), "same"
        return conv
    same = Conv2dSame(conv.in_channels, conv.out_channels, conv.kernel_size, groups=conv.groups,
                      bias=conv.bias is not None, device="meta")  # no initialisation: no random draw
    same.weight, same.bias = conv.weight, conv.bias
    return same.train(conv.training)


@register_model
def resnet_mini(pretrained: bool = False, dilated: bool = False, **kwargs) -> ResNet:
    """ResNet with one BasicBlock per stage, widths 16-32-64-128, output stride 8 without dilation
    (``dilated=True``: timm's dilated stages, for the ablation of ``benchmarks/regime.py``), no zero-init."""
    args = dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16, output_stride=8,
                zero_init_last=False)
    model = build_model_with_cfg(ResNet, "resnet_mini", pretrained, **dict(args, **kwargs))
    return model if dilated else undilate(model)


@register_model
def convnext_mini(pretrained: bool = False, dilated: bool = False, **kwargs) -> ConvNeXt:
    """ConvNeXt with one block per stage, dims 24-48-96-192, 3x3 depthwise kernels, BatchNorm and ReLU in
    the blocks, output stride 8 without dilation (``dilated=True``: timm's dilated stages), no layer
    scale, He init, and ConvNeXt's LayerNorm before the classifier: the CA-Stream's token goes through
    that frozen head, which in the paper's ConvNeXt-B is LayerNorm2d then Linear (paper.md §1.5)."""
    args = dict(depths=(1, 1, 1, 1), dims=(24, 48, 96, 192), kernel_sizes=3, conv_mlp=True,
                norm_layer="batchnorm2d", act_layer="relu", output_stride=8, ls_init_value=None)
    model = build_model_with_cfg(
        ConvNeXt, "convnext_mini", pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True), **dict(args, **kwargs),
    )
    model.head.norm = LayerNorm2d(model.num_features)  # the classifier's norm of every timm ConvNeXt
    model = model if pretrained else he_init(model)
    return model if dilated else undilate(model)
