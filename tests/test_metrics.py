"""Tests of ca_core.metrics: hand-computed values, properties, a per-image per-step reference,
the batching contract (chunk sizes, one shared clean forward, inference mode), input errors,
localisation and statistics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from torch import nn

from ca_core import build_model
from ca_core.metrics import (
    PROTOCOLS, auc, blur, blur_kernel, energy_pointing_game, evaluate_maps, get_protocol,
    paired_test, pixel_ranks, pointing_game, summarize,
)

torch.set_num_threads(1)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


class MeanModel(nn.Module):
    """Two logits (0, a * mean intensity): p(class 1) = sigmoid(a * mean), known in closed form."""

    def __init__(self, a: float = 2.0) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1)
        return torch.stack([torch.zeros_like(m), self.a * m], dim=1)


class Recorder(nn.Module):
    """Wraps a model and records the batch size of every call and whether inference mode was on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((len(x), torch.is_inference_mode_enabled()))
        return self.model(x)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", pooling="gap", num_classes=5).eval()


@pytest.fixture(scope="module")
def ca_resnet() -> nn.Module:
    torch.manual_seed(1)
    return build_model("resnet18", pooling="ca", num_classes=5).eval()


# ---------------------------------------------------------------- reference (straightforward loops)

def reference_kernel(size: int, sigma: float) -> torch.Tensor:
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1
    return torch.from_numpy(scipy.ndimage.gaussian_filter(delta, sigma)).float()


def reference_metrics(model, images, maps, targets, protocol, mean, std) -> dict[str, torch.Tensor]:
    """AD/AG/AI and Insertion/Deletion curves one image and one step at a time, from the definitions."""
    n, c, h, w = images.shape
    up = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    mean_t, std_t = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    step = protocol.step_sides * w
    n_points = math.ceil(h * w / step) + 1
    weight = reference_kernel(protocol.blur_size, protocol.blur_sigma)[None, None].repeat(c, 1, 1, 1)

    def prob(x, t):
        with torch.no_grad():
            return torch.softmax(model(x[None]), dim=1)[0, t].item()

    def substrate(kind, x):
        if kind == "zeros":
            return torch.zeros_like(x)
        return F.conv2d(x[None], weight, padding=protocol.blur_size // 2, groups=c)[0]

    out = {k: [] for k in ("ad", "ag", "ai", "insertion_curve", "deletion_curve")}
    for i in range(n):
        x, t, s = images[i], int(targets[i]), up[i]
        y = prob(x, t)
        if protocol.masking == "pixel":
            masked = ((x * std_t + mean_t) * s - mean_t) / std_t
        else:
            masked = x * s
        o = prob(masked, t)
        out["ad"].append(max(y - o, 0) / y)
        out["ag"].append(max(o - y, 0) / (1 - y))
        out["ai"].append(float(o > y))
        order = np.argsort(-s.flatten().numpy(), kind="stable")
        for curve, start, source in (("insertion_curve", substrate(protocol.insertion_substrate, x), x),
                                     ("deletion_curve", x, substrate(protocol.deletion_substrate, x))):
            scores = []
            for k in range(n_points):
                current = start.clone().view(c, -1)
                changed = order[: k * step]
                current[:, changed] = source.reshape(c, -1)[:, changed]
                scores.append(prob(current.view(c, h, w), t))
            out[curve].append(scores)
    return {k: torch.tensor(v) for k, v in out.items()}


# ---------------------------------------------------------------- protocols and building blocks

def test_protocol_presets_and_step_counts():
    paper, rise = get_protocol("paper"), get_protocol("rise")
    assert paper.pixels_per_step(224) == 1792 and paper.n_points(224, 224) == 29
    assert rise.pixels_per_step(224) == 224 and rise.n_points(224, 224) == 225
    assert (paper.blur_size, paper.blur_sigma, rise.blur_size) == (5, 5.0, 11)
    assert (paper.masking, paper.score, paper.insertion_substrate, paper.deletion_substrate) == (
        "pixel", "prob", "blur", "zeros")
    assert paper.n_points(40, 40) == math.ceil(1600 / 320) + 1 == 6
    assert paper.replace(masking="normalised").masking == "normalised"
    with pytest.raises(ValueError, match="masking"):
        paper.replace(masking="black")
    with pytest.raises(ValueError, match="blur_size"):
        paper.replace(blur_size=4)
    with pytest.raises(ValueError, match="unknown metrics protocol 'riise'"):
        get_protocol("riise")


@pytest.mark.parametrize("size,sigma", [(5, 5.0), (11, 5.0), (3, 0.7), (7, 1.5), (9, 20.0)])
def test_blur_kernel_matches_scipy_gaussian_filter_of_a_delta(size, sigma):
    kernel = blur_kernel(size, sigma, dtype=torch.float64)
    assert torch.allclose(kernel, reference_kernel(size, sigma).double(), atol=1e-7)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-9)


def test_paper_blur_kernel_is_near_uniform():
    kernel = blur_kernel(5, 5.0)
    assert torch.allclose(kernel, torch.full((5, 5), 0.04), atol=5e-5)


def test_blur_is_per_channel_with_zero_padding():
    images = torch.zeros(1, 2, 9, 9)
    images[:, 0] = 1.0
    kernel = blur_kernel(5, 5.0)
    out = blur(images, kernel)
    assert torch.equal(out[0, 1], torch.zeros(9, 9))                 # channels do not mix
    assert out[0, 0, 4, 4].item() == pytest.approx(1.0, abs=1e-6)     # interior: full kernel
    assert out[0, 0, 0, 0].item() == pytest.approx(kernel[2:, 2:].sum().item(), abs=1e-6)  # corner: zero padding


def test_auc_of_known_curves():
    n = 29
    assert auc(torch.linspace(1, 0, n)).item() == pytest.approx(0.5)
    assert auc(torch.full((n,), 0.3)).item() == pytest.approx(0.3)
    curve = torch.rand(3, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / (n - 1)
    assert torch.allclose(auc(curve), expected)


def test_pixel_ranks_highest_first_ties_row_major():
    maps = torch.tensor([[[0.5, 0.9], [0.5, 0.1]]])
    assert pixel_ranks(maps).tolist() == [[[1, 0], [2, 3]]]


# ---------------------------------------------------------------- hand-computed cases

@pytest.mark.parametrize("masking,targets", [("pixel", [1, 0]), ("normalised", [1, 1])])
def test_confidence_metrics_hand_computed(masking, targets):
    """Constant images under a 0.5 map: every masked mean intensity is known, so is every probability.

    Image 0 (value 1) loses confidence for class 1 either way; image 1 (value -1) gains: in pixel
    space it darkens to -1.5 (class 0 gains), in normalised space it moves to -0.5 (class 1 gains).
    """
    a, mean, std = 2.0, [0.5], [0.25]
    images = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), -1.0)])
    prob = lambda t, m: sigmoid(a * m) if t == 1 else 1 - sigmoid(a * m)  # noqa: E731
    if masking == "pixel":  # value v -> pixel 0.5 + 0.25 v, halved, normalised again
        masked = [((0.5 + 0.25 * v) * 0.5 - 0.5) / 0.25 for v in (1.0, -1.0)]
    else:
        masked = [0.5, -0.5]
    y = [prob(t, v) for t, v in zip(targets, (1.0, -1.0))]
    o = [prob(t, v) for t, v in zip(targets, masked)]
    r = evaluate_maps(MeanModel(a), images, torch.full((2, 2, 2), 0.5), targets, mean=mean, std=std,
                      protocol=PROTOCOLS["paper"].replace(masking=masking))
    assert r["ad"].tolist() == pytest.approx([max(yi - oi, 0) / yi for yi, oi in zip(y, o)], abs=1e-6)
    assert r["ag"].tolist() == pytest.approx([max(oi - yi, 0) / (1 - yi) for yi, oi in zip(y, o)], abs=1e-6)
    assert r["ai"].tolist() == [0.0, 1.0]
    assert r["ad"][0] > 0.1 and r["ag"][1] > 0.1 and r["ad"][1] == 0 and r["ag"][0] == 0


def test_insertion_deletion_hand_computed():
    """Left half bright (2), right half 0, map on the left half, 30 pixels per step of 100.

    Deletion removes bright pixels first: mean intensity 1.0, 0.4, 0, 0, 0; insertion (zero
    substrate) puts them back first: 0, 0.6, 1, 1, 1; p = sigmoid(2 * mean).
    """
    image = torch.zeros(1, 1, 10, 10)
    image[..., :5] = 2.0
    saliency = torch.zeros(1, 10, 10)
    saliency[..., :5] = 1.0
    protocol = PROTOCOLS["paper"].replace(step_sides=3, insertion_substrate="zeros")
    r = evaluate_maps(MeanModel(2.0), image, saliency, [1], protocol=protocol, mean=[0.0], std=[1.0])
    deletion = [sigmoid(2 * m) for m in (1.0, 0.4, 0.0, 0.0, 0.0)]
    insertion = [sigmoid(2 * m) for m in (0.0, 0.6, 1.0, 1.0, 1.0)]
    assert r["deletion_curve"][0].tolist() == pytest.approx(deletion, abs=1e-6)
    assert r["insertion_curve"][0].tolist() == pytest.approx(insertion, abs=1e-6)
    trapezoid = lambda c: (sum(c) - c[0] / 2 - c[-1] / 2) / (len(c) - 1)  # noqa: E731
    assert r["deletion"].item() == pytest.approx(trapezoid(deletion), abs=1e-6)
    assert r["insertion"].item() == pytest.approx(trapezoid(insertion), abs=1e-6)


def test_logit_score_records_logits():
    image = torch.full((1, 1, 6, 6), 0.5)
    r = evaluate_maps(MeanModel(3.0), image, torch.ones(1, 6, 6), [1], mean=[0.0], std=[1.0],
                      protocol=PROTOCOLS["paper"].replace(step_sides=2, score="logit", insertion_substrate="zeros"))
    assert r["deletion_curve"][0].tolist() == pytest.approx([1.5, 1.0, 0.5, 0.0], abs=1e-6)
    assert r["insertion_curve"][0].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=1e-6)


# ---------------------------------------------------------------- properties on a real network

def test_all_ones_map_gives_zero_drop_and_gain(resnet):
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for masking in ("pixel", "normalised"):
        r = evaluate_maps(resnet, images, torch.ones(5, 7, 7), [0, 1, 2, 3, 4], batch_size=4,
                          protocol=PROTOCOLS["paper"].replace(masking=masking))
        assert torch.equal(r["ad"], torch.zeros(5)) and torch.equal(r["ag"], torch.zeros(5))
        assert torch.equal(r["ai"], torch.zeros(5))


def test_all_zero_map_masks_to_black_and_ranks_row_major(resnet):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    r = evaluate_maps(resnet, images, torch.zeros(3, 4, 4), [1, 1, 1])
    black = ((0 - torch.tensor(mean)) / torch.tensor(std))[:, None, None].expand(3, 32, 32)
    with torch.no_grad():
        o = torch.softmax(resnet(black[None]), 1)[0, 1]
        y = torch.softmax(resnet(images), 1)[:, 1]
    expected_ad = (y - o).clamp(min=0) / y
    assert torch.allclose(r["ad"], expected_ad, atol=1e-5)
    ref = reference_metrics(resnet, images, torch.zeros(3, 4, 4), [1, 1, 1], PROTOCOLS["paper"], mean, std)
    assert torch.allclose(r["deletion_curve"], ref["deletion_curve"], atol=1e-5)


def test_bounds_on_random_maps(resnet):
    g = torch.Generator().manual_seed(2)
    images, maps = torch.randn(6, 3, 32, 32, generator=g), torch.rand(6, 5, 5, generator=g)
    r = evaluate_maps(resnet, images, maps, torch.randint(0, 5, (6,), generator=g), batch_size=16)
    for key in ("ad", "ag", "insertion", "deletion", "insertion_curve", "deletion_curve"):
        assert ((r[key] >= 0) & (r[key] <= 1)).all(), key
    assert set(r["ai"].tolist()) <= {0.0, 1.0}
    assert r["insertion_curve"].shape == (6, 5)


# ---------------------------------------------------------------- agreement with the reference

@pytest.mark.parametrize("preset,size,masking", [("paper", 40, "pixel"), ("rise", 12, "normalised")])
def test_agrees_with_per_image_per_step_reference(resnet, preset, size, masking):
    g = torch.Generator().manual_seed(3)
    images, maps = torch.randn(3, 3, size, size, generator=g), torch.rand(3, 4, 4, generator=g)
    maps[0, :2] = 0.5  # ties: ranks must follow the same deterministic order
    targets = torch.tensor([0, 3, 4])
    protocol = PROTOCOLS[preset].replace(masking=masking)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    r = evaluate_maps(resnet, images, maps, targets, protocol=protocol, batch_size=7)
    ref = reference_metrics(resnet, images, maps, targets, protocol, mean, std)
    for key, value in ref.items():
        assert torch.allclose(r[key], value.float(), atol=2e-5), key
    assert torch.allclose(r["insertion"], auc(ref["insertion_curve"]).float(), atol=2e-5)


def test_ca_model_with_predicted_targets_and_blur_deletion(ca_resnet):
    g = torch.Generator().manual_seed(4)
    images, maps = torch.randn(2, 3, 32, 32, generator=g), torch.rand(2, 3, 3, generator=g)
    with torch.no_grad():
        predicted = ca_resnet(images).argmax(1)
    protocol = PROTOCOLS["paper"].replace(deletion_substrate="blur", insertion_substrate="zeros")
    r = evaluate_maps(ca_resnet, images, maps, None, protocol=protocol, batch_size=5)
    ref = reference_metrics(ca_resnet, images, maps, predicted, protocol,
                            (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for key, value in ref.items():
        assert torch.allclose(r[key], value.float(), atol=2e-5), key


def test_default_normalisation_comes_from_timm_data_config(resnet):
    g = torch.Generator().manual_seed(5)
    images, maps = torch.randn(2, 3, 32, 32, generator=g), torch.rand(2, 4, 4, generator=g)
    default = evaluate_maps(resnet, images, maps, [0, 1])
    explicit = evaluate_maps(resnet, images, maps, [0, 1], mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    other = evaluate_maps(resnet, images, maps, [0, 1], mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert torch.equal(default["ad"], explicit["ad"])
    assert not torch.allclose(default["ad"], other["ad"])


# ---------------------------------------------------------------- batching contract

def test_forward_passes_are_chunked_shared_and_gradient_free(resnet):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    model = Recorder(resnet).train()
    n_points = PROTOCOLS["paper"].n_points(32, 32)
    r = evaluate_maps(model, images, torch.rand(3, 4, 4), [0, 1, 2], batch_size=4)
    sizes = [size for size, _ in model.calls]
    assert max(sizes) <= 4 and all(inference for _, inference in model.calls)
    # one clean pass, one masked pass, and every curve point except the two clean ones
    assert sum(sizes) == 3 + 3 + 3 * 2 * (n_points - 1)
    assert model.training and resnet.training  # mode restored
    resnet.eval()
    r["ad"] += 1  # results are ordinary tensors, usable outside inference mode


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("maps,targets,masks,message", [
    (torch.rand(2, 4, 4), [0, 1, 2], None, r"maps must be a tensor \(B, h, w\) with B = 3"),
    (torch.rand(3, 1, 4, 4), [0, 1, 2], None, r"maps must be a tensor \(B, h, w\)"),
    (np.ones((3, 4, 4)), [0, 1, 2], None, r"maps must be a tensor \(B, h, w\) with B = 3 images, got ndarray"),
    (torch.tensor(float("nan")).expand(3, 4, 4), [0, 1, 2], None, r"NaN or inf \(images \[0, 1, 2\]\)"),
    (torch.full((3, 4, 4), 2.0), [0, 1, 2], None, r"\[0, 1\]"),
    (torch.rand(3, 4, 4), [0, 5, 2], None, r"label 5 of item 1 does not fit a model with 5 classes"),
    (torch.rand(3, 4, 4), [0, -1, 2], None, r"label -1 of item 1 does not fit a model with 5 classes"),
    (torch.rand(3, 4, 4), [0, 1], None, r"targets must hold one integer class index per image \(3 images\)"),
    (torch.rand(3, 4, 4), [0.0, 1.0, 2.0], None, r"targets must hold one integer class index"),
    (torch.rand(3, 4, 4), [0, 1, 2], torch.ones(3, 16, 16, dtype=torch.bool),
     r"masks must be a bool tensor \(3, 32, 32\)"),
])
def test_bad_input_gets_a_clear_error(resnet, maps, targets, masks, message):
    images = torch.randn(3, 3, 32, 32)
    with pytest.raises(ValueError, match=message):
        evaluate_maps(resnet, images, maps, targets, masks=masks)


def test_bad_normalisation_and_batch_size(resnet):
    images, maps = torch.randn(1, 3, 32, 32), torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="one value per image channel"):
        evaluate_maps(resnet, images, maps, [0], mean=(0.5, 0.5), std=(0.5, 0.5))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        evaluate_maps(resnet, images, maps, [0], batch_size=0)
    with pytest.raises(ValueError, match=r"images must be a float tensor \(B, C, H, W\) with B >= 1"):
        evaluate_maps(resnet, images[:0], maps[:0], [])


# ---------------------------------------------------------------- localisation

def test_pointing_game_on_known_masks():
    maps = torch.zeros(2, 8, 8)
    maps[:, 2, 3] = 1.0
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True   # contains the peak
    masks[1, 4:, 4:] = True   # does not
    assert pointing_game(maps, masks).tolist() == [1.0, 0.0]


def test_energy_pointing_game_on_known_masks():
    maps = torch.stack([torch.ones(8, 8), torch.zeros(8, 8), torch.zeros(8, 8)])
    maps[2, 0, 0], maps[2, 7, 7] = 3.0, 1.0
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True
    assert energy_pointing_game(maps, masks).tolist() == pytest.approx([0.25, 0.0, 0.75])
    with pytest.raises(ValueError, match="same shape"):
        energy_pointing_game(maps, masks[:, :4])


def test_evaluate_maps_localises_upsampled_maps(resnet):
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0] = 1.0   # top-left cell
    maps[1, 3, 3] = 1.0   # bottom-right cell
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, :16, :16] = True
    r = evaluate_maps(resnet, torch.randn(2, 3, 32, 32), maps, [0, 0], masks=masks)
    assert r["pointing"].tolist() == [1.0, 0.0]
    assert r["energy"][0] > 0.9 and r["energy"][1] < 0.1


# ---------------------------------------------------------------- statistics

def test_summarize_mean_and_bootstrap_interval():
    values = torch.rand(200, generator=torch.Generator().manual_seed(7))
    s = summarize(values, n_boot=2000, seed=0)
    assert s["mean"] == pytest.approx(100 * values.mean().item())
    assert s["lo"] < s["mean"] < s["hi"]
    half_width = 1.96 * 100 * values.std().item() / math.sqrt(200)  # normal-theory interval
    assert s["hi"] - s["lo"] == pytest.approx(2 * half_width, rel=0.15)
    assert summarize([0.4] * 10) == {"mean": pytest.approx(40.0), "lo": pytest.approx(40.0), "hi": pytest.approx(40.0)}
    with pytest.raises(ValueError, match="NaN or inf"):
        summarize([0.1, float("nan")])


def test_paired_test_detects_a_real_difference():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=100)
    real = paired_test(a, a + 0.05 + rng.normal(0, 0.05, size=100), n_boot=2000)
    assert real["p"] < 0.01 and 0 < real["lo"] < real["diff"] < real["hi"]
    assert real["diff"] == pytest.approx(5, abs=1.5)
    with pytest.raises(ValueError, match="same images"):
        paired_test(a, a[:10])


def test_paired_test_rejects_five_percent_of_null_data_sets():
    """2000 independent null data sets (40 images, b = a + independent zero-mean noise: each
    difference as likely negated): the sign-flip test rejects at 5 % in 5 % of them. Binomial sd of
    the rate is sqrt(0.05 * 0.95 / 2000) = 0.0049, so [0.035, 0.065] is about 3 sd either side;
    a p-value that is never small gives 0, a one-sided (halved) p-value about 0.10, and both fail
    (seed 1: 0.048 at 5 %, 0.1025 halved)."""
    rng = np.random.default_rng(1)
    p = np.empty(2000)
    for k in range(p.size):
        a = rng.uniform(size=40)
        p[k] = paired_test(a, a + rng.normal(0, 0.05, size=40), n_boot=999, seed=k)["p"]
    assert 0.035 <= (p < 0.05).mean() <= 0.065, (p < 0.05).mean()
    assert not 0.035 <= (p / 2 < 0.05).mean() <= 0.065  # a halved p-value would fail the bounds
    assert 0.17 <= (p < 0.2).mean() <= 0.23  # uniform further up too (sd 0.009)


def test_sign_flip_p_value_equals_the_enumeration_of_every_sign_pattern():
    """On few images the p-value is exact: the share of all 2^n sign patterns of the differences
    whose mean is at least as far from 0 as the observed one, enumerated here independently."""
    import itertools

    rng = np.random.default_rng(3)
    for n in (5, 7, 9):
        a, b = rng.uniform(size=n), rng.uniform(size=n)
        d = b - a
        extreme = sum(abs(np.dot(signs, d)) >= abs(d.sum()) - 1e-12 for signs in itertools.product((1, -1), repeat=n))
        assert paired_test(a, b)["p"] == pytest.approx(extreme / 2 ** n, abs=1e-15), n
        assert extreme % 2 == 0 and extreme >= 2  # the observed pattern and its mirror always count


def test_pointing_game_tolerance_counts_near_misses():
    from ca_core.metrics import paper_tolerance, pointing_game

    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[:, 5, 5] = True
    maps = torch.zeros(3, 10, 10)
    maps[0, 5, 5] = 1  # on the mask
    maps[1, 5, 8] = 1  # 3 px away
    maps[2, 9, 9] = 1  # sqrt(32) ~ 5.7 px away
    assert pointing_game(maps, masks).tolist() == [1, 0, 0]
    assert pointing_game(maps, masks, tolerance=3).tolist() == [1, 1, 0]
    assert pointing_game(maps, masks, tolerance=5.7).tolist() == [1, 1, 1]
    assert paper_tolerance(224, 224) == 15 and paper_tolerance(56, 56) == pytest.approx(3.75)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        pointing_game(maps, masks, tolerance=-1)


def test_sign_flip_p_value_is_exact_on_small_samples():
    assert paired_test([0, 0, 0, 0], [1, 1, 1, 1])["p"] == pytest.approx(2 / 16)  # all + or all - of 16
    assert paired_test([0.3, 0.5, 0.1], [0.3, 0.5, 0.1])["p"] == 1.0  # identical arms
    a, b = [0.1, 0.4, 0.2, 0.9, 0.5], [0.3, 0.1, 0.6, 0.95, 0.7]
    ab, ba = paired_test(a, b), paired_test(b, a)
    assert ab["p"] == ba["p"] and ab["diff"] == pytest.approx(-ba["diff"])  # symmetric in the two arms
    assert ab["lo"] == pytest.approx(-ba["hi"]) and ab["hi"] == pytest.approx(-ba["lo"])


def test_bootstrap_interval_covers_a_known_mean():
    from ca_core.metrics import summarize

    # 4000 samples of 60 from N(0.3, 0.2). The percentile interval's true coverage here is ~0.944
    # (a normal interval with the plug-in sd: P(|t_59| < 1.96 sqrt(59/60)) = 0.943; 0.944 over
    # 20000 samples); the binomial sd of the share over 4000 is sqrt(0.944 * 0.056 / 4000) = 0.0036,
    # so [0.925, 0.97] is >= 5 sd from it, while a 90 % interval (~0.89, sd 0.005) lies ~7 sd below
    # 0.925 and a 99 % one above 0.97, as the same intervals shrunk and widened show (seed 0 gives
    # 0.937, 0.879 and 0.986).
    rng = np.random.default_rng(0)
    n = 4000
    hits = {0.90: 0, 0.95: 0, 0.99: 0}
    for k in range(n):
        s = summarize(rng.normal(0.3, 0.2, 60), n_boot=1000, seed=k)
        hits[0.95] += s["lo"] <= 30 <= s["hi"]
        centre, half = (s["lo"] + s["hi"]) / 2, (s["hi"] - s["lo"]) / 2  # the interval rescaled to 90 % and 99 %
        hits[0.90] += abs(30 - centre) <= half * 1.645 / 1.96
        hits[0.99] += abs(30 - centre) <= half * 2.576 / 1.96
    assert 0.925 <= hits[0.95] / n <= 0.97, hits
    assert hits[0.90] / n < 0.925 and hits[0.99] / n > 0.97, hits  # the bounds tell 95 % from 90 % and 99 %


def test_normalised_curves_and_calibrated_copies_come_from_the_same_passes():
    """I/Y and D/Y divide each image's AUC by its full-image probability; at T = 1 the calibrated copies
    equal the raw metrics bit for bit, and a temperature moves only the calibrated ones."""
    from ca_core import build_model
    from ca_core.metrics import evaluate_maps

    torch.manual_seed(0)
    model = build_model("resnet_mini", "gap", num_classes=5).eval()
    images, maps, targets = torch.randn(3, 3, 32, 32), torch.rand(3, 4, 4), [0, 3, 4]
    raw = evaluate_maps(model, images, maps, targets, batch_size=8)
    with torch.no_grad():
        full = model(images).softmax(1)[torch.arange(3), torch.tensor(targets)]
    torch.testing.assert_close(raw["insertion_norm"], raw["insertion"] / full)
    torch.testing.assert_close(raw["deletion_norm"], raw["deletion"] / full)
    same = evaluate_maps(model, images, maps, targets, batch_size=8, temperature=1.0)
    for key, value in raw.items():
        assert torch.equal(value, same[key]) and torch.equal(value, same[key.replace("_curve", "_curve_cal")
                                                                        if "_curve" in key else f"{key}_cal"])
    hot = evaluate_maps(model, images, maps, targets, batch_size=8, temperature=3.0)
    assert (torch.equal(hot["insertion"], raw["insertion"])
            and not torch.allclose(hot["insertion_cal"], raw["insertion"]))
    with torch.no_grad():
        scaled = (model(images) / 3.0).softmax(1)[torch.arange(3), torch.tensor(targets)]
    torch.testing.assert_close(hot["insertion_curve_cal"][:, -1], scaled)
