"""``python -m ca_core.train``: one training stage of one backbone on a profile's data (also under torchrun).

The training loop is the library's (:func:`ca_core.training.train`); this command reads a profile for
the data and the settings, assembles the model the stage trains, and prints the result as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..prediction import accuracy
from ..models import compose
from ..training import STAGES, TrainConfig, train
from .config import CONFIG_FILE, ConfigError, load_profile
from .experiment import SHAPES_ROOT, datasets, evaluate_all, prepare_stage
from .keys import stage_key
from .runs import Run


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings to TrainConfig fields, each value converted to the field's type."""
    scalars = {"int": int, "float": float, "bool": bool}
    types = {f.name: scalars[str(f.type)] for f in dataclasses.fields(TrainConfig) if str(f.type) in scalars}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set {pair!r}: expected key=value with key one of {', '.join(types)}")
        kind = types[key]
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {pair!r}: expected true or false")
            out[key] = value.lower() in ("true", "1")
        else:
            try:
                out[key] = kind(value)
            except ValueError as err:
                raise ValueError(f"--set {pair!r}: {value!r} is not a {kind.__name__}") from err
    return out


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m ca_core.train``."""
    p = argparse.ArgumentParser(prog="python -m ca_core.train", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", required=True, help="timm model name, e.g. resnet50, convnext_base, resnet_mini")
    p.add_argument("--stage", choices=STAGES, required=True)
    p.add_argument("--out", required=True, help="output folder (checkpoints, log.jsonl, model.safetensors)")
    p.add_argument("--profile", default="default", help="profile of the config file giving data and train settings")
    p.add_argument("--config", default=str(CONFIG_FILE), help="config file (default: %(default)s)")
    p.add_argument("--gap-checkpoint", help="stage ca: the trained GAP model (model.safetensors of stage gap)")
    p.add_argument("--pretrained", help="'true' for timm's weights, 'false' to train the backbone from scratch "
                   "(stage gap), "
                   "or a local weights file (default: the profile's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override train settings, e.g. epochs=3")
    p.add_argument("--until-epoch", type=int, help="stop after this many epochs (resume later with the same command)")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--shapes-root",
                   help=f"cache folder of the generated data (default: {SHAPES_ROOT} beside the config)")
    p.add_argument("--no-progress", action="store_true")
    return p


def train_main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one stage as the command line asks; print the result (with the test accuracy once finished)."""
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # with --pretrained given, the profile's own weights files need not exist yet (make backbones makes them)
    profile = load_profile(args.profile, args.config, check_paths=args.pretrained is None)
    cfg = dataclasses.replace(profile.train.for_backbone(args.backbone), **parse_overrides(args.set))
    shapes_root = Path(args.shapes_root).resolve() if args.shapes_root else None
    sets = datasets(profile, ("train", "val", "test"), shapes_root=shapes_root)
    choice = {"true": True, "false": False}
    pretrained: bool | str | Path = profile.pretrained_for(args.backbone) if args.pretrained is None else (
        choice.get(args.pretrained.lower(), args.pretrained))
    torch.manual_seed(cfg.seed)  # the same initial weights in every process and every run
    gap_checkpoint = args.gap_checkpoint if args.stage == "ca" else None
    model = compose(args.backbone, args.stage, profile.num_classes, pretrained, gap_checkpoint)
    distributed.setup()
    if distributed.is_main():  # the pipeline's record, so that it adopts this stage when the key matches
        prepare_stage(Path(args.out), stage_key(profile, args.backbone, args.stage, cfg, model,
                                                Path(gap_checkpoint) if gap_checkpoint else None))
    distributed.barrier()
    result = train(cfg, model, sets["train"], sets["val"], args.out, stage=args.stage,
                   progress=not args.no_progress, until_epoch=args.until_epoch)
    if result["epochs_done"] == result["epochs"]:
        result["test_acc"] = accuracy(model, sets["test"], cfg.eval_batch_size)
    if distributed.is_main():
        print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors of the user's making are one line, not a traceback."""
    try:
        train_main(argv)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def evaluate_main(argv: list[str] | None = None) -> int:
    """``python -m ca_core.evaluate``: evaluate a profile's trained models (also under torchrun).

    The same evaluation as the pipeline's evaluation step, with its chunks shared out over the
    processes; the evaluation notebook then finds every chunk done and only reads them.
    """
    p = argparse.ArgumentParser(prog="python -m ca_core.evaluate", description=evaluate_main.__doc__.splitlines()[0])
    p.add_argument("--profile", default="default", help="profile of the config file")
    p.add_argument("--config", default=str(CONFIG_FILE), help="config file (default: %(default)s)")
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        profile = load_profile(args.profile, args.config)
        distributed.setup()
        out = evaluate_all(Run(profile), progress=not args.no_progress)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if distributed.is_main():
        print(f"evaluated: {out}")
    return 0
