"""Tests of ROAD (ca_core.metrics.road): equality with pytorch-grad-cam's ROAD classes at noise 0,
deterministic noise, a known-relevant region, and input checks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam.metrics import road as gradcam_road
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from ca_core.metrics.road import road
from ca_core.saliency import upsample
from support import randomize

HEIGHT, WIDTH = 32, 40  # not square, so rows and columns cannot be swapped unnoticed


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return randomize(timm.create_model("resnet18", num_classes=5, pretrained=False))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))


def random_maps(size: tuple[int, int]) -> torch.Tensor:
    """Three maps: uniform noise, and two ReLU'd Gaussians (many exact zeros, so ties and, at low
    MoRF percentiles, images with every pixel removed)."""
    g = torch.Generator().manual_seed(2)
    maps = torch.cat([torch.rand(1, *size, generator=g), torch.randn(2, *size, generator=g).clamp(min=0)])
    return maps / maps.flatten(1).amax(dim=1)[:, None, None]


class NoiselessImputer(gradcam_road.NoisyLinearImputer):
    """pytorch-grad-cam's imputer at noise 0 (its ROAD classes build it with the default 0.01)."""

    def __init__(self) -> None:
        super().__init__(noise=0.0)


def gradcam_scores(model: nn.Module, images: torch.Tensor, maps: np.ndarray, targets: list[int],
                   percentiles: list[int]) -> dict[str, np.ndarray]:
    """pytorch-grad-cam's three ROAD scores, its imputer's noise (hard-wired 0.01) set to 0."""
    classes = {"morf": gradcam_road.ROADMostRelevantFirstAverage, "lerf": gradcam_road.ROADLeastRelevantFirstAverage,
               "combined": gradcam_road.ROADCombined}
    outputs = [ClassifierOutputSoftmaxTarget(t) for t in targets]
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spsolve's singular-matrix warning when every pixel is removed
        patch.setattr(gradcam_road, "NoisyLinearImputer", NoiselessImputer)
        return {name: cls(percentiles)(images, maps, outputs, model) for name, cls in classes.items()}


@pytest.mark.parametrize("map_size", [(HEIGHT, WIDTH), (8, 10)], ids=["image-size", "upsampled"])
def test_matches_pytorch_grad_cam(model, images, map_size):
    maps, targets, percentiles = random_maps(map_size), [0, 3, 4], [10, 20, 30, 40, 50, 60, 70, 80, 90]
    ours = road(model, images, maps, targets, percentiles, noise=0, batch_size=7)
    theirs = gradcam_scores(model.eval(), images, upsample(maps, (HEIGHT, WIDTH)).numpy(), targets, percentiles)
    for name in ("morf", "lerf", "combined"):
        np.testing.assert_allclose(ours[name].numpy(), theirs[name], atol=1e-5, rtol=0, err_msg=name)
    assert ours["morf"].abs().max() > 1e-3  # the perturbations change the scores: the test can fail


def test_asymmetric_percentiles_match(model, images):
    """Uneven percentiles tell "remove p %" from grad-cam's "remove above the p-th percentile"."""
    maps, targets, percentiles = random_maps((HEIGHT, WIDTH)), [1, 1, 2], [5, 15, 25]
    ours = road(model, images, maps, targets, percentiles, noise=0)
    theirs = gradcam_scores(model.eval(), images, maps.numpy(), targets, percentiles)
    for name in ("morf", "lerf", "combined"):
        np.testing.assert_allclose(ours[name].numpy(), theirs[name], atol=1e-5, rtol=0, err_msg=name)


def test_noise_is_seeded(model, images):
    maps = random_maps((8, 10))
    first, again = (road(model, images, maps, [0, 1, 2], noise=0.1, seed=5) for _ in range(2))
    other_seed = road(model, images, maps, [0, 1, 2], noise=0.1, seed=6)
    other_batches = road(model, images, maps, [0, 1, 2], noise=0.1, seed=5, batch_size=5)
    clean = road(model, images, maps, [0, 1, 2], noise=0)
    for name in first:
        assert torch.equal(first[name], again[name])
        torch.testing.assert_close(first[name], other_batches[name], atol=1e-6, rtol=0)
    assert not torch.allclose(first["morf"], other_seed["morf"])
    assert not torch.allclose(first["morf"], clean["morf"])


class RegionModel(nn.Module):
    """Two-class "classifier" that only looks at the top-left quadrant: logit 0 is 4 x its mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = 4 * x[:, :, : x.shape[2] // 2, : x.shape[3] // 2].mean(dim=(1, 2, 3))
        return torch.stack([evidence, -evidence], dim=1)


def test_relevant_region_first_lowers_morf():
    g = torch.Generator().manual_seed(3)
    images = 0.1 * torch.randn(2, 3, 24, 24, generator=g)
    images[:, :, :12, :12] += 1.0  # the evidence for class 0, surrounded by ~0
    region = torch.zeros(24, 24)
    region[:12, :12] = 1
    good = 0.5 * region + 0.5 * torch.rand(2, 24, 24, generator=g)  # the region first, random order within
    scores, inverse = (road(RegionModel(), images, m, [0, 0], noise=0.01) for m in (good, 1 - good))
    assert (scores["morf"] < inverse["morf"] - 0.1).all()
    assert (scores["lerf"] > inverse["lerf"]).all()
    assert (scores["combined"] > inverse["combined"]).all()


@pytest.mark.parametrize("options,message", [
    ({"percentiles": (0, 50)}, "percentiles"),
    ({"percentiles": (50, 100)}, "percentiles"),
    ({"percentiles": ()}, "percentiles"),
    ({"percentiles": ("a",)}, "percentiles"),
    ({"percentiles": (float("nan"),)}, "percentiles"),
    ({"noise": -0.1}, "noise"),
    ({"noise": float("nan")}, "noise"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_options(model, images, options, message):
    with pytest.raises(ValueError, match=message):
        road(model, images, random_maps((8, 10)), [0, 1, 2], **options)


def test_bad_inputs(model, images):
    maps = random_maps((8, 10))
    with pytest.raises(ValueError, match="images"):
        road(model, images[0], maps, [0, 1, 2])
    with pytest.raises(ValueError, match="maps"):
        road(model, images, maps[:2], [0, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        road(model, images, maps * 2, [0, 1, 2])
    with pytest.raises(ValueError, match="targets"):
        road(model, images, maps, [0, 1, 5])
