"""The CA-Stream model: paper parameter counts, attention, freezing, gradients, checkpoints, errors."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from ca_core import build_model, load_model, save_model
from ca_core.models import CAStream, GAPModel, backbone_of, count_trainable, read_checkpoint


@pytest.fixture(scope="module")
def tiny_ca() -> CAStream:
    torch.manual_seed(0)
    return build_model("resnet18", pooling="ca", num_classes=5)


@pytest.mark.parametrize("name, expected", [("resnet50", 6_969_152), ("convnext_base", 1_739_648)])
def test_trainable_parameters_match_official_code(name: str, expected: int) -> None:
    model = build_model(name, pooling="ca", num_classes=1000)
    assert count_trainable(model) == expected
    assert all(not p.requires_grad for p in model.backbone.parameters())


@pytest.mark.parametrize(
    "name, widths, kwargs",
    [
        ("resnet18", (64, 64, 128, 256, 512), {}),
        ("resnet34", (64, 64, 128, 256, 512), {}),
        ("resnet101", (64, 256, 512, 1024, 2048), {}),
        ("convnext_atto", (40, 80, 160, 320), {}),
        ("convnext_atto", (16, 32, 48, 64), {"dims": (16, 32, 48, 64), "depths": (1, 1, 1, 1)}),
        ("resnet18", (64, 32, 64, 128, 256), {"layers": (1, 1, 1, 1), "channels": (32, 64, 128, 256)}),
    ],
)
def test_families_and_custom_sizes(name: str, widths: tuple[int, ...], kwargs: dict) -> None:
    model = build_model(name, pooling="ca", num_classes=3, **kwargs)
    assert model.widths == widths
    logits, attn = model(torch.randn(2, 3, 64, 64), return_attention=True)
    assert logits.shape == (2, 3) and attn.shape == (2, 2, 2)


def test_attention_shapes_and_normalisation_at_224() -> None:
    model = build_model("convnext_atto", pooling="ca", num_classes=4)
    x = torch.randn(2, 3, 224, 224)
    logits, attn = model(x, return_attention=True)
    assert logits.shape == (2, 4) and attn.shape == (2, 7, 7)
    torch.testing.assert_close(attn.sum(dim=(1, 2)), torch.ones(2))
    every = model.forward_attention(x)
    assert [tuple(a.shape[1:]) for a in every] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    for a in every:
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(dim=(1, 2)), torch.ones(2))
    torch.testing.assert_close(every[-1], attn)


def test_ca_block_matches_hand_computation() -> None:
    model = build_model("resnet18", pooling="ca", num_classes=2)
    block = model.stream.blocks[0]
    f = torch.randn(1, 64, 3, 3)
    q = torch.randn(1, 64)
    token, attn = block(f, q)
    flat = f.flatten(2)[0].T  # (9, 64)
    a = torch.softmax(flat @ q[0] / 8.0, dim=0)
    torch.testing.assert_close(attn.flatten(), a)
    torch.testing.assert_close(token[0], block.proj(a @ flat))


def test_multi_head_attention_works() -> None:
    model = build_model("resnet18", pooling="ca", num_classes=5, heads=4)
    logits, attn = model(torch.randn(2, 3, 64, 64), return_attention=True)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(attn.sum(dim=(1, 2)), torch.ones(2))
    assert model.forward_stream(torch.randn(1, 3, 64, 64))[1][-1].shape == (1, 4, 2, 2)
    with pytest.raises(ValueError, match="heads=3"):
        build_model("resnet18", pooling="ca", heads=3)


def test_token_initialised_from_normal_one_one() -> None:
    torch.manual_seed(0)
    token = build_model("resnet50", pooling="ca").stream.cls_token
    assert token.shape == (1, 64)
    assert abs(token.mean().item() - 1.0) < 0.4 and 0.6 < token.std().item() < 1.4


def test_projections_initialised_as_in_the_authors_code_of_each_family() -> None:
    """ResNet stream: xavier-uniform weights, PyTorch's default bias. ConvNeXt stream: the model-wide
    init loop's normal of std 0.02 and zero bias (paper.md §1.2)."""
    torch.manual_seed(0)
    resnet = build_model("resnet_mini", pooling="ca", num_classes=10).stream.blocks
    convnext = build_model("convnext_mini", pooling="ca", num_classes=10).stream.blocks
    for block in resnet:
        fan_in, fan_out = block.proj.in_features, block.proj.out_features
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert block.proj.weight.abs().max() <= bound and block.proj.weight.std() > bound / 3
        assert block.proj.bias.abs().max() > 0
    for block in convnext:
        assert block.proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.count_nonzero(block.proj.bias) == 0


@pytest.mark.parametrize("name", ["resnet_mini", "convnext_mini"])
def test_mini_backbones_end_on_a_7x7_map_without_dilation(name: str) -> None:
    model = build_model(name, pooling="gap", num_classes=10).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.dilation == (1, 1) for m in convs)
    assert backbone_of(model).forward_features(torch.randn(2, 3, 56, 56)).shape[-2:] == (7, 7)


# In a fresh interpreter: PyTorch warns once per process, and other tests' imports are not this one's.
NO_GLOBAL_STATE = """
import warnings
import scipy.stats, timm, torch  # the dependencies, which set filters of their own
before = list(warnings.filters)
import ca_core, ca_core.evaluation, ca_core.repro.report  # the library and the reproduction layer
assert warnings.filters == before, [f for f in warnings.filters if f not in before]
model = timm.create_model("convnext_mini").eval()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model(torch.randn(1, 3, 56, 56))
assert not caught, [str(w.message) for w in caught]
"""


def test_importing_ca_core_filters_no_warning_and_the_mini_convnext_raises_none() -> None:
    done = subprocess.run([sys.executable, "-c", NO_GLOBAL_STATE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_undilated_even_kernel_pads_as_pytorch_same_and_keeps_its_parameters() -> None:
    model = build_model("convnext_mini", pooling="gap", num_classes=10).eval()
    conv = backbone_of(model).stages[3].downsample[1]  # 2x2, dilated by timm, undilated here
    assert conv.kernel_size == (2, 2) and conv.dilation == (1, 1)
    assert [name for name, _ in conv.named_parameters()] == ["weight", "bias"]
    x = torch.randn(2, 96, 7, 7)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's own 'same' padding of an even kernel: what it replaces
        assert torch.equal(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding="same"))


def test_backbone_frozen_and_stays_in_eval_mode(tiny_ca: CAStream) -> None:
    tiny_ca.train()
    assert tiny_ca.training and tiny_ca.stream.training
    assert not any(m.training for m in tiny_ca.backbone.modules())
    bn = tiny_ca.backbone.bn1
    before = bn.running_mean.clone()
    tiny_ca(torch.randn(4, 3, 64, 64) * 3 + 1)
    torch.testing.assert_close(bn.running_mean, before)
    trainable = {n for n, p in tiny_ca.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("stream.") for n in trainable)
    tiny_ca.eval()


def test_gradients_reach_last_feature_map_through_attention(tiny_ca: CAStream) -> None:
    store = {}
    handle = tiny_ca.backbone.layer4.register_forward_hook(
        lambda m, i, o: (o.retain_grad(), store.setdefault("f", o))
    )
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    tiny_ca(x)[:, 1].sum().backward()
    handle.remove()
    assert store["f"].grad is not None and store["f"].grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert tiny_ca.stream.blocks[-1].proj.weight.grad is not None
    assert all(p.grad is None for p in tiny_ca.backbone.parameters())
    tiny_ca.zero_grad(set_to_none=True)


def test_gap_model_is_the_timm_backbone() -> None:
    model = build_model("resnet18", pooling="gap", num_classes=5)
    assert isinstance(model, GAPModel) and count_trainable(model) == count_trainable(model.backbone)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), model.backbone(x))
    with pytest.raises(ValueError, match="no attention"):
        model(x, return_attention=True)


def test_stream_checkpoint_round_trip(tiny_ca: CAStream, tmp_path) -> None:
    path = tmp_path / "stream.safetensors"
    save_model(tiny_ca, path, extra={"epoch": 3})
    state, meta = read_checkpoint(path)
    assert set(state) == set(tiny_ca.stream.state_dict())
    assert meta["architecture"] == "resnet18" and meta["widths"] == list(tiny_ca.widths) and meta["epoch"] == 3
    other = build_model(backbone_of(tiny_ca), pooling="ca")
    x = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(other(x), tiny_ca(x))
    load_model(other, path)
    torch.testing.assert_close(other(x), tiny_ca(x))


def test_gap_checkpoint_is_a_plain_timm_state_dict(tmp_path, capsys) -> None:
    gap = build_model("resnet18", pooling="gap", num_classes=5)
    path = tmp_path / "gap.safetensors"
    save_model(gap, path)
    ca = build_model("resnet18", pooling="ca", num_classes=5, pretrained=path)
    torch.testing.assert_close(ca.backbone.fc.weight, gap.backbone.fc.weight)
    seven = build_model("resnet18", pooling="gap", num_classes=7, pretrained=path)  # features only, announced
    assert "loaded all but the classifier (fc.bias, fc.weight)" in capsys.readouterr().err
    torch.testing.assert_close(seven.backbone.conv1.weight, gap.backbone.conv1.weight)
    with pytest.raises(ValueError, match="do not fit"):
        build_model("resnet34", pooling="gap", num_classes=5, pretrained=path)


def test_checkpoint_that_does_not_fit_is_a_clear_error(tiny_ca: CAStream, tmp_path) -> None:
    path = tmp_path / "stream.safetensors"
    save_model(tiny_ca, path)
    with pytest.raises(ValueError, match="widths"):
        load_model(build_model("resnet50", pooling="ca", num_classes=5), path)
    with pytest.raises(ValueError, match="heads"):
        load_model(build_model("resnet18", pooling="ca", num_classes=5, heads=2), path)
    with pytest.raises(ValueError, match="pooling"):
        load_model(build_model("resnet18", pooling="gap", num_classes=5), path)


def test_missing_and_corrupt_files_are_clear_errors(tiny_ca: CAStream, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_model(tiny_ca, tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(tiny_ca, bad)
    with pytest.raises(ValueError, match="cannot read weights"):
        build_model("resnet18", pooling="gap", pretrained=bad)
    with pytest.raises(FileNotFoundError):
        build_model("resnet18", pooling="gap", pretrained=tmp_path / "missing.pth")


def test_pth_weights_load_strictly(tmp_path) -> None:
    src = build_model("resnet18", pooling="gap", num_classes=5)
    path = tmp_path / "w.pth"
    torch.save(src.backbone.state_dict(), path)
    dst = build_model("resnet18", pooling="gap", num_classes=5, pretrained=path)
    torch.testing.assert_close(dst.backbone.conv1.weight, src.backbone.conv1.weight)
    partial = {k: v for k, v in src.backbone.state_dict().items() if not k.startswith("fc.")}
    torch.save(partial, path)
    with pytest.raises(ValueError, match="Missing key"):
        build_model("resnet18", pooling="gap", num_classes=5, pretrained=path)


def test_model_without_feature_maps_is_a_clear_error_and_custom_taps_override_the_default() -> None:
    """Any timm CNN has default taps (tests/test_any_backbone.py); a ViT's tokens are no maps."""
    with pytest.raises(ValueError, match=r"paper's families \(resnet, convnext\) nor a timm CNN.*taps="):
        build_model("vit_tiny_patch16_224", pooling="ca", num_classes=3)
    model = build_model("efficientnet_b0", pooling="ca", num_classes=3, taps=["blocks.2", "blocks.4", "blocks.6"])
    assert model.widths == (40, 112, 320)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_model("resnet18", pooling="max")
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nope'"):
        build_model("resnet_nope")
    with pytest.raises(ValueError, match="no submodule 'layer9'"):
        build_model("resnet18", taps=["layer1", "layer9"])
    with pytest.raises(ValueError, match="'fc'.*produced 1 outputs.*exactly once"):
        build_model("resnet18", taps=["layer1", "fc"])


def test_unreachable_hub_weights_are_one_clear_error_within_seconds(monkeypatch, tmp_path) -> None:
    """No network and an empty cache: the error says what to do, without a minute of retries."""
    import time

    from ca_core.models import factory

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setattr(factory, "_reachable", lambda host, timeout: False)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"resnet18.*HF_HUB_OFFLINE=1.*--pretrained FILE"):
        build_model("resnet18", "gap", pretrained=True)
    assert time.perf_counter() - start < 20
