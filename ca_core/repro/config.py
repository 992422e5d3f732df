"""Run profiles: load the top-level ``_config.yml`` and validate it against the section dataclasses.

A profile (``smoke``, ``default``, ``imagenet``) has one section per part of the pipeline, and each
section maps 1:1 onto a dataclass owned by the module that uses it: ``data`` onto
:class:`ca_core.data.ShapesConfig` (``kind: shapes``), :class:`ca_core.data.FolderData`
(``kind: folders``) or :class:`ca_core.data.Mit67Data` (``kind: mit67``),
``train`` onto :class:`ca_core.training.TrainConfig`, ``eval`` onto
:class:`ca_core.evaluation.EvalConfig`; ``models`` lists the timm backbones. :class:`Profile` is
the typed result. A profile with ``models_from: <other profile>`` trains nothing: it shows that
profile's trained models on its own data (and takes its ``train``, ``seeds`` and ``pretrained``).

Validation is generic over those dataclasses (their field names and type hints are the schema), so
a new field needs no change here. Every error names the key path, e.g.
``profiles.default.train.epochs: expected int, got 'ten'``: a typo is never silently ignored. A
dataclass's own range checks name their field with :class:`ca_core.utils.FieldError`.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import timm
import yaml
from safetensors import safe_open

from ..data import FolderData, Mit67Data, PhotosConfig, ShapesConfig
from ..evaluation import EvalConfig
from ..training import TrainConfig
from ..utils import FieldError

CONFIG_FILE = Path("_config.yml")


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type, out of range or points nowhere."""


DataSpec = ShapesConfig | FolderData | Mit67Data | PhotosConfig

#: ``kind`` values of the ``data`` section and the dataclass each maps onto.
DATA_KINDS: dict[str, type] = {"shapes": ShapesConfig, "folders": FolderData, "mit67": Mit67Data,
                               "photos": PhotosConfig}

#: The dataclass each of the ``train`` and ``eval`` sections maps onto.
SECTIONS: dict[str, type] = {"train": TrainConfig, "eval": EvalConfig}


@dataclass
class Ablation:
    """A labelled ablation of a profile: one more CA stream of ``backbone``, on the primary seed, trained
    with the ``train`` settings changed (e.g. ``{label_smoothing: 0.0}``); evaluated with the methods
    of the other seeds' streams (``eval.extra_seed_methods``) and shown beside the primary stream."""

    backbone: str
    train: dict[str, Any]


@dataclass
class Profile:
    """One validated profile of ``_config.yml``.

    ``seeds``: the training seeds of the CA stream (each trains one stream on the same GAP backbone,
    so claims can be tested across training runs); the first one is the run's primary model, the
    one that figures and single-seed tables show. Default: the ``train`` section's ``seed``.

    ``keep_stale``: training stages (``"<backbone>/<gap|ca|ca-seed<S>>"``) to keep although the
    code or settings that made them changed, instead of training them again; the book marks every
    number that depends on them.

    ``ablations``: labelled ablations, each one more CA stream of a backbone (primary seed) trained
    with some train settings changed (:class:`Ablation`); the method stays the paper's.

    ``root``: the project folder (that of ``_config.yml``) under which its run folder
    (:class:`ca_core.repro.runs.Run`) and relative paths lie, absolute.

    ``models_from``: the profile whose trained models this one evaluates on its own data, training
    nothing (the paper's MIT 67 figure: ImageNet-trained streams on unseen scenes). Its ``train``,
    ``seeds`` and ``pretrained`` are that profile's; ``model_classes`` is its classifier's width.
    """

    name: str
    data: DataSpec
    models: list[str]
    train: TrainConfig
    eval: EvalConfig
    description: str = ""
    pretrained: bool | dict[str, Path] = False
    seeds: list[int] = field(default_factory=lambda: [0])
    keep_stale: list[str] = field(default_factory=list)
    models_from: str | None = None
    model_classes: int | None = None
    ablations: dict[str, "Ablation"] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    root: Path = field(default_factory=Path.cwd)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    def path(self, value: Path) -> Path:
        """A path of the profile's settings (data, local weights), relative to :attr:`root` unless absolute."""
        return self.root / value

    def shown(self, path: Path) -> str:
        """``path`` as the book shows it: relative to :attr:`root` when below it (no machine's folders)."""
        path = Path(path)
        return (path.relative_to(self.root) if path.is_relative_to(self.root) else path).as_posix()

    @property
    def num_classes(self) -> int:
        """Width of the models' classifier (the data's classes, unless the models come from another profile)."""
        return self.model_classes or self.data.num_classes

    @property
    def input_config(self) -> dict[str, Any]:
        """The models' input normalisation and interpolation (``mean``, ``std``, ``interpolation``): their
        timm data config, which the profile's models share (checked on load); the data is normalised with it."""
        return input_config(self.models[0])

    @property
    def labelled(self) -> bool:
        """Whether the data's labels are the models' classes, so that accuracy means something."""
        return self.eval.targets == "label"

    def trains_gap(self, backbone: str) -> bool:
        """Whether the GAP stage trains here: the whole model from scratch (no pretrained weights), or a
        new linear classifier on the pretrained backbone's frozen features (``train.gap_trains: classifier``)."""
        return not self.pretrained_for(backbone) or self.train.for_backbone(backbone).gap_trains == "classifier"

    def pretrained_for(self, backbone: str) -> bool | Path:
        """A backbone's starting weights: ``True`` (timm's, from the hub), a local weights file, or
        ``False`` (trained here from scratch, the GAP stage)."""
        if isinstance(self.pretrained, dict):
            weights = self.pretrained.get(backbone, False)
            return self.path(weights) if isinstance(weights, Path) else weights
        return self.pretrained

    @property
    def data_kind(self) -> str:
        """The ``kind`` of the ``data`` section: a key of :data:`DATA_KINDS`."""
        return next(k for k, cls in DATA_KINDS.items() if isinstance(self.data, cls))


# ---------------------------------------------------------------------------------------------
# Generic validation of plain values against type hints


def _describe(hint: Any) -> str:
    """A readable name for a type hint (``int``, ``list[str]``, ``'a' | 'b'``)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(hint))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_describe(a) for a in typing.get_args(hint) if a is not Ellipsis)}]"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _fail(path: str, hint: Any, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {_describe(hint)}, got {value!r}")


def check_value(value: Any, hint: Any, path: str) -> Any:
    """Return ``value`` converted to ``hint`` (lists to tuples, strings to paths, mappings to
    dataclasses) or raise :class:`ConfigError` naming ``path``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin is Literal:
        if value not in args:
            raise _fail(path, hint, value)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return check_value(value, option, path)
            except ConfigError as err:
                errors.append(err)
        nested = len(errors) == 1 and not str(errors[0]).startswith(f"{path}: expected")
        raise errors[0] if nested else _fail(path, hint, value)
    if origin in (list, tuple, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, hint, value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            items = [check_value(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item = args[0] if args else Any
            items = [check_value(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return list(items) if origin is list else tuple(items)
    if origin in (dict, typing.Mapping):
        if not isinstance(value, Mapping):
            raise _fail(path, hint, value)
        key_hint, value_hint = args or (Any, Any)
        return {check_value(k, key_hint, path): check_value(v, value_hint, f"{path}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, hint, value)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, hint, value)
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise _fail(path, hint, value)
        return Path(value)
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise _fail(path, hint, value)
        return value
    raise TypeError(f"{path}: unsupported type hint {hint!r} in the config schema")


def _unknown_key(path: str, key: Any, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{path}.{key}: unknown key{hint}; known keys: {', '.join(known)}")


def from_dict(cls: type, data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and value; errors name ``path``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise _unknown_key(path, key, list(fields))
    missing = [
        name for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{path}: missing required key(s) {', '.join(missing)}")
    values = {k: check_value(v, hints[k], f"{path}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except FieldError as err:  # a range check of the dataclass (__post_init__), naming its field
        detail = str(err).removeprefix(f"{err.field}: ")  # "epochs: must be ..." or "image_size must be ..."
        raise ConfigError(f"{path}.{err.field}: {detail}") from err
    except (ValueError, TypeError) as err:  # a check of the whole dataclass, e.g. "no photos: ..."
        raise ConfigError(f"{path}: {err}") from err


# ---------------------------------------------------------------------------------------------
# Profiles

PROFILE_KEYS = ("description", "data", "models", "models_from", "pretrained", "seeds", "keep_stale", "train", "eval",
                "ablations")
#: What a profile with ``models_from`` takes from that profile, and so may not set itself.
INHERITED_KEYS = ("train", "seeds", "pretrained", "keep_stale", "ablations")


def parse_profile(name: str, settings: Mapping[str, Any], check_paths: bool = True, root: Path = Path("."),
                  profiles: Mapping[str, Any] | None = None) -> Profile:
    """Validate one profile's settings (the mapping under ``profiles.<name>``); relative paths are
    relative to ``root``, the project folder (that of ``_config.yml``), where the notebooks run.

    A profile with ``models_from`` first takes that profile's :data:`INHERITED_KEYS` (merged once,
    then validated like any profile's, the inherited ones against the source's models).
    ``profiles``: every profile's settings, to resolve ``models_from`` (default: read from
    ``root/_config.yml`` when needed).
    """
    path = f"profiles.{name}"
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections, got {settings!r}")
    for key in settings:
        if key not in PROFILE_KEYS:
            raise _unknown_key(path, key, list(PROFILE_KEYS))
    given, source = settings, _source(name, settings, root, profiles)
    if source is not None:
        settings = {k: v for k, v in settings.items() if k != "models_from"} | {
            k: source.settings[k] for k in INHERITED_KEYS if k in source.settings}
    missing = [k for k in ("data", "models", "train", "eval") if k not in settings]
    if missing:
        raise ConfigError(f"{path}: missing section(s) {', '.join(missing)}")
    if not isinstance(settings["data"], Mapping):
        raise ConfigError(f"{path}.data: expected a mapping, got {settings['data']!r}")
    data_settings = dict(settings["data"])
    kind = data_settings.pop("kind", "shapes")
    if kind not in DATA_KINDS:
        raise ConfigError(f"{path}.data.kind: expected one of {', '.join(map(repr, DATA_KINDS))}, got {kind!r}")
    models = check_value(settings["models"], list[str], f"{path}.models")
    if not models:
        raise ConfigError(f"{path}.models: list at least one timm backbone")
    _check_backbones(models, f"{path}.models")
    trained = source.models if source is not None else models  # what the train-side settings may name
    sections = {k: from_dict(cls, settings[k], f"{path}.{k}") for k, cls in SECTIONS.items()}
    _check_per_model(sections["train"], trained, f"{path}.train.per_model")
    seeds = check_value(settings.get("seeds", [sections["train"].seed]), list[int], f"{path}.seeds")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}.seeds: expected distinct training seeds of the CA stream, got {seeds!r}")
    profile = Profile(
        name=name,
        seeds=seeds,
        data=from_dict(DATA_KINDS[kind], data_settings, f"{path}.data"),
        models=models,
        description=check_value(settings.get("description", ""), str, f"{path}.description"),
        pretrained=_pretrained(settings.get("pretrained", False), trained, f"{path}.pretrained"),
        ablations=_ablations(settings.get("ablations", {}), trained, sections["train"], f"{path}.ablations"),
        models_from=None if source is None else source.name,
        model_classes=None if source is None else source.data.num_classes,
        settings=dict(given),
        root=root,
        **sections,
    )
    _check_targets(profile, source, path)
    stages = training_stages(profile if source is None else source)
    profile.keep_stale = _stages(settings.get("keep_stale", []), stages, f"{path}.keep_stale")
    if check_paths:
        check_data_paths(profile, root)
    _check_probes(profile, f"{path}.train")  # after the paths: a missing weights file is named as such
    return profile


def _source(name: str, settings: Mapping[str, Any], root: Path, profiles: Mapping[str, Any] | None) -> Profile | None:
    """The parsed profile named by ``models_from`` (``None`` without), after checking that this profile
    sets none of what it inherits and that the source trains models of its own."""
    if "models_from" not in settings:
        return None
    path = f"profiles.{name}"
    source_name = check_value(settings["models_from"], str, f"{path}.models_from")
    given = [k for k in INHERITED_KEYS if k in settings]
    if given:
        raise ConfigError(f"{path}.{given[0]}: comes from profiles.{source_name} (models_from); remove it here")
    if profiles is None:
        profiles = read_config(root / CONFIG_FILE)["profiles"]
    if source_name == name or source_name not in profiles:
        known = ", ".join(p for p in profiles if p != name)
        raise ConfigError(f"{path}.models_from: expected another profile of the config ({known}), got {source_name!r}")
    if "models_from" in profiles[source_name]:
        raise ConfigError(f"{path}.models_from: profiles.{source_name} trains no models of its own "
                          "(it has models_from too)")
    source = parse_profile(source_name, profiles[source_name], check_paths=False, root=root, profiles=profiles)
    models = check_value(settings.get("models", []), list[str], f"{path}.models")
    outside = [m for m in models if m not in source.models]
    if outside:
        raise ConfigError(f"{path}.models: {outside[0]!r} is not trained by profiles.{source_name} "
                          f"(its models: {', '.join(source.models)})")
    return source


def _check_targets(profile: Profile, source: Profile | None, path: str) -> None:
    """Photos have no labels: only another profile's models explain them, each its own prediction; and
    labels explained by another profile's models must be their classes."""
    if isinstance(profile.data, PhotosConfig):
        if source is None:
            raise ConfigError(f"{path}.data.kind: photos have no labels to train on: a profile with kind: photos "
                              "evaluates another profile's models (set models_from and eval.targets: predicted)")
        if profile.labelled:
            raise ConfigError(f"{path}.eval.targets: photos have no labels; set targets: predicted")
    elif source is not None and profile.labelled and profile.data.num_classes != source.data.num_classes:
        raise ConfigError(f"{path}.eval.targets: the data's {profile.data.num_classes} classes are not the "
                          f"{source.data.num_classes} classes of profiles.{source.name}'s models; "
                          "set targets: predicted")


def training_stages(profile: Profile) -> list[str]:
    """The names of the profile's training stages, as ``keep_stale`` lists them: ``"<backbone>/gap"``
    (backbones trained here or given a linear classifier, not pretrained ones used as they are),
    ``"<backbone>/ca"`` (the first seed's stream),
    ``"<backbone>/ca-seed<S>"`` and ``"<backbone>/ca-<ablation>"``."""
    stages = [f"{b}/{s}" for b in profile.models
              for s in (["gap"] if profile.trains_gap(b) else [])
              + ["ca", *(f"ca-seed{x}" for x in profile.seeds[1:])]]
    return stages + [f"{a.backbone}/ca-{name}" for name, a in profile.ablations.items()]


def _stages(value: Any, valid: list[str], path: str) -> list[str]:
    """``keep_stale``: names among the profile's :func:`training_stages`."""
    stages = check_value(value, list[str], path)
    for stage in stages:
        if stage not in valid:
            raise ConfigError(f"{path}: {stage!r} is not a training stage of this profile (one of: {', '.join(valid)})")
    return stages


ABLATION_NAME = re.compile(r"^[a-z0-9_]+$")


def _ablations(value: Any, models: list[str], train: TrainConfig, path: str) -> dict[str, Ablation]:
    """``{name: {backbone: <one of models>, train: {<TrainConfig key>: value}}}``, each validated."""
    ablations = check_value(value, dict[str, dict[str, Any]], path)
    out = {}
    for name, spec in ablations.items():
        if not ABLATION_NAME.match(name):
            raise ConfigError(f"{path}.{name}: an ablation's name must be lower-case letters, digits and _")
        unknown = set(spec) - {"backbone", "train"}
        if unknown or "backbone" not in spec:
            raise ConfigError(f"{path}.{name}: expected keys backbone and train, got {sorted(spec)}")
        backbone = check_value(spec["backbone"], str, f"{path}.{name}.backbone")
        if backbone not in models:
            raise ConfigError(f"{path}.{name}.backbone: not one of the profile's models ({', '.join(models)})")
        overrides = check_value(spec.get("train", {}), dict[str, Any], f"{path}.{name}.train")
        base = train.for_backbone(backbone)
        from_dict(TrainConfig, {f.name: getattr(base, f.name) for f in dataclasses.fields(base)} | overrides,
                  f"{path}.{name}.train")
        out[name] = Ablation(backbone, dict(overrides))
    return out


def _pretrained(value: Any, models: list[str], path: str) -> bool | dict[str, Path]:
    """``true``/``false``, or ``{backbone: local weights file}`` for some of the profile's models."""
    pretrained = check_value(value, bool | dict[str, Path], path)
    if isinstance(pretrained, dict):
        for backbone in pretrained:
            if backbone not in models:
                raise ConfigError(f"{path}.{backbone}: not one of the profile's models ({', '.join(models)})")
    return pretrained


def _check_per_model(train: TrainConfig, models: list[str], path: str) -> None:
    """Each ``per_model`` entry names one of the profile's models and holds valid train settings."""
    base = {f.name: getattr(train, f.name) for f in dataclasses.fields(train) if f.name != "per_model"}
    for backbone, overrides in train.per_model.items():
        if backbone not in models:
            raise ConfigError(f"{path}.{backbone}: not one of the profile's models ({', '.join(models)})")
        from_dict(type(train), {**base, **overrides}, f"{path}.{backbone}")


def _check_probes(profile: Profile, path: str) -> None:
    """A linear probe (``gap_trains: classifier``) needs pretrained features to probe; pretrained weights
    used as they are need a classifier for the data's classes (else the stream would train on an untrained one)."""
    for backbone in profile.models:
        weights = profile.pretrained_for(backbone)
        probe = profile.train.for_backbone(backbone).gap_trains == "classifier"
        if probe and not weights:
            raise ConfigError(f"{path}.gap_trains: 'classifier' trains a linear classifier on pretrained features, "
                              f"but {backbone} has no pretrained weights (set pretrained, or gap_trains: all)")
        classes = None if probe or not weights else classifier_width(backbone, weights, profile.root)
        if classes is not None and classes != profile.num_classes:
            raise ConfigError(f"{path}.gap_trains: the pretrained weights of {backbone} classify {classes} classes, "
                              f"the models here {profile.num_classes}: set gap_trains: classifier (a linear probe "
                              "gives the frozen backbone a classifier for these classes before the stream trains)")


def classifier_width(backbone: str, weights: bool | Path, root: Path) -> int | None:
    """How many classes pretrained weights classify: timm's (``True``) from its pretrained config, a local
    safetensors file's from its classifier tensor's shape, read from the header alone (``None`` when unknown:
    another format, a missing or unreadable file, no such tensor; loading the model then checks it)."""
    cfg = timm.get_pretrained_cfg(backbone)
    if weights is True:
        return cfg.num_classes if cfg else None
    path, key = root / weights, f"{cfg.classifier if cfg else 'fc'}.weight"
    try:
        with safe_open(path, "pt") as tensors:
            return int(tensors.get_slice(key).get_shape()[0]) if key in tensors.keys() else None
    except Exception:  # not a safetensors file, or missing: the model's own load names the problem
        return None


def input_config(backbone: str) -> dict[str, Any]:
    """``mean``, ``std`` and ``interpolation`` of a timm backbone's data config (ImageNet's when it has none)."""
    cfg = timm.get_pretrained_cfg(backbone)
    return {"mean": tuple(cfg.mean) if cfg else timm.data.IMAGENET_DEFAULT_MEAN,
            "std": tuple(cfg.std) if cfg else timm.data.IMAGENET_DEFAULT_STD,
            "interpolation": cfg.interpolation if cfg else "bicubic"}


def _check_backbones(models: list[str], path: str) -> None:
    """Every backbone must be a model timm knows (``ca_core.models`` registers the mini ones on import)."""
    for i, name in enumerate(models):
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}[{i}]: unknown timm model {name!r}{hint}")
    first = input_config(models[0])
    for i, name in enumerate(models[1:], 1):
        if input_config(name) != first:
            raise ConfigError(f"{path}[{i}]: {name} normalises its inputs otherwise than {models[0]} "
                              f"({input_config(name)} vs {first}); a profile's models share one data pipeline, "
                              "so give them profiles of their own")


def check_data_paths(profile: Profile, root: Path = Path(".")) -> None:
    """Raise :class:`ConfigError` naming the key of a data or weights path that does not exist (relative
    paths: under ``root``), or of validation class folders that differ from the training ones."""
    paths = profile.data.paths() if isinstance(profile.data, (FolderData, Mit67Data)) else {}
    if isinstance(profile.pretrained, dict):
        paths |= {f"pretrained.{b}": p for b, p in profile.pretrained.items()}
    for key, value in paths.items():
        where = f"profiles.{profile.name}.{key if key.startswith('pretrained') else 'data.' + key}"
        if not (root / value).exists():
            raise ConfigError(f"{where}: path {str(value)!r} does not exist "
                              f"(set it in {CONFIG_FILE} to where it lives)")
    if isinstance(profile.data, FolderData) and profile.data.val_list is None:
        train, val = (_class_folders(root / p) for p in (profile.data.train_root, profile.data.val_root))
        if train != val:
            only = sorted(set(train) ^ set(val))
            raise ConfigError(f"profiles.{profile.name}.data.val_root: its class folders differ from train_root's "
                              f"({', '.join(only[:10])} in one only); give both the same classes, or a val_list")


def _class_folders(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir())


class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader, also reading ``1e-4`` (no dot) as a float, as YAML 1.2 and people do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_config(path: str | Path = CONFIG_FILE) -> dict[str, Any]:
    """The raw YAML mapping of a config file, with the top level checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        raise ConfigError(f"{path}: expected a top-level mapping 'profiles: {{name: settings}}'")
    for key in raw:
        if key != "profiles":
            raise ConfigError(f"{key}: unknown top-level key in {path}; known keys: profiles")
    return raw


def load_profile(name: str, path: str | Path = CONFIG_FILE, check_paths: bool = True) -> Profile:
    """Load and validate profile ``name`` from ``path`` (``check_paths``: data paths must exist)."""
    profiles = read_config(path)["profiles"]
    if name not in profiles:
        raise ConfigError(f"profiles.{name}: no such profile in {path}; known: {', '.join(profiles)}")
    return parse_profile(name, profiles[name], check_paths=check_paths, root=Path(path).parent, profiles=profiles)


def from_parameters(name: str, settings: Mapping[str, Any] | None, path: str | Path = CONFIG_FILE) -> Profile:
    """The profile of a notebook's parameters: ``settings`` injected by the pipeline, else read from ``path``."""
    if settings is None:
        return load_profile(name, path)
    return parse_profile(name, settings, root=Path(path).parent)


def load_all(path: str | Path = CONFIG_FILE, check_paths: bool = False) -> dict[str, Profile]:
    """Every profile of ``path``, validated (by default without requiring the data to exist)."""
    profiles = read_config(path)["profiles"]
    return {name: parse_profile(name, s, check_paths, Path(path).parent, profiles) for name, s in profiles.items()}
