"""evalkit.stats against published values and independent implementations (scipy, statsmodels, by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from evalkit.stats import holm, macro_ci, mean_ci, minimal_detectable_effect, paired_delta, violation_p_value


def stratified_se(values: np.ndarray, strata: np.ndarray, equal_weights: bool = False) -> float:
    """Cochran (1977), Sampling Techniques, eq. 5.6 without the finite-population factor, written out:
    sqrt(sum_h W_h^2 s_h^2 / n_h), W_h = n_h / n (or 1 / H for the mean of the stratum means)."""
    labels = np.unique(strata)
    total = 0.0
    for label in labels:
        x = values[strata == label]
        weight = 1 / len(labels) if equal_weights else x.size / values.size
        total += weight ** 2 * np.var(x, ddof=1) / x.size
    return math.sqrt(total)


@pytest.mark.parametrize(
    ("successes", "n", "lo", "hi"),
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score interval without continuity correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_unstratified_binary_uses_wilson_interval(successes, n, lo, hi):
    est = mean_ci([1] * successes + [0] * (n - successes))
    assert est.method == "wilson"
    assert est.mean == pytest.approx(successes / n)
    assert (est.lo, est.hi) == pytest.approx((lo, hi), abs=6e-5)
    assert est.n == n and est.n_strata is None


def test_unstratified_continuous_is_student_t():
    values = [0.2, 0.9, 0.4, 0.7, 0.5, 0.1]
    est = mean_ci(values, confidence=0.9)
    ref = sps.ttest_1samp(values, 0.0).confidence_interval(0.9)
    assert est.method == "t" and est.df == 5
    assert (est.lo, est.hi) == pytest.approx((ref.low, ref.high))
    assert est.se == pytest.approx(np.std(values, ddof=1) / math.sqrt(6))


def test_stratified_se_is_cochrans_formula():
    rng = np.random.default_rng(7)
    strata = np.repeat(["algebra", "anatomy", "law", "virology", "marketing"], [13, 20, 7, 30, 10])
    values = rng.integers(0, 2, strata.size).astype(float)
    est = mean_ci(values, strata=strata)
    assert est.method == "stratified-t" and est.n_strata == 5 and est.df == 80 - 5
    assert est.se == pytest.approx(stratified_se(values, strata), rel=1e-12)
    half = sps.t.ppf(0.975, 75) * est.se
    wilson = mean_ci(values)
    assert (est.lo, est.hi) == pytest.approx((min(values.mean() - half, wilson.lo), max(values.mean() + half, wilson.hi)))


def test_stratified_continuous_scores_use_the_stratified_t_interval():
    values = np.array([0.1, 0.3, 0.2, 0.9, 0.8, 0.7, 0.75, 0.5, 0.55])
    strata = np.array(list("aaabbbccc"))
    est = mean_ci(values, strata)
    half = sps.t.ppf(0.975, 6) * stratified_se(values, strata)
    assert not est.wilson_floor and (est.lo, est.hi) == pytest.approx((values.mean() - half, values.mean() + half))


def test_two_strata_do_not_give_one_degree_of_freedom():
    """The issue's case: 202 questions from two subjects got [0, 93] % from a subject-clustered t with 1 df."""
    values = [1] * 10 + [0] * 90 + [1] * 44 + [0] * 58  # 10 % and 43 % right in two subjects
    est = mean_ci(values, ["abstract_algebra"] * 100 + ["college_physics"] * 102)
    assert est.df == 200 and est.hi - est.lo < 0.13


def test_strata_of_different_difficulty_narrow_the_interval_to_at_least_wilson():
    # Two subjects the model finds easy, two it finds hard: stratification removes that variation from
    # the SE, and the 0/1 interval stays at least as wide as Wilson's.
    values = [1] * 18 + [0] * 2 + [1] * 17 + [0] * 3 + [0] * 18 + [1] * 2 + [0] * 19 + [1] * 1
    strata = [s for s in "abcd" for _ in range(20)]
    est = mean_ci(values, strata)
    assert est.se < 0.7 * mean_ci(values).se
    assert (est.lo, est.hi) == pytest.approx((mean_ci(values).lo, mean_ci(values).hi))


@pytest.mark.parametrize("strata", [["law"] * 4, ["law", "law", "law", "art"]])
def test_one_stratum_or_a_single_item_stratum_falls_back_to_unstratified(strata):
    est = mean_ci([1, 0, 1, 1], strata=strata)
    assert est.n_strata is None and est.method == "wilson"


def test_no_variation_gives_zero_width_stratified_interval_for_non_binary_scores():
    est = mean_ci([0.5] * 6, strata=list("aabbcc"))
    assert (est.mean, est.se, est.lo, est.hi) == (0.5, 0.0, 0.5, 0.5)


def test_stratified_binary_interval_is_never_narrower_than_wilson():
    none_right = mean_ci([0, 0, 0, 0], strata=["algebra", "algebra", "law", "law"])
    wilson = mean_ci([0, 0, 0, 0])
    assert none_right.method == "stratified-t" and none_right.wilson_floor and none_right.se == 0.0
    assert (none_right.lo, none_right.hi) == (wilson.lo, wilson.hi)


def test_macro_is_the_mean_of_stratum_means_with_equal_weights():
    strata = np.repeat(["a", "b", "c"], [10, 40, 20])
    values = np.r_[np.ones(8), np.zeros(2), np.ones(10), np.zeros(30), np.ones(10), np.zeros(10)]
    est = macro_ci(values, strata)
    assert est.mean == pytest.approx((0.8 + 0.25 + 0.5) / 3)
    assert est.se == pytest.approx(stratified_se(values, strata, equal_weights=True)) and est.df == 67
    # A stratum of one item: its variance is unknown, so the stratum means are the sample.
    single = macro_ci([1, 0, 1, 1, 0], ["a", "a", "b", "b", "c"])
    assert single.mean == pytest.approx((0.5 + 1 + 0) / 3) and single.n == 3 and single.method == "t"


def agresti_min(b: int, c: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Agresti & Min (2005), Stat. Med. 24:729: the paired Wald interval with 0.5 added to every cell."""
    b, c, n = b + 0.5, c + 0.5, n + 2
    center = (c - b) / n
    half = z * math.sqrt((b + c) - (c - b) ** 2 / n) / n
    return center - half, center + half


def test_paired_unstratified_binary_uses_agresti_min_and_exact_mcnemar():
    # Agresti (2002) presidential approval: 794 both yes, 150 yes->no, 86 no->yes, 570 both no.
    base = [1] * 794 + [1] * 150 + [0] * 86 + [0] * 570
    other = [1] * 794 + [0] * 150 + [1] * 86 + [0] * 570
    result = paired_delta(base, other)
    assert (result.b, result.c, result.n) == (150, 86, 1600)
    assert result.delta == pytest.approx((86 - 150) / 1600)
    assert result.test == "exact McNemar"
    assert result.p_value == pytest.approx(mcnemar([[794, 150], [86, 570]], exact=True).pvalue, rel=1e-9)
    assert (result.lo, result.hi) == pytest.approx(agresti_min(150, 86, 1600))
    # With this many items the adjustment hardly matters: the plain paired Wald/t interval agrees closely.
    ref = sps.ttest_1samp(np.subtract(other, base), 0.0).confidence_interval(0.95)
    assert (result.lo, result.hi) == pytest.approx((ref.low, ref.high), abs=1e-3)


def test_paired_without_discordant_pairs_keeps_a_real_interval():
    result = paired_delta([1, 0, 1] + [0] * 14, [1, 0, 1] + [0] * 14)
    assert (result.delta, result.p_value, result.b, result.c) == (0.0, 1.0, 0, 0)
    assert (result.lo, result.hi) == pytest.approx(agresti_min(0, 0, 17))
    assert result.hi > 0.1  # the plain Wald interval would be [0, 0]


def test_paired_continuous_matches_scipy_ttest_rel():
    base, other = [0.1, 0.5, 0.3, 0.8, 0.2], [0.3, 0.4, 0.6, 0.9, 0.5]
    result = paired_delta(base, other)
    ref = sps.ttest_rel(other, base)
    assert result.test == "paired t"
    assert result.p_value == pytest.approx(ref.pvalue)
    assert (result.lo, result.hi) == pytest.approx(tuple(ref.confidence_interval(0.95)))


def test_paired_stratified_is_the_stratified_mean_of_differences():
    rng = np.random.default_rng(3)
    strata = np.repeat(["s1", "s2", "s3", "s4"], 25)
    base = rng.integers(0, 2, 100)
    other = np.where(rng.random(100) < 0.8, base, 1 - base)
    result = paired_delta(base, other, strata=strata)
    diff = (other - base).astype(float)
    assert result.delta == pytest.approx(diff.mean())
    assert result.se == pytest.approx(stratified_se(diff, strata))
    assert result.test == "paired t (stratified SE)" and result.n_strata == 4 and result.df == 96
    b, c = int(np.sum((base == 1) & (other == 0))), int(np.sum((base == 0) & (other == 1)))
    center, se_am = (c - b) / 102, math.sqrt(b + c + 1 - (c - b) ** 2 / 102) / 102
    # The interval is the union of the stratified t and Agresti-Min intervals, so the p-value is the
    # larger of the two tests' p-values: "p < 0.05" and "the CI excludes 0" agree.
    assert result.p_value == pytest.approx(max(2 * sps.t.sf(abs(result.delta) / result.se, 96),
                                               2 * sps.norm.sf(abs(center) / se_am)))
    half = sps.t.ppf(0.975, 96) * result.se
    am_lo, am_hi = agresti_min(b, c, 100)
    assert (result.lo, result.hi) == pytest.approx((min(diff.mean() - half, am_lo), max(diff.mean() + half, am_hi)))


def test_paired_tighter_than_unpaired_on_correlated_scores():
    rng = np.random.default_rng(11)
    base = rng.integers(0, 2, 400)
    other = np.where(rng.random(400) < 0.9, base, 1 - base)  # 90 % of answers unchanged
    paired_half = (paired_delta(base, other).hi - paired_delta(base, other).lo) / 2
    unpaired_se = math.hypot(mean_ci(base).se, mean_ci(other).se)
    assert paired_half < 1.96 * unpaired_se / 2


def test_mismatched_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="pair the same items"):
        paired_delta([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="one stratum label per value"):
        mean_ci([1, 0, 1], strata=["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])


@pytest.mark.parametrize(("values", "strata"), [
    ([1] * 30 + [0] * 70, None),
    ([0.3, 0.5, 0.1, 0.9, 0.4, 0.2, 0.6], None),
    ([1] * 30 + [0] * 70, ["a", "b", "c", "d"] * 25),  # stratified 0/1: the union of stratified-t and Wilson
    ([1] * 12 + [0] * 18 + [1] * 3 + [0] * 27, ["a"] * 30 + ["b"] * 30),
])
@pytest.mark.parametrize("direction", [">=", "<="])
def test_violation_p_value_agrees_with_the_interval(values, strata, direction):
    est = mean_ci(values, strata)
    for threshold in np.linspace(0.01, 0.99, 99):
        ci_says_violated = est.hi < threshold if direction == ">=" else est.lo > threshold
        assert (violation_p_value(est, threshold, direction) < 0.025) == ci_says_violated, threshold


@pytest.mark.parametrize("stratified", [False, True])
def test_violation_p_value_for_paired_delta_agrees_with_its_interval(stratified):
    rng = np.random.default_rng(5)
    strata = np.repeat(list("abcdef"), 30) if stratified else None
    base = rng.integers(0, 2, 180)
    other = np.where(rng.random(180) < 0.7, base, 1 - base)
    result = paired_delta(base, other, strata=strata)
    for margin in np.linspace(-0.3, 0.3, 61):
        assert (violation_p_value(result, margin, ">=") < 0.025) == (result.hi < margin)
        assert (violation_p_value(result, margin, "<=") < 0.025) == (result.lo > margin)


def test_holm_matches_textbook_example():
    # Sorted p: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []


def test_minimal_detectable_effect():
    # Normal approximation, alpha 0.05 two-sided, power 0.8: (1.959964 + 0.841621) * SE.
    assert minimal_detectable_effect(0.01) == pytest.approx(0.0280159, rel=1e-5)
    assert minimal_detectable_effect(0.01, df=4) > minimal_detectable_effect(0.01)
