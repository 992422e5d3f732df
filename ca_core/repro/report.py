"""Tables of a run's results beside the paper's: accuracy, interpretability (Table 1 form),
localisation, and the map-or-model evidence (calibration, normalised curves, ROAD, the sanity check,
the paper's confidence signature, the ablation). The claims live in :mod:`ca_core.repro.claims`, the
regime check in :mod:`ca_core.repro.regime`, the reproduction-setup tables in
:mod:`ca_core.repro.setup_tables`.

Each table is a function of a :class:`~ca_core.repro.runs.Run` (the saved results it reads) to a
list of row dicts (the data, for tests and further use) rendered by :func:`markdown_table`. Values
are percent with bootstrap 95% confidence intervals (:func:`ca_core.metrics.summarize`); GAP vs CA
comparisons are paired tests on the same images (:func:`ca_core.metrics.paired_test`, diff = CA - GAP).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..evaluation import methods_for
from ..metrics import SanityResult, crossed_test, paired_test, summarize
from ..models import POOLINGS
from . import paper
from .notices import backbone_label
from .runs import Run

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


def accuracy_table(run: Run) -> list[Row]:
    """Top-1 accuracy (%) of GAP and CA per backbone, their paired difference and the paper's
    (no rows when the data's labels are not the models' classes)."""
    profile, rows = run.profile, []
    cfg = profile.eval
    for backbone in profile.models if profile.labelled else []:
        gap, ca = (run.predictions(backbone, p)["correct"] for p in POOLINGS)
        test = paired_test(gap, ca, n_boot=cfg.n_boot, seed=cfg.seed)
        ref = paper.ACCURACY.get(paper.paper_backbone(backbone) or "", {})
        rows.append({
            "Backbone": backbone_label(run, backbone), "Test images": len(gap),
            "GAP": ci(summarize(gap, cfg.n_boot, cfg.seed)), "CA": ci(summarize(ca, cfg.n_boot, cfg.seed)),
            "CA − GAP": ci({"mean": test["diff"], "lo": test["lo"], "hi": test["hi"]}),
            "Paper GAP": ref.get("gap"), "Paper CA": ref.get("ca"),
        })
    return rows


def interpretability_table(run: Run) -> list[Row]:
    """Table 1 of the paper for this run: per backbone x method x pooling, each metric's mean
    [95% CI], followed by the paper's row of the same family where it has one."""
    cfg, rows, failures = run.profile.eval, [], sanity_failures(run)
    for backbone, method, pooling in run.evaluated_cells():
        res = run.results(backbone, pooling, method)
        head = {"Backbone": backbone_label(run, backbone),
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


def localisation_table(run: Run) -> list[Row]:
    """Pointing game (without and with the usual margin, 15 px at 224 px scaled) and energy inside the
    ground-truth masks (%), per backbone x method x pooling."""
    cfg, rows, failures = run.profile.eval, [], sanity_failures(run)
    for backbone, method, pooling in run.evaluated_cells():
        res = run.results(backbone, pooling, method)
        if "pointing" not in res:
            return []  # data without masks (ImageNet): no localisation table
        rows.append({"Backbone": backbone_label(run, backbone),
                     "Method": method_label(backbone, method, pooling, failures), "Pooling": pooling.upper(),
                     "Pointing game ↑": ci(summarize(res["pointing"], cfg.n_boot, cfg.seed)),
                     "Pointing, 15 px margin ↑": ci(summarize(res["pointing_tol"], cfg.n_boot, cfg.seed)),
                     "Energy in mask ↑": ci(summarize(res["energy"], cfg.n_boot, cfg.seed))})
    return rows


def results_inventory(run: Run) -> list[Row]:
    """What the evaluation saved: one row per backbone x pooling x method, with its image count and folder."""
    rows = []
    for backbone, method, pooling in run.evaluated_cells():
        res = run.results(backbone, pooling, method)
        folder = run.model_dir(backbone, pooling) / method
        rows.append({"Backbone": backbone, "Pooling": pooling.upper(), "Method": paper.METHOD_LABELS[method],
                     "Images": len(res["label"]), "Per-image values": ", ".join(k for k in res if k != "index"),
                     "Folder": f"`{run.profile.shown(folder)}`"})
    return rows


# ---------------------------------------------------------------------------------------------
# Map or model: calibration, normalised curves, ROAD, the sanity check, the paper's signature


def calibration_table(run: Run) -> list[Row]:
    """Per trained model: the temperature fitted on the validation split and, on the test split,
    accuracy, mean confidence, NLL and ECE (15 bins), raw → at the fitted temperature."""
    rows = []
    for backbone, pooling, seed in run.trained_models():
        record = run.calibration(backbone, pooling, seed)
        if record is None:
            continue
        raw, cal = record["raw"], record["calibrated"]
        rows.append({"Backbone": backbone_label(run, backbone),
                     "Model": run.model_dir(backbone, pooling, seed).name.upper(),
                     "Temperature": f"{record['temperature']:.3f}", "Accuracy %": f"{100 * raw['accuracy']:.1f}",
                     "Confidence %": f"{100 * raw['confidence']:.1f} → {100 * cal['confidence']:.1f}",
                     "NLL": f"{raw['nll']:.3f} → {cal['nll']:.3f}",
                     "ECE %": f"{100 * raw['ece']:.2f} → {100 * cal['ece']:.2f}"})
    return rows


#: The per-image values of :func:`normalised_summary`, with their display names.
NORMALISED = {"insertion": "I↑", "insertion_norm": "I / Y↑", "deletion": "D↓", "deletion_norm": "D / Y↓"}


def normalised_summary(run: Run) -> list[dict[str, Any]]:
    """Insertion and Deletion beside the same AUCs divided by each image's full-image probability Y,
    per backbone x method x pooling (primary seed), as ``{mean, lo, hi}`` in percent.

    The ratio explodes where Y is near 0 (a misclassified image's label), so every row is taken
    over the same images: those both primary models of the backbone (GAP and CA) classify
    correctly (without labels: every image); ``None`` where there is no such image.
    """
    cfg, out = run.profile.eval, []
    for backbone, method, pooling in run.evaluated_cells():
        res = run.results(backbone, pooling, method)
        keep = np.ones(len(res["index"]), dtype=bool)
        if run.profile.labelled:
            for p in POOLINGS:
                keep &= run.predictions(backbone, p)["correct"][res["index"]] > 0
        out.append({"backbone": backbone, "method": method, "pooling": pooling, "n_images": int(keep.sum()),
                    **{key: summarize(res[key][keep], cfg.n_boot, cfg.seed) if keep.any() else None
                       for key in NORMALISED}})
    return out


def normalised_table(run: Run) -> list[Row]:
    """:func:`normalised_summary` as table rows, mean [95 % CI] in percent."""
    failures = sanity_failures(run)
    return [{"Backbone": backbone_label(run, r["backbone"]),
             "Method": method_label(r["backbone"], r["method"], r["pooling"], failures),
             "Pooling": r["pooling"].upper(), "Images": r["n_images"]}
            | {label: ci(r[key]) if r[key] else None for key, label in NORMALISED.items()}
            for r in normalised_summary(run)]


def road_table(run: Run) -> list[Row]:
    """ROAD (Rong et al. 2022) per backbone x method x pooling on the primary models: most-relevant-first
    (lower is better), least-relevant-first (higher is better) and combined, averaged over the
    percentiles 10..90, in points of probability change, mean [95 % CI]."""
    cfg, rows, failures = run.profile.eval, [], sanity_failures(run)
    for backbone, method, pooling in run.evaluated_cells():
        res = run.extra(backbone, pooling, method, "road")
        if res is None:
            continue
        rows.append({"Backbone": backbone_label(run, backbone),
                     "Method": method_label(backbone, method, pooling, failures),
                     "Pooling": pooling.upper(), "Images": len(res["index"]),
                     "MoRF↓": ci(summarize(res["morf"], cfg.n_boot, cfg.seed)),
                     "LeRF↑": ci(summarize(res["lerf"], cfg.n_boot, cfg.seed)),
                     "Combined↑": ci(summarize(res["combined"], cfg.n_boot, cfg.seed))})
    return rows


def sanity_checks(run: Run) -> list[tuple[str, str, str, SanityResult]]:
    """Every saved parameter randomisation check: (backbone, method, pooling, result)."""
    out = []
    for backbone, method, pooling in run.evaluated_cells():
        res = run.extra(backbone, pooling, method, "sanity")
        if res is not None:
            out.append((backbone, method, pooling,
                        SanityResult(method=method, steps=tuple(str(s) for s in res["steps"]),
                                     correlations=res["correlations"])))
    return out


def sanity_table(run: Run) -> list[Row]:
    """Per backbone x method x pooling: the median Spearman correlation between the trained model's
    maps and those after randomising the layers top-down, after the first step, half-way and at the
    end, and whether the method passes (its maps change when the model does)."""
    rows = []
    for backbone, method, pooling, result in sanity_checks(run):
        medians = list(result.summary().values())
        half = len(result.steps) // 2
        rows.append({"Backbone": backbone_label(run, backbone), "Method": paper.METHOD_LABELS[method],
                     "Pooling": pooling.upper(), "Images": result.correlations.shape[1],
                     f"After {result.steps[0]}": f"{medians[0]:.2f}",
                     "Half-way": f"{medians[half - 1]:.2f} ({result.steps[half - 1]})",
                     "All randomised": f"{medians[-1]:.2f}",
                     "Sanity check": "passes" if result.passes() else "**fails**"})
    return rows


def sanity_failures(run: Run) -> set[tuple[str, str, str]]:
    """The (backbone, method, pooling) whose maps fail the parameter randomisation check."""
    return {(b, m, p) for b, m, p, result in sanity_checks(run) if not result.passes()}


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


def ablation_table(run: Run) -> list[Row]:
    """Each labelled ablation beside the profile's own stream (primary seed), per paper CAM: the
    stream's temperature and ECE, then CA − GAP raw and as the map effect (minus the random map's
    CA − GAP) on AG, Insertion and Deletion, in points (paired over the images; * = p < 0.05)."""
    rows = []
    cams = [m for m in paper.PAPER_CAMS if m in methods_for("ca", run.profile.eval, extra_seed=True)]
    for backbone, name in run.ablations():
        for label, ablation in ((f"{backbone} CA (the profile's recipe)", None),
                                (f"{backbone} CA, ablation `{name}`", name)):
            record = run.calibration(backbone, "ca", ablation=ablation)
            for method in cams:
                row: Row = {"Stream": label, "Method": paper.METHOD_LABELS[method],
                            "Temperature": f"{record['temperature']:.2f}" if record else "–",
                            "ECE %": f"{100 * record['raw']['ece']:.1f}" if record else "–"}
                for metric in ("ag", "insertion", "deletion"):
                    raw, effect = _primary_effects(run, backbone, method, metric, ablation)
                    row[f"{paper.METRIC_LABELS[metric]} raw / map effect"] = f"{_starred(raw)} / {_starred(effect)}"
                rows.append(row)
    return rows


def _primary_effects(run: Run, backbone: str, method: str, metric: str, ablation: str | None) -> tuple:
    """CA − GAP of ``method`` on the primary (or ablation) stream, raw and minus the random map's."""
    def diff(m: str, n: int) -> np.ndarray:
        gap = run.results(backbone, "gap", m)[metric][:n]
        return run.results(backbone, "ca", m, ablation=ablation)[metric][:n] - gap
    baseline = "random" in methods_for("ca", run.profile.eval, extra_seed=True)
    n = min(len(run.results(backbone, "gap", m)["label"]) for m in (method, *(["random"] * baseline)))
    raw = diff(method, n)
    return crossed_test(raw[None]), crossed_test((raw - diff("random", n))[None]) if baseline else None


def _starred(test: Any) -> str:
    return "–" if test is None else f"{test.diff:+.2f}{'*' if test.p < 0.05 else ''}"
