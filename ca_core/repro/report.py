"""Tables of a run beside the paper's: accuracy, interpretability (Table 1 form), claims, localisation.

Each table is a list of row dicts (the data, for tests and further use) rendered by
:func:`markdown_table`. Values are percent with bootstrap 95% confidence intervals
(:func:`ca_core.metrics.summarize`); GAP vs CA comparisons are paired tests on the same images
(:func:`ca_core.metrics.paired_test`, diff = CA - GAP).
"""
from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import paired_test, summarize
from ..models import POOLINGS
from . import paper
from .config import Profile
from .experiment import settings
from .runs import load_predictions, load_results, model_dir

Row = dict[str, Any]


def markdown_table(rows: list[Row]) -> str:
    """A GitHub-flavoured Markdown table with the rows' keys as headers."""
    if not rows:
        return "*(no rows)*"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(r.get(h, "")) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def show(rows: list[Row]) -> None:
    """Display rows as a Markdown table in a notebook (the book renders it as an HTML table)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown_table(rows)))


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def ci(summary: dict[str, float]) -> str:
    """``"12.34 [10.10, 14.50]"``: a mean with its 95% interval."""
    return f"{summary['mean']:.2f} [{summary['lo']:.2f}, {summary['hi']:.2f}]"


def paper_backbone(backbone: str) -> str | None:
    """The paper's backbone of the same family (``resnet_mini`` -> ``resnet50``), or ``None``."""
    if backbone in paper.ACCURACY:
        return backbone
    family = next((f for f in ("convnext", "resnet") if backbone.startswith(f)), None)
    return {"resnet": "resnet50", "convnext": "convnext_base"}.get(family)


def _paper_source(backbone: str) -> str:
    ref = paper_backbone(backbone)
    return f"paper ({paper.BACKBONE_LABELS[ref]}, ImageNet)" if ref else "paper"


def accuracy_table(profile: Profile) -> list[Row]:
    """Top-1 accuracy (%) of GAP and CA per backbone, their paired difference and the paper's."""
    cfg, rows = profile.eval, []
    for backbone in profile.models:
        gap, ca = (load_predictions(profile, backbone, p)["correct"] for p in POOLINGS)
        test = paired_test(gap, ca, n_boot=cfg.n_boot, seed=cfg.seed)
        ref = paper.ACCURACY.get(paper_backbone(backbone) or "", {})
        rows.append({
            "Backbone": backbone, "Test images": len(gap),
            "GAP": ci(summarize(gap, cfg.n_boot, cfg.seed)), "CA": ci(summarize(ca, cfg.n_boot, cfg.seed)),
            "CA − GAP": ci({"mean": test["diff"], "lo": test["lo"], "hi": test["hi"]}),
            "Paper GAP": ref.get("gap"), "Paper CA": ref.get("ca"),
        })
    return rows


def interpretability_table(profile: Profile) -> list[Row]:
    """Table 1 of the paper for this run: per backbone x method x pooling, each metric's mean
    [95% CI], followed by the paper's row of the same family where it has one."""
    cfg, rows = profile.eval, []
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        head = {"Backbone": backbone, "Method": paper.METHOD_LABELS[method], "Pooling": pooling.upper(),
                "Source": f"this run ({len(res['label'])} images)"}
        rows.append(head | {paper.METRIC_LABELS[m]: ci(summarize(res[m], cfg.n_boot, cfg.seed))
                            for m in paper.METRICS})
        ref = paper.TABLE1.get((paper_backbone(backbone), method, pooling))
        if ref:
            rows.append({"Backbone": "", "Method": "", "Pooling": "", "Source": _paper_source(backbone)}
                        | {paper.METRIC_LABELS[m]: ref[m] for m in paper.METRICS})
    return rows


def verdict(kind: str, direction: str, test: dict[str, float], alpha: float = 0.05) -> str:
    """Whether a claim holds given the paired test of CA - GAP.

    "improves": CA better in the metric's direction; "worse": CA worse in it; "kept": CA not
    significantly worse. Significant = the bootstrap 95% interval excludes 0 *and* the sign-flip
    test gives ``p < alpha`` (both, so a small sample never passes on one of them alone).
    """
    significant = test["p"] < alpha
    better = significant and (test["lo"] > 0 if direction == "up" else test["hi"] < 0)
    worse = significant and (test["hi"] < 0 if direction == "up" else test["lo"] > 0)
    if kind == "kept":
        return "no: significantly lower" if worse else "holds"
    wanted, opposite = (better, worse) if kind == "improves" else (worse, better)
    return "holds" if wanted else ("no: opposite, significant" if opposite else "not significant")


def claims_table(profile: Profile) -> list[Row]:
    """Each paper claim per backbone (and CAM method), with this run's paired test and verdict."""
    cfg, rows = profile.eval, []
    cams = [m for m in cfg.methods if m != "attention"]
    for backbone in profile.models:
        ref = paper_backbone(backbone)
        for text, kind, metric in paper.CLAIMS:
            if metric is None:  # accuracy
                a, b = (load_predictions(profile, backbone, p)["correct"] for p in POOLINGS)
                paper_diff = paper.ACCURACY[ref]["ca"] - paper.ACCURACY[ref]["gap"] if ref else None
                rows.append(_claim_row(text, backbone, "–", kind, "up", paired_test(a, b, cfg.n_boot, cfg.seed), paper_diff))
                continue
            for method in cams:
                a, b = (load_results(profile, backbone, p, method)[metric] for p in POOLINGS)
                cells = [paper.TABLE1.get((ref, method, p)) for p in POOLINGS]
                paper_diff = cells[1][metric] - cells[0][metric] if all(cells) else None
                test = paired_test(a, b, cfg.n_boot, cfg.seed)
                rows.append(_claim_row(text, backbone, paper.METHOD_LABELS[method], kind,
                                       paper.METRICS[metric], test, paper_diff))
    return rows


def _claim_row(text: str, backbone: str, method: str, kind: str, direction: str,
               test: dict[str, float], paper_diff: float | None) -> Row:
    return {
        "Claim": text, "Backbone": backbone, "Method": method,
        "CA − GAP (this run)": ci({"mean": test["diff"], "lo": test["lo"], "hi": test["hi"]}),
        "p": f"{test['p']:.3f}", "Paper CA − GAP": paper_diff, "Holds here?": verdict(kind, direction, test),
    }


def localisation_table(profile: Profile) -> list[Row]:
    """Pointing game and energy inside the ground-truth masks (%), per backbone x method x pooling."""
    cfg, rows = profile.eval, []
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        if "pointing" not in res:
            return []  # data without masks (ImageNet): no localisation table
        rows.append({"Backbone": backbone, "Method": paper.METHOD_LABELS[method], "Pooling": pooling.upper(),
                     "Pointing game ↑": ci(summarize(res["pointing"], cfg.n_boot, cfg.seed)),
                     "Energy in mask ↑": ci(summarize(res["energy"], cfg.n_boot, cfg.seed))})
    return rows


def results_inventory(profile: Profile) -> list[Row]:
    """What the evaluation saved: one row per backbone x pooling x method, with its image count and folder."""
    rows = []
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        folder = model_dir(profile, backbone, pooling) / method
        rows.append({"Backbone": backbone, "Pooling": pooling.upper(), "Method": paper.METHOD_LABELS[method],
                     "Images": len(res["label"]), "Per-image values": ", ".join(k for k in res if k != "index"),
                     "Folder": f"`{folder}`"})
    return rows


def resolved_settings(profile: Profile) -> dict[str, Any]:
    """The profile with every default filled in, as plain JSON-able data: what this run used."""
    settings = {"description": profile.description, "models": profile.models, "pretrained": profile.pretrained,
                "data": {"kind": profile.data_kind, **asdict(profile.data)},
                "train": asdict(profile.train), "eval": asdict(profile.eval)}
    return json.loads(json.dumps(settings, default=str))


def seeds_table(profile: Profile) -> list[Row]:
    """Every ``seed`` field of the profile's sections (data generation, training, bootstrap)."""
    rows = []
    for section in ("data", "train", "eval"):
        obj = getattr(profile, section)
        for f in fields(obj) if is_dataclass(obj) else ():
            if "seed" in f.name:
                rows.append({"Section": section, "Key": f.name, "Value": getattr(obj, f.name)})
    return rows


def environment() -> list[Row]:
    """Versions and hardware of this run, for the reproduction-setup page."""
    import timm
    import torch

    from .. import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    items = {
        "ca_core": __version__, "Python": sys.version.split()[0], "PyTorch": torch.__version__,
        "timm": timm.__version__, "NumPy": np.__version__, "Platform": platform.platform(),
        "CPU": platform.processor() or platform.machine(), "CPU cores": os.cpu_count(),
        "Torch threads": torch.get_num_threads(), "GPU": device,
    }
    return [{"Item": k, "Value": v} for k, v in items.items()]


def timings_table(path: Path) -> list[Row]:
    """The measured time of each pipeline step from ``runs/<profile>/timings.json``."""
    if not Path(path).is_file():
        return []
    steps = json.loads(Path(path).read_text())["steps"]
    return [{"Step": name, "Seconds": s.get("seconds"), "Status": s.get("status"), "Measured at": s.get("at")}
            for name, s in steps.items()]
