"""The book's figures drawn from typed records: what a reader must be able to see in them."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from ca_core.repro import figures  # noqa: E402
from ca_core.repro.claims import ClaimTest, Comparison, Outcome  # noqa: E402


def _test(method: str, lo: float, hi: float) -> ClaimTest:
    outcome = Outcome(diff=(lo + hi) / 2, lo=lo, hi=hi, p=0.5, se=1.0, df=10.0, detectable=3.0)
    return ClaimTest(claim="c", kind="improves", metric="AD", backbone="b", method=method, direction="down",
                     n_images=24, n_seeds=3, paper_diff=None, tests={Comparison.RAW: outcome})


def test_forest_panel_keeps_narrow_intervals_readable_and_marks_a_far_wider_one():
    """A method scored on two images (an interval of ±600 points) must not squeeze the others to dots:
    the axis spans the ordinary intervals, and the wide one runs past both edges with an arrow each."""
    tests = [_test("gradcam", -3, 5), _test("gradcampp", -4, 2), _test("scorecam", -600, 620)]
    fig = figures.forest_plot(tests, {}, comparisons=("raw",))
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert -10 < lo < -4 and 5 < hi < 10
    arrows = [line.get_marker() for line in ax.lines if line.get_marker() in ("<", ">")]
    assert sorted(arrows) == ["<", ">"]


def test_forest_panel_shows_every_interval_whole_when_none_is_far_wider():
    tests = [_test("gradcam", -3, 5), _test("gradcampp", -9, 12)]
    ax = figures.forest_plot(tests, {}, comparisons=("raw",)).axes[0]
    lo, hi = ax.get_xlim()
    assert lo < -9 and hi > 12
    assert not [line for line in ax.lines if line.get_marker() in ("<", ">")]
