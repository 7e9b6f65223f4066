"""Error bars and paired comparisons for eval scores, after Miller (2024), "Adding Error Bars to Evals".

Why these choices (each a library routine, wrapped so every report and gate uses the same rules):

- **One score** (:func:`mean_ci`). Unclustered 0/1 scores get the Wilson score interval (statsmodels
  ``proportion_confint``): the Wald interval collapses to a point at 0 % or 100 % accuracy, which a
  135M model does reach on small samples. Other unclustered scores get the Student-t interval. When
  items share a source (MMLU: the subject) the SE is cluster-robust, exactly Miller's
  ``sqrt(C/(C-1) * sum_c (sum_{i in c} (x_i - mean))^2) / n`` (statsmodels OLS on a constant with
  ``cov_type="cluster"``), and the interval uses t with C-1 degrees of freedom, because CI samples
  often have only a handful of subjects and a normal quantile would overstate the certainty. For 0/1
  scores the clustered interval is never narrower than the Wilson interval (a design effect below 1 is
  not credited, as survey practice does): without that floor, 0 of 4 correct across two subjects would
  get the zero-width interval [0, 0].
- **Two variants on the same items** (:func:`paired_delta`): the per-item difference
  ``d_i = other_i - base_i``, far tighter than comparing two independent CIs. Unclustered 0/1 scores get
  the Agresti-Min (2005) interval, the paired Wald interval after adding 0.5 to each cell of the 2x2
  table (the plain Wald interval has zero width when no item changed), and the exact McNemar p-value
  (scipy ``binomtest`` on the discordant counts b, c). Clustered scores get the cluster-robust paired t
  interval and test (for 0/1 scores never narrower than Agresti-Min's, as for single scores); other
  unclustered scores the paired t interval and test. A paired cluster bootstrap was rejected: with the few subjects
  of a CI sample it has few distinct resamples, and it needs a seed, while the analytic SE is
  deterministic (so serial and pytest-xdist runs agree to the last digit).
- **Gates** judge a figure against a threshold with a one-sided test at the CI's level
  (:func:`violation_p_value`); without correction, "the p-value is below (1 - confidence) / 2" is the
  same decision as "the whole 95 % CI lies on the wrong side". :func:`holm` adjusts several gates at once.
- **Power** (:func:`minimal_detectable_effect`): the smallest true difference a test at this SE detects
  with the given power, ``(q_{1-alpha/2} + q_power) * SE``, to warn when a gate's margin is finer than
  the sample can resolve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Direction = Literal[">=", "<="]


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and confidence interval.

    ``method`` is ``wilson`` (unclustered 0/1), ``t`` (unclustered, other values) or ``cluster-t``;
    ``df`` is the t distribution's degrees of freedom (None for Wilson, which is a normal-theory score
    interval). ``n_clusters`` is None when no clustering was applied. ``wilson_floor`` marks a clustered
    0/1 estimate whose interval is the union of the cluster-t and the Wilson intervals (``se`` stays
    the cluster-robust SE).
    """

    mean: float
    se: float
    lo: float
    hi: float
    n: int
    n_clusters: int | None
    method: str
    df: float | None
    confidence: float
    wilson_floor: bool = False


@dataclass(frozen=True)
class PairedDelta:
    """``mean(other - base)`` over the same items, with its paired CI and test.

    ``b`` counts items the base got right and the other variant wrong, ``c`` the reverse (both 0 when
    the scores are not all 0/1). ``test`` names the p-value's test. ``adjusted`` is the Agresti-Min
    (center, SE) for 0/1 scores, which the CI is built from (with clusters: its union with cluster-t).
    """

    delta: float
    se: float
    lo: float
    hi: float
    n: int
    n_clusters: int | None
    p_value: float
    b: int
    c: int
    test: str
    df: float | None
    confidence: float
    adjusted: tuple[float, float] | None = None


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D sequence of numbers, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values; score every item before aggregating.")
    return array


def _is_binary(array: np.ndarray) -> bool:
    return bool(np.all((array == 0) | (array == 1)))


def _cluster_codes(clusters: Sequence[object] | None, n: int) -> np.ndarray | None:
    """Integer codes for the clusters, or None when clustering does not apply (absent or a single cluster)."""
    if clusters is None:
        return None
    if len(clusters) != n:
        raise ValueError(f"clusters: {len(clusters)} labels for {n} values; give one cluster label per value.")
    _, codes = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return codes if codes.max() >= 1 else None


def _mean_se_df(array: np.ndarray, codes: np.ndarray | None) -> tuple[float, float, float]:
    """(mean, SE, t degrees of freedom): cluster-robust (df = C-1) or the plain sd/sqrt(n) (df = n-1)."""
    mean = float(array.mean())
    if codes is None:
        if array.size < 2:
            return mean, math.nan, math.nan
        return mean, float(array.std(ddof=1) / math.sqrt(array.size)), float(array.size - 1)
    import statsmodels.api as sm

    if np.all(array == array[0]):  # no variation: statsmodels would divide 0 by 0
        return mean, 0.0, float(codes.max())
    fit = sm.OLS(array, np.ones(array.size)).fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)
    return mean, float(fit.bse[0]), float(codes.max())  # codes.max() = C - 1


def _t_quantile(confidence: float, df: float) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, df)) if df > 0 else math.nan


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}.")


def mean_ci(values: Sequence[float], clusters: Sequence[object] | None = None, confidence: float = 0.95) -> Estimate:
    """Mean of per-item scores with its SE and CI (Wilson, t, or cluster-robust t; see the module docstring)."""
    _check_confidence(confidence)
    array = _as_array(values, "values")
    codes = _cluster_codes(clusters, array.size)
    n_clusters = None if codes is None else int(codes.max()) + 1
    if codes is None and _is_binary(array):
        from statsmodels.stats.proportion import proportion_confint

        count, n = int(array.sum()), array.size
        lo, hi = proportion_confint(count, n, alpha=1 - confidence, method="wilson")
        mean = count / n
        return Estimate(mean, math.sqrt(mean * (1 - mean) / n), float(lo), float(hi), n, None, "wilson", None, confidence)
    mean, se, df = _mean_se_df(array, codes)
    half = _t_quantile(confidence, df) * se
    lo, hi = mean - half, mean + half
    if codes is not None and _is_binary(array):
        wilson = mean_ci(array, None, confidence)
        return Estimate(mean, se, max(0.0, min(lo, wilson.lo)), min(1.0, max(hi, wilson.hi)),
                        array.size, n_clusters, "cluster-t", df, confidence, wilson_floor=True)
    return Estimate(mean, se, lo, hi, array.size, n_clusters, "t" if codes is None else "cluster-t", df, confidence)


def paired_delta(
    base: Sequence[float],
    other: Sequence[float],
    clusters: Sequence[object] | None = None,
    confidence: float = 0.95,
) -> PairedDelta:
    """``other - base`` on the same items (same order), with a paired CI and p-value (module docstring)."""
    _check_confidence(confidence)
    base_a, other_a = _as_array(base, "base"), _as_array(other, "other")
    if base_a.size != other_a.size:
        raise ValueError(f"paired_delta: base has {base_a.size} items and other {other_a.size}; "
                         "pair the same items in the same order.")
    codes = _cluster_codes(clusters, base_a.size)
    n_clusters = None if codes is None else int(codes.max()) + 1
    diff = other_a - base_a
    delta, se, df = _mean_se_df(diff, codes)
    half = _t_quantile(confidence, df) * se
    lo, hi = delta - half, delta + half
    if not (_is_binary(base_a) and _is_binary(other_a)):
        test = "paired t (cluster-robust SE)" if codes is not None else "paired t"
        return PairedDelta(delta, se, lo, hi, base_a.size, n_clusters, _two_sided_t_p(delta, se, df), 0, 0, test,
                           df, confidence)
    b = int(np.sum((base_a == 1) & (other_a == 0)))
    c = int(np.sum((base_a == 0) & (other_a == 1)))
    center, se_adjusted = _agresti_min(b, c, base_a.size)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    if codes is None:
        test, df, se = "exact McNemar", None, se_adjusted
        lo, hi = center - z * se_adjusted, center + z * se_adjusted
        p_value = float(sps.binomtest(c, b + c, 0.5).pvalue) if b + c else 1.0
    else:
        test, p_value = "paired t (cluster-robust SE)", _two_sided_t_p(delta, se, df)
        lo, hi = min(lo, center - z * se_adjusted), max(hi, center + z * se_adjusted)
    # A difference of two proportions lies in [-1, 1].
    return PairedDelta(delta, se, max(-1.0, lo), min(1.0, hi), base_a.size, n_clusters, p_value, b, c, test, df,
                       confidence, adjusted=(center, se_adjusted))


def _agresti_min(b: int, c: int, n: int) -> tuple[float, float]:
    """Center and SE of the Agresti-Min (2005) interval for a paired difference of proportions: the Wald
    interval after adding 0.5 to each of the four cells (b, c are the discordant counts)."""
    b_, c_, n_ = b + 0.5, c + 0.5, n + 2.0
    return (c_ - b_) / n_, math.sqrt(b_ + c_ - (c_ - b_) ** 2 / n_) / n_


def _two_sided_t_p(estimate: float, se: float, df: float) -> float:
    if math.isnan(se):
        return math.nan
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * sps.t.sf(abs(estimate) / se, df))


def violation_p_value(figure: Estimate | PairedDelta, threshold: float, direction: Direction) -> float:
    """One-sided p-value for "the true value violates ``value <direction> threshold``".

    Small means strong evidence of a violation. At level ``(1 - confidence) / 2`` this is the same
    decision as the CI lying wholly on the wrong side: for a Wilson estimate it is the score test that
    the Wilson interval inverts, for an unclustered 0/1 delta the Wald test of the Agresti-Min interval,
    otherwise the t test that the t interval inverts (for clustered 0/1 figures, the larger of the two
    p-values, as their interval is the union of both).
    """
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}.")
    point = figure.delta if isinstance(figure, PairedDelta) else figure.mean
    sign = 1.0 if direction == ">=" else -1.0  # z > 0: the estimate sits on the passing side, so p > 0.5
    violated = point < threshold if direction == ">=" else point > threshold
    if isinstance(figure, Estimate) and figure.method == "wilson":
        return _wilson_violation_p(point, threshold, figure.n, sign, violated)
    adjusted = None
    if isinstance(figure, PairedDelta) and figure.adjusted is not None:
        center, se_adjusted = figure.adjusted
        adjusted = float(sps.norm.cdf(sign * (center - threshold) / se_adjusted))
        if figure.n_clusters is None:
            return adjusted
    if math.isnan(figure.se):
        return math.nan
    p = (0.0 if violated else 1.0) if figure.se == 0 else float(sps.t.cdf(sign * (point - threshold) / figure.se, figure.df))
    if isinstance(figure, Estimate) and figure.wilson_floor:  # a union of two intervals: both must show it
        return max(p, _wilson_violation_p(point, threshold, figure.n, sign, violated))
    return p if adjusted is None else max(p, adjusted)


def _wilson_violation_p(point: float, threshold: float, n: int, sign: float, violated: bool) -> float:
    """The one-sided score test that the Wilson interval inverts."""
    if not 0 < threshold < 1:  # a proportion cannot sit strictly beyond 0 or 1
        return 0.0 if violated else 1.0
    return float(sps.norm.cdf(sign * (point - threshold) / math.sqrt(threshold * (1 - threshold) / n)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels ``multipletests``), for judging several gates at once."""
    return adjusted_p_values(p_values, "holm")


def adjusted_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """p-values adjusted by statsmodels ``multipletests`` (``holm``, ``fdr_bh``, ...); NaN stays NaN and
    is not counted as a test."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    values = np.asarray(p_values, dtype=float)
    known = ~np.isnan(values)
    adjusted = np.full(values.shape, math.nan)
    if known.any():
        adjusted[known] = multipletests(values[known], method=method)[1]
    return adjusted.tolist()


def minimal_detectable_effect(se: float, df: float | None = None, confidence: float = 0.95, power: float = 0.8) -> float:
    """Smallest true difference that a two-sided test at ``confidence`` detects with probability ``power``.

    ``(q_{1-alpha/2} + q_power) * SE`` with normal quantiles, or t quantiles when ``df`` is given. A gate
    whose margin is smaller than this cannot reliably catch a regression of the margin's size.
    """
    _check_confidence(confidence)
    if not 0 < power < 1:
        raise ValueError(f"power must be between 0 and 1 (e.g. 0.8), got {power}.")
    dist = sps.norm if df is None else sps.t(df)
    return float((dist.ppf(0.5 + confidence / 2) + dist.ppf(power)) * se)
