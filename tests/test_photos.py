"""The photos data source: scikit-image's sample photos and one's own folder as unlabelled model
inputs, normalised as the model wants, sized as configured; errors name the problem."""
from __future__ import annotations

from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch.utils.data import DataLoader

from ca_core import build_model
from ca_core.data import SAMPLE_PHOTOS, PhotosConfig, PhotosDataset
from ca_core.models import data_config_of
from ca_core.saliency import explain
from ca_core.weights import load_real_model

REAL = {"interpolation": "bicubic", "mean": (0.5,) * 3, "std": (0.5,) * 3}  # tf_efficientnet_lite0's data config
SHAPES = {"interpolation": "bilinear", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}


def photo(name: str) -> Image.Image:
    return Image.open(next(Path(skimage.data.data_dir).glob(f"{name}.*"))).convert("RGB")


def test_default_photos_are_unlabelled_rgb_inputs():
    photos = PhotosDataset(PhotosConfig(), REAL)
    assert photos.names == list(SAMPLE_PHOTOS) and len(photos) == 5
    images, labels = next(iter(DataLoader(photos, batch_size=5)))
    assert images.shape == (5, 3, 224, 224) and images.dtype == torch.float32
    assert labels.tolist() == [-1] * 5 and not hasattr(photos, "classes")
    assert -1 <= images.min() < -0.9 and 0.9 < images.max() <= 1  # mean = std = 0.5: [-1, 1]


def test_the_whole_photo_is_squashed_unless_resize_asks_for_a_centre_crop():
    squashed = PhotosDataset(PhotosConfig(names=("chelsea",)), REAL)[0][0]
    expected = create_transform(input_size=(3, 224, 224), crop_pct=1.0, crop_mode="squash", **REAL)(photo("chelsea"))
    torch.testing.assert_close(squashed, expected, rtol=0, atol=0)
    cropped = PhotosDataset(PhotosConfig(names=("chelsea",), image_size=112, resize=128), REAL)[0][0]
    expected = create_transform(input_size=(3, 112, 112), crop_pct=112 / 128, **REAL)(photo("chelsea"))
    torch.testing.assert_close(cropped, expected, rtol=0, atol=0)


def test_normalisation_is_the_models():
    config = PhotosConfig(names=("coffee",), image_size=64)
    real, shapes = (PhotosDataset(config, REAL)[0][0],
                    PhotosDataset(config, {**SHAPES, "interpolation": "bicubic"})[0][0])
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None], torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    torch.testing.assert_close(real * 0.5 + 0.5, shapes * std + mean)  # the same pixels


def test_own_folder_after_the_samples(tmp_path):
    for name, colour in [("b_red.png", "red"), ("a_blue.jpg", "blue")]:
        Image.new("RGB", (40, 30), colour).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    photos = PhotosDataset(PhotosConfig(names=("rocket",), folder=str(tmp_path), image_size=32), SHAPES)
    assert photos.names == ["rocket", "a_blue", "b_red"] and photos.paths[1] == tmp_path / "a_blue.jpg"
    blue = (photos[1][0] * torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
            + torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None])
    torch.testing.assert_close(blue.mean(dim=(1, 2)), torch.tensor([0.0, 0.0, 1.0]), atol=0.02, rtol=0)
    assert len(PhotosDataset(PhotosConfig(names=(), folder=str(tmp_path)), SHAPES)) == 2


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no scikit-image sample photo 'kitten'; the installed ones: .*chelsea"):
        PhotosDataset(PhotosConfig(names=("kitten",)), REAL)
    with pytest.raises(FileNotFoundError, match="photo folder not found"):
        PhotosDataset(PhotosConfig(folder=str(tmp_path / "nope")), REAL)
    with pytest.raises(ValueError, match="has no images"):
        PhotosDataset(PhotosConfig(folder=str(tmp_path)), REAL)
    with pytest.raises(ValueError, match="no photos"):
        PhotosConfig(names=())
    with pytest.raises(ValueError, match=r"resize \(200\) must be at least image_size \(224\)"):
        PhotosConfig(resize=200)


def test_real_model_explains_its_own_prediction_of_the_photos(tmp_path):
    model = build_model(load_real_model(root=tmp_path), pooling="gap")
    photos = PhotosDataset(PhotosConfig(names=("chelsea", "coffee")), data_config_of(model))
    images = torch.stack([image for image, _ in photos])
    with torch.no_grad():
        assert model(images).argmax(dim=1).tolist() == [285, 967]  # Egyptian cat, espresso
    maps = explain(model, images, "gradcam")  # layer bn2, the map the pooling reads; targets: the prediction
    assert maps.shape == (2, 7, 7) and maps.amax(dim=(1, 2)).eq(1).all()
