"""The run as data: ``runs/<profile>/results.json`` (schema on the book's reproduction page) and the
findings paragraph the book's first page opens with."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics import summarize
from ..saliency import METHODS
from ..utils import atomic_write, write_json
from . import paper
from .claims import claim_tests, findings
from .notices import kept_stale
from .reproduction import reproduction
from .regime import REGIME_TARGETS, regime_check
from .report import normalised_summary, sanity_checks
from .runs import Run
from .setup_tables import resolved_settings

#: Version of the layout of ``runs/<profile>/results.json``.
SCHEMA = "ca_core.results/2"

#: Per-image values summarised in results.json when present (``_cal``: at the fitted temperature).
SUMMARISED = (tuple(f"{k}{suffix}" for suffix in ("", "_cal") for k in paper.METRICS)
              + ("pointing", "pointing_tol", "energy"))

#: Where the findings paragraph lands (the book's first page includes it).
FINDINGS_FILE = Path("book/generated/findings.md")


def _model_entries(run: Run) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per trained model: accuracy, calibration; per model x method: the summarised metrics."""
    cfg, evaluated = run.profile.eval, set(run.evaluated_cells())
    accuracy, calibration, results = [], [], []
    for backbone, pooling, seed in run.trained_models():
        model = {"backbone": backbone, "pooling": pooling, "seed": seed}
        if run.profile.labelled:
            correct = run.predictions(backbone, pooling, seed)["correct"]
            accuracy.append(model | {"n_images": len(correct), "accuracy": summarize(correct, cfg.n_boot, cfg.seed)})
        record = run.calibration(backbone, pooling, seed)
        if record is not None:
            calibration.append(model | {"temperature": record["temperature"], "nll": record["raw"]["nll"],
                                        "ece": record["raw"]["ece"], "confidence": record["raw"]["confidence"],
                                        "calibrated": record["calibrated"]})
        for method in cfg.methods:
            if (backbone, method, pooling) not in evaluated or (
                    seed is not None and seed not in run.evaluated_seeds(method)):
                continue
            res = run.results(backbone, pooling, method, seed)
            results.append(model | {"method": method, "kind": METHODS[method].kind, "n_images": len(res["label"]),
                                    "metrics": {k: summarize(res[k], cfg.n_boot, cfg.seed)
                                                for k in SUMMARISED if k in res}})
    return accuracy, calibration, results


def _road(run: Run) -> list[dict[str, Any]]:
    cfg, out = run.profile.eval, []
    for backbone, method, pooling in run.evaluated_cells():
        res = run.extra(backbone, pooling, method, "road")
        if res is not None:
            out.append({"backbone": backbone, "method": method, "pooling": pooling, "n_images": len(res["index"]),
                        **{k: summarize(res[k], cfg.n_boot, cfg.seed) for k in ("morf", "lerf", "combined")}})
    return out


def results_summary(run: Run) -> dict[str, Any]:
    """The whole run as plain data: see ``book``'s reproduction page for the schema (``results.json``);
    ``reproduction``: its comparison with the profile's committed reference run
    (:mod:`ca_core.repro.reproduction`; ``None`` without one)."""
    profile = run.profile
    accuracy, calibration, results = _model_entries(run)
    sanity = [{"backbone": b, "method": m, "pooling": p, "steps": list(r.steps),
               "median_correlation": r.summary(), "passes": r.passes()}
              for b, m, p, r in sanity_checks(run)]
    summary = {"schema": SCHEMA, "profile": profile.name, "seeds": profile.seeds,
               "settings": resolved_settings(profile), "kept_stale": kept_stale(run), "accuracy": accuracy,
               "calibration": calibration, "results": results,
               "claims": [t.as_dict() for t in claim_tests(run)], "normalised": normalised_summary(run),
               "road": _road(run), "sanity": sanity,
               "regime": regime_check(run), "targets": REGIME_TARGETS}
    compared = reproduction(summary, profile.name, run.root)
    return summary | {"reproduction": None if compared is None else compared.as_dict()}


def write_results(run: Run) -> Path:
    """Write :func:`results_summary` to ``runs/<profile>/results.json`` (:attr:`Run.results_path`)
    atomically; return the path."""
    path = run.results_path
    write_json(path, results_summary(run))
    return path


def write_findings(run: Run) -> Path:
    """Write :func:`ca_core.repro.claims.findings` of the run to ``book/generated/findings.md``
    (atomically), which the book's first page includes; return the path."""
    path = run.root / FINDINGS_FILE
    text = findings(run.profile, claim_tests(run)) or "*No claim of the paper is testable on this run.*"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
    return path
