"""Tests of the cascading model parameter randomisation test (ca_core.metrics.sanity) on small
random-weight mini models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from torch import nn

from ca_core import build_model
from ca_core.metrics.sanity import SanityResult, cascading_randomisation, randomisation_steps, rank_correlation
from support import randomize

RESNET_CA_STEPS = ["classifier", "stream.block4", "stream.block3", "stream.block2", "stream.block1",
                   "stream.block0", "stream.token", "stage4", "stage3", "stage2", "stage1", "stem"]


def make(backbone: str, pooling: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize(build_model(backbone, pooling=pooling, num_classes=5))


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {p: make("resnet_mini", p) for p in ("gap", "ca")}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(6, 3, 56, 56, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- the cascade
@pytest.mark.parametrize("backbone,pooling,expected", [
    ("resnet_mini", "gap", ["classifier", "stage4", "stage3", "stage2", "stage1", "stem"]),
    ("resnet_mini", "ca", RESNET_CA_STEPS),
    ("convnext_mini", "ca", ["classifier", "stream.block3", "stream.block2", "stream.block1", "stream.block0",
                             "stream.token", "stage4", "stage3", "stage2", "stage1", "stem"]),
    # timm's coarse groups of any family: EfficientNet's last stage holds blocks.6 and its conv_head
    ("tf_efficientnet_lite0", "gap", ["classifier", *(f"stage{k}" for k in range(7, 0, -1)), "stem"]),
    ("regnetx_002", "gap", ["classifier", "stage4", "stage3", "stage2", "stage1", "stem"]),
])
def test_steps_top_down_cover_every_parameter_once(backbone, pooling, expected):
    model = build_model(backbone, pooling=pooling, num_classes=5)
    steps = randomisation_steps(model)
    assert [name for name, _ in steps] == expected
    listed = [p for _, params in steps for p in params]
    assert sorted(listed) == sorted(n for n, _ in model.named_parameters())
    assert all(params for _, params in steps)


def test_classifier_step_is_the_head():
    resnet = dict(randomisation_steps(build_model("resnet_mini", "ca", num_classes=5)))
    convnext = dict(randomisation_steps(build_model("convnext_mini", "gap", num_classes=5)))
    assert resnet["classifier"] == ["backbone.fc.weight", "backbone.fc.bias"]
    assert resnet["stream.token"] == ["stream.cls_token"]
    assert convnext["classifier"] == ["backbone.head.norm.weight", "backbone.head.norm.bias",
                                      "backbone.head.fc.weight", "backbone.head.fc.bias"]


# ----------------------------------------------------------------------------- methods
@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_gradcam_passes(models, images, pooling):
    result = cascading_randomisation(models[pooling], images, None, "gradcam")
    assert result.method == "gradcam"
    assert result.steps == tuple(name for name, _ in randomisation_steps(models[pooling]))
    assert result.correlations.shape == (len(result.steps), len(images))
    assert np.median(result.correlations[-1]) < 0.5
    assert result.passes()
    assert list(result.summary()) == list(result.steps)


@pytest.mark.parametrize("method", ["centre", "random"])
def test_maps_that_ignore_the_model_fail(models, images, method):
    """``centre`` is one fixed map; ``random`` is seeded by the image's bytes, not by the model."""
    result = cascading_randomisation(models["ca"], images, None, method)
    np.testing.assert_array_equal(result.correlations, 1.0)
    assert not result.passes()
    assert set(result.summary().values()) == {1.0}


def test_attention_changes_with_the_stream(models, images):
    result = cascading_randomisation(models["ca"], images, None, "attention")
    medians = result.summary()
    # The last block's attention is computed before its projection and the classifier.
    assert medians["classifier"] == medians["stream.block4"] == 1.0
    assert medians["stream.block3"] < 0.5
    assert result.passes()


# ----------------------------------------------------------------------------- contract
def test_callers_model_is_unchanged(models, images):
    model = models["ca"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cascading_randomisation(model, images, torch.arange(len(images)) % 5, "gradcam", layer=model.backbone.layer3)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_deterministic_and_steps_independent(models, images):
    model = models["gap"]
    first = cascading_randomisation(model, images, None, "gradcam", seed=3)
    again = cascading_randomisation(model, images, None, "gradcam", seed=3)
    other = cascading_randomisation(model, images, None, "gradcam", seed=4)
    np.testing.assert_array_equal(first.correlations, again.correlations)
    assert not np.array_equal(first.correlations, other.correlations)
    # A step's parameters get the same values whichever steps run: a lone step matches the cascade's first.
    alone = cascading_randomisation(model, images, None, "gradcam", seed=3, steps=["classifier"])
    assert alone.steps == ("classifier",)
    np.testing.assert_array_equal(alone.correlations[0], first.correlations[0])
    with pytest.raises(ValueError, match="unknown"):
        cascading_randomisation(model, images, None, "gradcam", steps=["stream.block0"])


def test_rank_correlation_matches_scipy_and_defines_constant_maps():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 5, 5, generator=g), torch.rand(3, 5, 5, generator=g)
    b[1] = a[1].clamp_max(0.5)  # ties
    expected = [spearmanr(x.flatten(), y.flatten()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(rank_correlation(a, b), expected, atol=1e-12)
    flat = torch.zeros(2, 4, 4)
    np.testing.assert_array_equal(rank_correlation(flat, flat), [1.0, 1.0])
    np.testing.assert_array_equal(rank_correlation(flat, a[:2, :4, :4]), [0.0, 0.0])


def test_rank_correlation_keeps_the_arithmetic_of_the_recorded_checks():
    """Bit for bit the NumPy arithmetic that the recorded sanity checks were computed with (before it
    moved to ca_core.metrics.correlation), so that a recorded correlation comes out again exactly."""
    g = torch.Generator().manual_seed(5)
    for shape in [(6, 7, 7), (4, 14, 14), (3, 9, 11), (2, 56, 56)]:
        a, b = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
        a[0] = (a[0] * 4).round()  # ties
        ra, rb = (rankdata(x.flatten(1).double().numpy(), axis=1) for x in (a, b))
        ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
        expected = (ra * rb).sum(axis=1) / (np.sqrt((ra ** 2).sum(axis=1)) * np.sqrt((rb ** 2).sum(axis=1)))
        np.testing.assert_array_equal(rank_correlation(a, b), expected)


def test_result_is_frozen_and_passes_on_the_last_step():
    result = SanityResult("m", ("classifier", "stem"), [[0.9, 0.9, 0.9], [0.2, 0.6, 0.4]])
    assert result.passes() and not result.passes(threshold=0.3)
    assert result.summary() == {"classifier": 0.9, "stem": 0.4}
    with pytest.raises(ValueError):
        result.correlations[0, 0] = 1.0
    with pytest.raises(ValueError, match="n_steps"):
        SanityResult("m", ("classifier",), [[1.0], [1.0]])
