"""Did this run reproduce the reference? Every run compares its ``results.json`` with the committed
reference run of its profile (``book/reference/<profile>.json``, written on purpose by
``make reference``, never by a run).

Per metric x method x pooling x seed x backbone: the difference of the means and whether this run's
mean lies within the reference's 95 % interval; per model: accuracy the same way; per claim and
comparison: whether the verdict is the same. A verdict that flips between machines is a finding, not
noise: :attr:`Reproduction.near` names the claims whose Holm-corrected p lies within a factor
:data:`NEAR` of the threshold, in either run, where a small difference can flip the verdict.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from ..evaluation import explain_and_score, read_npz, save_npz
from ..models import compose
from ..prediction import predict
from ..utils import progress_bar, write_json
from .report import show
from .claims import ALPHA, ClaimTest, verdicts_beside
from .experiment import eval_split
from .pipeline import REFERENCE_DIR, git_commit
from .runs import Run

#: A claim is near its threshold when its Holm-corrected p is within this factor of :data:`ALPHA`.
NEAR = 2.0


def reference_path(profile: str, root: Path = Path(".")) -> Path:
    """``book/reference/<profile>.json`` under ``root``."""
    return Path(root) / REFERENCE_DIR / f"{profile}.json"


def machine() -> dict[str, Any]:
    """The CPU, the core count, the OS and the library versions of this machine."""
    import numpy
    import scipy
    import timm
    import torch

    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_reference(results: Path, out: Path, commit: str | None) -> Path:
    """Save a run's ``results.json`` as its profile's reference, with the commit and the machine."""
    record = {"commit": commit, "machine": machine(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "results": json.loads(Path(results).read_text())}
    write_json(out, record)
    return out


@dataclass(frozen=True)
class Difference:
    """One summarised number of this run against the reference's (points)."""

    what: str
    run: float
    reference: float
    lo: float
    hi: float

    @property
    def diff(self) -> float:
        return self.run - self.reference

    @property
    def within(self) -> bool:
        """This run's mean lies within the reference's 95 % interval."""
        return self.lo <= self.run <= self.hi


@dataclass(frozen=True)
class VerdictPair:
    """One claim test's verdict (and Holm-corrected p) in this run and in the reference."""

    what: str
    run: str
    reference: str
    p_run: float
    p_reference: float

    @property
    def same(self) -> bool:
        return self.run == self.reference

    @property
    def near(self) -> bool:
        """Within a factor :data:`NEAR` of the threshold in either run."""
        return any(ALPHA / NEAR <= p <= ALPHA * NEAR for p in (self.p_run, self.p_reference))


@dataclass
class Reproduction:
    """This run against its profile's reference."""

    reference: dict[str, Any]
    metrics: list[Difference] = field(default_factory=list)
    accuracy: list[Difference] = field(default_factory=list)
    verdicts: list[VerdictPair] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[VerdictPair]:
        return [v for v in self.verdicts if not v.same]

    @property
    def near(self) -> list[VerdictPair]:
        return [v for v in self.verdicts if v.near]

    def summary(self) -> str:
        """One line: verdicts reproduced, metrics within the reference's intervals, the largest
        difference, the changed verdicts and those near their threshold."""
        parts = [f"reproduced {len(self.verdicts) - len(self.changed)} of {len(self.verdicts)} verdicts"]
        for name, rows in (("metric means", self.metrics), ("accuracies", self.accuracy)):
            if rows:
                worst = max(rows, key=lambda d: abs(d.diff))
                parts.append(f"{sum(d.within for d in rows)} of {len(rows)} {name} within the reference's 95 % "
                             f"interval (largest difference {worst.diff:+.2f} points: {worst.what})")
        if self.changed:
            parts.append(f"{len(self.changed)} verdict(s) changed: " + "; ".join(
                f"{v.what}: {v.reference} -> {v.run} (p {v.p_reference:.3f} -> {v.p_run:.3f})" for v in self.changed))
        if self.near:
            parts.append(f"{len(self.near)} near the 5 % threshold")
        if self.missing:
            parts.append(f"{len(self.missing)} reference entries absent here")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``results.json`` (the summary line and every row)."""
        row = lambda d: {**asdict(d), "diff": d.diff, "within": d.within}  # noqa: E731
        return {"summary": self.summary(), "reference": {k: v for k, v in self.reference.items() if k != "results"},
                "metrics": [row(d) for d in self.metrics], "accuracy": [row(d) for d in self.accuracy],
                "verdicts": [{**asdict(v), "same": v.same, "near": v.near} for v in self.verdicts],
                "missing": self.missing}


def _model(entry: dict[str, Any]) -> str:
    seed = entry.get("seed")
    return f"{entry['backbone']} {entry['pooling'].upper()}" + (f" seed {seed}" if seed is not None else "")


def compare(results: dict[str, Any], reference: dict[str, Any]) -> Reproduction:
    """This run's ``results.json`` data against a reference record (:func:`write_reference`)."""
    ref = reference["results"]
    out = Reproduction(reference=reference)
    mine = {(_model(e), e["method"]): e["metrics"] for e in results.get("results", [])}
    for entry in ref.get("results", []):
        key = (_model(entry), entry["method"])
        for metric, summary in entry["metrics"].items():
            what = f"{metric}, {entry['method']}, {key[0]}"
            if key not in mine or metric not in mine[key]:
                out.missing.append(what)
                continue
            out.metrics.append(Difference(what, mine[key][metric]["mean"], summary["mean"], summary["lo"],
                                          summary["hi"]))
    accuracy = {_model(e): e["accuracy"] for e in results.get("accuracy", [])}
    for entry in ref.get("accuracy", []):
        name = _model(entry)
        if name not in accuracy:
            out.missing.append(f"accuracy, {name}")
            continue
        a = entry["accuracy"]
        out.accuracy.append(Difference(f"accuracy, {name}", accuracy[name]["mean"], a["mean"], a["lo"], a["hi"]))
    out.verdicts, missing = _verdicts(results.get("claims", []), ref.get("claims", []))
    out.missing += missing
    return out


def _verdicts(run: list[dict[str, Any]], reference: list[dict[str, Any]]) -> tuple[list[VerdictPair], list[str]]:
    """Each claim x comparison of the reference's claims (the baselines' own rows excluded) paired with this run's."""
    def tests(claims: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        found = {}
        for c in claims:
            if c.get("baseline"):
                continue
            for comparison, outcome in c.items():
                if isinstance(outcome, dict) and "verdict" in outcome:
                    found[f"{c['claim']}, {c['backbone']}, {c['method'] or 'accuracy'} ({comparison})"] = outcome
        return found

    mine, pairs, missing = tests(run), [], []
    for what, ref in tests(reference).items():
        if what not in mine:
            missing.append(what)
            continue
        pairs.append(VerdictPair(what, mine[what]["verdict"], ref["verdict"], mine[what]["p_holm"], ref["p_holm"]))
    return pairs, missing


def reproduction(results: dict[str, Any], profile: str, root: Path = Path(".")) -> Reproduction | None:
    """:func:`compare` with the committed reference of ``profile``, or ``None`` when it has none."""
    path = reference_path(profile, root)
    if not path.is_file():
        return None
    try:
        reference = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not readable JSON ({err}): restore it with git checkout, or "
                         "regenerate it with `make reference`") from None
    return compare(results, reference)


def verdicts_beside_reference(run: Run, tests: list[ClaimTest], other: str = "default") -> list[dict[str, Any]]:
    """The verdict counts of this run's claims (:func:`ca_core.repro.claims.verdict_table`) beside those of
    the committed reference run of profile ``other``, per backbone; empty for that profile itself or when
    it has no reference."""
    path = reference_path(other, run.root)
    if run.profile.name == other or not path.is_file():
        return []
    theirs = [ClaimTest.from_dict(r) for r in json.loads(path.read_text())["results"]["claims"]]
    mine = {f"{run.profile.name} · {b}": [t for t in tests if t.backbone == b] for b in run.profile.models}
    return verdicts_beside(mine | {f"{other} · {b}": [t for t in theirs if t.backbone == b]
                                   for b in dict.fromkeys(t.backbone for t in theirs)})


# ---------------------------------------------------------------------------------------------
# The evaluation alone: the reference's checkpoints, evaluated again here

#: The methods and images of the evaluation check: one CAM and the random map on the first images.
SUBSET_METHODS = ("gradcam", "random")
SUBSET_IMAGES = 100
#: The per-image metrics the evaluation check compares.
SUBSET_METRICS = ("ad", "ag", "ai", "insertion", "deletion")


def checkpoint_dir(profile: str, root: Path = Path(".")) -> Path:
    """``book/reference/<profile>/``: the reference's checkpoints and its per-image subset values."""
    return Path(root) / REFERENCE_DIR / profile


def reference_models(run: Run) -> list[tuple[str, str, int | None, str | None]]:
    """Every trained model of the run: ``(backbone, pooling, seed, ablation)``."""
    return ([(b, p, s, None) for b, p, s in run.trained_models()]
            + [(b, "ca", None, a) for b, a in run.ablations()])


def _parts(run: Run, folder: Path, backbone: str, pooling: str, seed: int | None,
           ablation: str | None) -> dict[str, Path | None]:
    """The reference copies of a model's checkpoints (``gap``: ``None`` for a pretrained backbone used as is)."""
    gap = folder / backbone / "gap.safetensors" if run.profile.trains_gap(backbone) else None
    ca = folder / backbone / f"{run.variant('ca', seed, ablation)}.safetensors" if pooling == "ca" else None
    return {"gap": gap, "ca": ca}


def subset_values(run: Run, folder: Path, progress: bool = False) -> dict[str, np.ndarray]:
    """Every :data:`SUBSET_METRICS` value per image of :data:`SUBSET_METHODS` on the first
    :data:`SUBSET_IMAGES` test images, for each model of the run composed from the checkpoints in ``folder``."""
    profile = run.profile
    test, cfg, values = eval_split(profile), profile.eval, {}
    n = min(SUBSET_IMAGES, len(test))
    for backbone, pooling, seed, ablation in progress_bar(reference_models(run), desc="evaluation check",
                                                          disable=not progress):
        parts = _parts(run, folder, backbone, pooling, seed, ablation)
        model = compose(backbone, pooling, profile.num_classes, profile.pretrained_for(backbone),
                        parts["gap"], parts["ca"]).eval()
        predictions = predict(model, Subset(test, range(n)), cfg.batch_size)["pred"].numpy()
        for method in SUBSET_METHODS:
            out = explain_and_score(model, method, test, range(n), cfg, torch.device("cpu"), predictions)
            name = f"{backbone}/{run.variant(pooling, seed, ablation)}/{method}"
            values |= {f"{name}/{metric}": out[metric] for metric in SUBSET_METRICS}
    return values


def save_evaluation_reference(run: Run) -> Path:
    """Copy the run's checkpoints into :func:`checkpoint_dir` and store their subset values there."""
    folder = checkpoint_dir(run.profile.name, run.root)
    for backbone, pooling, seed, ablation in reference_models(run):
        for stage, copy in _parts(run, folder, backbone, pooling, seed, ablation).items():
            if copy is not None:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run.checkpoint_path(backbone, stage, seed if stage == "ca" else None,
                                                    ablation if stage == "ca" else None), copy)
    save_npz(folder / "subset.npz", subset_values(run, folder, progress=True), key="reference")
    return folder


def evaluation_check(run: Run) -> list[dict[str, Any]] | None:
    """The reference's checkpoints evaluated again here against its stored values: per model and
    method the largest absolute difference (points) over the metrics and images; ``None`` when
    the profile has no reference checkpoints."""
    folder = checkpoint_dir(run.profile.name, run.root)
    stored = read_npz(folder / "subset.npz", "reference")
    if stored is None:
        return None
    again = subset_values(run, folder)
    rows = []
    for name in dict.fromkeys(k.rsplit("/", 1)[0] for k in stored):
        diffs = [np.abs(again[f"{name}/{m}"].astype(np.float64) - stored[f"{name}/{m}"]).max() for m in SUBSET_METRICS]
        rows.append({"Model and method": name, "Images": len(stored[f"{name}/ad"]),
                     "Largest difference (points)": float(max(diffs)),
                     "Identical": all(np.array_equal(again[f"{name}/{m}"], stored[f"{name}/{m}"])
                                      for m in SUBSET_METRICS)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m ca_core.repro.reproduction --profile NAME``: make the finished run of a profile its
    reference (``make reference``): ``book/reference/<profile>.json`` and the checkpoints."""
    import argparse
    import sys

    from .config import CONFIG_FILE, load_profile

    parser = argparse.ArgumentParser(prog="python -m ca_core.repro.reproduction",
                                     description=main.__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--config", type=Path, default=CONFIG_FILE)
    args = parser.parse_args(argv)
    root = args.config.resolve().parent
    run = Run(load_profile(args.profile, args.config))
    results = run.results_path
    if not results.is_file():
        print(f"reference: {results} does not exist: run `make book PROFILE={args.profile}` first", file=sys.stderr)
        return 1
    out = write_reference(results, reference_path(args.profile, root), git_commit(root))
    folder = save_evaluation_reference(run)
    print(f"reference: {out} and {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def page_rows(compared: Reproduction, top: int = 12) -> dict[str, list[dict[str, Any]]]:
    """The reproduction page's tables: changed verdicts, verdicts near the threshold, the largest
    metric differences, and accuracy per model."""
    def verdicts(rows: list[VerdictPair]) -> list[dict[str, Any]]:
        return [{"Claim test": v.what, "Reference": v.reference, "This run": v.run,
                 "p (Holm) reference": f"{v.p_reference:.3f}", "p (Holm) this run": f"{v.p_run:.3f}"} for v in rows]

    def differences(rows: list[Difference]) -> list[dict[str, Any]]:
        return [{"Number": d.what, "Reference": f"{d.reference:.2f} [{d.lo:.2f}, {d.hi:.2f}]",
                 "This run": f"{d.run:.2f}", "Difference": f"{d.diff:+.2f}", "Within": "yes" if d.within else "no"}
                for d in rows]

    largest = sorted(compared.metrics, key=lambda d: -abs(d.diff))[:top]
    return {"changed": verdicts(compared.changed), "near": verdicts(compared.near),
            "metrics": differences(largest), "accuracy": differences(compared.accuracy)}


def show_comparison(run: Run) -> None:
    """The reproduction page's opening: the summary line, the reference's commit and machine, and the
    tables of :func:`page_rows` (in a notebook)."""
    from IPython.display import Markdown, display

    profile = run.profile
    results = json.loads(run.results_path.read_text())
    compared = reproduction(results, profile.name, run.root)
    if compared is None:
        display(Markdown(f"*Profile `{profile.name}` has no committed reference run "
                         f"(`make reference PROFILE={profile.name}` makes one).*"))
        return
    ref, here = compared.reference, machine()
    display(Markdown(f"**{compared.summary()}.**\n\nReference: commit `{ref['commit']}`, {ref['machine']['cpu']} "
                     f"({ref['machine']['cores']} cores), torch {ref['machine']['torch']}, "
                     f"timm {ref['machine']['timm']}, made {ref['created']}. This machine: {here['cpu']} "
                     f"({here['cores']} cores), torch {here['torch']}."))
    rows = page_rows(compared)
    for title, key in (("Verdicts that changed", "changed"),
                       ("Verdicts near the 5 % threshold (Holm-corrected p within a factor 2)", "near"),
                       ("The largest metric differences", "metrics"), ("Accuracy per model", "accuracy")):
        if rows[key]:
            display(Markdown(f"**{title}**"))
            show(rows[key])


def show_evaluation_check(run: Run) -> None:
    """:func:`evaluation_check` as the page's summary line and table (in a notebook)."""
    from IPython.display import Markdown, display

    check = evaluation_check(run)
    if check is None:
        display(Markdown(f"*No reference checkpoints for profile `{run.profile.name}`.*"))
        return
    worst = max(r["Largest difference (points)"] for r in check)
    display(Markdown(f"**{sum(r['Identical'] for r in check)} of {len(check)} model × method arrays identical; "
                     f"largest difference {worst:.2g} points** (AD, AG, AI, Insertion, Deletion per image)."))
    show([r | {"Largest difference (points)": f"{r['Largest difference (points)']:.2g}",
               "Identical": "yes" if r["Identical"] else "no"} for r in check])
