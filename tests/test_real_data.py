"""A user's own data: class folders for training and validation (no list file, no masks) and a
local weights file as the backbone's pretrained weights, through every notebook and the book; and
a profile that shows another profile's trained models on images of other classes (``models_from``,
the paper's MIT 67 figure)."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ca_core import build_model, save_model
from ca_core.evaluation import read_predictions, read_results
from ca_core.repro import experiment, pipeline
from ca_core.repro.config import ConfigError, load_profile
from ca_core.repro.runs import Run

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("circle", "square", "stripes")
SCENES = ("corridor", "greenhouse", "poolinside", "winecellar")  # four classes: more than the models have


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
    for i, scene in enumerate(SCENES):  # an MIT-67-shaped set of other classes
        (root / "scenes/Images" / scene).mkdir(parents=True)
        for j in range(3):
            draw(CLASSES[(i + j) % 3], rng).save(root / f"scenes/Images/{scene}/{j}.png")
    (root / "scenes/TrainImages.txt").write_text("".join(f"{s}/0.png\n" for s in SCENES))
    (root / "scenes/TestImages.txt").write_text("".join(f"{s}/{j}.png\n" for s in SCENES for j in (1, 2)))
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
    profiles["scenes"] = {
        "description": "the folders profile's models on scenes of other classes", "models_from": "folders",
        "data": {"kind": "mit67", "root": "scenes", "num_classes": 4, "image_size": 32, "resize": 36},
        "models": ["resnet_mini"],
        "eval": {"methods": ["attention", "gradcam", "centre"], "targets": "predicted", "num_images": 8,
                 "batch_size": 4, "chunk_size": 4, "n_boot": 50, "figure_images": 2},
    }
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
    assert results["regime"] == [] and ({r["method"] for r in results["results"]}
                                        == {"attention", "gradcam", "random", "centre"})
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
    with pytest.raises(ConfigError,
                       match=r"profiles\.own\.pretrained\.resnet_mini: path 'missing.safetensors' does not exist"):
        load(pretrained={"resnet_mini": "missing.safetensors"})
    with pytest.raises(ConfigError, match=r"profiles\.own\.data\.root: path 'nowhere' does not exist"):
        load(data={"kind": "mit67", "root": "nowhere"})


def test_a_profile_shows_another_profiles_models_on_images_of_other_classes(project):
    """``models_from``: no training; the maps explain each model's prediction (the scenes' labels
    0-3 do not fit the 3-class models); no accuracy; every notebook runs and says so."""
    config = project / "_config.yml"
    with pytest.raises(FileNotFoundError,
                       match=r"train them first \(python -m ca_core.pipeline --profile never-trained\)"):
        experiment.train_all(Run(dataclasses.replace(load_profile("scenes", config, check_paths=False),
                                                     models_from="never-trained")))
    pipeline.run("folders", config=config, book=False, log=lambda _: None)  # the models (reused if made above)
    timings = pipeline.run("scenes", config=config, book=False, log=lambda _: None)
    assert set(timings["steps"]) >= {"02_train", "06_reproduction"}
    assert not (project / "runs/scenes/train").exists()
    results = json.loads((project / "runs/scenes/results.json").read_text())
    assert results["accuracy"] == [] and results["settings"]["models_from"] == "folders"
    assert results["claims"] and all(c["metric"] != "accuracy" for c in results["claims"])  # the maps' claims only
    assert {r["method"] for r in results["results"]} == {"attention", "gradcam", "centre"}
    folder = project / "runs/scenes/eval/resnet_mini/ca"
    pred = read_predictions(folder)
    assert "correct" not in pred and pred["label"].max() == 3 and pred["pred"].max() < 3
    res = read_results(folder / "gradcam")
    assert np.array_equal(res["target"], pred["pred"][res["index"]]) and len(res["index"]) == 8
    for step in ("02_train", "03_evaluate"):
        assert "Models of profile `folders`" in (project / f"book/generated/{step}.ipynb").read_text()


def test_mistakes_in_models_from_are_clear_errors(project, tmp_path):
    profiles = yaml.safe_load((project / "_config.yml").read_text())["profiles"]
    source = {**profiles["folders"], "data": {**profiles["folders"]["data"],
                                              "train_root": str(project / "images/train"),
                                              "val_root": str(project / "images/val")},
              "pretrained": {"resnet_mini": str(project / "weights.safetensors")}}
    scenes = {**profiles["scenes"], "data": {**profiles["scenes"]["data"], "root": str(project / "scenes")}}

    def load(**changes) -> None:
        (tmp_path / "_config.yml").write_text(yaml.safe_dump({"profiles": {"folders": source,
                                                                          "own": {**scenes, **changes}}}))
        load_profile("own", tmp_path / "_config.yml")

    load()  # as written, valid
    with pytest.raises(ConfigError, match=r"profiles\.own\.models_from: expected another profile of the config "
                                          r"\(folders\), got 'imagenet'"):
        load(models_from="imagenet")
    with pytest.raises(ConfigError, match=r"profiles\.own\.models_from: expected another profile .* got 'own'"):
        load(models_from="own")
    with pytest.raises(ConfigError, match=r"profiles\.own\.train: comes from profiles\.folders \(models_from\)"):
        load(train={"epochs": 2})
    with pytest.raises(ConfigError, match=r"profiles\.own\.seeds: comes from profiles\.folders"):
        load(seeds=[0, 1])
    with pytest.raises(ConfigError,
                       match=r"profiles\.own\.models: 'convnext_mini' is not trained by profiles\.folders"):
        load(models=["convnext_mini"])
    with pytest.raises(ConfigError, match=r"profiles\.own\.eval\.targets: the data's 4 classes are not the 3 classes"):
        load(eval={**scenes["eval"], "targets": "label"})
    with pytest.raises(ConfigError, match=r"profiles\.own\.eval\.targets: expected one of 'label', 'predicted'"):
        load(eval={**scenes["eval"], "targets": "guess"})
