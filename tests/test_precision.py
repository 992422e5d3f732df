"""Speed settings keep results: channels-last gives the default layout's maps and scores in float32,
and the ``precision`` option reaches every forward pass it should (and only those)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ca_core import build_model
from ca_core.prediction import predict
from ca_core.metrics import evaluate_maps
from ca_core.saliency import METHODS, explain
from ca_core.training import TrainConfig, train
from ca_core.utils import autocast, check_precision
from support import randomize

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["resnet_mini", "convnext_mini"])
def layouts(request) -> dict[str, dict[str, nn.Module]]:
    """The same GAP and CA weights in the default (contiguous) and the channels-last layout."""
    out = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        gap = randomize(build_model(request.param, "gap", num_classes=5, channels_last=channels_last))
        torch.manual_seed(1)
        out[channels_last] = {"gap": gap, "ca": build_model(gap, "ca").eval()}
    return out


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 56, 56, generator=torch.Generator().manual_seed(2))


def test_build_model_stores_convolutions_channels_last(layouts):
    conv = next(m for m in layouts[True]["gap"].modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[-1] > 1
    plain = next(m for m in layouts[False]["gap"].modules() if isinstance(m, nn.Conv2d))
    assert plain.weight.is_contiguous() and not plain.weight.is_contiguous(memory_format=torch.channels_last)


#: Largest |channels-last map - default map| allowed per method (maps in [0, 1]): about 10x the largest
#: difference measured over resnet_mini / convnext_mini, GAP / CA (float32 CPU, PyTorch's kernels), in
#: brackets; float rounding only, so a layout bug (a wrong permute or stride) would be far above them.
#: The baselines never run the model: identical.
MAP_ATOL = {
    "attention": 2e-5,   # [2.3e-6]
    "centre": 0.0,       # [0]
    "gradcam": 6e-5,     # [6.4e-6, resnet_mini GAP]
    "gradcampp": 2e-5,   # [1.8e-6]
    "layercam": 3e-5,    # [3.3e-6]
    "opticam": 1e-5,     # [1.1e-6 after 3 steps]
    "random": 0.0,       # [0]
    "scorecam": 3e-5,    # [3.3e-6]
    "xgradcam": 3e-4,    # [3.2e-5, convnext_mini CA: its weights divide by summed activations]
}
#: The same for the scores (AUCs, AD / AG / AI, pointing, energy): [3.3e-6] measured.
SCORE_ATOL = 3e-5


@pytest.mark.parametrize("method, pooling", [(m, p) for m in sorted(METHODS) for p in ("gap", "ca")
                                             if p == "ca" or m != "attention"])  # raw attention: CA only
def test_channels_last_gives_the_same_maps_and_scores(layouts, images, method, pooling):
    assert method in MAP_ATOL, f"{method}: measure its channels-last difference and add it to MAP_ATOL"
    targets = torch.tensor([0, 1, 2, 3])
    # Opti-CAM's 50 Adam steps amplify float rounding (see its docstring; up to 0.07 on resnet_mini's
    # [0, 1] maps after 50 steps): compare 3 steps, where it is still rounding-sized.
    options = {"iterations": 3} if method == "opticam" else {}
    maps, scores = {}, {}
    for channels_last, models in layouts.items():
        model = models[pooling]
        maps[channels_last] = explain(model, images, method, targets=targets, batch_size=64, **options)
        scores[channels_last] = evaluate_maps(model, images, maps[False], targets, batch_size=8)
    torch.testing.assert_close(maps[True], maps[False], atol=MAP_ATOL[method], rtol=0)
    a, b = maps[True].flatten(1).double(), maps[False].flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    varied = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)  # a constant (all-zero) map has no correlation
    assert ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12))[varied].min() > 0.9999
    for name in scores[False]:
        torch.testing.assert_close(scores[True][name], scores[False][name], atol=SCORE_ATOL, rtol=0, msg=name)


class AutocastProbe:
    """Records, at every forward pass of a model (its first convolution), whether CPU autocast was
    on and its dtype."""

    def __init__(self, model: nn.Module) -> None:
        self.seen: list[tuple[bool, torch.dtype]] = []
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))  # runs in every forward
        self.handle = first_conv.register_forward_hook(self.record)

    def record(self, *_) -> None:
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    def states(self) -> set[bool]:
        self.handle.remove()
        return {enabled for enabled, dtype in self.seen if not enabled or dtype == torch.bfloat16}


@pytest.mark.parametrize("precision, expected", [("fp32", {False}), ("bf16", {True})])
def test_precision_reaches_saliency_and_metrics(layouts, images, precision, expected):
    model = layouts[True]["ca"]
    for method in ("gradcam", "scorecam", "attention"):
        probe = AutocastProbe(model)
        maps = explain(model, images, method, precision=precision)
        assert probe.states() == expected, method
        assert maps.dtype == torch.float32
    probe = AutocastProbe(model)
    scores = evaluate_maps(model, images, maps, None, batch_size=8, precision=precision)
    assert probe.states() == expected and scores["insertion"].dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out


def test_bf16_maps_stay_close_to_fp32(layouts, images):
    model = layouts[True]["gap"]
    a, b = (explain(model, images, "gradcam", precision=p) for p in ("fp32", "bf16"))
    corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert corr > 0.9


def test_precision_reaches_training_and_prediction(tmp_path):
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    model = build_model("resnet_mini", "gap", num_classes=3)
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    probe = AutocastProbe(model)
    train(TrainConfig(gap_epochs=1, batch_size=4, eval_batch_size=8, precision="bf16"), model, data, data,
          tmp_path / "bf16", stage="gap", progress=False)
    assert probe.states() == {True}  # training steps and validation
    probe = AutocastProbe(model)
    predict(model, data, batch_size=8)
    assert probe.states() == {False}


def test_unknown_precision_and_fp16_on_cpu_are_clear_errors(layouts, images):
    model = layouts[True]["gap"]
    with pytest.raises(ValueError, match="precision: unknown 'fp8'; valid: fp32, bf16, fp16"):
        explain(model, images, "gradcam", precision="fp8")
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        evaluate_maps(model, images, torch.rand(4, 7, 7), None, precision="fp16")
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        autocast(CPU, "fp16")
    with pytest.raises(ValueError, match="precision: unknown"):
        TrainConfig(precision="half")
    assert check_precision("fp16", "cuda") == "fp16"
