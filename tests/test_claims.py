"""The claim tests: the map effect removes a confidence change, Holm's correction sets the verdicts,
and "keeps the accuracy" is an equivalence test."""
from __future__ import annotations

import numpy as np
import pytest

from ca_core.repro.claims import ClaimTest, Comparison, Outcome, Verdict, comparisons, correct


def confidence_shift_case(seeds: int = 3, images: int = 400, seed: int = 0):
    """GAP and CA metric values of a CAM and of the random map, where CA differs from GAP only by a
    per-image confidence shift that moves every map's metric alike (plus small noise)."""
    rng = np.random.default_rng(seed)
    shift = 0.05 + 0.02 * rng.standard_normal(images)            # CA is more confident on every image
    seed_shift = 0.01 * rng.standard_normal((seeds, 1))           # and each training seed a bit more or less
    noise = lambda: 0.01 * rng.standard_normal((seeds, images))  # noqa: E731
    raw = shift + seed_shift + noise()           # CA − GAP of the CAM
    random_map = shift + seed_shift + noise()    # CA − GAP of the random map: the same shift
    return raw, random_map


def test_the_map_effect_removes_a_confidence_shift_that_the_raw_difference_reports():
    raw, random_map = confidence_shift_case()
    tests, variance = comparisons(raw, {"random": random_map})
    assert tests[Comparison.RAW].lo > 2.0  # points: the raw CA − GAP is clearly positive
    effect = tests[Comparison.VS_RANDOM]
    assert abs(effect.diff) < 0.3 and effect.lo < 0 < effect.hi
    assert set(variance) == {"seed", "image", "noise"}


def test_a_real_map_effect_survives_the_adjustment():
    raw, random_map = confidence_shift_case(seed=1)
    tests, _ = comparisons(raw + 0.03, {"random": random_map})  # the CAM gains 3 points beyond the shift
    assert 2.0 < tests[Comparison.VS_RANDOM].lo and tests[Comparison.VS_RANDOM].hi < 4.0


def claim(p: float, diff: float = 1.0, metric: str = "ag", method: str | None = "gradcam", kind: str = "improves",
          direction: str = "up") -> ClaimTest:
    test = Outcome(diff=diff, lo=diff - 0.5, hi=diff + 0.5, p=p, se=0.25, df=10.0, detectable=0.7)
    return ClaimTest("c", kind, metric, "b", method, direction, 100, 3, None, {Comparison.RAW: test})


def test_holm_corrects_each_family_and_sets_the_verdicts():
    tests = correct([claim(0.01), claim(0.04), claim(0.03), claim(0.005)], margin=1.0)
    p_holm = [t.tests[Comparison.RAW].p_holm for t in tests]
    np.testing.assert_allclose(p_holm, [0.03, 0.06, 0.06, 0.02])
    assert [t.tests[Comparison.RAW].verdict for t in tests] == [Verdict.HOLDS, Verdict.NOT_SIGNIFICANT,
                                                              Verdict.NOT_SIGNIFICANT, Verdict.HOLDS]


def test_baseline_rows_are_a_family_of_their_own():
    tests = correct([claim(0.01), claim(0.01, method="random")], margin=1.0)
    assert [t.tests[Comparison.RAW].p_holm for t in tests] == [0.01, 0.01]


@pytest.mark.parametrize("kind, direction, diff, verdict", [
    ("improves", "up", 1.0, Verdict.HOLDS), ("improves", "up", -1.0, Verdict.OPPOSITE),
    ("improves", "down", -1.0, Verdict.HOLDS), ("worse", "down", 1.0, Verdict.HOLDS),
    ("worse", "down", -1.0, Verdict.OPPOSITE),
])
def test_the_verdict_follows_the_claimed_direction(kind, direction, diff, verdict):
    (t,) = correct([claim(0.001, diff=diff, kind=kind, direction=direction)], margin=1.0)
    assert t.tests[Comparison.RAW].verdict is verdict


def test_accuracy_holds_only_when_equivalence_is_shown():
    shown, not_shown, lower = correct([claim(0.01, diff=0.1, metric="accuracy", method=None, kind="kept"),
                                       claim(0.4, diff=-0.6, metric="accuracy", method=None, kind="kept"),
                                       claim(0.9, diff=-3.0, metric="accuracy", method=None, kind="kept")], margin=1.0)
    assert shown.tests[Comparison.RAW].verdict is Verdict.HOLDS
    assert not_shown.tests[Comparison.RAW].verdict is Verdict.NOT_SHOWN
    assert lower.tests[Comparison.RAW].verdict is Verdict.OPPOSITE


def test_a_recorded_claim_test_reads_back_equal_and_counts_beside_another_run():
    """``results.json`` records (a reference run's) read back into equal :class:`ClaimTest` records, and
    :func:`verdicts_beside` counts each run's verdicts per claim."""
    from ca_core.repro import paper
    from ca_core.repro.claims import verdicts_beside

    text, kind, metric = next(c for c in paper.CLAIMS if c[2] is not None)
    tests = correct([ClaimTest(text, kind, metric, "b", m, "up", 100, 3, None,
                               {Comparison.RAW: Outcome(d, d - 0.5, d + 0.5, p, 0.2, 10, 0.6)})
                     for m, d, p in (("gradcam", 1.0, 0.001), ("gradcampp", -1.0, 0.001), ("scorecam", 0.1, 0.6))],
                    margin=1.0)
    assert [ClaimTest.from_dict(t.as_dict()) for t in tests] == tests
    rows = verdicts_beside({"here": tests, "there": tests[:1]})
    raw = Comparison.RAW.label
    assert [(r["Backbone"], r[raw]) for r in rows] == [("here", "holds 1/3, opposite 1"), ("there", "holds 1/1")]
