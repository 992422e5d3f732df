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

from ..evaluation import method_options, methods_for
from ..prediction import predict
from ..metrics import SanityResult, crossed_test, evaluate_maps, paired_test, pearson, summarize
from ..models import POOLINGS
from ..saliency import explain
from . import paper
from .notices import backbone_label
from .config import CONFIG_FILE, Profile
from .experiment import ablations, eval_split, load_trained, models, settings
from .pipeline import OUTPUT_DIR, git_commit, stamp_path, step_keys
from .runs import artefacts, load_calibration, load_extra, load_predictions, load_results, model_dir, timings_path

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
    """``"12.34 [10.10, 14.50]"``: a mean with its 95% interval, the interval held together by a
    non-breaking space so that a narrow table cell wraps between the mean and the interval only."""
    return f"{summary['mean']:.2f} [{summary['lo']:.2f},\u00a0{summary['hi']:.2f}]"


def _paper_source(backbone: str) -> str:
    ref = paper.paper_backbone(backbone)
    return f"paper ({paper.BACKBONE_LABELS[ref]}, ImageNet)" if ref else "paper"


def accuracy_table(profile: Profile) -> list[Row]:
    """Top-1 accuracy (%) of GAP and CA per backbone, their paired difference and the paper's
    (no rows when the data's labels are not the models' classes)."""
    cfg, rows = profile.eval, []
    for backbone in profile.models if profile.labelled else []:
        gap, ca = (load_predictions(profile, backbone, p)["correct"] for p in POOLINGS)
        test = paired_test(gap, ca, n_boot=cfg.n_boot, seed=cfg.seed)
        ref = paper.ACCURACY.get(paper.paper_backbone(backbone) or "", {})
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
    cfg, rows, failures = profile.eval, [], sanity_failures(profile)
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        head = {"Backbone": backbone_label(profile, backbone),
                "Method": method_label(backbone, method, pooling, failures),
                "Pooling": pooling.upper(),
                "Source": f"this run ({len(res['label'])} images)"}
        rows.append(head | {paper.METRIC_LABELS[m]: ci(summarize(res[m], cfg.n_boot, cfg.seed))
                            for m in paper.METRICS})
        ref = paper.TABLE1.get((paper.paper_backbone(backbone), method, pooling))
        if ref:
            rows.append({"Backbone": "", "Method": "", "Pooling": "", "Source": _paper_source(backbone)}
                        | {paper.METRIC_LABELS[m]: ref[m] for m in paper.METRICS})
    return rows


def localisation_table(profile: Profile) -> list[Row]:
    """Pointing game (without and with the usual margin, 15 px at 224 px scaled) and energy inside the
    ground-truth masks (%), per backbone x method x pooling."""
    cfg, rows, failures = profile.eval, [], sanity_failures(profile)
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        if "pointing" not in res:
            return []  # data without masks (ImageNet): no localisation table
        rows.append({"Backbone": backbone_label(profile, backbone),
                     "Method": method_label(backbone, method, pooling, failures), "Pooling": pooling.upper(),
                     "Pointing game ↑": ci(summarize(res["pointing"], cfg.n_boot, cfg.seed)),
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
                     "Folder": f"`{profile.shown(folder)}`"})
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
                corr = torch.from_numpy(pearson(maps["fp32"], maps[precision]))  # per image
                scores = {p: evaluate_maps(model, x[:k], maps["fp32"], y[:k], protocol=cfg.protocol,
                                           batch_size=cfg.batch_size, precision=p) for p in ("fp32", precision)}
                shift = max(abs(100 * (scores[precision][k].mean() - scores["fp32"][k].mean()).item())
                            for k in paper.METRICS)
                rows.append({"Backbone": backbone, "Pooling": pooling.upper(), "Method": paper.METHOD_LABELS[method],
                             "Images": k, "Map corr. (min)": f"{corr.min():.4f}",
                             "Map corr. (median)": f"{corr.median():.4f}", "Max metric shift (points)": f"{shift:.2f}",
                             f"Time {precision} / fp32": f"{seconds[precision] / seconds['fp32']:.2f}",
                             "Accuracy shift (points)": f"{accs[precision] - accs['fp32']:+.2f}" if accs else None})
    return rows


# ---------------------------------------------------------------------------------------------
# Map or model: calibration, normalised curves, ROAD, the sanity check, the paper's signature


def calibration_table(profile: Profile) -> list[Row]:
    """Per trained model: the temperature fitted on the validation split and, on the test split,
    accuracy, mean confidence, NLL and ECE (15 bins), raw → at the fitted temperature."""
    rows = []
    for backbone, pooling, seed in models(profile):
        record = load_calibration(profile, backbone, pooling, seed)
        if record is None:
            continue
        raw, cal = record["raw"], record["calibrated"]
        rows.append({"Backbone": backbone_label(profile, backbone),
                     "Model": model_dir(profile, backbone, pooling, seed).name.upper(),
                     "Temperature": f"{record['temperature']:.3f}", "Accuracy %": f"{100 * raw['accuracy']:.1f}",
                     "Confidence %": f"{100 * raw['confidence']:.1f} → {100 * cal['confidence']:.1f}",
                     "NLL": f"{raw['nll']:.3f} → {cal['nll']:.3f}",
                     "ECE %": f"{100 * raw['ece']:.2f} → {100 * cal['ece']:.2f}"})
    return rows


#: The per-image values of :func:`normalised_summary`, with their display names.
NORMALISED = {"insertion": "I↑", "insertion_norm": "I / Y↑", "deletion": "D↓", "deletion_norm": "D / Y↓"}


def normalised_summary(profile: Profile) -> list[dict[str, Any]]:
    """Insertion and Deletion beside the same AUCs divided by each image's full-image probability Y,
    per backbone x method x pooling (primary seed), as ``{mean, lo, hi}`` in percent.

    The ratio explodes where Y is near 0 (a misclassified image's label), so every row is taken
    over the same images: those both primary models of the backbone (GAP and CA) classify
    correctly (without labels: every image); ``None`` where there is no such image.
    """
    cfg, out = profile.eval, []
    for backbone, method, pooling in settings(profile):
        res = load_results(profile, backbone, pooling, method)
        keep = np.ones(len(res["index"]), dtype=bool)
        if profile.labelled:
            for p in POOLINGS:
                keep &= load_predictions(profile, backbone, p)["correct"][res["index"]] > 0
        out.append({"backbone": backbone, "method": method, "pooling": pooling, "n_images": int(keep.sum()),
                    **{key: summarize(res[key][keep], cfg.n_boot, cfg.seed) if keep.any() else None
                       for key in NORMALISED}})
    return out


def normalised_table(profile: Profile) -> list[Row]:
    """:func:`normalised_summary` as table rows, mean [95 % CI] in percent."""
    failures = sanity_failures(profile)
    return [{"Backbone": backbone_label(profile, r["backbone"]),
             "Method": method_label(r["backbone"], r["method"], r["pooling"], failures),
             "Pooling": r["pooling"].upper(), "Images": r["n_images"]}
            | {label: ci(r[key]) if r[key] else None for key, label in NORMALISED.items()}
            for r in normalised_summary(profile)]


def road_table(profile: Profile) -> list[Row]:
    """ROAD (Rong et al. 2022) per backbone x method x pooling on the primary models: most-relevant-first
    (lower is better), least-relevant-first (higher is better) and combined, averaged over the
    percentiles 10..90, in points of probability change, mean [95 % CI]."""
    cfg, rows, failures = profile.eval, [], sanity_failures(profile)
    for backbone, method, pooling in settings(profile):
        res = load_extra(profile, backbone, pooling, method, "road")
        if res is None:
            continue
        rows.append({"Backbone": backbone_label(profile, backbone),
                     "Method": method_label(backbone, method, pooling, failures),
                     "Pooling": pooling.upper(), "Images": len(res["index"]),
                     "MoRF↓": ci(summarize(res["morf"], cfg.n_boot, cfg.seed)),
                     "LeRF↑": ci(summarize(res["lerf"], cfg.n_boot, cfg.seed)),
                     "Combined↑": ci(summarize(res["combined"], cfg.n_boot, cfg.seed))})
    return rows


def sanity_checks(profile: Profile) -> list[tuple[str, str, str, SanityResult]]:
    """Every saved parameter randomisation check: (backbone, method, pooling, result)."""
    out = []
    for backbone, method, pooling in settings(profile):
        res = load_extra(profile, backbone, pooling, method, "sanity")
        if res is not None:
            out.append((backbone, method, pooling,
                        SanityResult(method=method, steps=tuple(str(s) for s in res["steps"]),
                                     correlations=res["correlations"])))
    return out


def sanity_table(profile: Profile) -> list[Row]:
    """Per backbone x method x pooling: the median Spearman correlation between the trained model's
    maps and those after randomising the layers top-down, after the first step, half-way and at the
    end, and whether the method passes (its maps change when the model does)."""
    rows = []
    for backbone, method, pooling, result in sanity_checks(profile):
        medians = list(result.summary().values())
        half = len(result.steps) // 2
        rows.append({"Backbone": backbone_label(profile, backbone), "Method": paper.METHOD_LABELS[method],
                     "Pooling": pooling.upper(), "Images": result.correlations.shape[1],
                     f"After {result.steps[0]}": f"{medians[0]:.2f}",
                     "Half-way": f"{medians[half - 1]:.2f} ({result.steps[half - 1]})",
                     "All randomised": f"{medians[-1]:.2f}",
                     "Sanity check": "passes" if result.passes() else "**fails**"})
    return rows


def sanity_failures(profile: Profile) -> set[tuple[str, str, str]]:
    """The (backbone, method, pooling) whose maps fail the parameter randomisation check."""
    return {(b, m, p) for b, m, p, result in sanity_checks(profile) if not result.passes()}


def method_label(backbone: str, method: str, pooling: str | None, failures: set[tuple[str, str, str]]) -> str:
    """The method's display name, marked where its maps fail the sanity check (``failures``: of
    :func:`sanity_failures`) for this backbone and pooling (``None``: either pooling)."""
    failed = any((backbone, method, p) in failures for p in ([pooling] if pooling else POOLINGS))
    return paper.METHOD_LABELS[method] + (" ⚠ fails sanity check" if failed else "")


def paper_signature_table() -> list[Row]:
    """The paper's own Table 1 read for confidence: per backbone and CAM, CA − GAP on Insertion and
    on Deletion. A better map raises Insertion and lowers Deletion; a more confident model raises
    both, whatever the map."""
    rows = []
    for (backbone, method, pooling), ca in paper.TABLE1.items():
        if pooling != "ca":
            continue
        gap = paper.TABLE1[(backbone, method, "gap")]
        d_ins, d_del = ca["insertion"] - gap["insertion"], ca["deletion"] - gap["deletion"]
        reading = ("both rise: the signature of a more confident model, not of better maps" if d_ins > 0 and d_del > 0
                   else "Insertion up, Deletion down: better ordering" if d_ins > 0 > d_del else "mixed")
        rows.append({"Backbone": paper.BACKBONE_LABELS[backbone], "Method": paper.METHOD_LABELS[method],
                     "CA − GAP, I": f"{d_ins:+.2f}", "CA − GAP, D": f"{d_del:+.2f}", "Reading": reading})
    return rows


def ablation_table(profile: Profile) -> list[Row]:
    """Each labelled ablation beside the profile's own stream (primary seed), per paper CAM: the
    stream's temperature and ECE, then CA − GAP raw and as the map effect (minus the random map's
    CA − GAP) on AG, Insertion and Deletion, in points (paired over the images; * = p < 0.05)."""
    rows = []
    cams = [m for m in paper.PAPER_CAMS if m in methods_for("ca", profile.eval, extra_seed=True)]
    for backbone, name in ablations(profile):
        for label, ablation in ((f"{backbone} CA (the profile's recipe)", None),
                                (f"{backbone} CA, ablation `{name}`", name)):
            record = load_calibration(profile, backbone, "ca", ablation=ablation)
            for method in cams:
                row: Row = {"Stream": label, "Method": paper.METHOD_LABELS[method],
                            "Temperature": f"{record['temperature']:.2f}" if record else "–",
                            "ECE %": f"{100 * record['raw']['ece']:.1f}" if record else "–"}
                for metric in ("ag", "insertion", "deletion"):
                    raw, effect = _primary_effects(profile, backbone, method, metric, ablation)
                    row[f"{paper.METRIC_LABELS[metric]} raw / map effect"] = f"{_starred(raw)} / {_starred(effect)}"
                rows.append(row)
    return rows


def _primary_effects(profile: Profile, backbone: str, method: str, metric: str, ablation: str | None) -> tuple:
    """CA − GAP of ``method`` on the primary (or ablation) stream, raw and minus the random map's."""
    def diff(m: str, n: int) -> np.ndarray:
        gap = load_results(profile, backbone, "gap", m)[metric][:n]
        return load_results(profile, backbone, "ca", m, ablation=ablation)[metric][:n] - gap
    baseline = "random" in methods_for("ca", profile.eval, extra_seed=True)
    n = min(len(load_results(profile, backbone, "gap", m)["label"]) for m in (method, *(["random"] * baseline)))
    raw = diff(method, n)
    return crossed_test(raw[None]), crossed_test((raw - diff("random", n))[None]) if baseline else None


def _starred(test: Any) -> str:
    return "–" if test is None else f"{test.diff:+.2f}{'*' if test.p < 0.05 else ''}"
