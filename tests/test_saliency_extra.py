"""Tests of XGrad-CAM and Layer-CAM against pytorch-grad-cam, and of Opti-CAM against a plain
per-image reference loop written here, its batch independence, objective and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ca_core import build_model
from ca_core.repro import paper
from ca_core.saliency import METHODS, explain, upsample
from ca_core.saliency.base import resolve_layer
from ca_core.saliency.opticam import OptiCAM
from support import randomize

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


# ----------------------------------------------------------------------------- models and data
def make(backbone: str, pooling: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize(build_model(backbone, pooling, num_classes=5))


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, str], nn.Module]:
    return {(b, p): make(b, p) for b in ("resnet_mini", "convnext_mini") for p in ("gap", "ca")}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 56, 56, generator=torch.Generator().manual_seed(1))


def no_grads(model: nn.Module) -> bool:
    return all(p.grad is None for p in model.parameters())


def clear_grads(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.grad = None
    return model


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of (B, h, w) maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_registered_with_labels():
    for name in ("xgradcam", "layercam", "opticam"):
        assert name in METHODS and METHODS[name].kind == "cam" and name in paper.METHOD_LABELS
    assert list(METHODS)[:6] == ["gradcam", "gradcampp", "scorecam", "xgradcam", "layercam", "opticam"]


# ----------------------------------------------------------------------------- pytorch-grad-cam
def their_maps(cam_class, model, layer, images, targets):
    """pytorch-grad-cam's map at feature resolution (its get_cam_image, ReLU, scale_cam_image) and
    its full-size output, as in test_saliency."""
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    x = images.clone().requires_grad_(True)  # a frozen CA backbone needs an input that requires grad
    with cam_class(model=model, target_layers=[layer]) as cam:
        full = cam(input_tensor=x, targets=wanted)
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        low = cam.get_cam_image(x, layer, wanted, acts, grads, eigen_smooth=False)
    return torch.from_numpy(scale_cam_image(np.maximum(low, 0))), torch.from_numpy(full)


@pytest.mark.parametrize("backbone", ["resnet_mini", "convnext_mini"])
@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("method,cam_class", [("xgradcam", XGradCAM), ("layercam", LayerCAM)])
def test_agrees_with_pytorch_grad_cam(models, images, backbone, pooling, method, cam_class):
    model = clear_grads(models[backbone, pooling])
    layer, _ = resolve_layer(model, None, None)
    ours = explain(model, images, method)
    assert no_grads(model)  # before pytorch-grad-cam, which fills the parameters' .grad
    targets = model(images).argmax(1)
    low, full = their_maps(cam_class, model, layer, images, targets)
    assert ours.shape == (3, 7, 7) and ours.dtype == torch.float32
    assert ours.amax(dim=(1, 2)).eq(1).all() and ours.amin(dim=(1, 2)).eq(0).all()
    assert correlation(ours, low).min() >= 0.999
    assert correlation(upsample(ours, 56), full).min() >= 0.999


def test_xgradcam_and_layercam_against_gradcam(models, images):
    """Through GAP and a linear head the gradient is constant over space, so XGrad-CAM's weights are
    Grad-CAM's times h w sum(A) / (sum(A) + eps): the same map. A CA model's gradient varies over
    space and the maps differ; Layer-CAM drops the negative gradients, so it differs on both."""
    gap, ca = models["resnet_mini", "gap"], models["resnet_mini", "ca"]
    torch.testing.assert_close(explain(gap, images, "xgradcam"), explain(gap, images, "gradcam"), atol=1e-5, rtol=0)
    assert not torch.allclose(explain(ca, images, "xgradcam"), explain(ca, images, "gradcam"), atol=1e-2)
    for model in (gap, ca):
        assert not torch.allclose(explain(model, images, "layercam"), explain(model, images, "gradcam"), atol=1e-2)


# ----------------------------------------------------------------------------- Opti-CAM
def ref_opticam(model, layer, images, targets, iterations, lr=0.1, loss="plain"):
    """Opti-CAM one image at a time, written out plainly: returns maps (B, h, w) and losses (B, iterations + 1)."""
    maps, histories = [], []
    for image, t in zip(images, targets):
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o: store.update(a=o[0].detach().clone()))
        try:
            with torch.no_grad():
                clean = model(image[None])[0, t]
        finally:
            handle.remove()
        feats = torch.relu(store["a"])  # (K, h, w)
        pixels = image * STD[:, None, None] + MEAN[:, None, None]
        w = torch.full((len(feats),), 0.5, requires_grad=True)
        adam = torch.optim.Adam([w], lr=lr)

        def objective():
            s = (w.softmax(0)[:, None, None] * feats).sum(0)
            up = F.interpolate(s[None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            mask = (up - up.min()) / (up.max() - up.min())
            masked = (pixels * mask - MEAN[:, None, None]) / STD[:, None, None]
            d = clean - model(masked[None])[0, t]
            return d.abs() if loss == "norm" else d

        history = []
        for _ in range(iterations):
            value = objective()
            (w.grad,) = torch.autograd.grad(value, w)
            adam.step()
            history.append(value.item())
        with torch.no_grad():
            history.append(objective().item())
            s = torch.relu((w.softmax(0)[:, None, None] * feats).sum(0))
            maps.append((s - s.min()) / (s.max() - s.min()))
        histories.append(history)
    return torch.stack(maps), torch.tensor(histories)


@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_opticam_matches_reference_loop(models, images, pooling):
    model = clear_grads(models["resnet_mini", pooling])
    targets = torch.tensor([0, 3, 4])
    cam = OptiCAM(model, iterations=5)
    ours = cam(images, targets)
    ref, history = ref_opticam(model, model.backbone.layer4[-1], images, targets, iterations=5)
    assert ours.shape == (3, 7, 7) and ours.dtype == torch.float32
    assert ours.amax(dim=(1, 2)).eq(1).all() and ours.amin(dim=(1, 2)).eq(0).all()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert cam.last_losses.shape == (6, 3)
    torch.testing.assert_close(cam.last_losses, history.T, atol=1e-5, rtol=1e-4)
    assert no_grads(model) and not model.training


def test_opticam_is_batch_size_independent(models, images):
    model = models["resnet_mini", "ca"]
    one = explain(model, images, "opticam", iterations=5, batch_size=1)
    torch.testing.assert_close(one, explain(model, images, "opticam", iterations=5, batch_size=3), atol=1e-5, rtol=0)
    torch.testing.assert_close(one[1:2], explain(model, images[1:2], "opticam", iterations=5), atol=1e-5, rtol=0)


def test_opticam_objective_decreases(models, images):
    """With the default settings (50 Adam steps at lr 0.1) every image ends with a lower loss than
    at the uniform start w = 0.5; chunks' loss histories are concatenated per image."""
    model = clear_grads(models["resnet_mini", "gap"]).train()
    cam = OptiCAM(model, batch_size=2)
    maps = cam(images, [0, 1, 2])
    losses = cam.last_losses
    assert losses.shape == (51, 3) and losses.dtype == torch.float32  # "plain": clean minus masked logit, any sign
    assert (losses[-1] < losses[0]).all()
    assert model.training and model.backbone.layer4.training and no_grads(model)  # modes restored
    model.eval()
    assert maps.shape == (3, 7, 7)


def test_opticam_loss_options_and_errors(models, images):
    model = models["resnet_mini", "gap"]
    x, targets = images[:2], [1, 2]
    norm = OptiCAM(model, iterations=5, loss="norm")
    plain = OptiCAM(model, iterations=5, loss="plain")
    a, b = norm(x, targets), plain(x, targets)
    assert a.shape == b.shape == (2, 7, 7) and not torch.allclose(a, b, atol=1e-4)
    assert (plain.last_losses[-1] < plain.last_losses[0]).all()  # "plain" raises the masked logit
    torch.testing.assert_close(norm.last_losses[0], plain.last_losses[0].abs())  # same start
    bf16 = explain(model, x, "opticam", iterations=2, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.isfinite().all() and bf16.min() >= 0 and bf16.max() <= 1
    with pytest.raises(ValueError, match=r"unknown Opti-CAM loss 'l2'; valid: plain, norm"):
        explain(model, x, "opticam", loss="l2")
    for lr in (0, -0.1):
        with pytest.raises(ValueError, match="lr must be > 0"):
            explain(model, x, "opticam", lr=lr)
    for iterations in (0, -3, 2.5):
        with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
            explain(model, x, "opticam", iterations=iterations)
