"""Any timm CNN without names: taps and CAM layer derived from timm's feature_info (EfficientNet,
MobileNetV3, RegNet; random weights, small inputs), the paper's families unchanged, forward and
backward, every kind of map, and Grad-CAM equal to pytorch-grad-cam's on the same layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ca_core import build_model
from ca_core.models import FAMILIES, family_of, get_submodule
from ca_core.models.families import pooled_map, timm_family
from ca_core.saliency import explain, upsample
from support import randomize

# What the rule picks: timm's feature_info stages, the last one replaced by the map the pooling reads.
PICKS = {
    "efficientnet_b0": (("blocks.0", "blocks.1", "blocks.2", "blocks.4", "bn2"), "bn2"),  # not blocks.6 (320 ch)
    "mobilenetv3_small_100": (("bn1", "blocks.0", "blocks.1", "blocks.3", "blocks.5"), "blocks.5"),
    "regnetx_002": (("stem", "s1", "s2", "s3", "s4"), "s4"),
}


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, str], nn.Module]:
    torch.manual_seed(0)
    return {(name, pooling): randomize(build_model(name, pooling=pooling, num_classes=5))
            for name in PICKS for pooling in ("gap", "ca")}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", PICKS)
def test_taps_and_cam_layer_come_from_feature_info_and_the_pooled_map(models, name):
    backbone = models[name, "gap"].backbone
    taps, cam_layer = PICKS[name]
    for pooling in ("gap", "ca"):
        family = models[name, pooling].family
        assert (family.taps, family.cam_layer) == (taps, cam_layer)
        assert family.projection_std is None and family not in FAMILIES.values()
    assert models[name, "ca"].taps == taps and models[name, "ca"].widths[-1] == backbone.num_features
    seen = []
    handle = get_submodule(backbone, cam_layer).register_forward_hook(lambda m, i, o: seen.append(o))
    features = backbone.forward_features(torch.randn(1, 3, 64, 64))
    handle.remove()
    assert seen == [features]  # the very tensor the global pooling reads


def test_paper_families_keep_their_placements():
    for name, family in [("resnet18", "resnet"), ("convnext_atto", "convnext")]:
        assert family_of(build_model(name, pooling="gap").backbone) is FAMILIES[family]


class InPlaceEnd(nn.Module):
    """A timm-like CNN whose last feature_info entry is a BatchNorm that an in-place ReLU then
    changes, followed by a pass-through Identity."""

    feature_info = [dict(module="conv", num_chs=4, reduction=2), dict(module="bn", num_chs=4, reduction=2)]

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)
        self.act, self.final = nn.ReLU(inplace=True), nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.act(self.bn(self.conv(x))))


def test_pooled_map_is_not_a_module_whose_output_was_changed_in_place():
    model = InPlaceEnd().train()
    assert pooled_map(model) == "act"
    assert timm_family(model).taps == ("conv", "act")
    assert model.bn.num_batches_tracked == 0 and all(m.training for m in model.modules())  # probed in eval mode


@pytest.mark.parametrize("name", PICKS)
def test_forward_and_backward(models, name):
    gap, ca = models[name, "gap"], models[name, "ca"]
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    torch.testing.assert_close(gap(x), gap.backbone(x))
    ca.zero_grad(set_to_none=True)
    logits, attn = ca(x, return_attention=True)
    assert logits.shape == (2, 5) and attn.shape == (2, 2, 2)
    torch.testing.assert_close(attn.sum(dim=(1, 2)), torch.ones(2))
    logits[:, 1].sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in ca.stream.parameters())
    assert all(p.grad is None for p in ca.backbone.parameters())


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("name", PICKS)
def test_every_kind_of_map(models, images, name, pooling):
    model = models[name, pooling]
    methods = ["gradcam", "gradcampp"] + (["attention"] if pooling == "ca" else [])
    maps = {m: explain(model, images, m) for m in methods}
    maps["scorecam"] = explain(model, images[:1, :, :64, :64], "scorecam")  # one masked forward per channel
    for method, m in maps.items():
        assert m.shape[1:] == ((2, 2) if method == "scorecam" else (3, 3)) and m.dtype == torch.float32
        assert m.amin() >= 0 and m.amax() == 1, method


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of (B, h, w) maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("name", PICKS)
def test_gradcam_equals_pytorch_grad_cam_on_the_same_layer(models, name, pooling):
    """Their map at feature resolution (their weights and combination, ReLU, min-max) and at full size."""
    model = models[name, pooling]
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    ours = explain(model, x, "gradcam")
    targets = [ClassifierOutputTarget(int(t)) for t in model(x).argmax(1)]
    layer = get_submodule(model.backbone, PICKS[name][1])
    x = x.clone().requires_grad_(True)  # a frozen CA backbone needs an input that requires grad
    with GradCAM(model=model, target_layers=[layer]) as cam:
        full = torch.from_numpy(cam(input_tensor=x, targets=targets))
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        low = torch.from_numpy(scale_cam_image(np.maximum(cam.get_cam_image(x, layer, targets, acts, grads), 0)))
    assert ours.shape == (2, 4, 4)
    torch.testing.assert_close(ours, low, atol=1e-5, rtol=0)
    assert correlation(upsample(ours, 128), full).min() >= 0.999
