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
from .config import Profile
from .experiment import evaluated_cells, evaluated_seeds, trained_models
from .notices import kept_stale
from .reproduction import reproduction
from .regime import REGIME_TARGETS, regime_check
from .report import normalised_summary, sanity_checks
from .setup_tables import resolved_settings
from .runs import load_calibration, load_extra, load_predictions, load_results

#: Version of the layout of ``runs/<profile>/results.json``.
SCHEMA = "ca_core.results/2"

#: Per-image values summarised in results.json when present (``_cal``: at the fitted temperature).
SUMMARISED = (tuple(f"{k}{suffix}" for suffix in ("", "_cal") for k in paper.METRICS)
              + ("pointing", "pointing_tol", "energy"))

#: Where the findings paragraph lands (the book's first page includes it).
FINDINGS_FILE = Path("book/generated/findings.md")


def _model_entries(profile: Profile) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per trained model: accuracy, calibration; per model x method: the summarised metrics."""
    cfg, evaluated = profile.eval, set(evaluated_cells(profile))
    accuracy, calibration, results = [], [], []
    for backbone, pooling, seed in trained_models(profile):
        model = {"backbone": backbone, "pooling": pooling, "seed": seed}
        if profile.labelled:
            correct = load_predictions(profile, backbone, pooling, seed)["correct"]
            accuracy.append(model | {"n_images": len(correct), "accuracy": summarize(correct, cfg.n_boot, cfg.seed)})
        record = load_calibration(profile, backbone, pooling, seed)
        if record is not None:
            calibration.append(model | {"temperature": record["temperature"], "nll": record["raw"]["nll"],
                                        "ece": record["raw"]["ece"], "confidence": record["raw"]["confidence"],
                                        "calibrated": record["calibrated"]})
        for method in cfg.methods:
            if (backbone, method, pooling) not in evaluated or (
                    seed is not None and seed not in evaluated_seeds(profile, method)):
                continue
            res = load_results(profile, backbone, pooling, method, seed)
            results.append(model | {"method": method, "kind": METHODS[method].kind, "n_images": len(res["label"]),
                                    "metrics": {k: summarize(res[k], cfg.n_boot, cfg.seed)
                                                for k in SUMMARISED if k in res}})
    return accuracy, calibration, results


def _road(profile: Profile) -> list[dict[str, Any]]:
    cfg, out = profile.eval, []
    for backbone, method, pooling in evaluated_cells(profile):
        res = load_extra(profile, backbone, pooling, method, "road")
        if res is not None:
            out.append({"backbone": backbone, "method": method, "pooling": pooling, "n_images": len(res["index"]),
                        **{k: summarize(res[k], cfg.n_boot, cfg.seed) for k in ("morf", "lerf", "combined")}})
    return out


def results_summary(profile: Profile) -> dict[str, Any]:
    """The whole run as plain data: see ``book``'s reproduction page for the schema (``results.json``);
    ``reproduction``: its comparison with the profile's committed reference run
    (:mod:`ca_core.repro.reproduction`; ``None`` without one)."""
    accuracy, calibration, results = _model_entries(profile)
    sanity = [{"backbone": b, "method": m, "pooling": p, "steps": list(r.steps),
               "median_correlation": r.summary(), "passes": r.passes()}
              for b, m, p, r in sanity_checks(profile)]
    summary = {"schema": SCHEMA, "profile": profile.name, "seeds": profile.seeds,
               "settings": resolved_settings(profile), "kept_stale": kept_stale(profile), "accuracy": accuracy,
               "calibration": calibration, "results": results,
               "claims": [t.as_dict() for t in claim_tests(profile)], "normalised": normalised_summary(profile),
               "road": _road(profile), "sanity": sanity,
               "regime": regime_check(profile), "targets": REGIME_TARGETS}
    compared = reproduction(summary, profile.name, profile.root)
    return summary | {"reproduction": None if compared is None else compared.as_dict()}


def write_results(profile: Profile) -> Path:
    """Write :func:`results_summary` to ``runs/<profile>/results.json`` atomically; return the path."""
    path = profile.run_dir / "results.json"
    write_json(path, results_summary(profile))
    return path


def write_findings(profile: Profile) -> Path:
    """Write :func:`ca_core.repro.claims.findings` of the run to ``book/generated/findings.md``
    (atomically), which the book's first page includes; return the path."""
    path = profile.root / FINDINGS_FILE
    text = findings(profile, claim_tests(profile)) or "*No claim of the paper is testable on this run.*"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
    return path
