"""The live explorer, driven from Python as a user drives it in Jupyter: choose an image, a method,
a backbone, upload a PNG. Its maps, scores and curves must change and equal ``explain``/``evaluate_maps``
on the same input. It opens on the real ImageNet CNN, which names an uploaded photo's classes."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from PIL import Image

from ca_core import build_model
from ca_core.data import PhotosConfig, PhotosDataset
from ca_core.data.photos import sample_photo
from ca_core.metrics import evaluate_maps
from ca_core.models import data_config_of
from ca_core.repro import live_explorer
from ca_core.repro.live_explorer import NO_STREAM, REAL_BACKBONE, SCORES, Backbone, LiveExplorer, real_backbone
from ca_core.saliency import explain
from ca_core.weights import load_real_model
from support import randomize

SIZE, CLASSES = 56, 5


@pytest.fixture(scope="module")
def dataset() -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    masks[0, 10:30, 10:30], masks[1, 20:50, 5:25], masks[2, 30:55, 30:55] = True, True, True
    return [(torch.randn(3, SIZE, SIZE, generator=g), i % CLASSES, masks[i]) for i in range(3)]


@pytest.fixture()
def mini(dataset) -> Backbone:
    torch.manual_seed(0)
    models = {p: randomize(build_model("resnet_mini", p, num_classes=CLASSES)) for p in ("gap", "ca")}
    return Backbone(models, dataset, [f"class {i}" for i in range(CLASSES)])


@pytest.fixture()
def explorer(mini) -> LiveExplorer:
    return LiveExplorer({"resnet_mini": mini}, ["gradcam", "attention", "scorecam"], {"scorecam": {"batch_size": 64}},
                        batch_size=16)


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Backbone:
    return real_backbone(load_real_model(root=tmp_path_factory.mktemp("weights")))


def expected(explorer: LiveExplorer, pooling: str, x: torch.Tensor, target: int, mask: torch.Tensor | None,
             backbone: str = "resnet_mini") -> dict:
    """What the library computes for one image, one pooling, the explorer's method."""
    model = explorer.backbones[backbone].models[pooling]
    targets = torch.tensor([target])
    method = explorer.method.value
    maps = explain(model, x[None], method, targets=targets, **explorer.options.get(method, {}))
    values = evaluate_maps(model, x[None], maps, targets, batch_size=explorer.batch_size,
                           masks=None if mask is None else mask[None])
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


def upload(explorer: LiveExplorer, name: str, data: bytes) -> None:
    """What the upload button does with a file."""
    explorer.upload.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                              "last_modified": datetime.now(timezone.utc)},)


def test_an_uploaded_png_is_explained_for_the_gap_models_prediction(explorer):
    pixels = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)  # another size: resized
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    before = explorer.view.value
    upload(explorer, "mine.png", buf.getvalue())
    x = explorer.model_input(explorer.read_upload(buf.getvalue()))
    assert x.shape == (3, SIZE, SIZE) and explorer.uploaded is not None
    target = int(explorer.backbones["resnet_mini"].models["gap"](x[None]).argmax(1))
    assert explorer.target == target and "your image" in explorer.status.value
    assert explorer.view.value != before
    for pooling in ("gap", "ca"):
        assert_matches(explorer.result[pooling], expected(explorer, pooling, x, target, None))
    assert "pointing" not in "".join(explorer.result["ca"]["scores"])  # no mask for an uploaded image
    explorer.index.value = 1  # choosing a test image again leaves the upload
    assert explorer.uploaded is None and explorer.target == 1


def test_an_unreadable_upload_and_an_unknown_method_are_clear_errors(explorer, dataset):
    with pytest.raises(ValueError, match="not an image"):
        explorer.read_upload(b"not a picture")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(buf, format="PNG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(ValueError, match="damaged or truncated"):
        explorer.read_upload(truncated)
    before = explorer.view.value
    upload(explorer, "cut.png", truncated)
    assert "cut.png" in explorer.status.value and "truncated" in explorer.status.value  # said, no traceback
    assert explorer.view.value == before
    with pytest.raises(ValueError, match="unknown saliency methods"):
        LiveExplorer(explorer.backbones, ["gradcam", "nope"])


def test_it_opens_on_the_real_imagenet_cnn_which_names_an_uploaded_photo(real, mini, monkeypatch):
    drawn = []
    monkeypatch.setattr(live_explorer, "explorer_image", lambda *args: drawn.append(args) or b"png")
    explorer = LiveExplorer({REAL_BACKBONE: real, "resnet_mini": mini}, ["gradcam", "attention"], batch_size=64)
    assert explorer.backbone.value == REAL_BACKBONE and explorer.index.description == "photo"
    assert "photo #0 (chelsea): predicted Egyptian cat" in explorer.status.value and explorer.target == 285
    assert explorer.top.value.startswith("top classes (GAP model): Egyptian cat <b>77.")
    assert explorer.result["ca"] is None and drawn[-1][-1] == {"ca": NO_STREAM}  # the CA panel says why it is empty
    assert "GAP" in explorer.scores.value and "CA" not in explorer.scores.value
    photos = PhotosDataset(PhotosConfig(), data_config_of(real.models["gap"]))
    shown = torch.from_numpy(drawn[-1][0])
    torch.testing.assert_close(shown, (photos[0][0] * 0.5 + 0.5).permute(1, 2, 0))  # true colours

    upload(explorer, "coffee.png", sample_photo("coffee").read_bytes())
    x = photos[1][0]  # the upload is the photo as the photos page reads it: 224 px, bicubic, mean = std = 0.5
    torch.testing.assert_close(explorer.model_input(explorer.uploaded), x, rtol=0, atol=0)
    assert explorer.target == 967 and "your image: predicted espresso" in explorer.status.value
    names = [name.split(" <b>")[0] for name in explorer.top.value.split(": ", 1)[1].split(" · ")]
    assert names[:3] == ["espresso", "cup", "coffee mug"] and len(names) == 5
    assert_matches(explorer.result["gap"], expected(explorer, "gap", x, 967, None, REAL_BACKBONE))

    explorer.index.value = 4  # choosing a photo again leaves the upload
    assert explorer.uploaded is None and explorer.target == 665 and "(motorcycle_left)" in explorer.status.value
    explorer.backbone.value = "resnet_mini"  # the run's models, one choice away, on their test images
    assert explorer.index.description == "test image" and explorer.index.max == explorer.index.value == 2
    assert explorer.target == mini.images[2][1] and "test image #2: class" in explorer.status.value
    assert explorer.result["ca"] is not None and drawn[-1][-1] == {} and "CA" in explorer.scores.value
    assert explorer.top.value.count("%") == CLASSES
