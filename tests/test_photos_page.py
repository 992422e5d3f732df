"""The real-photos page: the real EfficientNet-Lite0 names the photos' classes with ImageNet's names,
every method explains the predicted class, and the page's numbers are exactly what ``explain`` and
``evaluate_maps`` give for the same photos; methods with a photo limit run on their first photos."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from ca_core.data import PhotosConfig, PhotosDataset
from ca_core.metrics import evaluate_maps
from ca_core.models import data_config_of
from ca_core.repro import paper
from ca_core.repro.config import load_profile
from ca_core.repro.photos_page import (PAGE_METHODS, PhotosPage, describe, explain_photos, imagenet_names,
                                       metrics_table, page_for, photos_grid, pixels, top_classes_table)
from ca_core.saliency import METHODS, explain
from ca_core.weights import load_real_model

PHOTOS = ("chelsea", "coffee")
#: Small and cheap: 96 px (a 3 x 3 CAM map), two gradient CAMs, one with a photo limit, and a baseline.
SMALL = PhotosPage(photos=PhotosConfig(names=PHOTOS, image_size=96), methods=("gradcam", "layercam", "centre"),
                   photo_limits={"layercam": 1}, batch_size=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> nn.Module:
    return load_real_model(root=tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def small(model):
    return explain_photos(SMALL, model)


def test_top_classes_at_224_px_name_the_photos(model):
    result = explain_photos(PhotosPage(photos=PhotosConfig(names=PHOTOS), methods=()), model)
    assert result.targets.tolist() == [285, 967]  # Egyptian cat, espresso (tests/test_weights.py)
    rows = top_classes_table(result)
    assert [r["Photo"] for r in rows] == list(PHOTOS) and list(rows[0]) == ["Photo", *(f"Top-{k}" for k in range(1, 6))]
    assert rows[0]["Top-1"] == f"Egyptian cat ({100 * float(result.probs[0, 285]):.1f} %)"
    assert rows[0]["Top-1"].startswith("Egyptian cat (77.") and rows[1]["Top-1"].startswith("espresso (90.")
    assert {rows[0][f"Top-{k}"].split(" (")[0] for k in (2, 3)} == {"tiger cat", "tabby, tabby cat"}


def test_every_method_explains_the_prediction_as_the_library_does(model, small):
    x = torch.stack([item[0] for item in PhotosDataset(SMALL.photos, data_config_of(model))])
    assert small.names == list(PHOTOS) and torch.equal(small.images, x)
    with torch.no_grad():
        torch.testing.assert_close(small.probs, model(x).softmax(dim=1))
    for method, n in [("gradcam", 2), ("layercam", 1), ("centre", 2)]:
        maps = explain(model, x[:n], method, batch_size=32)  # targets None: the predicted class
        torch.testing.assert_close(small.maps[method], maps, rtol=0, atol=1e-6)
        want = evaluate_maps(model, x[:n], maps, None)  # the predicted class again
        for key in paper.METRICS:
            torch.testing.assert_close(small.metrics[method][key], want[key], rtol=0, atol=1e-6)
    assert small.maps["gradcam"].shape == (2, 3, 3)  # 96 px / 32


def test_metrics_table_is_the_mean_per_method_in_percent(small):
    rows = metrics_table(small)
    assert [r["Method"] for r in rows] == ["Grad-CAM", "Layer-CAM (beyond paper)", "Centre (baseline)"]
    assert [r["Photos"] for r in rows] == [2, 1, 2]
    for row, method in zip(rows, SMALL.methods):
        for key, label in paper.METRIC_LABELS.items():
            assert row[label] == pytest.approx(100 * float(small.metrics[method][key].mean()))


def test_grid_shows_every_method_and_says_where_one_did_not_run(small):
    fig = photos_grid(small)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 4 * 2  # the photos' row and one row per method, one column per photo
    titles = [ax.get_title() for ax in axes[:2]]
    top1 = imagenet_names()[int(small.targets[0])].split(",")[0]
    assert titles[0].startswith(f"chelsea\n{top1} (")
    assert [ax.get_ylabel() for ax in axes[::2]][1:] == ["Grad-CAM", "Layer-CAM\n(beyond paper)", "Centre\n(baseline)"]
    layercam_coffee = axes[2 * 2 + 1]
    assert [t.get_text() for t in layercam_coffee.texts] == ["not run\n(cost)"]
    assert layercam_coffee.get_xlabel() == "" and axes[2 * 2].get_xlabel().startswith("I ")
    plt.close(fig)
    text = describe(small)
    assert "96 × 96 px" in text and "3 × 3" in text
    assert "Layer-CAM (beyond paper) runs on the first 1 photo only (chelsea), for its cost" in text


def test_page_methods_profile_names_and_pixels(model):
    assert PAGE_METHODS == ("gradcam", "gradcampp", "scorecam", "xgradcam", "layercam", "opticam", "random", "centre")
    assert set(PAGE_METHODS) == {m for m, cls in METHODS.items() if cls.kind in ("cam", "baseline")}
    page = page_for(load_profile("smoke"))
    assert (page.protocol, page.scorecam_variant, page.methods) == ("paper", "paper", PAGE_METHODS)
    assert page.photos_for("scorecam", 5) == 2 and page.photos_for("gradcam", 5) == 5
    names = imagenet_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    shown = torch.from_numpy(pixels(x, model))
    torch.testing.assert_close(shown, (x * 0.5 + 0.5).permute(0, 2, 3, 1))  # mean = std = 0.5
