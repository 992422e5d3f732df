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
import time
from dataclasses import asdict, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from ..evaluation import method_options, predict
from ..metrics import evaluate_maps, paired_test, summarize, two_level_test
from ..models import POOLINGS
from ..saliency import METHODS, explain
from ..utils import write_json
from . import paper
from .config import CONFIG_FILE, Profile
from .experiment import eval_split, evaluated_seeds, load_trained, models, settings
from .pipeline import OUTPUT_DIR, git_commit, stamp_path, step_keys
from .runs import artefacts, load_predictions, load_results, model_dir, timings_path

Row = dict[str, Any]

#: Version of the layout of ``runs/<profile>/results.json``.
SCHEMA = "ca_core.results/1"


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
    """``"12.34 [10.10, 14.50]"``: a mean with its 95% interval, the interval held together by a
    non-breaking space so that a narrow table cell wraps between the mean and the interval only."""
    return f"{summary['mean']:.2f} [{summary['lo']:.2f},\u00a0{summary['hi']:.2f}]"


def paper_backbone(backbone: str) -> str | None:
    """The paper's backbone of the same family (``resnet_mini`` -> ``resnet50``), or ``None``."""
    if backbone in paper.ACCURACY:
        return backbone
    family = next((f for f in ("convnext", "resnet") if backbone.startswith(f)), None)
    return {"resnet": "resnet50", "convnext": "convnext_base"}.get(family)


def _paper_source(backbone: str) -> str:
    ref = paper_backbone(backbone)
    return f"paper ({paper.BACKBONE_LABELS[ref]}, ImageNet)" if ref else "paper"


STALE_MARK = " †"


def kept_stale(profile: Profile) -> list[str]:
    """The training stages kept under older code or settings (the profile's ``keep_stale``)."""
    return [a["path"].removeprefix("train/") for a in artefacts(profile.run_dir, ("train",), profile.train_run_dir)
            if a["kept_stale"]]


def stale_notice(profile: Profile) -> str:
    """A Markdown warning naming the stages kept under older code, and the mark of the numbers
    that depend on them; empty when there are none."""
    kept = kept_stale(profile)
    if not kept:
        return ""
    return (f"**Warning: stale training stages kept on request.** The profile's `keep_stale` kept "
            f"{', '.join(f'`{k}`' for k in kept)} although the code or settings that made them have changed "
            f"since. Every row or column of a backbone marked{STALE_MARK} depends on them.")


def source_notice(profile: Profile) -> str:
    """A Markdown note for a profile that evaluates another profile's models (``models_from``):
    where they were trained, and what the maps explain; empty otherwise."""
    if not profile.models_from:
        return ""
    explained = ("the models' own predictions (the data's classes are not theirs), so no accuracy is reported"
                 if not profile.labelled else "the data's labels")
    return (f"**Models of profile `{profile.models_from}`.** This profile trains nothing: it shows the GAP and "
            f"CA models trained by profile `{profile.models_from}` (`{profile.train_run_dir}/train/`) on "
            f"its own {profile.data_kind} images. The maps and metrics explain {explained}.")


def show_notices(profile: Profile) -> None:
    """Display :func:`source_notice` and :func:`stale_notice` in a notebook, those that apply."""
    from IPython.display import Markdown, display

    for notice in (source_notice(profile), stale_notice(profile)):
        if notice:
            display(Markdown(notice))


def backbone_label(profile: Profile, backbone: str) -> str:
    """The backbone's name, marked when one of its training stages is a kept stale one."""
    stale = any(k.split("/")[0] == backbone for k in kept_stale(profile))
    return backbone + (STALE_MARK if stale else "")


def accuracy_table(profile: Profile) -> list[Row]:
    """Top-1 accuracy (%) of GAP and CA per backbone, their paired difference and the paper's
    (no rows when the data's labels are not the models' classes)."""
    cfg, rows = profile.eval, []
    for backbone in profile.models if profile.labelled else []:
        gap, ca = (load_predictions(profile, backbone, p)["correct"] for p in POOLINGS)
        test = paired_test(gap, ca, n_boot=cfg.n_boot, seed=cfg.seed)
        ref = paper.ACCURACY.get(paper_backbone(backbone) or "", {})
        rows.append({
            "Backbone": backbone_label(profile, backbone), "Test images": len(gap),
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
        head = {"Backbone": backbone_label(profile, backbone), "Method": paper.METHOD_LABELS[method], "Pooling": pooling.upper(),
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


def claim_tests(profile: Profile) -> list[dict[str, Any]]:
    """Each paper claim per backbone (and CAM method of the paper), tested across the CA stream's
    training seeds.

    Per seed, CA - GAP on the same images (paired sign-flip test); over all seeds, a two-level
    bootstrap (seeds, then images: :func:`ca_core.metrics.two_level_test`), whose interval, p and
    smallest detectable difference decide the verdict. Values in points (percent).
    """
    cfg, out = profile.eval, []
    cams = [m for m in cfg.methods if m in paper.PAPER_CAMS]
    for backbone in profile.models:
        ref = paper_backbone(backbone)
        for text, kind, metric in paper.CLAIMS:
            for method in ([None] if metric is None else cams) if metric or profile.labelled else []:
                if method is None:  # accuracy
                    gap = load_predictions(profile, backbone, "gap")["correct"]
                    cas = [load_predictions(profile, backbone, "ca", s)["correct"] for s in profile.seeds]
                    direction = "up"
                    paper_diff = paper.ACCURACY[ref]["ca"] - paper.ACCURACY[ref]["gap"] if ref else None
                else:
                    gap = load_results(profile, backbone, "gap", method)[metric]
                    cas = [load_results(profile, backbone, "ca", method, s)[metric] for s in evaluated_seeds(profile, method)]
                    direction = paper.METRICS[metric]
                    cells = [paper.TABLE1.get((ref, method, p)) for p in POOLINGS]
                    paper_diff = cells[1][metric] - cells[0][metric] if all(cells) else None
                per_seed = [verdict(kind, direction, paired_test(gap, ca, cfg.n_boot, cfg.seed)) for ca in cas]
                test = two_level_test([ca - gap for ca in cas], cfg.n_boot, cfg.seed)
                out.append({"claim": text, "kind": kind, "metric": metric or "accuracy", "backbone": backbone,
                            "method": method, "direction": direction, "n_images": len(gap), "n_seeds": len(cas),
                            **test, "verdict": verdict(kind, direction, test),
                            "seeds_holding": sum(v == "holds" for v in per_seed), "paper_diff": paper_diff})
    return out


def claims_table(profile: Profile, tests: list[dict[str, Any]] | None = None) -> list[Row]:
    """:func:`claim_tests` (computed unless given) as table rows."""
    return [{
        "Claim": t["claim"], "Backbone": backbone_label(profile, t["backbone"]),
        "Method": paper.METHOD_LABELS[t["method"]] if t["method"] else "–",
        "CA − GAP (this run)": ci({"mean": t["diff"], "lo": t["lo"], "hi": t["hi"]}),
        "p": f"{t['p']:.3f}", "Detectable": f"{t['detectable']:.2f}",
        "Seeds holding": f"{t['seeds_holding']}/{t['n_seeds']}",
        "Paper CA − GAP": t["paper_diff"], "Holds here?": t["verdict"],
    } for t in (claim_tests(profile) if tests is None else tests)]


def localisation_table(profile: Profile) -> list[Row]:
    """Pointing game (without and with the usual margin, 15 px at 224 px scaled) and energy inside the
    ground-truth masks (%), per backbone x method x pooling."""
    cfg, rows = profile.eval, []
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        if "pointing" not in res:
            return []  # data without masks (ImageNet): no localisation table
        rows.append({"Backbone": backbone_label(profile, backbone), "Method": paper.METHOD_LABELS[method],
                     "Pooling": pooling.upper(), "Pointing game ↑": ci(summarize(res["pointing"], cfg.n_boot, cfg.seed)),
                     "Pointing, 15 px margin ↑": ci(summarize(res["pointing_tol"], cfg.n_boot, cfg.seed)),
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


def artefacts_table(profile: Profile) -> list[Row]:
    """Every keyed artefact of the run folder (:func:`runs.artefacts`): training stages and completed
    evaluations, each with its key and whether this pipeline run made it or reused it."""
    path = timings_path(profile.run_dir)
    started = json.loads(path.read_text()).get("started") if path.is_file() else None
    since = datetime.fromisoformat(started).timestamp() if started else float("inf")
    kinds = {"train": "training stage", "eval": "evaluation (method)"}
    source = profile.models_from

    def status(a: dict[str, Any]) -> str:
        if a.get("kept_stale"):
            return "kept stale (keep_stale)"
        if source and a["kind"] == "train":
            return f"from profile {source}" if a["done"] else "unfinished"
        return ("made" if a["written"] >= since else "reused") if a["done"] else "unfinished"

    return [{"Artefact": f"`{f'runs/{source}/' if source and a['kind'] == 'train' else ''}{a['path']}`",
             "Kind": kinds[a["kind"]], "Key": f"`{(a['key'] or '–')[:16]}`", "This run": status(a)}
            for a in artefacts(profile.run_dir, train_run_dir=profile.train_run_dir)]


def timings_table(path: Path) -> list[Row]:
    """The measured time of each pipeline step from ``runs/<profile>/timings.json``."""
    if not Path(path).is_file():
        return []
    steps = json.loads(Path(path).read_text())["steps"]
    return [{"Step": name, "Seconds": s.get("seconds"), "Status": s.get("status"), "Measured at": s.get("at")}
            for name, s in steps.items()]


# ---------------------------------------------------------------------------------------------
# The regime check, the stream's attention, and the machine-readable summary

#: What the embedded experiment must show before its CAM comparisons mean anything (issue targets):
#: Grad-CAM on the GAP model localises (pointing game with the usual margin), beats the centre prior
#: by a margin in pointing and in energy, and the models are accurate.
REGIME_TARGETS = {"pointing": 80.0, "pointing_over_centre": 20.0, "energy_over_centre": 10.0,
                  "gap_accuracy": 90.0, "ca_accuracy_drop": 2.0}


def regime_check(profile: Profile) -> list[dict[str, Any]]:
    """Per backbone, the regime's preconditions measured on this run, each with ``ok``.

    Needs the ``gradcam`` and ``centre`` methods, data with masks and labels; otherwise empty.
    """
    if not {"gradcam", "centre"} <= set(profile.eval.methods) or not profile.labelled:
        return []
    rows = []
    for backbone in profile.models:
        cam, centre = (load_results(profile, backbone, "gap", m) for m in ("gradcam", "centre"))
        if "pointing_tol" not in cam:
            return []
        n = min(len(cam["label"]), len(centre["label"]))
        pg, pg_centre = 100 * cam["pointing_tol"][:n].mean(), 100 * centre["pointing_tol"][:n].mean()
        en, en_centre = 100 * cam["energy"][:n].mean(), 100 * centre["energy"][:n].mean()
        gap_acc = 100 * load_predictions(profile, backbone, "gap")["correct"].mean()
        ca_acc = [100 * load_predictions(profile, backbone, "ca", s)["correct"].mean() for s in profile.seeds]
        t = REGIME_TARGETS
        rows.append({
            "backbone": backbone, "n_images": n,
            "gradcam_pointing": float(pg), "centre_pointing": float(pg_centre),
            "gradcam_energy": float(en), "centre_energy": float(en_centre),
            "gap_accuracy": float(gap_acc), "ca_accuracy_min": float(min(ca_acc)),
            "ok": {"pointing": bool(pg >= t["pointing"]),
                   "pointing_over_centre": bool(pg - pg_centre >= t["pointing_over_centre"]),
                   "energy_over_centre": bool(en - en_centre >= t["energy_over_centre"]),
                   "gap_accuracy": bool(gap_acc >= t["gap_accuracy"]),
                   "ca_accuracy_drop": bool(gap_acc - min(ca_acc) <= t["ca_accuracy_drop"])},
        })
    return rows


def regime_table(profile: Profile) -> list[Row]:
    """:func:`regime_check` as table rows: each measured value with its target and a tick."""
    rows = []
    for r in regime_check(profile):
        t, ok = REGIME_TARGETS, r["ok"]
        mark = lambda passed: "✓" if passed else "✗"  # noqa: E731
        rows.append({
            "Backbone": backbone_label(profile, r["backbone"]), "Images": r["n_images"],
            f"Grad-CAM pointing ≥ {t['pointing']:.0f}": f"{r['gradcam_pointing']:.1f} {mark(ok['pointing'])}",
            f"− centre ≥ {t['pointing_over_centre']:.0f}":
                f"{r['gradcam_pointing'] - r['centre_pointing']:.1f} {mark(ok['pointing_over_centre'])}",
            f"Energy − centre ≥ {t['energy_over_centre']:.0f}":
                f"{r['gradcam_energy'] - r['centre_energy']:.1f} {mark(ok['energy_over_centre'])}",
            f"GAP acc. ≥ {t['gap_accuracy']:.0f}": f"{r['gap_accuracy']:.1f} {mark(ok['gap_accuracy'])}",
            f"CA drop ≤ {t['ca_accuracy_drop']:.0f}":
                f"{r['gap_accuracy'] - r['ca_accuracy_min']:.1f} {mark(ok['ca_accuracy_drop'])}",
        })
    return rows


#: Per-image values summarised in results.json when present.
SUMMARISED = (*paper.METRICS, "pointing", "pointing_tol", "energy")


def results_summary(profile: Profile) -> dict[str, Any]:
    """The whole run as plain data: see ``book``'s reproduction page for the schema (``results.json``)."""
    cfg, evaluated = profile.eval, set(settings(profile))
    accuracy, results = [], []
    for backbone, pooling, seed in models(profile):
        if profile.labelled:
            correct = load_predictions(profile, backbone, pooling, seed)["correct"]
            accuracy.append({"backbone": backbone, "pooling": pooling, "seed": seed, "n_images": len(correct),
                             "accuracy": summarize(correct, cfg.n_boot, cfg.seed)})
        for method in cfg.methods:
            if (backbone, method, pooling) not in evaluated or (
                    seed is not None and seed not in evaluated_seeds(profile, method)):
                continue
            res = load_results(profile, backbone, pooling, method, seed)
            results.append({"backbone": backbone, "pooling": pooling, "seed": seed, "method": method,
                            "kind": METHODS[method].kind, "n_images": len(res["label"]),
                            "metrics": {k: summarize(res[k], cfg.n_boot, cfg.seed) for k in SUMMARISED if k in res}})
    return {"schema": SCHEMA, "profile": profile.name, "seeds": profile.seeds, "settings": resolved_settings(profile),
            "kept_stale": kept_stale(profile),
            "accuracy": accuracy, "results": results, "claims": claim_tests(profile),
            "regime": regime_check(profile), "targets": REGIME_TARGETS}



def write_results(profile: Profile) -> Path:
    """Write :func:`results_summary` to ``runs/<profile>/results.json`` atomically; return the path."""
    path = profile.run_dir / "results.json"
    write_json(path, results_summary(profile))
    return path


def precision_fidelity(profile: Profile, precision: str = "bf16", n: int = 4, n_costly: int = 1,
                       n_accuracy: int = 100) -> list[Row]:
    """How far ``precision`` moves this run's numbers from float32, on its trained GAP and CA models.

    Per backbone x pooling x method, on the first ``n`` test images (``n_costly`` for Score-CAM and
    Opti-CAM, hundreds of forward passes per image): the smallest and the median per-image
    correlation of the maps with float32's, and the largest change of a metric's mean (points, the
    metrics of float32's maps scored at ``precision``) and the time of the maps at ``precision`` over
    float32's on this machine; per model, the change of the accuracy on the first ``n_accuracy``
    test images. This is the evidence for choosing ``precision`` per step in a profile.
    """
    test, evaluated = eval_split(profile), set(settings(profile))
    batch = [test[i] for i in range(min(n, len(test)))]
    images, labels = torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])
    cfg, rows = profile.eval, []
    for backbone in profile.models:
        for pooling in POOLINGS:
            model = load_trained(profile, backbone, pooling)
            x, y = images.to(next(model.parameters()).device), labels.to(next(model.parameters()).device)
            subset = Subset(test, range(min(n_accuracy, len(test))))
            accs = {p: 100 * predict(model, subset, cfg.batch_size, precision=p)["correct"].float().mean().item()
                    for p in ("fp32", precision)} if profile.labelled else None
            if not profile.labelled:  # the data's labels are not the model's classes: explain its predictions
                with torch.no_grad():
                    y = model(x).argmax(1)
            for method in cfg.methods:
                if (backbone, method, pooling) not in evaluated:
                    continue
                options = method_options(method, cfg)
                k = n_costly if method in ("scorecam", "opticam") else len(x)
                maps, seconds = {}, {}
                for p in ("fp32", precision):
                    start = time.perf_counter()
                    maps[p] = explain(model, x[:k], method, targets=y[:k], **{**options, "precision": p})
                    seconds[p] = time.perf_counter() - start
                corr = _correlations(maps["fp32"], maps[precision])
                scores = {p: evaluate_maps(model, x[:k], maps["fp32"], y[:k], protocol=cfg.protocol,
                                           batch_size=cfg.batch_size, precision=p) for p in ("fp32", precision)}
                shift = max(abs(100 * (scores[precision][k].mean() - scores["fp32"][k].mean()).item()) for k in paper.METRICS)
                rows.append({"Backbone": backbone, "Pooling": pooling.upper(), "Method": paper.METHOD_LABELS[method],
                             "Images": k, "Map corr. (min)": f"{corr.min():.4f}",
                             "Map corr. (median)": f"{corr.median():.4f}", "Max metric shift (points)": f"{shift:.2f}",
                             f"Time {precision} / fp32": f"{seconds[precision] / seconds['fp32']:.2f}",
                             "Accuracy shift (points)": f"{accs[precision] - accs['fp32']:+.2f}" if accs else None})
    return rows


def _correlations(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of two (B, h, w) map batches (1 where both maps are constant)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp_min(1e-30), torch.ones_like(denom))


def verdict_table(profile: Profile, tests: list[dict[str, Any]] | None = None) -> list[Row]:
    """The headline: per claim and backbone, for how many CAM methods the claim holds, is not
    significant, or is significantly the opposite (across seeds and images, :func:`claim_tests`)."""
    tests = claim_tests(profile) if tests is None else tests
    rows = []
    for text, _, _ in paper.CLAIMS:
        row: Row = {"Claim": text}
        for backbone in profile.models:
            verdicts = [t["verdict"] for t in tests if t["claim"] == text and t["backbone"] == backbone]
            holds = sum(v == "holds" for v in verdicts)
            opposite = sum(v.startswith("no:") for v in verdicts)
            what = "methods" if len(verdicts) > 1 else "test"
            row[backbone_label(profile, backbone)] = (
                "not tested" if not verdicts else
                f"holds for {holds} of {len(verdicts)} {what}" + (f", opposite for {opposite}" if opposite else "")
                if holds or opposite else f"not significant ({len(verdicts)} {what})")
        rows.append(row)
    return rows
