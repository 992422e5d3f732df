"""The regime check: is this run a valid stand-in for the paper's regime before any CAM comparison
means something (Grad-CAM on the GAP models localises the objects, better than the centre prior,
and the models are accurate)?"""
from __future__ import annotations

from typing import Any

from ..evaluation import REGIME_METHODS
from .notices import backbone_label
from .runs import Run

Row = dict[str, Any]

#: What the embedded experiment must show before its CAM comparisons mean anything (issue targets):
#: Grad-CAM on the GAP model localises (pointing game with the usual margin), beats the centre prior
#: by a margin in pointing and in energy, and the models are accurate.
REGIME_TARGETS = {"pointing": 80.0, "pointing_over_centre": 20.0, "energy_over_centre": 10.0,
                  "gap_accuracy": 90.0, "ca_accuracy_drop": 2.0}


def regime_check(run: Run) -> list[dict[str, Any]]:
    """Per backbone, the regime's preconditions measured on this run, each with ``ok``.

    Needs the ``gradcam`` and ``centre`` methods, data with masks and labels; otherwise empty.
    """
    profile = run.profile
    if not set(REGIME_METHODS) <= set(profile.eval.methods) or not profile.labelled:
        return []
    rows = []
    for backbone in profile.models:
        cam, centre = (_localisation(run, backbone, m) for m in REGIME_METHODS)
        if "pointing_tol" not in cam:
            return []
        n = min(len(cam["label"]), len(centre["label"]))
        pg, pg_centre = 100 * cam["pointing_tol"][:n].mean(), 100 * centre["pointing_tol"][:n].mean()
        en, en_centre = 100 * cam["energy"][:n].mean(), 100 * centre["energy"][:n].mean()
        gap_acc = 100 * run.predictions(backbone, "gap")["correct"].mean()
        ca_acc = [100 * run.predictions(backbone, "ca", s)["correct"].mean() for s in profile.seeds]
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


def _localisation(run: Run, backbone: str, method: str) -> dict[str, Any]:
    """Pointing and energy of a GAP model's method: from its own pass over ``eval.regime_images`` test
    images when the run has one, else from the evaluated images."""
    return run.extra(backbone, "gap", method, "localisation") or run.results(backbone, "gap", method)


def regime_table(run: Run) -> list[Row]:
    """:func:`regime_check` as table rows: each measured value with its target and a tick."""
    rows = []
    for r in regime_check(run):
        t, ok = REGIME_TARGETS, r["ok"]
        mark = lambda passed: "✓" if passed else "✗"  # noqa: E731
        rows.append({
            "Backbone": backbone_label(run, r["backbone"]), "Images": r["n_images"],
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
