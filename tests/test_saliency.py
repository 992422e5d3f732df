"""Tests of ca_core.saliency against straightforward per-image reference implementations written
here, analytic cases, pytorch-grad-cam, and the error/cleanup contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ca_core import build_model
from ca_core.metrics import pearson
from ca_core.repro import paper
from ca_core.saliency import METHODS, explain, register, upsample
from support import randomize

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


# ----------------------------------------------------------------------------- models and data
def make(backbone: str, pooling: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return randomize(build_model(backbone, pooling=pooling, num_classes=5, **kwargs))


@pytest.fixture(scope="module")
def resnets() -> dict[str, nn.Module]:
    return {p: make("resnet18", p) for p in ("gap", "ca")}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 128, 128, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def small_images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


class Toy(nn.Module):
    """features (a named identity, so activations = the input) -> GAP -> Linear."""

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- reference code
def ref_minmax(cam: torch.Tensor) -> torch.Tensor:
    lo, hi = cam.min(), cam.max()
    return (cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam)


def ref_acts_grads(model, layer, image, target, channels_last=False):
    """One image: activation (K, h, w) and d logit_target / d activation, via retain_grad."""
    store = {}

    def hook(module, inputs, output):
        output.retain_grad()
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(image[None].clone().requires_grad_(True))
        logits[0, target].backward()
    finally:
        handle.remove()
    a, g = store["a"].detach()[0], store["a"].grad[0]
    return (a.permute(2, 0, 1), g.permute(2, 0, 1)) if channels_last else (a, g)


def ref_gradcam(model, layer, images, targets, plusplus=False, channels_last=False):
    maps = []
    for image, t in zip(images, targets):
        a, g = ref_acts_grads(model, layer, image, int(t), channels_last)
        if plusplus:
            w = torch.zeros(len(a))
            for k in range(len(a)):
                alpha = g[k] ** 2 / (2 * g[k] ** 2 + a[k].sum() * g[k] ** 3 + 1e-6)
                alpha[g[k] == 0] = 0
                w[k] = (torch.relu(g[k]) * alpha).sum()
        else:
            w = g.mean(dim=(1, 2))
        maps.append(ref_minmax(torch.relu((w[:, None, None] * a).sum(0))))
    return torch.stack(maps)


@torch.no_grad()
def ref_scorecam(model, layer, images, targets, variant):
    paper = variant == "paper"
    maps = []
    for image, t in zip(images, targets):
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o: store.update(a=o[0].clone()))
        try:
            model(image[None])
        finally:
            handle.remove()
        a = store["a"]
        masked = []
        for k in range(len(a)):
            up = F.interpolate(a[k][None, None], size=image.shape[-2:], mode="bilinear", align_corners=not paper)[0, 0]
            m = ref_minmax(up)
            if paper:
                pixels = image * STD[:, None, None] + MEAN[:, None, None]
                masked.append((pixels * m - MEAN[:, None, None]) / STD[:, None, None])
            else:
                masked.append(image * m)
        logits = model(torch.stack(masked))
        w = logits.softmax(1)[:, t] if paper else logits[:, t].softmax(0)
        maps.append(ref_minmax(torch.relu((w[:, None, None] * a).sum(0))))
    return torch.stack(maps)


# ----------------------------------------------------------------------------- against references
@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_gradient_cams_match_reference(resnets, images, pooling, method):
    model = resnets[pooling]
    targets = torch.tensor([0, 3, 4])
    ours = explain(model, images, method, targets=targets, batch_size=2)
    ref = ref_gradcam(model, model.backbone.layer4[-1], images, targets,
                      plusplus=method == "gradcampp")
    assert ours.shape == (3, 4, 4) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert ours.amax(dim=(1, 2)).eq(1).all() and ours.amin(dim=(1, 2)).eq(0).all()


@pytest.mark.parametrize("conv_mlp", [False, True])
def test_convnext_default_layer_is_fc2_in_both_layouts(conv_mlp):
    """The default ConvNeXt layer is the last block's fc2: a channels-last Linear (convnext_base
    layout) or a channels-first 1x1 conv (timm's conv_mlp variants); GAP and CA agree with the
    reference taken at that module."""
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    for pooling in ("gap", "ca"):
        model = make("convnext_atto", pooling, conv_mlp=conv_mlp)
        layer = model.backbone.stages[3].blocks[-1].mlp.fc2
        ours = explain(model, x, "gradcam", targets=[1, 2])
        ref = ref_gradcam(model, layer, x, [1, 2], channels_last=not conv_mlp)
        assert ours.shape == (2, 3, 3) and ours.amax(dim=(1, 2)).eq(1).all()
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("variant", ["paper", "pytorch_grad_cam"])
def test_scorecam_matches_reference(resnets, small_images, pooling, variant):
    model = resnets[pooling]
    backbone = model.backbone
    targets = torch.tensor([2, 1])
    ours = explain(model, small_images, "scorecam", targets=targets, layer="layer2.-1", batch_size=48, variant=variant)
    ref = ref_scorecam(model, backbone.layer2[-1], small_images, targets, variant)
    assert ours.shape == (2, 8, 8) and ours.amax(dim=(1, 2)).eq(1).all()
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_attention_matches_softmax_of_last_block(resnets, images):
    """Raw attention = softmax(F q / sqrt(C)) of the last CA block, recomputed from its inputs."""
    model = resnets["ca"]
    block = model.stream.blocks[-1]
    store = {}
    handle = block.register_forward_hook(lambda m, inputs, out: store.update(f=inputs[0], q=inputs[1]))
    with torch.no_grad():
        model(images)
    handle.remove()
    f, q = store["f"], store["q"]
    logits = torch.einsum("bchw,bc->bhw", f, q) / f.shape[1] ** 0.5
    ref = torch.stack([ref_minmax(logit.flatten().softmax(0).view_as(logit)) for logit in logits])
    torch.testing.assert_close(explain(model, images, "attention"), ref, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- pytorch-grad-cam
def their_maps(cam_class, model, layer, images, targets, reshape=None):
    """pytorch-grad-cam's map at feature resolution: its own weights and combination
    (get_cam_image), ReLU and min-max (scale_cam_image), i.e. its pipeline minus the final resize;
    plus its full-size output."""
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    x = images.clone().requires_grad_(True)  # a frozen CA backbone needs an input that requires grad
    with cam_class(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        full = cam(input_tensor=x, targets=wanted)
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy() if cam.activations_and_grads.gradients else None
        low = cam.get_cam_image(x, layer, wanted, acts, grads)
    return torch.from_numpy(scale_cam_image(np.maximum(low, 0))), torch.from_numpy(full)


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("method,cam_class", [("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)])
def test_agrees_with_pytorch_grad_cam(resnets, images, pooling, method, cam_class):
    model = resnets[pooling]
    backbone = model.backbone
    ours = explain(model, images, method)
    targets = model(images).argmax(1)
    low, full = their_maps(cam_class, model, backbone.layer4[-1], images, targets)
    assert pearson(ours, low).min() >= 0.999
    assert pearson(upsample(ours, 128), full).min() >= 0.999


@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_convnext_channels_last_agrees_with_pytorch_grad_cam(pooling):
    model = make("convnext_atto", pooling, conv_mlp=False)
    backbone = model.backbone
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    low, _ = their_maps(GradCAMPlusPlus, model, backbone.stages[3].blocks[-1].mlp.fc2, x, [0, 3],
                        reshape=lambda t: t.permute(0, 3, 1, 2))
    assert pearson(explain(model, x, "gradcampp", targets=[0, 3]), low).min() >= 0.999


def test_scorecam_variant_agrees_with_pytorch_grad_cam(resnets, small_images):
    model = resnets["gap"]
    ours = explain(model, small_images, "scorecam", targets=[1, 4], layer="layer2.-1", variant="pytorch_grad_cam")
    low, _ = their_maps(ScoreCAM, model, model.backbone.layer2[-1], small_images.detach(), [1, 4])
    assert pearson(ours, low).min() >= 0.999


# ----------------------------------------------------------------------------- analytic cases
def test_gradcam_of_gap_linear_model_is_the_class_activation_map():
    """For features -> GAP -> Linear, Grad-CAM weights are W[c] / (h w): the map is Zhou et al.'s CAM,
    and Grad-CAM++ weights are ReLU(g) * h w * alpha with the constant gradient g = W[c] / (h w)."""
    torch.manual_seed(5)
    model, x = Toy(), torch.randn(2, 3, 5, 6)
    w = model.fc.weight.detach()
    ref = torch.stack([ref_minmax(torch.relu(torch.einsum("k,khw->hw", w[t], a))) for a, t in zip(x, [0, 2])])
    torch.testing.assert_close(explain(model, x, "gradcam", targets=[0, 2], layer="features"), ref)
    g = w[[0, 2]] / 30
    alpha = g**2 / (2 * g**2 + x.sum(dim=(2, 3)) * g**3 + 1e-6)
    weights = torch.relu(g) * 30 * alpha
    ref_pp = torch.stack([ref_minmax(torch.relu(torch.einsum("k,khw->hw", wk, a))) for wk, a in zip(weights, x)])
    torch.testing.assert_close(explain(model, x, "gradcampp", targets=[0, 2], layer=model.features), ref_pp)


def test_scorecam_with_one_varying_positive_channel_returns_that_channel():
    """Positive weights (probabilities) on one varying channel >= 0 plus constant channels:
    ReLU + min-max leave exactly the min-maxed varying channel."""
    torch.manual_seed(6)
    x = torch.stack([torch.rand(7, 7), torch.full((7, 7), 2.0), torch.zeros(7, 7)])[None]
    maps = explain(Toy(), x, "scorecam", layer="features", mean=(0, 0, 0), std=(1, 1, 1))
    torch.testing.assert_close(maps[0], ref_minmax(x[0, 0]))


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "scorecam"])
def test_constant_or_negative_maps_become_zeros(method):
    model = Toy()
    constant = torch.ones(2, 3, 4, 4)
    maps = explain(model, constant, method, layer="features", mean=(0, 0, 0), std=(1, 1, 1)) if method == "scorecam" \
        else explain(model, constant, method, layer="features")
    assert maps.shape == (2, 4, 4) and torch.equal(maps, torch.zeros_like(maps))
    with torch.no_grad():  # all-negative class weights on positive features: ReLU leaves nothing
        model.fc.weight.fill_(-1.0)
    maps = explain(model, torch.rand(1, 3, 4, 4) + 1, "gradcam", targets=0, layer="features")
    assert torch.equal(maps, torch.zeros(1, 4, 4))


def test_uniform_attention_becomes_zeros():
    model = make("resnet18", "ca")
    with torch.no_grad():  # the token entering the last block is zero: attention is uniform
        model.stream.blocks[-2].proj.weight.zero_()
        model.stream.blocks[-2].proj.bias.zero_()
    maps = explain(model, torch.randn(2, 3, 64, 64), "attention")
    assert torch.equal(maps, torch.zeros(2, 2, 2))


# ----------------------------------------------------------------------------- batching, dtype, modes
def test_layer_override_on_a_ca_tap_module(resnets, images):
    """On a CA model "layer4" is also the stream's tap: the gradient must reach the stream through
    it, giving the same map as its last block "layer4.-1" (the same tensor)."""
    model = resnets["ca"]
    torch.testing.assert_close(explain(model, images, "gradcam", layer="layer4"), explain(model, images, "gradcam"))


def test_default_targets_are_predictions_and_batching_does_not_matter(resnets, images):
    model = resnets["ca"]
    predicted = model(images).argmax(1)
    one = explain(model, images, "gradcampp", batch_size=1)
    torch.testing.assert_close(one, explain(model, images, "gradcampp", targets=predicted, batch_size=3))


def test_scorecam_forwards_masks_in_chunks(small_images, resnets):
    """Every forward gets at most batch_size inputs: one capture pass per image chunk, one blank
    input, then ceil(jobs / batch_size) masked batches over (image, channel) pairs."""
    model = resnets["gap"]
    sizes = []
    handle = model.register_forward_pre_hook(lambda m, inputs: sizes.append(len(inputs[0])))
    try:
        maps = explain(model, small_images, "scorecam", layer="layer2.-1", batch_size=50)
    finally:
        handle.remove()
    with torch.no_grad():
        b = model.backbone
        acts = b.layer2(b.layer1(b.maxpool(b.act1(b.bn1(b.conv1(small_images))))))
    varying = int((acts.flatten(2).amax(-1) > acts.flatten(2).amin(-1)).sum())
    assert max(sizes) <= 50 and sizes[:2] == [2, 1]
    assert sum(sizes[2:]) == varying and len(sizes) == 2 + -(-varying // 50)
    torch.testing.assert_close(maps, explain(model, small_images, "scorecam", layer="layer2.-1", batch_size=7))


def test_float64_model_matches_reference_and_bfloat16_runs():
    model = make("resnet18", "gap").double()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    ours = explain(model, x, "gradcam", targets=[1, 2])
    ref = ref_gradcam(model, model.backbone.layer4[-1], x.double(), [1, 2]).float()
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    bf16 = explain(make("resnet18", "ca").bfloat16(), x, "gradcam")
    assert bf16.dtype == torch.float32 and bf16.isfinite().all() and bf16.min() >= 0 and bf16.max() <= 1


def test_modes_restored_and_running_stats_untouched(resnets, images):
    model = make("resnet18", "gap").train()
    stats = model.backbone.bn1.running_mean.clone()
    explain(model, images, "gradcam")
    assert model.training and model.backbone.layer4.training and torch.equal(model.backbone.bn1.running_mean, stats)
    assert all(p.grad is None for p in model.parameters())


def test_progress_bar(capsys, small_images, resnets):
    explain(resnets["gap"], small_images[:1], "scorecam", layer="layer2.-1", progress=True)
    assert "Score-CAM" in capsys.readouterr().err


def test_upsample_bilinear_to_input_size():
    maps = torch.rand(2, 3, 4)
    up = upsample(maps, (6, 8))
    ref = F.interpolate(maps[:, None], size=(6, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(up, ref)
    assert upsample(maps, 12).shape == (2, 12, 12)


# ----------------------------------------------------------------------------- errors and cleanup
def hooks_of(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_hooks_released_after_exceptions(resnets, images, method):
    model = resnets["ca"]
    before = hooks_of(model)
    with pytest.raises(ValueError, match=r"label 7 of item 1 does not fit a model with 5 classes"):
        explain(model, images, method, targets=[0, 7, 1])
    with pytest.raises(RuntimeError):  # fails inside the model's forward
        explain(model, images[:, :2], method)
    assert hooks_of(model) == before and torch.is_grad_enabled() and not model.training


def test_clear_errors(resnets, images):
    gap, ca = resnets["gap"], resnets["ca"]
    valid = "valid: gradcam, gradcampp, scorecam, xgradcam, layercam, opticam, attention, random, centre"
    with pytest.raises(ValueError, match=rf"unknown saliency method 'gradcam\+'; {valid}"):
        explain(gap, images, "gradcam+")
    assert set(METHODS) == {"gradcam", "gradcampp", "scorecam", "xgradcam", "layercam", "opticam", "attention",
                            "random", "centre"}
    with pytest.raises(ValueError, match="CA-Stream model"):
        explain(gap, images, "attention")
    with pytest.raises(ValueError, match=r"one integer class index per image \(3 images\).*shape \(2,\)"):
        explain(ca, images, "gradcam", targets=[0, 1])
    with pytest.raises(ValueError, match="float32"):
        explain(ca, images, "gradcam", targets=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="variant 'opencv'"):
        explain(ca, images, "scorecam", variant="opencv")
    with pytest.raises(ValueError, match="no default CAM layer for Toy"):
        explain(Toy(), images, "gradcam")
    with pytest.raises(ValueError, match="layer9"):
        explain(gap, images, "gradcam", layer="layer9")
    with pytest.raises(RuntimeError, match="did not run"):
        explain(gap, images, "gradcam", layer=nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        explain(gap, images[0], "gradcam")


# ----------------------------------------------------------------------------- display names
def test_each_method_declares_its_display_name():
    """The book's names of the registered methods: each method's own label, marked by the paper's layer."""
    assert {name: cls.label for name, cls in METHODS.items()} == {
        "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM", "xgradcam": "XGrad-CAM",
        "layercam": "Layer-CAM", "opticam": "Opti-CAM", "attention": "Raw attention", "random": "Random",
        "centre": "Centre"}
    assert dict(paper.METHOD_LABELS) == {
        "attention": "Raw attention", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM",
        "xgradcam": "XGrad-CAM (beyond paper)", "layercam": "Layer-CAM (beyond paper)",
        "opticam": "Opti-CAM (beyond paper)", "random": "Random (baseline)", "centre": "Centre (baseline)"}
    assert paper.METHOD_LABELS | {"resnet50": "ResNet-50"} == dict(paper.METHOD_LABELS, resnet50="ResNet-50")


def test_a_new_method_is_named_in_the_book_without_an_edit_there(resnets, images):
    @register("newcam", "New-CAM")
    class NewCAM(METHODS["gradcam"]):
        """Grad-CAM under another name: a method the reproduction layer has never heard of."""

    try:
        assert METHODS["newcam"] is NewCAM and NewCAM.label == "New-CAM"
        assert explain(resnets["gap"], images, "newcam").shape[0] == len(images)
        assert paper.METHOD_LABELS["newcam"] == paper.method_label("newcam") == "New-CAM (beyond paper)"
        assert "newcam" in paper.METHOD_LABELS and list(paper.METHOD_LABELS)[-1] == "newcam"
    finally:
        del METHODS["newcam"]
    assert "newcam" not in paper.METHOD_LABELS and paper.METHOD_LABELS.get("newcam", "newcam") == "newcam"


# ----------------------------------------------------------------------------- sanity baselines
@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_baselines_ignore_the_image_content(resnets, images, pooling):
    model = resnets[pooling]
    cam = explain(model, images, "gradcam")
    for method in ("random", "centre"):
        maps = explain(model, images, method, targets=[0, 1, 2])
        assert maps.shape == cam.shape and maps.min() >= 0 and maps.max() <= 1
        assert torch.equal(explain(model, images[1:2], method), maps[1:2])  # per image, whatever the batch
    centre = explain(model, images, "centre")
    assert torch.equal(centre[0], centre[1])  # the same map for every image
    h, w = centre.shape[1:]
    assert centre[0, h // 2, w // 2] == centre[0, (h - 1) // 2, (w - 1) // 2] == 1  # peak at the centre
    noise = explain(model, images, "random")
    assert not torch.equal(noise[0], noise[1])  # a different draw per image
    assert not torch.equal(explain(model, images, "random", seed=1), noise)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        explain(model, images, "centre", sigma=0)
    with pytest.raises(ValueError, match="label 7 of item 1"):
        explain(model, images, "random", targets=[0, 7, 1])
