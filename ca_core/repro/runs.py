"""A profile's run: :class:`Run`, the one object the reproduction layer passes around.

A run is a profile (its settings) and the folder its results land in, ``<root>/runs/<profile>/``.
:class:`Run` owns everything about that folder, so that no other module builds a path in it:

``train/<backbone>/<stage>/``: checkpoints and ``log.jsonl`` of :func:`ca_core.training.train`
(stage ``gap`` then ``ca``) and ``provenance.json``, the key the stage was made for (in the run
folder of ``models_from`` for a profile that evaluates another's models);
``eval/<backbone>/<pooling>/``: the files of :func:`ca_core.evaluation.evaluate_model`, whose
``<method>/manifest.json`` holds the key of the last complete evaluation; ``timings.json``: the
pipeline's step times; ``results.json``: the run as data (:mod:`ca_core.repro.summary`).

It also owns what a run is made of (its trained models, its evaluated cells and ablations) and the
readers of what they left, so that the tables, figures and notebooks are functions of a :class:`Run`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np

from ..evaluation import (MANIFEST_FILE, methods_for, read_calibration, read_extra, read_json, read_predictions,
                          read_results)
from ..models import POOLINGS
from ..provenance import digest
from ..training import STAGES, checkpoint_file
from ..utils import ORPHAN
from .config import Profile

#: The folder of the run folders, under the project root.
RUNS_DIR = "runs"
#: A training stage's record of the key it was made for (:func:`ca_core.repro.experiment.prepare_stage`).
PROVENANCE_FILE = "provenance.json"
#: The artefact kinds of a run folder (training stages and completed evaluations), as globs under the
#: folder that holds ``train/`` or ``eval/``.
ARTEFACTS = {"train": f"train/**/{PROVENANCE_FILE}", "eval": f"eval/**/{MANIFEST_FILE}"}


class Cell(NamedTuple):
    """One evaluated setting: a backbone's method on its GAP model or its CA stream (a cell of Table 1)."""

    backbone: str
    method: str
    pooling: str


class TrainedModel(NamedTuple):
    """One trained model: a backbone's GAP model (``seed`` None) or its CA stream of a training seed."""

    backbone: str
    pooling: str
    seed: int | None


@dataclass(frozen=True)
class Artefact:
    """A keyed artefact of a run folder: a training stage (``kind`` "train") or a completed evaluation
    of a method ("eval"), with its folder relative to its run folder, the key it was made for
    (``None``: unreadable record), whether it is finished (a stage's checkpoint exists), whether it is
    kept under other code on request (``keep_stale``), and when its newest file was written."""

    kind: str
    path: str
    key: str | None
    done: bool
    kept_stale: bool
    written: float


def read_log(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a ``log.jsonl``; a :class:`ValueError` naming the file and line when
    one is not JSON (a file cut short or edited by hand)."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not a JSON record ({err}); the stage's training log is "
                             "damaged: train the stage again (move its folder away) or repair the line") from None
    return records


@dataclass(frozen=True)
class Run:
    """A profile and its run folder: where every artefact of the run lies, what the run is made of
    (trained models, evaluated cells, ablations) and the readers of its results.

    The paths are absolute (under :attr:`root`, the profile's project folder), whatever the working
    directory. A :class:`Run` is cheap: it holds the profile and reads files only when asked.
    """

    profile: Profile

    # -----------------------------------------------------------------------------------------
    # The folder layout

    @property
    def root(self) -> Path:
        """The project folder (that of ``_config.yml``), absolute: the profile's :attr:`Profile.root`."""
        return self.profile.root

    @property
    def folder(self) -> Path:
        """``<root>/runs/<profile>``: where this profile's results land."""
        return self.root / RUNS_DIR / self.profile.name

    @property
    def train_folder(self) -> Path:
        """``<root>/runs/<profile>/train``: the training stages; those of the ``models_from`` profile for
        a profile that evaluates another's models (it trains nothing itself)."""
        return self.root / RUNS_DIR / (self.profile.models_from or self.profile.name) / "train"

    @property
    def eval_folder(self) -> Path:
        """``<root>/runs/<profile>/eval``: every trained model's evaluation (and ``settings.json``)."""
        return self.folder / "eval"

    @property
    def timings_path(self) -> Path:
        """``runs/<profile>/timings.json``: the pipeline's measured step times."""
        return self.folder / "timings.json"

    @property
    def results_path(self) -> Path:
        """``runs/<profile>/results.json``: the run as data (:func:`ca_core.repro.summary.write_results`)."""
        return self.folder / "results.json"

    def variant(self, pooling: str, seed: int | None = None, ablation: str | None = None) -> str:
        """The folder name of a model: ``gap``; ``ca`` for the CA stream of the primary seed, ``ca-seed<S>``
        for another of the profile's seeds, ``ca-<ablation>`` for one of its labelled ablations."""
        profile = self.profile
        if ablation is not None:
            if ablation not in profile.ablations:
                raise ValueError(f"{ablation!r} is not one of the profile's ablations {list(profile.ablations)}")
            return f"{pooling}-{ablation}"
        if pooling == "gap" or seed is None or seed == profile.seeds[0]:
            return pooling
        if seed not in profile.seeds:
            raise ValueError(f"seed {seed} is not one of the profile's seeds {profile.seeds}")
        return f"{pooling}-seed{seed}"

    def stage_dir(self, backbone: str, stage: str, seed: int | None = None, ablation: str | None = None) -> Path:
        """``train/<backbone>/<stage>`` (``ca-seed<S>`` for a CA stream of another seed, ``ca-<ablation>``)
        under :attr:`train_folder`."""
        return self.train_folder / backbone / self.variant(stage, seed, ablation)

    def checkpoint_path(self, backbone: str, stage: str, seed: int | None = None,
                        ablation: str | None = None) -> Path:
        """The checkpoint :func:`ca_core.training.train` leaves for a stage."""
        return checkpoint_file(self.stage_dir(backbone, stage, seed, ablation))

    def checkpoints(self, backbone: str, pooling: str, seed: int | None = None,
                    ablation: str | None = None) -> list[Path]:
        """The checkpoint files a trained model of this pooling is made of (backbone first; none for a
        pretrained backbone used as is)."""
        trained_gap = [self.checkpoint_path(backbone, "gap")] if self.profile.trains_gap(backbone) else []
        return trained_gap + ([self.checkpoint_path(backbone, "ca", seed, ablation)] if pooling == "ca" else [])

    def model_dir(self, backbone: str, pooling: str, seed: int | None = None, ablation: str | None = None) -> Path:
        """``eval/<backbone>/<pooling>`` under :attr:`folder`: one trained model's results."""
        return self.eval_folder / backbone / self.variant(pooling, seed, ablation)

    def log_path(self, backbone: str, stage: str, seed: int | None = None, ablation: str | None = None) -> Path:
        """A stage's ``log.jsonl``; for a backbone pretrained from a local file, the log beside that file
        (``make backbones`` leaves one there), which may not exist."""
        pretrained = self.profile.pretrained_for(backbone)
        if stage == "gap" and isinstance(pretrained, Path) and not self.profile.trains_gap(backbone):
            return pretrained.parent / "log.jsonl"
        return self.stage_dir(backbone, stage, seed, ablation) / "log.jsonl"

    # -----------------------------------------------------------------------------------------
    # What the run is made of

    def trained_models(self) -> Iterator[TrainedModel]:
        """Every trained model: per backbone the GAP model, then a CA stream per seed."""
        for backbone in self.profile.models:
            yield TrainedModel(backbone, "gap", None)
            for seed in self.profile.seeds:
                yield TrainedModel(backbone, "ca", seed)

    def ablations(self) -> Iterator[tuple[str, str]]:
        """Every labelled ablation's ``(backbone, name)``: one more CA stream, on the primary seed."""
        for name, ablation in self.profile.ablations.items():
            yield ablation.backbone, name

    def evaluated_cells(self) -> Iterator[Cell]:
        """Every evaluated cell, in the order of the paper's Table 1."""
        cfg = self.profile.eval
        for backbone in self.profile.models:
            for method in cfg.methods:
                for pooling in POOLINGS:
                    if method in methods_for(pooling, cfg):
                        yield Cell(backbone, method, pooling)

    def evaluated_seeds(self, method: str) -> list[int]:
        """The CA stream seeds whose results include ``method`` (the extra seeds evaluate fewer methods)."""
        return [s for i, s in enumerate(self.profile.seeds)
                if method in methods_for("ca", self.profile.eval, extra_seed=i > 0)]

    # -----------------------------------------------------------------------------------------
    # What the run left

    def predictions(self, backbone: str, pooling: str, seed: int | None = None,
                    ablation: str | None = None) -> dict[str, np.ndarray]:
        """Label, prediction and correctness of one trained model on every test image."""
        return read_predictions(self.model_dir(backbone, pooling, seed, ablation))

    def results(self, backbone: str, pooling: str, method: str, seed: int | None = None,
                ablation: str | None = None) -> dict[str, np.ndarray]:
        """Per-image maps and metrics of one backbone/pooling/method (CA: of the stream of ``seed``, or
        of a labelled ``ablation``)."""
        return read_results(self.model_dir(backbone, pooling, seed, ablation) / method)

    def calibration(self, backbone: str, pooling: str, seed: int | None = None,
                    ablation: str | None = None) -> dict[str, Any] | None:
        """One trained model's calibration record (temperature, raw and calibrated accuracy, confidence,
        NLL, ECE, reliability bins), or ``None`` when the run has none (unlabelled data, calibration off)."""
        return read_calibration(self.model_dir(backbone, pooling, seed, ablation))

    def extra(self, backbone: str, pooling: str, method: str, kind: str) -> dict[str, np.ndarray] | None:
        """ROAD (``kind="road"``), the sanity check (``"sanity"``) or the regime check's localisation
        (``"localisation"``, GAP models) of a primary model's method, or ``None``."""
        return read_extra(self.model_dir(backbone, pooling) / method, kind)

    def train_logs(self) -> dict[str, list[dict[str, Any]]]:
        """The ``log.jsonl`` records of every backbone and stage that has one, labelled ``backbone · STAGE``."""
        logs = {}
        for backbone in self.profile.models:
            for stage in STAGES:
                for seed in self.profile.seeds if stage == "ca" else [None]:
                    path = self.log_path(backbone, stage, seed)
                    name = self.variant(stage, seed).upper().replace("-SEED", " seed ")
                    if path.is_file():
                        logs[f"{backbone} · {name}"] = read_log(path)
        return logs

    def artefacts(self, kinds: tuple[str, ...] = tuple(ARTEFACTS)) -> list[Artefact]:
        """The keyed artefacts of the run, in path order, each path relative to the run folder that holds
        it (``train/...``: that of ``models_from`` for a profile that evaluates another's models).
        Folders set aside as orphans are not part of it."""
        rows = []
        for kind in kinds:
            base = (self.train_folder if kind == "train" else self.eval_folder).parent
            for record in sorted(base.glob(ARTEFACTS[kind])):
                if ORPHAN in record.as_posix():
                    continue
                made = read_json(record) or {}
                folder = record.parent
                files = [f for f in folder.iterdir() if f.is_file() and f.name != MANIFEST_FILE]
                rows.append(Artefact(kind=kind, path=folder.relative_to(base).as_posix(), key=made.get("key"),
                                     done=kind == "eval" or checkpoint_file(folder).is_file(),
                                     kept_stale="kept_stale" in made,
                                     written=max((f.stat().st_mtime for f in files), default=record.stat().st_mtime)))
        return rows

    def artefacts_digest(self, kinds: tuple[str, ...]) -> str:
        """The digest of the keys (and completion) of the run's artefacts of ``kinds``: what a pipeline
        step that reads them is keyed by (:func:`ca_core.repro.pipeline.run_key`)."""
        return digest([(a.kind, a.path, a.key, a.done) for a in self.artefacts(kinds)])
