"""evalkit.stats against published values and independent implementations (scipy, statsmodels, by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from evalkit.stats import holm, mean_ci, minimal_detectable_effect, paired_delta, violation_p_value


def miller_clustered_se(values: np.ndarray, clusters: np.ndarray) -> float:
    """Miller (2024) eq. for the cluster-robust SE of a mean, written out."""
    n, labels = values.size, np.unique(clusters)
    total = sum((values[clusters == c] - values.mean()).sum() ** 2 for c in labels)
    return math.sqrt(len(labels) / (len(labels) - 1) * total) / n


@pytest.mark.parametrize(
    ("successes", "n", "lo", "hi"),
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score interval without continuity correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_unclustered_binary_uses_wilson_interval(successes, n, lo, hi):
    est = mean_ci([1] * successes + [0] * (n - successes))
    assert est.method == "wilson"
    assert est.mean == pytest.approx(successes / n)
    assert (est.lo, est.hi) == pytest.approx((lo, hi), abs=6e-5)
    assert est.n == n and est.n_clusters is None


def test_unclustered_continuous_is_student_t():
    values = [0.2, 0.9, 0.4, 0.7, 0.5, 0.1]
    est = mean_ci(values, confidence=0.9)
    ref = sps.ttest_1samp(values, 0.0).confidence_interval(0.9)
    assert est.method == "t" and est.df == 5
    assert (est.lo, est.hi) == pytest.approx((ref.low, ref.high))
    assert est.se == pytest.approx(np.std(values, ddof=1) / math.sqrt(6))


def test_clustered_se_is_millers_formula():
    rng = np.random.default_rng(7)
    clusters = np.repeat(["algebra", "anatomy", "law", "virology", "marketing"], [13, 20, 7, 30, 10])
    values = rng.integers(0, 2, clusters.size).astype(float)
    est = mean_ci(values, clusters=clusters)
    assert est.method == "cluster-t" and est.n_clusters == 5 and est.df == 4
    assert est.se == pytest.approx(miller_clustered_se(values, clusters), rel=1e-12)
    half = sps.t.ppf(0.975, 4) * est.se
    assert (est.lo, est.hi) == pytest.approx((values.mean() - half, values.mean() + half))


def test_clustering_widens_the_interval_when_clusters_differ():
    # Two subjects the model finds easy, two it finds hard: items within a subject are correlated.
    values = [1] * 18 + [0] * 2 + [1] * 17 + [0] * 3 + [0] * 18 + [1] * 2 + [0] * 19 + [1] * 1
    clusters = [s for s in "abcd" for _ in range(20)]
    assert mean_ci(values, clusters).se > 2 * mean_ci(values).se


def test_single_cluster_falls_back_to_unclustered():
    est = mean_ci([1, 0, 1, 1], clusters=["law"] * 4)
    assert est.n_clusters is None and est.method == "wilson"


def test_no_variation_gives_zero_width_clustered_interval_for_non_binary_scores():
    est = mean_ci([0.5] * 6, clusters=list("aabbcc"))
    assert (est.mean, est.se, est.lo, est.hi) == (0.5, 0.0, 0.5, 0.5)


def test_clustered_binary_interval_is_never_narrower_than_wilson():
    none_right = mean_ci([0, 0, 0, 0], clusters=["algebra", "algebra", "law", "law"])
    wilson = mean_ci([0, 0, 0, 0])
    assert none_right.method == "cluster-t" and none_right.wilson_floor and none_right.se == 0.0
    assert (none_right.lo, none_right.hi) == (wilson.lo, wilson.hi)
    rng = np.random.default_rng(2)
    values = rng.integers(0, 2, 60)
    clusters = np.repeat(list("abc"), 20)
    est = mean_ci(values, clusters)
    half = sps.t.ppf(0.975, 2) * miller_clustered_se(values.astype(float), clusters)
    assert est.lo == pytest.approx(max(0.0, min(values.mean() - half, mean_ci(values).lo)))
    assert est.hi == pytest.approx(min(1.0, max(values.mean() + half, mean_ci(values).hi)))


def agresti_min(b: int, c: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Agresti & Min (2005), Stat. Med. 24:729: the paired Wald interval with 0.5 added to every cell."""
    b, c, n = b + 0.5, c + 0.5, n + 2
    center = (c - b) / n
    half = z * math.sqrt((b + c) - (c - b) ** 2 / n) / n
    return center - half, center + half


def test_paired_unclustered_binary_uses_agresti_min_and_exact_mcnemar():
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


def test_paired_clustered_is_the_clustered_mean_of_differences():
    rng = np.random.default_rng(3)
    clusters = np.repeat(["s1", "s2", "s3", "s4"], 25)
    base = rng.integers(0, 2, 100)
    other = np.where(rng.random(100) < 0.8, base, 1 - base)
    result = paired_delta(base, other, clusters=clusters)
    diff = (other - base).astype(float)
    assert result.delta == pytest.approx(diff.mean())
    assert result.se == pytest.approx(miller_clustered_se(diff, clusters))
    assert result.test == "paired t (cluster-robust SE)" and result.n_clusters == 4
    assert result.p_value == pytest.approx(2 * sps.t.sf(abs(result.delta) / result.se, 3))
    half = sps.t.ppf(0.975, 3) * result.se
    b, c = int(np.sum((base == 1) & (other == 0))), int(np.sum((base == 0) & (other == 1)))
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
    with pytest.raises(ValueError, match="one cluster label per value"):
        mean_ci([1, 0, 1], clusters=["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])


@pytest.mark.parametrize(("values", "clusters"), [
    ([1] * 30 + [0] * 70, None),
    ([0.3, 0.5, 0.1, 0.9, 0.4, 0.2, 0.6], None),
    ([1] * 30 + [0] * 70, ["a", "b", "c", "d"] * 25),  # clustered 0/1: the union of cluster-t and Wilson
    ([1] * 12 + [0] * 18 + [1] * 3 + [0] * 27, ["a"] * 30 + ["b"] * 30),
])
@pytest.mark.parametrize("direction", [">=", "<="])
def test_violation_p_value_agrees_with_the_interval(values, clusters, direction):
    est = mean_ci(values, clusters)
    for threshold in np.linspace(0.01, 0.99, 99):
        ci_says_violated = est.hi < threshold if direction == ">=" else est.lo > threshold
        assert (violation_p_value(est, threshold, direction) < 0.025) == ci_says_violated, threshold


@pytest.mark.parametrize("clustered", [False, True])
def test_violation_p_value_for_paired_delta_agrees_with_its_interval(clustered):
    rng = np.random.default_rng(5)
    clusters = np.repeat(list("abcdef"), 30) if clustered else None
    base = rng.integers(0, 2, 180)
    other = np.where(rng.random(180) < 0.7, base, 1 - base)
    result = paired_delta(base, other, clusters=clusters)
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
