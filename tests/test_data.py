"""Data: the generated shapes (determinism, masks, cache), real-data loaders and their errors,
transforms, and the small timm backbones of the embedded experiment."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from ca_core import build_model
from ca_core.data import (SHAPE_NAMES, ShapesConfig, denormalize, image_folder, imagenet_splits, imagenet_val,
                          list_dataset, mit67, normalize, shapes_dataset)
from ca_core.data.shapes import cache_key, generate
from ca_core.data.transforms import data_config_of, eval_transform, paper_train_transform
from ca_core.models import backbone_of

torch.set_num_threads(1)
SMALL = ShapesConfig(seed=3, image_size=32, num_classes=10, train=300, val=20, test=40)


# ---------------------------------------------------------------------------------------------
# Generated shapes


def test_same_seed_same_bytes_other_seed_other_images():
    a, b = generate(SMALL, "test"), generate(SMALL, "test")
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    other = generate(ShapesConfig(**{**SMALL.__dict__, "seed": 4}), "test")
    assert not torch.equal(a[0], other[0])
    assert not torch.equal(generate(SMALL, "val")[0], a[0][:20])  # splits are independent streams


def test_items_shapes_types_and_label_range():
    ds = shapes_dataset(SMALL, "train", root=None)
    image, label, mask = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.bool
    assert isinstance(label, int) and ds.classes == list(SHAPE_NAMES)
    assert len(ds) == 300 and set(ds.targets.tolist()) == set(range(10))


def test_mask_marks_the_uniformly_coloured_object():
    images, labels, masks = generate(SMALL, "train")
    area = masks.float().mean(dim=(1, 2))
    assert (area > 0.02).all() and (area < 0.5).all()
    # the object is one flat colour: pixels well inside the mask vary far less than the background
    inner = torch.nn.functional.max_pool2d((~masks)[:, None].float(), 3, 1, 1)[:, 0] == 0
    x = images.float()
    keep = inner.sum(dim=(1, 2)) > 10
    inside_std = torch.stack([x[i][:, inner[i]].std(dim=1).mean() for i in range(len(x)) if keep[i]])
    outside_std = torch.stack([x[i][:, ~masks[i]].std(dim=1).mean() for i in range(len(x)) if keep[i]])
    assert inside_std.median() < 0.2 * outside_std.median()


def test_every_class_has_its_own_mean_silhouette():
    """Shapes differ: the per-class mean mask area differs across classes (e.g. ring vs circle)."""
    cfg = ShapesConfig(seed=0, image_size=32, train=600, val=0, test=0)
    _, labels, masks = generate(cfg, "train")
    area = torch.stack([masks[labels == c].float().mean() for c in range(10)])
    assert area.max() > 1.5 * area.min()


def test_cache_round_trip_and_manifest(tmp_path, capsys):
    first = shapes_dataset(SMALL, "val", root=tmp_path)
    folder = tmp_path / cache_key(SMALL)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 300, "val": 20, "test": 40} and manifest["config"]["seed"] == 3
    again = shapes_dataset(SMALL, "val", root=tmp_path)
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    (folder / "val.pt").write_bytes(b"garbage")  # a damaged cache is generated again (deterministic), said in one line
    regenerated = shapes_dataset(SMALL, "val", root=tmp_path)
    assert torch.equal(first.images, regenerated.images)
    assert f"unreadable shapes cache {folder / 'val.pt'}" in capsys.readouterr().err
    assert torch.equal(shapes_dataset(SMALL, "val", root=tmp_path).images, first.images)  # and cached again


def test_normalize_round_trip():
    images, _, _ = generate(SMALL, "val")
    back = denormalize(normalize(images))
    assert torch.allclose(back, images.float() / 255, atol=1e-5)


@pytest.mark.parametrize("field,value,message", [
    ("num_classes", 11, "num_classes"), ("image_size", 8, "image_size"), ("scale", (0.3, 0.2), "scale"),
    ("train", -1, "train"), ("noise", 2.0, "noise"),
])
def test_bad_shapes_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        ShapesConfig(**{field: value})


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="'tran'"):
        shapes_dataset(SMALL, "tran", root=None)


# ---------------------------------------------------------------------------------------------
# Real data


def _image(path, colour=(200, 30, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "train"
    for name in ("cat", "dog"):
        for i in range(3):
            _image(root / name / f"{i}.png")
    return root


def test_image_folder_labels_in_sorted_class_order(tree):
    ds = image_folder(tree)
    assert ds.classes == ["cat", "dog"] and ds.targets == [0, 0, 0, 1, 1, 1]
    image, label = ds[4]
    assert image.size == (20, 16) and label == 1


def test_image_folder_errors_name_the_problem(tmp_path, tree):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_folder(tmp_path / "nowhere")
    (tree / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        image_folder(tree)
    (tree / "empty_class").rmdir()
    with pytest.raises(ValueError, match="2 classes but the model has 5"):
        image_folder(tree, num_classes=5)


def test_corrupt_image_fails_naming_it_unless_skipped(tree):
    bad = tree / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    ds = image_folder(tree)
    index = [p for p, _ in ds.samples].index(str(bad))
    with pytest.raises(ValueError, match="broken.png"):
        ds[index]
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        kept = image_folder(tree, skip_corrupt=True)
    assert kept.skipped == [str(bad)] and len(kept) == 6


def test_list_file_with_header_and_root(tmp_path, tree):
    lst = tmp_path / "val.csv"
    lst.write_text("path,label\ncat/0.png,0\ndog/1.png,1\n\n")
    ds = list_dataset(lst, root=tree, num_classes=2)
    assert ds.targets == [0, 1] and ds.samples[1][0].endswith("dog/1.png")


@pytest.mark.parametrize("text,message", [
    ("cat/0.png,0\ncat/9.png,0\n", r"val.csv:2: image .*9.png not found"),
    ("cat/0.png,0\ncat/1.png;0\n", r"val.csv:2: expected 'path,label'"),
    ("cat/0.png,0\ncat/1.png,x\n", r"val.csv:2: label 'x'"),
    ("cat/0.png,0\ndog/1.png,7\n", r"label 7 of .*dog/1.png does not fit a model with 2 classes"),
])
def test_list_file_errors_name_line_and_value(tmp_path, tree, text, message):
    lst = tmp_path / "val.csv"
    lst.write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        list_dataset(lst, root=tree, num_classes=2)


def test_mit67_official_split_files(tmp_path):
    for name in ("bakery", "kitchen"):
        for i in range(2):
            _image(tmp_path / "Images" / name / f"{name}_{i}.jpg")
    (tmp_path / "TrainImages.txt").write_text("bakery/bakery_0.jpg\nkitchen/kitchen_0.jpg\n")
    (tmp_path / "TestImages.txt").write_text("kitchen/kitchen_1.jpg\n")
    train, test = mit67(tmp_path, "train"), mit67(tmp_path, "test")
    assert train.targets == [0, 1] and test.targets == [1] and test.classes == ["bakery", "kitchen"]
    (tmp_path / "TestImages.txt").write_text("garage/garage_1.jpg\n")
    with pytest.raises(ValueError, match="TestImages.txt:1: class 'garage'"):
        mit67(tmp_path, "test")
    with pytest.raises(ValueError, match="'val'"):
        mit67(tmp_path, "val")


def test_imagenet_splits_use_paper_augmentation_and_timm_eval(tmp_path, tree):
    lst = tmp_path / "val.csv"
    lst.write_text("cat/0.png,0\ndog/0.png,1\n")
    sets = imagenet_splits(tree, tree, lst, image_size=32, resize=36)
    x, y = sets["train"][0]
    assert x.shape == (3, 32, 32) and y == 0
    assert sets["val"][1][0].shape == (3, 32, 32) and sets["test"] is sets["val"]
    alone = imagenet_val(tree, lst, image_size=32, resize=36, num_classes=2)  # no training folders needed
    assert alone.samples == sets["val"].samples and torch.equal(alone[1][0], sets["val"][1][0])


def test_paper_augmentation_varies_and_eval_transform_is_fixed():
    model = build_model("resnet_mini", pooling="gap", num_classes=3)
    cfg = data_config_of(model)
    image = Image.fromarray((torch.rand(40, 48, 3) * 255).byte().numpy())
    aug, plain = paper_train_transform(cfg), eval_transform(cfg)
    torch.manual_seed(0)
    a, b = aug(image), aug(image)
    assert a.shape == (3, 56, 56) and not torch.equal(a, b)
    assert torch.equal(plain(image), plain(image))


# ---------------------------------------------------------------------------------------------
# Small backbones


@pytest.mark.parametrize("name", ["resnet_mini", "convnext_mini"])
def test_mini_backbones_end_on_a_7x7_map_and_take_the_ca_stream(name):
    gap = build_model(name, pooling="gap", num_classes=10)
    x = torch.randn(2, 3, 56, 56)
    assert backbone_of(gap).forward_features(x).shape[-2:] == (7, 7)
    assert data_config_of(gap)["input_size"] == (3, 56, 56)
    ca = build_model(gap, pooling="ca")
    logits, attention = ca(x, return_attention=True)
    assert logits.shape == (2, 10) and attention.shape == (2, 7, 7)


def test_convnext_mini_uses_he_init():
    model = backbone_of(build_model("convnext_mini", pooling="gap", num_classes=10))
    fc1 = model.stages[0].blocks[0].mlp.fc1  # a 1x1 convolution (channels-first blocks)
    expected = (2.0 / fc1.in_channels) ** 0.5  # He normal, fan-in: timm's own init would give 0.02
    assert abs(fc1.weight.std().item() - expected) < 0.1 * expected
    assert torch.count_nonzero(fc1.bias) == 0
