"""Every key recipe of a run, in one place: what a training stage and an evaluation are keyed by.

A key is :func:`ca_core.provenance.digest` of the typed settings that change what an artefact
holds, of what it starts from (checkpoint bytes, pretrained weights) and of the source of exactly
the code that computes it (:func:`ca_core.provenance.code_digest` follows the imports):

======================  =====================================================================
artefact                code in its key (and every ``ca_core`` module it imports)
======================  =====================================================================
training stage          :data:`TRAIN_CODE`: the training loop, the models, the data
evaluation of a model   :data:`EVAL_CODE`: the evaluation loop (saliency, metrics, statistics
                        through its imports) and the data
shapes cache            :func:`ca_core.data.shapes.cache_key`: the generator's own module
notebook step           :func:`ca_core.repro.pipeline.step_keys`: the modules its cells import
======================  =====================================================================

The training loop does not import the evaluation (:mod:`ca_core.prediction` holds the one
prediction loop both use), so an edit to a metric or a saliency method re-evaluates but never retrains.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from ..evaluation import EvalConfig
from ..models import backbone_of
from ..provenance import PACKAGE_DIR, code_digest, digest, notebook_modules, state_digest
from ..training import TrainConfig
from .config import Profile

#: The module whose code (with all it imports) the shapes cache's key covers (:func:`ca_core.data.shapes.cache_key`).
SHAPES_CODE = "ca_core.data.shapes"
#: The modules whose code (with all they import) a training stage's key covers.
TRAIN_CODE = ("ca_core.training", "ca_core.models", "ca_core.data")
#: The modules whose code (with all they import) an evaluation's key covers.
EVAL_CODE = ("ca_core.evaluation", "ca_core.data")


def weights_digest(profile: Profile, backbone: str, model: nn.Module) -> str | None:
    """The pretrained backbone weights' digest (``None`` for backbones trained here: their
    checkpoint's digest already identifies them)."""
    return state_digest(backbone_of(model).state_dict()) if profile.pretrained_for(backbone) else None


def data_settings(profile: Profile) -> dict[str, Any]:
    """The profile's typed data settings with their kind, as a key part."""
    return {"kind": profile.data_kind, **dataclasses.asdict(profile.data)}


def stage_key(profile: Profile, backbone: str, stage: str, cfg: TrainConfig, model: nn.Module,
              gap_checkpoint: Path | None) -> str:
    """Identity of a training stage: the backbone and stage, its settings, the data's, what it
    starts from (the GAP checkpoint or pretrained weights) and the code of :data:`TRAIN_CODE`."""
    start = digest(gap_checkpoint) if gap_checkpoint is not None else weights_digest(profile, backbone, model)
    return digest(backbone, stage, dataclasses.asdict(cfg), data_settings(profile), start, code_digest(*TRAIN_CODE))


def result_settings(cfg: EvalConfig) -> dict[str, Any]:
    """The evaluation settings that change what a result file holds: every field of
    :class:`~ca_core.evaluation.EvalConfig` except those marked ``metadata={"result": False}``
    (which methods run, batch sizes, how results are summarised), so a new field counts by default."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("result", True)}


def evaluation_settings(profile: Profile) -> dict[str, Any]:
    """What every evaluation of the profile is keyed by besides its checkpoints (also written to
    ``eval/settings.json``)."""
    return {"eval": result_settings(profile.eval), "data": data_settings(profile)}


def evaluation_key(profile: Profile, checkpoint_files: list[Path], weights: str | None = None) -> str:
    """Identity of one model's evaluation: :func:`evaluation_settings`, the checkpoints' bytes, the
    pretrained weights' digest and the code of :data:`EVAL_CODE`."""
    return digest(evaluation_settings(profile), code_digest(*EVAL_CODE), weights,
                  *[digest(p) for p in checkpoint_files])


def code_keys(root: Path = PACKAGE_DIR, notebooks: Path = Path("notebooks")) -> dict[str, str]:
    """The code part of every key, by artefact: the shapes cache, a training stage, an evaluation
    and each notebook step of ``notebooks`` (what its cells import), for the package under ``root``.

    Compare two of these (e.g. before and after an edit, on a copy of the package) to see which
    artefacts an edit recomputes: ``python benchmarks/key_dependencies.py`` prints that table.
    """
    keys = {"shapes cache": code_digest(SHAPES_CODE, root=root), "training stage": code_digest(*TRAIN_CODE, root=root),
            "evaluation": code_digest(*EVAL_CODE, root=root)}
    for notebook in sorted(Path(notebooks).glob("0*.ipynb")):
        keys[f"step {notebook.stem}"] = code_digest(*notebook_modules(notebook, root), root=root)
    return keys
