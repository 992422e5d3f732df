"""The live explorer, driven from Python as a user drives it in Jupyter: choose an image, a method,
upload a PNG. Its maps, scores and curves must change and equal ``explain``/``evaluate_maps`` on
the same input."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from PIL import Image

from ca_core import build_model
from ca_core.metrics import evaluate_maps
from ca_core.repro.live_explorer import SCORES, LiveExplorer
from ca_core.saliency import explain
from support import randomize

SIZE, CLASSES = 56, 5


@pytest.fixture(scope="module")
def dataset() -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[0, 10:30, 10:30], masks[1, 20:50, 5:25], masks[2, 30:55, 30:55] = True, True, True
    return [(torch.randn(3, SIZE, SIZE, generator=g), i % CLASSES, masks[i]) for i in range(3)]


@pytest.fixture()
def explorer(dataset) -> LiveExplorer:
    torch.manual_seed(0)
    models = {"resnet_mini": {p: randomize(build_model("resnet_mini", p, num_classes=CLASSES)) for p in ("gap", "ca")}}
    return LiveExplorer(models, dataset, [f"class {i}" for i in range(CLASSES)],
                        ["gradcam", "attention", "scorecam"], {"scorecam": {"batch_size": 64}}, batch_size=16)


def expected(explorer: LiveExplorer, pooling: str, x: torch.Tensor, target: int, mask: torch.Tensor | None) -> dict:
    """What the library computes for one image, one pooling, the explorer's method."""
    model = explorer.models["resnet_mini"][pooling]
    targets = torch.tensor([target])
    maps = explain(model, x[None], explorer.method.value, targets=targets, **explorer.options.get(explorer.method.value, {}))
    values = evaluate_maps(model, x[None], maps, targets, batch_size=16, masks=None if mask is None else mask[None])
    return {"map": maps[0].numpy(), "scores": {k: float(values[k][0]) for k in SCORES if k in values},
            "curves": {k: values[f"{k}_curve"][0].numpy() for k in ("insertion", "deletion")}}


def assert_matches(result: dict, want: dict) -> None:
    np.testing.assert_allclose(result["map"], want["map"], atol=1e-6)
    assert result["scores"].keys() == want["scores"].keys()
    for k, v in want["scores"].items():
        assert result["scores"][k] == pytest.approx(v, abs=1e-6), k
    for k, v in want["curves"].items():
        np.testing.assert_allclose(result["curves"][k], v, atol=1e-6)


def test_choosing_an_image_recomputes_both_poolings_as_the_library_does(explorer, dataset):
    first_view = explorer.view.value
    assert first_view and explorer.target == dataset[0][1]
    for pooling in ("gap", "ca"):
        assert_matches(explorer.result[pooling], expected(explorer, pooling, *dataset[0]))
    explorer.index.value = 2
    assert explorer.view.value != first_view and explorer.target == dataset[2][1]
    for pooling in ("gap", "ca"):
        assert_matches(explorer.result[pooling], expected(explorer, pooling, *dataset[2]))
    assert "pointing" in explorer.scores.value and "GAP" in explorer.scores.value


def test_choosing_a_method_recomputes_and_raw_attention_has_no_gap_map(explorer, dataset):
    before = explorer.result["ca"]["map"].copy()
    explorer.method.value = "attention"
    assert explorer.result["gap"] is None
    assert "no map under GAP" in explorer.scores.value
    assert not np.allclose(explorer.result["ca"]["map"], before)
    assert_matches(explorer.result["ca"], expected(explorer, "ca", *dataset[0]))
    explorer.method.value = "scorecam"
    for pooling in ("gap", "ca"):
        assert_matches(explorer.result[pooling], expected(explorer, pooling, *dataset[0]))


def test_an_uploaded_png_is_explained_for_the_gap_models_prediction(explorer):
    pixels = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)  # another size: resized
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    before = explorer.view.value
    explorer.upload.value = ({"name": "mine.png", "type": "image/png", "size": len(buf.getvalue()),
                              "content": memoryview(buf.getvalue()),
                              "last_modified": datetime.now(timezone.utc)},)
    x = explorer.load_upload(buf.getvalue())
    assert x.shape == (3, SIZE, SIZE) and explorer.uploaded is not None
    target = int(explorer.models["resnet_mini"]["gap"](x[None]).argmax(1))
    assert explorer.target == target and "your image" in explorer.status.value
    assert explorer.view.value != before
    for pooling in ("gap", "ca"):
        assert_matches(explorer.result[pooling], expected(explorer, pooling, x, target, None))
    assert "pointing" not in "".join(explorer.result["ca"]["scores"])  # no mask for an uploaded image
    explorer.index.value = 1  # choosing a test image again leaves the upload
    assert explorer.uploaded is None and explorer.target == 1


def test_an_unreadable_upload_and_an_unknown_method_are_clear_errors(explorer, dataset):
    with pytest.raises(ValueError, match="not an image"):
        explorer.load_upload(b"not a picture")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(buf, format="PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(ValueError, match="damaged or truncated"):
        explorer.load_upload(truncated)
    before = explorer.view.value
    explorer.upload.value = ({"name": "cut.png", "type": "image/png", "size": len(truncated),
                              "content": memoryview(truncated), "last_modified": datetime.now(timezone.utc)},)
    assert "cut.png" in explorer.status.value and "truncated" in explorer.status.value  # said, no traceback
    assert explorer.view.value == before
    with pytest.raises(ValueError, match="unknown saliency methods"):
        LiveExplorer(explorer.models, dataset, ["a"] * CLASSES, ["gradcam", "nope"])
