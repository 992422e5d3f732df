"""The profiles of _config.yml load, and every kind of mistake in them is a clear error naming its key."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from ca_core.repro import config
from ca_core.repro.config import ConfigError, from_dict, load_all, load_profile, parse_profile
from ca_core.repro.runs import Run
from ca_core.data import FolderData, Mit67Data, PhotosConfig, ShapesConfig
from ca_core.evaluation import EvalConfig
from ca_core.training import TrainConfig
from ca_core.utils import FieldError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return config.read_config(CONFIG)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "_config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_profile_validates_into_the_section_dataclasses():
    profiles = load_all(CONFIG)
    assert set(profiles) == {"smoke", "default", "transfer", "imagenet", "mit67"}
    transfer = profiles["transfer"]  # the real ImageNet EfficientNet-Lite0, a linear probe as its GAP baseline
    assert transfer.trains_gap("tf_efficientnet_lite0") and transfer.input_config["mean"] == (0.5, 0.5, 0.5)
    for p in profiles.values():
        assert isinstance(p.train, TrainConfig) and isinstance(p.eval, EvalConfig) and p.models
    assert isinstance(profiles["smoke"].data, ShapesConfig)
    assert profiles["default"].data_kind == "shapes"
    imagenet = profiles["imagenet"]
    assert imagenet.data_kind == "folders" and imagenet.pretrained
    assert imagenet.models == ["resnet50", "convnext_base"] and imagenet.data.image_size == 224
    mit67 = profiles["mit67"]  # the paper's Fig. 3: the ImageNet models on MIT 67 scenes
    assert mit67.models_from == "imagenet" and mit67.data_kind == "mit67" and mit67.num_classes == 1000
    assert mit67.train == imagenet.train and mit67.pretrained and not mit67.labelled
    assert Run(mit67).train_folder == Run(imagenet).train_folder and Run(mit67).folder != Run(imagenet).folder


def test_smoke_is_smaller_than_default():
    p = load_all(CONFIG)
    assert p["smoke"].data.train < p["default"].data.train
    assert p["smoke"].data.test <= p["default"].data.test


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["train"].update(epochs="ten"), "profiles.smoke.train.epochs: expected int, got 'ten'"),
    (lambda s: s["train"].update(epohcs=3), "profiles.smoke.train.epohcs: unknown key (did you mean 'epochs'?)"),
    (lambda s: s["data"].update(image_size=8), "profiles.smoke.data.image_size:"),
    (lambda s: s["data"].update(scale=[0.1]), "profiles.smoke.data.scale: expected 2 items, got 1"),
    (lambda s: s["data"].update(kind="imgnet"), "profiles.smoke.data.kind: expected one of 'shapes', 'folders'"),
    (lambda s: s["eval"].update(methods=["gradcam", "gradcam_pp"]),
     "profiles.smoke.eval.methods: unknown method 'gradcam_pp'"),
    (lambda s: s["eval"].update(num_images=True), "profiles.smoke.eval.num_images: expected int | null, got True"),
    (lambda s: s.update(models=["resnet_mimi"]),
     "profiles.smoke.models[0]: unknown timm model 'resnet_mimi' (did you mean 'resnet_mini'?)"),
    (lambda s: s.update(model=["resnet_mini"]), "profiles.smoke.model: unknown key (did you mean 'models'?)"),
    (lambda s: s.pop("eval"), "profiles.smoke: missing section(s) eval"),
    (lambda s: s.update(pretrained="yes"), "profiles.smoke.pretrained: expected bool | dict[str, Path], got 'yes'"),
    (lambda s: s["train"].update(per_model={"resnet50": {"lr": 0.01}}),
     "profiles.smoke.train.per_model.resnet50: not one of the profile's models (resnet_mini, convnext_mini)"),
    (lambda s: s["train"].update(per_model={"resnet_mini": {"gap_epochs": 0}}),
     "profiles.smoke.train.per_model.resnet_mini.gap_epochs: must be >= 1, got 0"),
    (lambda s: s["train"].update(per_model={"resnet_mini": {"lr": "fast"}}),
     "profiles.smoke.train.per_model.resnet_mini.lr: expected float, got 'fast'"),
    (lambda s: s["train"].update(per_model={"resnet_mini": {"lrr": 0.1}}),
     "profiles.smoke.train.per_model: resnet_mini.lrr is not a train setting; known: epochs, lr"),
])
def test_mistakes_name_the_key(tmp_path, raw, edit, message):
    data = copy.deepcopy(raw)
    edit(data["profiles"]["smoke"])
    with pytest.raises(ConfigError) as err:
        load_profile("smoke", write(tmp_path, data))
    assert str(err.value).startswith(message), str(err.value)


def test_unknown_profile_and_top_level_key(tmp_path, raw):
    with pytest.raises(ConfigError, match=r"profiles.tiny: no such profile .* known: smoke, default, transfer, "):
        load_profile("tiny", CONFIG)
    with pytest.raises(ConfigError, match="profile: unknown top-level key"):
        load_profile("smoke", write(tmp_path, {**raw, "profile": {}}))
    with pytest.raises(ConfigError, match="config file not found"):
        load_profile("smoke", tmp_path / "missing.yml")


def test_missing_data_path_is_an_error_naming_the_key_only_when_checked():
    profile = load_profile("imagenet", CONFIG, check_paths=False)
    assert not profile.data.train_root.exists()
    with pytest.raises(ConfigError, match=r"profiles.imagenet.data.train_root: path '.*' does not exist"):
        load_profile("imagenet", CONFIG)


def test_scientific_notation_without_dot_reads_as_float(tmp_path, raw):
    data = copy.deepcopy(raw)
    data["profiles"]["smoke"]["train"]["weight_decay"] = "WD"
    path = write(tmp_path, data)
    path.write_text(path.read_text().replace("WD", "1e-4"))
    assert load_profile("smoke", path).train.weight_decay == pytest.approx(1e-4)


@dataclass
class Nested:
    """A schema exercising every supported hint."""

    mode: Literal["a", "b"] = "a"
    sizes: tuple[int, int] = (1, 2)
    names: list[str] = field(default_factory=list)
    table: dict[str, float] = field(default_factory=dict)
    root: Path | None = None
    inner: EvalConfig = field(default_factory=EvalConfig)


def test_generic_validation_converts_and_reports_nested_paths():
    value = from_dict(Nested, {"sizes": [3, 4], "table": {"x": 1}, "root": "data", "inner": {"methods": ["gradcam"]}},
                      "p")
    assert value.sizes == (3, 4) and value.table == {"x": 1.0} and value.root == Path("data")
    assert value.inner.methods == ("gradcam",)
    for data, message in [
        ({"mode": "c"}, "p.mode: expected 'a' | 'b', got 'c'"),
        ({"table": {"x": "one"}}, "p.table.x: expected float, got 'one'"),
        ({"names": ["ok", 3]}, "p.names[1]: expected str, got 3"),
        ({"inner": {"batch_size": 0}}, "p.inner.batch_size: must be positive, got 0"),
        ({"inner": 5}, "p.inner: expected a mapping of EvalConfig fields, got 5"),
        ({"sizes": 3}, "p.sizes: expected tuple[int, int], got 3"),
    ]:
        with pytest.raises(ConfigError) as err:
            from_dict(Nested, data, "p")
        assert str(err.value).startswith(message), str(err.value)


def test_profile_settings_roundtrip_through_parameters(raw):
    """The pipeline injects the raw settings into the notebooks; they must give the same profile."""
    settings = raw["profiles"]["smoke"]
    assert config.from_parameters("smoke", settings) == parse_profile("smoke", settings)
    assert config.from_parameters("smoke", None, CONFIG).train == parse_profile("smoke", settings).train


def test_keep_stale_names_training_stages_of_the_profile(raw):
    settings = copy.deepcopy(raw["profiles"]["smoke"])
    settings["keep_stale"] = ["resnet_mini/gap", "convnext_mini/ca-seed1"]
    assert parse_profile("smoke", settings).keep_stale == ["resnet_mini/gap", "convnext_mini/ca-seed1"]
    for bad in (["resnet_mini/ca-seed7"], ["resnet50/gap"], "resnet_mini/gap"):
        settings["keep_stale"] = bad
        with pytest.raises(ConfigError, match=r"profiles.smoke.keep_stale"):
            parse_profile("smoke", settings)


@dataclass
class Window:
    """A dataclass whose range check's message does not begin with its field's name."""

    width: int = 1

    def __post_init__(self) -> None:
        if self.width < 1:
            raise FieldError("width", f"a window needs a positive width, got {self.width}")
        if self.width > 99:
            raise ValueError("windows this wide do not fit")  # not about one field


def test_range_checks_name_their_field_by_type_not_by_message():
    with pytest.raises(ConfigError, match=r"^p\.width: a window needs a positive width, got 0$"):
        from_dict(Window, {"width": 0}, "p")
    with pytest.raises(ConfigError, match=r"^p: windows this wide do not fit$"):
        from_dict(Window, {"width": 100}, "p")


@pytest.mark.parametrize("cls, values, field, message", [
    (TrainConfig, {"epochs": 0}, "epochs", "epochs: must be >= 1, got 0"),
    (TrainConfig, {"precision": "fp8"}, "precision", "precision: unknown 'fp8'; valid: fp32, bf16, fp16"),
    (EvalConfig, {"methods": ("gradcam", "gradcam")}, "methods", "methods: listed twice in ['gradcam', 'gradcam']"),
    (ShapesConfig, {"train": -1}, "train", "train size must be >= 0, got -1"),
    (PhotosConfig, {"resize": 100}, "resize", "resize (100) must be at least image_size (224), or None to squash"),
    (FolderData, {"train_root": Path("t"), "val_root": Path("v"), "num_classes": 0}, "num_classes",
     "num_classes: must be positive, got 0"),
    (Mit67Data, {"root": Path("m"), "resize": 100}, "resize", "resize: must be >= image_size (224), got 100"),
])
def test_settings_dataclasses_raise_field_errors_with_their_messages(cls, values, field, message):
    with pytest.raises(FieldError) as err:
        cls(**values)
    assert err.value.field == field and str(err.value) == message and isinstance(err.value, ValueError)


def test_real_data_settings_live_in_the_library():
    assert config.DATA_KINDS == {"shapes": ShapesConfig, "folders": FolderData, "mit67": Mit67Data,
                                 "photos": PhotosConfig}
    assert FolderData.__module__ == Mit67Data.__module__ == "ca_core.data.folders"


def test_keep_stale_refuses_a_stage_the_profile_does_not_train(raw):
    """A pretrained backbone has no GAP stage to keep (README's old example `resnet50/gap` for the
    ImageNet profile); an ablation's stream is a stage."""
    settings = copy.deepcopy(raw["profiles"]["default"])
    settings["keep_stale"] = ["resnet_mini/gap"]  # the default's backbones are pretrained (data/backbones/)
    with pytest.raises(ConfigError, match=r"'resnet_mini/gap' is not a training stage of this profile"):
        parse_profile("default", settings, check_paths=False)
    settings["keep_stale"] = ["convnext_mini/ca-convnext_no_label_smoothing", "resnet_mini/ca-seed2"]
    assert parse_profile("default", settings, check_paths=False).keep_stale == settings["keep_stale"]


def test_photos_are_only_explained_by_another_profiles_models(raw):
    """kind: photos has no labels: a profile that would train on them, or score accuracy on them, is refused;
    one that evaluates another profile's models on them (their own predictions) loads."""
    photos = {"kind": "photos", "names": ["chelsea", "coffee"], "image_size": 32}
    trains = copy.deepcopy(raw["profiles"]["smoke"]) | {"data": photos}
    with pytest.raises(ConfigError, match="profiles.p.data.kind: photos have no labels to train on"):
        parse_profile("p", trains, check_paths=False)
    shown = {"models_from": "smoke", "data": photos, "models": ["resnet_mini"],
             "eval": raw["profiles"]["smoke"]["eval"] | {"targets": "predicted"}}
    profile = parse_profile("p", shown, check_paths=False, profiles=raw["profiles"] | {"p": shown})
    assert profile.num_classes == 4 and profile.seeds == [0, 1] and not profile.labelled
    with pytest.raises(ConfigError, match="profiles.p.eval.targets: photos have no labels"):
        parse_profile("p", shown | {"eval": raw["profiles"]["smoke"]["eval"]}, check_paths=False,
                      profiles=raw["profiles"])


def test_a_linear_probe_needs_pretrained_features_and_is_a_training_stage(raw):
    probe = copy.deepcopy(raw["profiles"]["smoke"])
    probe["train"]["gap_trains"] = "classifier"
    with pytest.raises(ConfigError, match="train.gap_trains: 'classifier' .* resnet_mini has no pretrained"):
        parse_profile("p", probe, check_paths=False)
    probe["pretrained"] = {"resnet_mini": "w.safetensors", "convnext_mini": "w.safetensors"}
    profile = parse_profile("p", probe, check_paths=False)
    assert profile.trains_gap("resnet_mini") and "resnet_mini/gap" in config.training_stages(profile)
    del probe["train"]["gap_trains"]
    assert "resnet_mini/gap" not in config.training_stages(parse_profile("p", probe, check_paths=False))


def test_pretrained_weights_for_other_classes_need_a_linear_probe(raw, tmp_path):
    """A stream on weights that classify other classes would train on an untrained classifier: the profile
    is refused until ``gap_trains: classifier`` gives it one."""
    from safetensors.torch import save_file

    from ca_core.models.factory import create_backbone

    seven = {k: v.contiguous() for k, v in create_backbone("resnet_mini", num_classes=7).state_dict().items()}
    save_file(seven, tmp_path / "seven.safetensors")
    settings = copy.deepcopy(raw["profiles"]["smoke"]) | {"models": ["resnet_mini"],
                                                          "pretrained": {"resnet_mini": "seven.safetensors"}}
    with pytest.raises(ConfigError, match="profiles.p.train.gap_trains: the pretrained weights of resnet_mini "
                                          "classify 7 classes, the models here 4: set gap_trains: classifier"):
        parse_profile("p", settings, root=tmp_path)
    settings["train"]["gap_trains"] = "classifier"
    assert parse_profile("p", settings, root=tmp_path).trains_gap("resnet_mini")
