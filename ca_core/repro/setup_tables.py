"""The reproduction-setup page's tables: the resolved profile, its seeds, this machine, the key and
commit of every pipeline step (functions of the :class:`~ca_core.repro.config.Profile`: its settings),
the run folder's artefacts and the measured step times (functions of the :class:`~ca_core.repro.runs.Run`)."""
from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import CONFIG_FILE, Profile
from .pipeline import OUTPUT_DIR, git_commit, stamp_path, step_keys
from .reproduction import machine
from .runs import Artefact, Run

Row = dict[str, Any]


def resolved_settings(profile: Profile) -> dict[str, Any]:
    """The profile with every default filled in, as plain JSON-able data: what this run used."""
    resolved = {"description": profile.description, "models": profile.models, "pretrained": profile.pretrained,
                "seeds": profile.seeds, "models_from": profile.models_from,
                "data": {"kind": profile.data_kind, **asdict(profile.data)},
                "train": asdict(profile.train), "eval": asdict(profile.eval)}
    return json.loads(json.dumps(resolved, default=str))


def seeds_table(profile: Profile) -> list[Row]:
    """Every ``seed`` field of the profile's sections (data generation, training, bootstrap) and
    the CA stream's training seeds."""
    rows = [{"Section": "profile", "Key": "seeds (CA stream)", "Value": ", ".join(map(str, profile.seeds))}]
    for section in ("data", "train", "eval"):
        obj = getattr(profile, section)
        for f in fields(obj) if is_dataclass(obj) else ():
            if f.name == "seed" or f.name.endswith("_seed"):
                rows.append({"Section": section, "Key": f.name, "Value": getattr(obj, f.name)})
    return rows


def environment() -> list[Row]:
    """Versions and hardware of this run (:func:`ca_core.repro.reproduction.machine`, the record a
    reference run keeps), for the reproduction-setup page."""
    import torch

    from .. import __version__

    here = machine()
    items = {"ca_core": __version__, "Python": here["python"], "PyTorch": here["torch"], "timm": here["timm"],
             "NumPy": here["numpy"], "SciPy": here["scipy"], "Platform": here["platform"], "CPU": here["cpu"],
             "CPU cores": here["cores"], "Torch threads": torch.get_num_threads(),
             "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"}
    return [{"Item": k, "Value": v} for k, v in items.items()]


def provenance_table(profile: Profile, config: Path = CONFIG_FILE) -> list[Row]:
    """Per pipeline step: the key of the code and settings it ran with (:func:`pipeline.step_keys`)
    and the commit it was executed from (the current one for a step still running)."""
    root = Path(config).resolve().parent
    current = git_commit(root) or "not a git checkout"
    rows = []
    for step, key in step_keys(profile.name, config).items():
        try:
            stamp = json.loads(stamp_path(root / OUTPUT_DIR / f"{step}.ipynb").read_text())
        except (OSError, ValueError):
            stamp = {}
        rows.append({"Step": step, "Key (code + settings)": f"`{key[:16]}`",
                     "Executed from commit": f"`{stamp.get('commit') or current}`",
                     "Stamp matches": "yes" if stamp.get("code_key") == key else "running now" if not stamp else "no"})
    return rows


def artefacts_table(run: Run) -> list[Row]:
    """Every keyed artefact of the run (:meth:`Run.artefacts`): training stages and completed
    evaluations, each with its key and whether this pipeline run made it or reused it."""
    path = run.timings_path
    started = json.loads(path.read_text()).get("started") if path.is_file() else None
    since = datetime.fromisoformat(started).timestamp() if started else float("inf")
    kinds = {"train": "training stage", "eval": "evaluation (method)"}
    source = run.profile.models_from

    def status(a: Artefact) -> str:
        if a.kept_stale:
            return "kept stale (keep_stale)"
        if source and a.kind == "train":
            return f"from profile {source}" if a.done else "unfinished"
        return ("made" if a.written >= since else "reused") if a.done else "unfinished"

    return [{"Artefact": f"`{f'runs/{source}/' if source and a.kind == 'train' else ''}{a.path}`",
             "Kind": kinds[a.kind], "Key": f"`{(a.key or '–')[:16]}`", "This run": status(a)}
            for a in run.artefacts()]


def timings_table(run: Run) -> list[Row]:
    """The measured time of each pipeline step from ``runs/<profile>/timings.json`` (:attr:`Run.timings_path`)."""
    path = run.timings_path
    if not path.is_file():
        return []
    steps = json.loads(path.read_text())["steps"]
    return [{"Step": name, "Seconds": s.get("seconds"), "Status": s.get("status"), "Measured at": s.get("at")}
            for name, s in steps.items()]
