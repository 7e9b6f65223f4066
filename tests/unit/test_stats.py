"""evalkit.stats against published values and independent implementations (scipy, statsmodels, by hand)."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from evalkit.stats import (adjusted_p_values, holm, macro_ci, mean_ci, minimal_detectable_effect, paired_delta,
                           violation_p_value)

Z = sps.norm.ppf(0.975)


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


def test_stratified_binary_is_wilson_at_the_effective_sample_size():
    """Korn and Graubard (1998) with Wilson's interval: n* = p(1-p)/SE^2 * (z / t_df)^2, with Cochran's SE and
    the Satterthwaite df of sum_h a_h s_h^2 (a_h = W_h^2 / n_h, each s_h^2 on n_h - 1 df), written out."""
    rng = np.random.default_rng(7)
    sizes = [13, 20, 7, 30, 10]
    strata = np.repeat(["algebra", "anatomy", "law", "virology", "marketing"], sizes)
    values = (rng.random(strata.size) < np.repeat([0.2, 0.5, 0.9, 0.3, 0.6], sizes)).astype(float)
    est = mean_ci(values, strata=strata)
    se = stratified_se(values, strata)
    blocks = [values[strata == h] for h in np.unique(strata)]
    parts = [(x.size / values.size) ** 2 * np.var(x, ddof=1) / x.size for x in blocks]
    df = sum(parts) ** 2 / sum(part ** 2 / (x.size - 1) for part, x in zip(parts, blocks))
    n_star = values.mean() * (1 - values.mean()) / se ** 2 * (Z / sps.t.ppf(0.975, df)) ** 2
    assert est.method == "stratified-wilson" and est.n_strata == 5
    assert est.se == pytest.approx(se, rel=1e-12) and est.df == pytest.approx(df) and est.n_effective == pytest.approx(n_star)
    assert (est.lo, est.hi) == pytest.approx(proportion_confint(values.mean() * n_star, n_star, method="wilson"))


def test_stratified_continuous_scores_use_the_stratified_t_interval():
    values = np.array([0.1, 0.3, 0.2, 0.9, 0.8, 0.7, 0.75, 0.5, 0.55])
    strata = np.array(list("aaabbbccc"))
    est = mean_ci(values, strata)
    half = sps.t.ppf(0.975, 6) * stratified_se(values, strata)
    assert est.method == "stratified-t" and est.df == 6
    assert (est.lo, est.hi) == pytest.approx((values.mean() - half, values.mean() + half))


def test_two_strata_do_not_give_one_degree_of_freedom():
    """The issue's case: 202 questions from two subjects got [0, 93] % from a subject-clustered t with 1 df."""
    values = [1] * 10 + [0] * 90 + [1] * 44 + [0] * 58  # 10 % and 43 % right in two subjects
    est = mean_ci(values, ["abstract_algebra"] * 100 + ["college_physics"] * 102)
    assert est.n_strata == 2 and est.hi - est.lo < 0.13


def test_strata_of_different_difficulty_narrow_the_interval():
    """Two subjects the model finds easy, two it finds hard: stratification removes that variation from
    the SE and from the interval (the Wilson floor that used to hide it made intervals up to 2.3x too wide)."""
    values = [1] * 18 + [0] * 2 + [1] * 17 + [0] * 3 + [0] * 18 + [1] * 2 + [0] * 19 + [1] * 1
    strata = [s for s in "abcd" for _ in range(20)]
    est, wilson = mean_ci(values, strata), mean_ci(values)
    assert est.se < 0.7 * wilson.se
    assert est.hi - est.lo < 0.75 * (wilson.hi - wilson.lo)


@pytest.mark.parametrize("strata", [["law"] * 4, ["law", "law", "law", "art"]])
def test_one_stratum_or_a_single_item_stratum_falls_back_to_unstratified(strata):
    est = mean_ci([1, 0, 1, 1], strata=strata)
    assert est.n_strata is None and est.method == "wilson"


def test_no_variation_gives_zero_width_stratified_interval_for_non_binary_scores():
    est = mean_ci([0.5] * 6, strata=list("aabbcc"))
    assert (est.mean, est.se, est.lo, est.hi) == (0.5, 0.0, 0.5, 0.5)


def test_strata_without_variation_keep_a_real_interval():
    """Every answer wrong in every subject, or one subject all wrong and one all right: the stratified SE is
    0 and the stratified t interval was [0, 0]; nothing is credited (Wilson at n)."""
    for values in ([0, 0, 0, 0], [0, 0, 1, 1]):
        est = mean_ci(values, strata=["algebra", "algebra", "law", "law"])
        assert est.method == "stratified-wilson" and est.se == 0.0 and est.n_effective == 4
        assert (est.lo, est.hi) == (mean_ci(values).lo, mean_ci(values).hi)


def test_few_varying_strata_widen_the_interval():
    """One varying subject of two questions: its SE rests on one degree of freedom, so the effective sample
    size shrinks by (z / t_1)^2 and the interval nearly spans [0, 1] (the stratified t part alone covered
    19 % on two subjects of two questions at 5 %)."""
    est = mean_ci([1, 0, 0, 0], strata=["algebra", "algebra", "law", "law"])
    assert est.df == pytest.approx(1.0) and est.n_effective < 0.1 and est.hi - est.lo > 0.9


def test_macro_is_the_mean_of_stratum_means_with_equal_weights():
    strata = np.repeat(["a", "b", "c"], [10, 40, 20])
    values = np.r_[np.ones(8), np.zeros(2), np.ones(10), np.zeros(30), np.ones(10), np.zeros(10)]
    est = macro_ci(values, strata)
    assert est.mean == pytest.approx((0.8 + 0.25 + 0.5) / 3)
    assert est.se == pytest.approx(stratified_se(values, strata, equal_weights=True))
    assert est.method == "stratified-wilson" and est.lo < est.mean < est.hi
    # A stratum of one item: its variance is unknown, so the stratum means are the sample.
    single = macro_ci([1, 0, 1, 1, 0], ["a", "a", "b", "b", "c"])
    assert single.mean == pytest.approx((0.5 + 1 + 0) / 3) and single.n == 3 and single.method == "t"


def table(b: int, c: int, n: int, both_right: int = 0) -> tuple[list[int], list[int]]:
    """Paired 0/1 scores with b items right -> wrong, c wrong -> right, the rest unchanged."""
    rest = n - b - c - both_right
    return [1] * both_right + [1] * b + [0] * c + [0] * rest, [1] * both_right + [0] * b + [1] * c + [0] * rest


def tango_z(b: int, c: int, n: int, delta: float) -> float:
    """Tango's (1998) score statistic for a paired difference of proportions, with the restricted maximum
    likelihood estimate found by a bounded scalar optimiser instead of the closed form: the rates
    (q_b, q_c = q_b + delta) maximising the trinomial likelihood of (b, c, n - b - c)."""
    def negative_log_likelihood(q_b: float) -> float:
        q_c = q_b + delta
        return -(b * math.log(max(q_b, 1e-300)) + c * math.log(max(q_c, 1e-300))
                 + (n - b - c) * math.log(max(1 - q_b - q_c, 1e-300)))
    q_b = optimize.minimize_scalar(negative_log_likelihood, bounds=(max(0, -delta), (1 - delta) / 2),
                                   method="bounded", options={"xatol": 1e-13}).x
    return (c - b - n * delta) / math.sqrt(n * (2 * q_b + delta - delta ** 2))


def test_paired_unstratified_binary_is_tangos_score_interval_and_test():
    # Agresti (2002) presidential approval: 794 both yes, 150 yes->no, 86 no->yes, 570 both no.
    base, other = table(150, 86, 1600, both_right=794)
    result = paired_delta(base, other)
    assert (result.b, result.c, result.n) == (150, 86, 1600)
    assert result.delta == pytest.approx((86 - 150) / 1600)
    assert result.test == "Tango score"
    # At 0 the score test is McNemar's asymptotic test (no continuity correction).
    assert result.p_value == pytest.approx(mcnemar([[794, 150], [86, 570]], exact=False, correction=False).pvalue,
                                           rel=1e-9)
    assert tango_z(150, 86, 1600, result.lo) == pytest.approx(Z, abs=1e-6)
    assert tango_z(150, 86, 1600, result.hi) == pytest.approx(-Z, abs=1e-6)
    # With this many items the method hardly matters: the plain paired t interval agrees closely.
    ref = sps.ttest_1samp(np.subtract(other, base), 0.0).confidence_interval(0.95)
    assert (result.lo, result.hi) == pytest.approx((ref.low, ref.high), abs=1e-3)


@pytest.mark.parametrize(("b", "c", "n"), [(0, 5, 50), (3, 9, 40), (7, 2, 12), (0, 1, 3)])
def test_tango_bounds_are_the_roots_of_the_score_statistic(b, c, n):
    result = paired_delta(*table(b, c, n))
    assert tango_z(b, c, n, result.lo) == pytest.approx(Z, abs=1e-6)
    assert tango_z(b, c, n, result.hi) == pytest.approx(-Z, abs=1e-6)


@pytest.mark.parametrize(("b", "c", "n", "lo", "hi"), [
    (0, 0, 17, -Z ** 2 / (17 + Z ** 2), Z ** 2 / (17 + Z ** 2)),  # no change: Wilson's bound for 0 of n, both ways
    # Every item gained: the score statistic is sqrt(n (1 - d) / (1 + d)), so lo = (n - z^2) / (n + z^2).
    (0, 20, 20, (20 - Z ** 2) / (20 + Z ** 2), 1.0),
    (20, 0, 20, -1.0, -(20 - Z ** 2) / (20 + Z ** 2)),
    (0, 1, 1, (1 - Z ** 2) / (1 + Z ** 2), 1.0),
])
def test_paired_degenerate_tables_keep_a_real_interval(b, c, n, lo, hi):
    result = paired_delta(*table(b, c, n))
    assert (result.lo, result.hi) == pytest.approx((lo, hi), abs=1e-9)
    assert result.p_value == (1.0 if b == c else pytest.approx(2 * sps.norm.sf(math.sqrt(b + c))))


@pytest.mark.parametrize("n", [50, 100, 200, 1000])
def test_paired_p_value_agrees_with_the_interval_on_every_small_table(n):
    """The issue's audit: with the Agresti-Min CI and the exact McNemar p, 122 of these 3,440 tables
    disagreed (n=50, b=0, c=5: [+0.76, +18.47] pp beside p=0.062). Both now come from one score statistic."""
    for b in range(41):
        for c in range(41 - b):
            result = paired_delta(*table(b, c, n))
            assert (result.p_value < 0.05) == (result.lo > 0 or result.hi < 0), (b, c, n, result)


def exact_coverage(n: int, p_b: float, p_c: float) -> float:
    """P(the interval covers p_c - p_b) over every table with non-negligible probability (the rest counts
    as not covered)."""
    covered = 0.0
    for b in range(min(n, 60) + 1):
        for c in range(min(n - b, 60) + 1):
            probability = sps.multinomial.pmf([b, c, n - b - c], n, [p_b, p_c, 1 - p_b - p_c])
            if probability > 1e-10:
                result = paired_delta(*table(b, c, n))
                covered += probability * (result.lo <= p_c - p_b <= result.hi)
    return covered


@pytest.mark.parametrize(("n", "p_b", "p_c"), [(100, 0.02, 0.0), (200, 0.02, 0.0), (100, 0.0225, 0.0025),
                                               (50, 0.1, 0.0), (400, 0.0, 0.01)])
def test_paired_interval_keeps_coverage_when_few_items_change_one_way(n, p_b, p_c):
    """An adapter that only breaks things: Agresti-Min covered 86.6 %, 90.8 % and 89.6 % in the first three."""
    assert exact_coverage(n, p_b, p_c) >= 0.93


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
    tango = paired_delta(base, other)
    # The interval is the union of the stratified t and Tango intervals, so the p-value is the larger of
    # the two tests' p-values: "p < 0.05" and "the CI excludes 0" agree.
    assert result.p_value == pytest.approx(max(2 * sps.t.sf(abs(result.delta) / result.se, 96), tango.p_value))
    half = sps.t.ppf(0.975, 96) * result.se
    assert (result.lo, result.hi) == pytest.approx((min(diff.mean() - half, tango.lo), max(diff.mean() + half, tango.hi)))
    assert result.score_se == pytest.approx(tango.se)


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
    ([1] * 30 + [0] * 70, ["a", "b", "c", "d"] * 25),  # stratified 0/1: Wilson at the effective sample size
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


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjusted_p_values_match_statsmodels(method, monkeypatch):
    """Own Holm and scipy's BH instead of statsmodels' multipletests, which runs gc.collect() on every call
    (switched off here, so the reference is quick)."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(2)
    for size in [1, 2, 3, 5, 8, 57]:
        for _ in range(20):
            p = rng.random(size) ** 3
            p[rng.random(size) < 0.2] = p[0]  # ties
            assert adjusted_p_values(list(p), method) == pytest.approx(multipletests(p, method=method)[1], abs=1e-15)
    with_nan = adjusted_p_values([0.01, math.nan, 0.04], method)
    assert math.isnan(with_nan[1]) and with_nan[::2] == pytest.approx(multipletests([0.01, 0.04], method=method)[1])
    with pytest.raises(ValueError, match="method must be one of"):
        adjusted_p_values([0.1], "bonferroni")


def test_holm_does_not_collect_garbage(monkeypatch):
    """Gates are judged per round or per checkpoint: 50 ms of gc.collect() per call added up."""
    monkeypatch.setattr(gc, "collect", lambda *args: pytest.fail("gc.collect() called"))
    assert holm([0.01, 0.02]) == pytest.approx([0.02, 0.02])
    assert adjusted_p_values([0.01, 0.02], "fdr_bh") == pytest.approx([0.02, 0.02])


def test_minimal_detectable_effect():
    # Normal approximation, alpha 0.05 two-sided, power 0.8: (1.959964 + 0.841621) * SE.
    assert minimal_detectable_effect(0.01) == pytest.approx(0.0280159, rel=1e-5)
    assert minimal_detectable_effect(0.01, df=4) > minimal_detectable_effect(0.01)
