"""Tests of the crossed seeds x images statistics in ca_core.metrics.stats: simulated coverage and
size of crossed_test (and the undercoverage of the nested bootstrap it replaces), Holm's correction,
the equivalence test, the one-seed case against scipy's t-tests, and input errors."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from ca_core.metrics.stats import (
    crossed_test, equivalence_test, holm, simulate_crossed, variance_ratios,
)

# (var_seed, var_image, var_noise) per image; only the ratios matter. The mean's variance is
# var_seed / S + var_image / I + var_noise / (S I): with S = 3, I = 500 the seed part is
# (a) 3 % of the image part, (b) equal to it, (c) 170 times it.
IMAGE_DOMINANT = (0.0002, 1.0, 0.1)
SEED_LIKE_IMAGE = (0.006, 1.0, 1.0)
SEED_DOMINANT = (1.0, 1.0, 1.0)


def crossed(rng: np.random.Generator, variances: tuple[float, float, float], effect: float = 0.0,
            seeds: int = 3, images: int = 500) -> np.ndarray:
    """One synthetic (seeds, images) design: seed effect + image effect shared by the seeds + noise."""
    sd = np.sqrt(variances)
    return (effect + sd[0] * rng.standard_normal((seeds, 1)) + sd[1] * rng.standard_normal(images)
            + sd[2] * rng.standard_normal((seeds, images)))


@pytest.mark.parametrize("variances", [IMAGE_DOMINANT, SEED_LIKE_IMAGE, SEED_DOMINANT, (0.006, 1.0, 10.0)])
@pytest.mark.parametrize("images", [500, 200])
def test_crossed_interval_has_its_nominal_coverage_and_size(variances, images):
    coverage, size = simulate_crossed(3, images, *variances, n_rep=4000, seed=1)
    assert 0.93 <= coverage <= 0.97
    assert 0.03 <= size <= 0.07


def test_coverage_holds_for_a_nonzero_effect():
    coverage, power = simulate_crossed(3, 500, *SEED_LIKE_IMAGE, effect=0.5, n_rep=4000, seed=2)
    assert 0.93 <= coverage <= 0.97 and power > 0.98


def test_a_true_difference_of_detectable_is_found_with_80_percent_power():
    """Where images dominate: detectable is a little above (1.96 + 0.84) se (Cochran-Cox gives the
    seed term its 2 df), and a true difference of that size is detected about 80 % of the time."""
    var_seed, var_image, var_noise = IMAGE_DOMINANT
    se = np.sqrt(var_seed / 3 + var_image / 500 + var_noise / 1500)
    detectable = np.median([crossed_test(crossed(np.random.default_rng(k), IMAGE_DOMINANT)).detectable / 100
                            for k in range(20)])
    assert 2.8 * se <= detectable <= 1.12 * 2.8 * se
    _, power = simulate_crossed(3, 500, *IMAGE_DOMINANT, effect=detectable, n_rep=4000, seed=4)
    assert 0.75 <= power <= 0.9


@pytest.mark.parametrize("share", [0.7, 0.9, 0.97])
def test_no_coverage_dip_when_seeds_carry_most_of_the_variance(share):
    """Satterthwaite's single df covers only 92 % here (2 seed df, estimated df run high when MS_seed
    is small by chance); Cochran and Cox's critical value keeps the nominal coverage."""
    var_seed = 3 * (share / (1 - share)) * (1 / 500 + 1 / 1500)  # seed part / rest of Var(m) = share / (1 - share)
    coverage, size = simulate_crossed(3, 500, var_seed, 1.0, 1.0, n_rep=4000, seed=5)
    assert 0.93 <= coverage <= 0.97 and 0.03 <= size <= 0.07


def nested_bootstrap(design: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """The design this replaces: resample seeds, then each drawn seed's images independently (as
    though every seed had its own images); 95 % percentile interval in points."""
    s, i = design.shape
    seeds = rng.integers(0, s, size=(n_boot, s))
    images = rng.integers(0, i, size=(n_boot, s, i))
    means = design[seeds[..., None], images].mean(axis=(1, 2))
    return tuple(100 * np.percentile(means, [2.5, 97.5]))


def test_nested_bootstrap_undercovers_when_images_dominate():
    rng = np.random.default_rng(6)
    nested = crossed_hits = 0
    for k in range(200):  # the same designs for both tests
        design = crossed(rng, IMAGE_DOMINANT, effect=0.1)
        (lo, hi), r = nested_bootstrap(design, 200, rng), crossed_test(design)
        nested += lo <= 10.0 <= hi
        crossed_hits += r.lo <= 10.0 <= r.hi
    assert nested / 200 < 0.85 and crossed_hits / 200 >= 0.9  # about 0.77 and 0.93


def test_crossed_test_estimates_the_variance_components_in_points():
    rng = np.random.default_rng(7)
    sd_seed, sd_image, sd_noise = 0.03, 0.1, 0.05
    d = (0.02 + sd_seed * rng.standard_normal((40, 1)) + sd_image * rng.standard_normal(2000)
         + sd_noise * rng.standard_normal((40, 2000)))
    r = crossed_test(d)
    assert (r.n_seeds, r.n_images) == (40, 2000)
    assert r.var_seed == pytest.approx(1e4 * sd_seed ** 2, rel=0.35)
    assert r.var_image == pytest.approx(1e4 * sd_image ** 2, rel=0.1)
    assert r.var_noise == pytest.approx(1e4 * sd_noise ** 2, rel=0.02)
    expected_se = 100 * np.sqrt(sd_seed ** 2 / 40 + sd_image ** 2 / 2000 + sd_noise ** 2 / 80000)
    assert r.se == pytest.approx(expected_se, rel=0.15)
    assert r.lo < r.diff < r.hi and r.diff == pytest.approx(100 * d.mean())
    q = (r.hi - r.diff) / r.se  # Cochran-Cox: between the t quantiles of the seed and the image df
    assert r.hi - r.diff == pytest.approx(r.diff - r.lo)
    assert scipy.stats.t.ppf(0.975, 1999) <= q <= scipy.stats.t.ppf(0.975, 39)
    ratios = variance_ratios(d)
    assert ratios == pytest.approx({"seed_to_image": r.var_seed / r.var_image,
                                    "noise_to_image": r.var_noise / r.var_image})


def test_crossed_p_matches_the_interval():
    """p is the alpha whose interval just reaches 0: shifting the data so that its 95 % interval ends
    at 0 gives p = 0.05 (a shift moves neither se nor the critical value)."""
    d = crossed(np.random.default_rng(8), SEED_LIKE_IMAGE, effect=0.09)
    r = crossed_test(d)
    assert (r.p < 0.05) == (r.lo > 0 or r.hi < 0)
    assert crossed_test(d - r.lo / 100).p == pytest.approx(0.05, rel=1e-6)
    assert crossed_test(d - r.hi / 100).p == pytest.approx(0.05, rel=1e-6)
    narrow = crossed_test(crossed(np.random.default_rng(8), SEED_LIKE_IMAGE, effect=0.09), alpha=0.2)
    assert narrow.lo > r.lo and narrow.p == r.p


def test_image_effect_shared_by_seeds_is_not_divided_by_the_seeds():
    """Identical rows (no seed effect, no noise): the mean varies as one seed's over I images."""
    row = np.random.default_rng(9).normal(0.01, 0.1, 300)
    r = crossed_test(np.tile(row, (3, 1)))
    assert r.se == pytest.approx(100 * row.std(ddof=1) / np.sqrt(300))
    assert r.df == pytest.approx(299) and r.var_seed == pytest.approx(0, abs=1e-20)
    assert r.var_noise == pytest.approx(0, abs=1e-20)


@pytest.mark.parametrize("shape", ["1-D", "one row", "tensor"])
def test_one_seed_is_the_paired_t_test(shape):
    rng = np.random.default_rng(10)
    gap, ca = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
    diff = ca - gap + 0.03
    given = {"1-D": diff, "one row": diff[None], "tensor": torch.tensor(diff)}[shape]
    r = crossed_test(given)
    assert r.p == pytest.approx(scipy.stats.ttest_rel(ca + 0.03, gap).pvalue, rel=1e-9)
    assert r.p == pytest.approx(scipy.stats.ttest_1samp(diff, 0).pvalue, rel=1e-9)
    assert r.df == 199 and r.n_seeds == 1 and np.isnan(r.var_seed) and np.isnan(r.var_noise)
    assert np.isnan(variance_ratios(given)["seed_to_image"])


def test_constant_differences_give_a_degenerate_interval():
    zero, one = crossed_test(np.zeros((3, 10))), crossed_test(np.ones((3, 10)))
    assert (zero.diff, zero.lo, zero.hi, zero.p, zero.se) == (0, 0, 0, 1, 0)
    assert (one.diff, one.lo, one.hi, one.p, one.detectable) == (100, 100, 100, 0, 0)


@pytest.mark.parametrize("diffs, message", [
    ([[0.1, 0.2], [0.3]], "same images"),
    (np.zeros((3, 1)), "at least 2 images"),
    (np.zeros((2, 3, 4)), "shape"),
    ([[0.1, float("nan")], [0.1, 0.2]], r"NaN or inf at \(seed, image\) \[\[0, 1\]\]"),
])
def test_bad_diffs_get_a_clear_error(diffs, message):
    with pytest.raises(ValueError, match=message):
        crossed_test(diffs)


def test_holm_textbook_case_order_and_cap():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, 0.3, 0.9]) == pytest.approx([0.6, 0.6, 0.9])  # 3 x 0.2, 2 x 0.3, 1 x 0.9
    assert holm([0.4, 0.45]) == pytest.approx([0.8, 0.8])  # 0.45 alone would be below 2 x 0.4: monotone
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 2 x 0.6, capped
    assert holm([0.2]) == pytest.approx([0.2]) and holm([]).size == 0
    p = np.random.default_rng(11).uniform(0, 0.1, 20)
    adjusted = holm(p)
    assert (adjusted >= p).all() and (np.diff(adjusted[np.argsort(p)]) >= 0).all()
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        holm([0.1, 1.5])


def test_equivalence_declared_for_no_difference_not_for_three_points():
    rng = np.random.default_rng(12)
    tight = (0.0, 0.0025, 0.0025)  # image and noise sd 5 points, no seed effect
    same = equivalence_test(crossed(rng, tight, images=5000), margin=1.0)
    assert same.equivalent and same.p < 0.05 and -1 < same.lo <= same.diff <= same.hi < 1
    apart = equivalence_test(crossed(rng, tight, effect=0.03, images=5000), margin=1.0)
    assert not apart.equivalent and apart.p > 0.5 and apart.margin == 1.0


def test_equivalence_not_declared_when_a_noisy_design_cannot_tell():
    diffs = crossed(np.random.default_rng(13), (0.001, 0.1, 0.5))  # seed sd ~3 points over S = 3
    crossed_result, result = crossed_test(diffs), equivalence_test(diffs, margin=1.0)
    assert not result.equivalent and (result.lo < -1 or result.hi > 1)
    assert crossed_result.p > 0.05  # not different either: absence of evidence, not equivalence
    # the TOST p is the larger one-sided p: 0.05 exactly when the 90 % interval's far end is the margin
    far = max(-result.lo, result.hi)
    edge = equivalence_test(diffs, margin=far)
    assert edge.p == pytest.approx(0.05, rel=1e-6) and edge.lo == pytest.approx(result.lo)
    with pytest.raises(ValueError, match="margin"):
        equivalence_test(diffs, margin=0.0)


def test_equivalence_on_accuracy_within_one_point():
    """0/1 accuracy per image: CA seeds that agree with GAP except on a few images either way."""
    rng = np.random.default_rng(14)
    flips = rng.choice([-1.0, 0.0, 1.0], p=[0.01, 0.98, 0.01], size=(3, 5000))
    assert equivalence_test(flips, margin=1.0).equivalent
    assert equivalence_test(np.zeros((3, 100)), margin=1.0).equivalent  # identical predictions
