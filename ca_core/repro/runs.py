"""The folder of a run, ``runs/<profile>/``, and what lies where in it.

``train/<backbone>/<stage>/``: checkpoints and ``log.jsonl`` of :func:`ca_core.training.train`
(stage ``gap`` then ``ca``) and ``provenance.json``, the key the stage was made for;
``eval/<backbone>/<pooling>/``: the files of :func:`ca_core.evaluation.evaluate_model`, whose
``<method>/manifest.json`` holds the key of the last complete evaluation; ``timings.json``: the
pipeline's step times.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation import MANIFEST_FILE, read_calibration, read_extra, read_json, read_predictions, read_results
from ..provenance import digest
from ..training import STAGES, checkpoint_file
from ..utils import ORPHAN
from .config import Profile

#: A training stage's record of the key it was made for (:func:`ca_core.repro.experiment.prepare_stage`).
PROVENANCE_FILE = "provenance.json"
#: The artefact kinds of a run folder: training stages and completed evaluations.
ARTEFACTS = {"train": f"train/**/{PROVENANCE_FILE}", "eval": f"eval/**/{MANIFEST_FILE}"}


def variant(profile: Profile, pooling: str, seed: int | None = None, ablation: str | None = None) -> str:
    """The folder name of a model: ``gap``; ``ca`` for the CA stream of the primary seed, ``ca-seed<S>``
    for another of the profile's seeds, ``ca-<ablation>`` for one of its labelled ablations."""
    if ablation is not None:
        if ablation not in profile.ablations:
            raise ValueError(f"{ablation!r} is not one of the profile's ablations {list(profile.ablations)}")
        return f"{pooling}-{ablation}"
    if pooling == "gap" or seed is None or seed == profile.seeds[0]:
        return pooling
    if seed not in profile.seeds:
        raise ValueError(f"seed {seed} is not one of the profile's seeds {profile.seeds}")
    return f"{pooling}-seed{seed}"


def stage_dir(profile: Profile, backbone: str, stage: str, seed: int | None = None,
              ablation: str | None = None) -> Path:
    """``runs/<profile>/train/<backbone>/<stage>`` (``ca-seed<S>`` for a CA stream of another seed);
    the ``models_from`` profile's folder for a profile that evaluates another's models."""
    return profile.train_run_dir / "train" / backbone / variant(profile, stage, seed, ablation)


def checkpoint_path(profile: Profile, backbone: str, stage: str, seed: int | None = None,
                    ablation: str | None = None) -> Path:
    """The checkpoint :func:`ca_core.training.train` leaves for a stage."""
    return checkpoint_file(stage_dir(profile, backbone, stage, seed, ablation))


def checkpoints(profile: Profile, backbone: str, pooling: str, seed: int | None = None,
                ablation: str | None = None) -> list[Path]:
    """The checkpoint files a trained model of this pooling is made of (backbone first)."""
    trained_gap = [checkpoint_path(profile, backbone, "gap")] if profile.trains_gap(backbone) else []
    return trained_gap + ([checkpoint_path(profile, backbone, "ca", seed, ablation)] if pooling == "ca" else [])


def eval_dir(profile: Profile) -> Path:
    """``runs/<profile>/eval``."""
    return profile.run_dir / "eval"


def model_dir(profile: Profile, backbone: str, pooling: str, seed: int | None = None,
              ablation: str | None = None) -> Path:
    """``runs/<profile>/eval/<backbone>/<pooling>``: one trained model's results."""
    return eval_dir(profile) / backbone / variant(profile, pooling, seed, ablation)


def load_predictions(profile: Profile, backbone: str, pooling: str, seed: int | None = None,
                     ablation: str | None = None) -> dict[str, np.ndarray]:
    """Label, prediction and correctness of one trained model on every test image."""
    return read_predictions(model_dir(profile, backbone, pooling, seed, ablation))


def load_results(profile: Profile, backbone: str, pooling: str, method: str,
                 seed: int | None = None, ablation: str | None = None) -> dict[str, np.ndarray]:
    """Per-image maps and metrics of one backbone/pooling/method (CA: of the stream of ``seed``, or
    of a labelled ``ablation``)."""
    return read_results(model_dir(profile, backbone, pooling, seed, ablation) / method)


def load_calibration(profile: Profile, backbone: str, pooling: str, seed: int | None = None,
                     ablation: str | None = None) -> dict[str, Any] | None:
    """One trained model's calibration record (temperature, raw and calibrated accuracy, confidence,
    NLL, ECE, reliability bins), or ``None`` when the run has none (unlabelled data, calibration off)."""
    return read_calibration(model_dir(profile, backbone, pooling, seed, ablation))


def load_extra(profile: Profile, backbone: str, pooling: str, method: str, kind: str) -> dict[str, np.ndarray] | None:
    """ROAD (``kind="road"``) or the sanity check (``"sanity"``) of a primary model's method, or ``None``."""
    return read_extra(model_dir(profile, backbone, pooling) / method, kind)


def log_path(profile: Profile, backbone: str, stage: str, seed: int | None = None, ablation: str | None = None) -> Path:
    """A stage's ``log.jsonl``; for a backbone pretrained from a local file, the log beside that file
    (``make backbones`` leaves one there), which may not exist."""
    pretrained = profile.pretrained_for(backbone)
    if stage == "gap" and isinstance(pretrained, Path) and not profile.trains_gap(backbone):
        return pretrained.parent / "log.jsonl"
    return stage_dir(profile, backbone, stage, seed, ablation) / "log.jsonl"


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


def train_logs(profile: Profile) -> dict[str, list[dict[str, Any]]]:
    """The ``log.jsonl`` records of every backbone and stage, labelled ``backbone · STAGE``."""
    logs = {}
    for backbone in profile.models:
        for stage in STAGES:
            for seed in profile.seeds if stage == "ca" else [None]:
                path = log_path(profile, backbone, stage, seed)
                name = variant(profile, stage, seed).upper().replace("-SEED", " seed ")
                if path.is_file():
                    logs[f"{backbone} · {name}"] = read_log(path)
    return logs


def timings_path(run_dir: Path) -> Path:
    """``runs/<profile>/timings.json``: the pipeline's measured step times."""
    return Path(run_dir) / "timings.json"


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


def artefacts(run_dir: Path, kinds: tuple[str, ...] = tuple(ARTEFACTS), train_run_dir: Path | None = None
              ) -> list[Artefact]:
    """The keyed artefacts of a run folder, in path order (folders set aside as orphans are not part of it).

    ``train_run_dir``: where the training stages lie when not in ``run_dir`` (a profile with
    ``models_from``: :attr:`Profile.train_run_dir`).
    """
    rows = []
    for kind in kinds:
        base = Path(train_run_dir or run_dir) if kind == "train" else Path(run_dir)
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


def artefacts_digest(run_dir: Path, kinds: tuple[str, ...], train_run_dir: Path | None = None) -> str:
    """The digest of the keys (and completion) of a run folder's artefacts of ``kinds``."""
    return digest([(a.kind, a.path, a.key, a.done) for a in artefacts(run_dir, kinds, train_run_dir)])
