"""The paper's claims tested on a run: is it the map, or the model's confidence?

Every metric of the paper reads the model's softmax probability, so CA − GAP moves when the CA
model is more (or less) confident, whatever its maps. Each claim is therefore tested four ways,
per backbone and CAM method, on the same images and training seeds:

* ``raw``: CA − GAP of the method (the paper's comparison);
* ``vs_random`` / ``vs_centre``, the *map effect*: (CA − GAP of the method) − (CA − GAP of the
  ``random`` / ``centre`` map), image by image and seed by seed. A baseline map never looks at the
  image, so its CA − GAP measures what changed in the model, not in any map; what remains is what
  the method's map adds. This answers the paper's question (are the maps better?) under one
  assumption, stated in the book: the confidence change moves every map's metric alike. AD, AG and
  AI are not linear in the probability, and the baselines' masks differ from a CAM's, so two
  baselines are used and both are shown;
* ``calibrated``: CA − GAP of the metric on the temperature-scaled probabilities (each model's
  temperature fitted on the validation split), i.e. at matched calibration.

Statistics: every seed is scored on the same images (a crossed design), so the interval and p come
from the crossed random-effects estimator :func:`ca_core.metrics.crossed_test` (seed, image and
residual variance); the p-values of each comparison are Holm-corrected over the family of claim
tests the book shows (every claim x backbone x method of that comparison), and the verdicts use
the corrected p. "CA keeps the accuracy" is an equivalence test (two one-sided tests) within
``eval.equivalence_margin`` points, Holm-corrected within its own family (one per backbone); its
interval is the test's 90 % one.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Iterator

import numpy as np

from ..metrics import crossed_test, equivalence_test, holm, simulate_crossed
from . import paper
from .config import Profile
from .notices import backbone_label
from .report import method_label, sanity_failures
from .runs import Run

ALPHA = 0.05
#: The map-independent baselines the map effect is measured against.
BASELINES = ("random", "centre")


class Verdict(str, Enum):
    """What a test says of a claim (its value is what the book prints)."""

    HOLDS = "holds"
    NOT_SIGNIFICANT = "not significant"
    OPPOSITE = "opposite, significant"
    NOT_SHOWN = "equivalence not shown"

    @property
    def symbol(self) -> str:
        return {"holds": "✓", "opposite, significant": "✗"}.get(self.value, "·")


class Comparison(str, Enum):
    """How CA − GAP is taken (module docstring)."""

    RAW = "raw"
    VS_RANDOM = "vs_random"
    VS_CENTRE = "vs_centre"
    CALIBRATED = "calibrated"

    @property
    def label(self) -> str:
        return {"raw": "Raw CA − GAP", "vs_random": "Map effect (vs random)", "vs_centre": "Map effect (vs centre)",
                "calibrated": "At matched calibration"}[self.value]


@dataclass(frozen=True)
class Outcome:
    """One comparison of a claim (its outcome): CA − GAP (points) with its 95 % interval, raw and Holm p, verdict."""

    diff: float
    lo: float
    hi: float
    p: float
    se: float
    df: float
    detectable: float
    p_holm: float = float("nan")
    verdict: Verdict = Verdict.NOT_SIGNIFICANT

    def as_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "ci": [self.lo, self.hi], "p": self.p, "p_holm": self.p_holm,
                "verdict": self.verdict.value, "se": self.se, "df": self.df, "detectable": self.detectable}


@dataclass(frozen=True)
class ClaimTest:
    """A claim of the paper on one backbone and method (``method`` None: accuracy), every comparison."""

    claim: str
    kind: str
    metric: str
    backbone: str
    method: str | None
    direction: str
    n_images: int
    n_seeds: int
    paper_diff: float | None
    tests: dict[Comparison, Outcome] = field(default_factory=dict)
    variance: dict[str, float] = field(default_factory=dict)

    @property
    def baseline(self) -> bool:
        """A baseline map's own row (shown beside the CAMs, outside the claim families)."""
        return self.method in BASELINES

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "ClaimTest":
        """The inverse of :meth:`as_dict`: a test as ``results.json`` records it (another run's, a reference's)."""
        tests = {c: Outcome(diff=o["diff"], lo=o["ci"][0], hi=o["ci"][1], p=o["p"], se=o["se"], df=o["df"],
                            detectable=o["detectable"], p_holm=o["p_holm"], verdict=Verdict(o["verdict"]))
                 for c in Comparison for o in [record.get(c.value)] if o is not None}
        return cls(claim=record["claim"], kind=record["kind"], metric=record["metric"], backbone=record["backbone"],
                   method=record["method"], direction=record["direction"], n_images=record["n_images"],
                   n_seeds=record["n_seeds"], paper_diff=record["paper_diff"], tests=tests,
                   variance=record.get("variance", {}))

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "kind": self.kind, "metric": self.metric, "backbone": self.backbone,
                "method": self.method, "direction": self.direction, "n_images": self.n_images,
                "n_seeds": self.n_seeds, "paper_diff": self.paper_diff, "baseline": self.baseline,
                "variance": self.variance, **{c.value: t.as_dict() for c, t in self.tests.items()}}


def _verdict(kind: str, direction: str, test: Outcome, p: float) -> Verdict:
    """The verdict of a difference test at corrected p: better, worse or neither in the metric's direction."""
    significant = p < ALPHA
    up, down = significant and test.lo > 0, significant and test.hi < 0
    better, worse = (up, down) if direction == "up" else (down, up)
    wanted, opposite = (better, worse) if kind == "improves" else (worse, better)
    return Verdict.HOLDS if wanted else Verdict.OPPOSITE if opposite else Verdict.NOT_SIGNIFICANT


def _test(diffs: np.ndarray) -> tuple[Outcome, dict[str, float]]:
    r = crossed_test(diffs)
    variance = {"seed": r.var_seed, "image": r.var_image, "noise": r.var_noise}
    return Outcome(r.diff, r.lo, r.hi, r.p, r.se, r.df, r.detectable), variance


def _matrix(run: Run, backbone: str, method: str, metric: str, seeds: list[int], n: int) -> np.ndarray:
    """(seeds, images): CA − GAP per seed and image, the first ``n`` images (checked to be the same
    images in every model, explaining the same classes when they are the labels; with
    ``eval.targets: predicted`` each model explains its own prediction)."""
    gap = run.results(backbone, "gap", method)
    rows = []
    for s in seeds:
        ca = run.results(backbone, "ca", method, s)
        for name in ("index", "target") if run.profile.labelled else ("index",):
            if not np.array_equal(ca[name][:n], gap[name][:n]):
                raise ValueError(f"{backbone} {method}: the CA stream of seed {s} was evaluated on other images or "
                                 f"classes ({name}) than GAP; evaluate the run again")
        rows.append(ca[metric][:n] - gap[metric][:n])
    return np.stack(rows)


def _paper_diff(backbone: str, method: str | None, metric: str) -> float | None:
    ref = paper.paper_backbone(backbone)
    if method is None:
        return paper.ACCURACY[ref]["ca"] - paper.ACCURACY[ref]["gap"] if ref else None
    cells = [paper.TABLE1.get((ref, method, p)) for p in ("gap", "ca")]
    return cells[1][metric] - cells[0][metric] if all(cells) else None


def _metric_claim(run: Run, text: str, kind: str, metric: str, backbone: str, method: str) -> ClaimTest:
    """A metric claim on one method: raw, against each evaluated baseline, and calibrated."""
    baselines = [b for b in BASELINES if b in run.profile.eval.methods and b != method]
    seeds = [s for s in run.evaluated_seeds(method) if all(s in run.evaluated_seeds(b) for b in baselines)]
    if len(seeds) < len(run.evaluated_seeds(method)):
        warnings.warn(f"{method} on {backbone}: the baselines are not evaluated on every seed, so its claims use seeds "
                      f"{seeds} only; add {', '.join(baselines)} to eval.extra_seed_methods", stacklevel=2)
    n = min(len(run.results(backbone, "gap", m)["label"]) for m in (method, *baselines))
    calibrated = f"{metric}_cal" in run.results(backbone, "gap", method)
    tests, variance = comparisons(
        _matrix(run, backbone, method, metric, seeds, n),
        {b: _matrix(run, backbone, b, metric, seeds, n) for b in baselines},
        _matrix(run, backbone, method, f"{metric}_cal", seeds, n) if calibrated else None)
    return ClaimTest(text, kind, metric, backbone, method, paper.METRICS[metric], n, len(seeds),
                     _paper_diff(backbone, method, metric), tests, variance)


def comparisons(raw: np.ndarray, baselines: dict[str, np.ndarray], calibrated: np.ndarray | None = None
                ) -> tuple[dict[Comparison, Outcome], dict[str, float]]:
    """Every comparison of one claim from (seeds, images) matrices of CA − GAP: of the method
    (``raw``), of each baseline map (``baselines``: ``"random"``/``"centre"`` -> matrix) and of the
    method on calibrated probabilities; plus the raw design's variance components.

    The map effect is ``raw - baselines[b]`` image by image and seed by seed: a change of the
    model's confidence that moves every map's metric alike cancels out of it.
    """
    tests, variance = {}, {}
    tests[Comparison.RAW], variance = _test(raw)
    for base, comparison in zip(BASELINES, (Comparison.VS_RANDOM, Comparison.VS_CENTRE)):
        if base in baselines:
            tests[comparison], _ = _test(raw - baselines[base])
    if calibrated is not None:
        tests[Comparison.CALIBRATED], _ = _test(calibrated)
    return tests, variance


def _accuracy_claim(run: Run, text: str, kind: str, backbone: str) -> ClaimTest:
    """"CA keeps the accuracy": a difference test and the equivalence test within the margin."""
    profile = run.profile
    gap = run.predictions(backbone, "gap")["correct"]
    diffs = np.stack([run.predictions(backbone, "ca", s)["correct"] - gap for s in profile.seeds])
    test, variance = _test(diffs)
    eq = equivalence_test(diffs, profile.eval.equivalence_margin)
    equivalence = Outcome(eq.diff, eq.lo, eq.hi, eq.p, test.se, test.df, test.detectable)
    return ClaimTest(text, kind, "accuracy", backbone, None, "up", len(gap), len(profile.seeds),
                     _paper_diff(backbone, None, "accuracy"), {Comparison.RAW: equivalence}, variance)


def _cases(profile: Profile) -> Iterator[tuple[str, str, str | None, str, str | None]]:
    """(claim, kind, metric, backbone, method) of every test: the paper's CAMs, then the baselines' own rows."""
    methods = [m for m in profile.eval.methods if m in paper.PAPER_CAMS or m in BASELINES]
    for backbone in profile.models:
        for text, kind, metric in paper.CLAIMS:
            if metric is None and profile.labelled:
                yield text, kind, None, backbone, None
            elif metric is not None and any(m in paper.PAPER_CAMS for m in methods):
                for method in methods:
                    yield text, kind, metric, backbone, method


def claim_tests(run: Run) -> list[ClaimTest]:
    """Every claim x backbone x method (the paper's CAMs, then the baselines' own rows), each
    comparison with its Holm-corrected p and verdict (module docstring), from the run's results."""
    tests = [_accuracy_claim(run, text, kind, backbone) if metric is None
             else _metric_claim(run, text, kind, metric, backbone, method)
             for text, kind, metric, backbone, method in _cases(run.profile)]
    return correct(tests, run.profile.eval.equivalence_margin)


def correct(tests: list[ClaimTest], margin: float) -> list[ClaimTest]:
    """Holm's correction per comparison over the claim tests (baseline rows apart), and the verdicts."""
    out = list(tests)
    for comparison in Comparison:
        # families: the maps' claims, the accuracy equivalence tests, the baselines' own rows
        for family in ("claims", "accuracy", "baselines"):
            members = [i for i, t in enumerate(out) if comparison in t.tests and _family(t) == family]
            adjusted = holm([out[i].tests[comparison].p for i in members]) if members else []
            for i, p in zip(members, adjusted):
                t = out[i].tests[comparison]
                verdict = (_accuracy_verdict(t, float(p), margin) if out[i].metric == "accuracy"
                           else _verdict(out[i].kind, out[i].direction, t, float(p)))
                out[i] = replace(out[i], tests={**out[i].tests,
                                                comparison: replace(t, p_holm=float(p), verdict=verdict)})
    return out


def _family(test: ClaimTest) -> str:
    """The Holm family of a claim test (:func:`correct`)."""
    return "baselines" if test.baseline else "accuracy" if test.metric == "accuracy" else "claims"


def _accuracy_verdict(test: Outcome, p_holm: float, margin: float) -> Verdict:
    """Holds when the equivalence test shows |CA − GAP| < margin; opposite when the whole interval
    lies below −margin; otherwise equivalence is not shown."""
    if p_holm < ALPHA:
        return Verdict.HOLDS
    return Verdict.OPPOSITE if test.hi < -margin else Verdict.NOT_SHOWN


# ---------------------------------------------------------------------------------------------
# Tables and the findings


def _cell(test: Outcome | None) -> str:
    """``"+1.36 ±1.16 p=.012 ✓"``: difference, half-width of its (symmetric) interval, Holm p, verdict."""
    if test is None:
        return "–"
    p = f"{test.p_holm:.3f}".removeprefix("0")
    return f"{test.diff:+.2f}\u00a0±{(test.hi - test.lo) / 2:.2f} p={p}\u00a0{test.verdict.symbol}"


def claims_table(run: Run, tests: list[ClaimTest]) -> list[dict[str, Any]]:
    """One row per claim x backbone x method: every comparison's cell (:func:`_cell`), the smallest
    difference the raw design detects (80 % power) and the paper's CA − GAP."""
    failures = sanity_failures(run)
    return [{
        "Claim": short_claim(t), "Backbone": backbone_label(run, t.backbone),
        "Method": method_label(t.backbone, t.method, None, failures) if t.method else "–",
        **{c.label: _cell(t.tests.get(c)) for c in Comparison},
        "Detectable": f"{t.tests[Comparison.RAW].detectable:.2f}", "Paper CA − GAP": t.paper_diff,
    } for t in tests]


def short_claim(test: ClaimTest) -> str:
    """``"AG↑ improves"``, ``"D↓ worse"``, ``"accuracy kept"``: a claim in a table cell."""
    return f"{paper.METRIC_LABELS.get(test.metric, test.metric)} {test.kind}"


def _count(tests: list[ClaimTest], comparison: Comparison) -> str:
    """``"holds 1/3, opposite 1"`` over the tests of one comparison."""
    verdicts = [t.tests[comparison].verdict for t in tests if comparison in t.tests]
    if not verdicts:
        return "–"
    opposite = verdicts.count(Verdict.OPPOSITE)
    return f"holds {verdicts.count(Verdict.HOLDS)}/{len(verdicts)}" + (f", opposite {opposite}" if opposite else "")


def verdict_table(run: Run, tests: list[ClaimTest]) -> list[dict[str, Any]]:
    """The headline: per claim, backbone and comparison, for how many CAM methods the claim holds
    (and is significantly the opposite), Holm-corrected."""
    return verdicts_beside({backbone_label(run, b): [t for t in tests if t.backbone == b] for b in run.profile.models})


def verdicts_beside(runs: dict[str, list[ClaimTest]]) -> list[dict[str, Any]]:
    """Per claim, then per run (``{label: its tests}``, e.g. one backbone of this run and another
    profile's backbones), for how many CAM methods the claim holds in each comparison."""
    rows = []
    for text, _, _ in paper.CLAIMS:
        for label, tests in runs.items():
            group = [t for t in tests if t.claim == text and not t.baseline]
            if group:
                rows.append({"Claim": text, "Backbone": label, **{c.label: _count(group, c) for c in Comparison}})
    return rows


def findings(profile: Profile, tests: list[ClaimTest]) -> str:
    """"What this reproduction found": one short Markdown paragraph per claim, per backbone for how
    many of the paper's CAMs it holds raw, as a map effect and at matched calibration (Holm-corrected)."""
    lines = []
    for text, kind, metric in paper.CLAIMS:
        parts = []
        for backbone in profile.models:
            group = [t for t in tests if t.claim == text and t.backbone == backbone and not t.baseline]
            if not group:
                continue
            if metric is None:
                t = group[0].tests[Comparison.RAW]
                parts.append(f"`{backbone}`: {t.diff:+.2f} points, 90 % interval [{t.lo:+.2f}, {t.hi:+.2f}], "
                             f"{t.verdict.value} (margin ±{profile.eval.equivalence_margin:g})")
            else:
                parts.append(f"`{backbone}`: raw {_count(group, Comparison.RAW)} · map effect "
                             f"{_count(group, Comparison.VS_RANDOM)} (vs random), "
                             f"{_count(group, Comparison.VS_CENTRE)} (vs centre) · "
                             f"calibrated {_count(group, Comparison.CALIBRATED)}")
        if parts:
            lines.append(f"**{text}.** " + "; ".join(parts) + ".")
    return "\n\n".join(lines)


def coverage_table(tests: list[ClaimTest], n_rep: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Whether the crossed test keeps its level on this run's own designs: per raw claim test, the
    variance components it measured (seed : image : noise, relative to the image's), and the coverage
    of its 95 % interval and its size at 5 % on ``n_rep`` synthetic designs drawn with those
    components at the run's seeds and images (:func:`ca_core.metrics.simulate_crossed`)."""
    rows = []
    for t in tests:
        v = t.variance
        if t.baseline or t.n_seeds < 2 or not np.isfinite([v["seed"], v["image"], v["noise"]]).all():
            continue
        coverage, size = simulate_crossed(t.n_seeds, t.n_images, v["seed"], v["image"], v["noise"], n_rep=n_rep,
                                          seed=seed)
        scale = v["image"] if v["image"] > 0 else 1.0
        rows.append({"Claim": short_claim(t), "Backbone": t.backbone,
                     "Method": paper.METHOD_LABELS[t.method] if t.method else "–",
                     "Seed : image : noise": (f"{v['seed'] / scale:.3g} : {v['image'] / scale:.3g} : "
                                              f"{v['noise'] / scale:.3g}"),
                     "Seeds x images": f"{t.n_seeds} x {t.n_images}",
                     "Coverage of the 95 % interval": f"{coverage:.3f}",
                     "Size at 5 %": f"{size:.3f}"})
    return rows
