"""A user's own data: class folders for training and validation (no list file, no masks) and a
local weights file as the backbone's pretrained weights, through every notebook and the book."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ca_core import build_model, save_model
from ca_core.repro import pipeline
from ca_core.repro.config import ConfigError, load_profile

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("circle", "square", "stripes")


def draw(kind: str, rng: np.random.Generator) -> Image.Image:
    """A 40-px RGB image of one of three easy patterns on noise."""
    img = rng.uniform(0, 80, (40, 40, 3))
    y, x = np.mgrid[:40, :40]
    cy, cx = rng.integers(12, 28, 2)
    shape = {"circle": (y - cy) ** 2 + (x - cx) ** 2 < 64, "square": (abs(y - cy) < 7) & (abs(x - cx) < 7),
             "stripes": (x // 4) % 2 == 0}[kind]
    img[shape] = rng.uniform(150, 255, 3)
    return Image.fromarray(img.astype(np.uint8))


def write_folders(root: Path, per_class: int, rng: np.random.Generator) -> None:
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            draw(kind, rng).save(root / kind / f"{i}.png")


def write_layouts(root: Path) -> dict[str, dict]:
    """The same images in the three layouts a user may have; the ``data`` section of each."""
    rng = np.random.default_rng(0)
    write_folders(root / "images/train", 8, rng)
    write_folders(root / "images/val", 4, rng)
    lines = [f"{kind}/{i}.png,{label}" for label, kind in enumerate(CLASSES) for i in range(4)]
    (root / "images/val.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    shutil.copytree(root / "images/train", root / "mit67/Images")
    for i in range(4):  # the test images join the training ones, as in MIT 67's single Images folder
        for kind in CLASSES:
            shutil.copy(root / f"images/val/{kind}/{i}.png", root / f"mit67/Images/{kind}/t{i}.png")
    (root / "mit67/TrainImages.txt").write_text("".join(f"{k}/{i}.png\n" for k in CLASSES for i in range(8)))
    (root / "mit67/TestImages.txt").write_text("".join(f"{k}/t{i}.png\n" for k in CLASSES for i in range(4)))
    size = {"num_classes": 3, "image_size": 32, "resize": 36}
    return {"folders": {"kind": "folders", "train_root": "images/train", "val_root": "images/val", **size},
            "list": {"kind": "folders", "train_root": "images/train", "val_root": "images/val",
                     "val_list": "images/val.csv", **size},
            "mit67": {"kind": "mit67", "root": "mit67", **size}}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own-data")
    layouts = write_layouts(root)
    torch.manual_seed(0)
    save_model(build_model("resnet_mini", "gap", num_classes=3), root / "weights.safetensors")
    profiles = {name: {
        "description": f"a user's images ({name})", "data": data,
        "models": ["resnet_mini"], "pretrained": {"resnet_mini": "weights.safetensors"},
        "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 16},
        "eval": {"methods": ["attention", "gradcam", "random", "centre"], "num_images": 4, "batch_size": 4,
                 "chunk_size": 4, "n_boot": 50, "figure_images": 2},
    } for name, data in layouts.items()}
    (root / "_config.yml").write_text(yaml.safe_dump({"profiles": profiles}))
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("_build", "generated", "_assets"))
    (root / "book/_assets").symlink_to(REPO / "book/_assets", target_is_directory=True)
    return root


@pytest.mark.parametrize("layout", ["folders", "list", "mit67"])
def test_own_data_and_a_local_weights_file_run_through_every_notebook(project, layout):
    """Class folders (also the book build), a path,label list, an MIT-67-shaped folder."""
    book = layout == "folders"
    timings = pipeline.run(layout, config=project / "_config.yml", book=book, log=lambda _: None)
    assert set(timings["steps"]) >= {"01_data", "06_reproduction"} | ({"book"} if book else set())
    assert not (project / f"runs/{layout}/train/resnet_mini/gap").exists()  # the local weights are the backbone
    results = json.loads((project / f"runs/{layout}/results.json").read_text())
    assert results["regime"] == [] and {r["method"] for r in results["results"]} == {"attention", "gradcam", "random", "centre"}
    assert all("pointing" not in r["metrics"] for r in results["results"])  # no masks: no localisation
    assert results["accuracy"][0]["n_images"] == 12
    if book:
        assert (project / "book/_build/html/generated/04_figures.html").is_file()


def test_mistakes_in_own_data_are_clear_errors(project, tmp_path):
    own = yaml.safe_load((project / "_config.yml").read_text())["profiles"]["folders"]
    own["data"] |= {"train_root": str(project / "images/train"), "val_root": str(project / "images/val")}
    own["pretrained"] = {"resnet_mini": str(project / "weights.safetensors")}

    def load(**changes) -> None:
        (tmp_path / "_config.yml").write_text(yaml.safe_dump({"profiles": {"own": {**own, **changes}}}))
        load_profile("own", tmp_path / "_config.yml")

    (project / "images/val/extra").mkdir()
    try:
        with pytest.raises(ConfigError, match=r"profiles\.own\.data\.val_root: its class folders differ .*extra"):
            load()
    finally:
        (project / "images/val/extra").rmdir()
    with pytest.raises(ConfigError, match=r"profiles\.own\.pretrained\.resnet50: not one of the profile's models"):
        load(pretrained={"resnet50": "weights.safetensors"})
    with pytest.raises(ConfigError, match=r"profiles\.own\.pretrained\.resnet_mini: path 'missing.safetensors' does not exist"):
        load(pretrained={"resnet_mini": "missing.safetensors"})
    with pytest.raises(ConfigError, match=r"profiles\.own\.data\.root: path 'nowhere' does not exist"):
        load(data={"kind": "mit67", "root": "nowhere"})
