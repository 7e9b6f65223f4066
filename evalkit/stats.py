"""Error bars and paired comparisons for eval scores, after Miller (2024), "Adding Error Bars to Evals".

Why these choices (each a library routine, wrapped so every report and gate uses the same rules):

- **One score** (:func:`mean_ci`). Unstratified 0/1 scores get the Wilson score interval (statsmodels
  ``proportion_confint``): the Wald interval collapses to a point at 0 % or 100 % accuracy, which a
  135M model does reach on small samples. Other unstratified scores get the Student-t interval.
- **Strata** (MMLU and multiple-choice files: the subject). The subjects are fixed strata of a fixed test
  set, not a random sample of subjects, so the SE is the stratified one,
  ``sqrt(sum_h (n_h/n)^2 s_h^2 / n_h)`` with ``s_h^2`` the sample variance within stratum h, and the
  interval uses t with ``n - H`` degrees of freedom (H strata). A subject-clustered SE was used before and
  rejected: with the two or three subjects a category has in a small selection it has one or two degrees
  of freedom, and 202 questions got a [0, 93] % interval. When a stratum holds a single item its variance
  cannot be estimated, and the unstratified interval is used (conservative: it also counts the
  variation between strata). For 0/1 scores the stratified interval is never narrower than the Wilson
  interval (a design effect below 1 is not credited, as survey practice does): without that floor, 0 of
  4 correct across two subjects would get the zero-width interval [0, 0].
- **Two variants on the same items** (:func:`paired_delta`): the per-item difference
  ``d_i = other_i - base_i``, far tighter than comparing two independent CIs. Unstratified 0/1 scores get
  the Agresti-Min (2005) interval, the paired Wald interval after adding 0.5 to each cell of the 2x2
  table (the plain Wald interval has zero width when no item changed), and the exact McNemar p-value
  (scipy ``binomtest`` on the discordant counts b, c). Stratified scores get the stratified paired t
  interval and test (for 0/1 scores the interval is the union with Agresti-Min's and the p-value the larger
  of the two tests', so "p < 0.05" and "the CI excludes 0" never disagree); other unstratified scores the
  paired t interval and test. A paired bootstrap was rejected: it needs a seed, while the analytic SE is
  deterministic (so serial and pytest-xdist runs agree to the last digit).
- **Macro** (:func:`macro_ci`): the mean of the stratum means (every subject weighs the same), with the
  stratified SE under equal weights ``sqrt(sum_h s_h^2 / n_h) / H`` and the same rules.
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
from typing import Any, Literal

import numpy as np

Direction = Literal[">=", "<="]


def _sps() -> Any:
    """``scipy.stats``, imported at first use: the plugin imports this module in every pytest session of an
    environment where tradeoff is installed, and importing scipy.stats takes about a second."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and confidence interval.

    ``method`` is ``wilson`` (unstratified 0/1), ``t`` (unstratified, other values) or ``stratified-t``;
    ``df`` is the t distribution's degrees of freedom (None for Wilson, which is a normal-theory score
    interval). ``n_strata`` is None when no stratification was applied. ``wilson_floor`` marks a stratified
    0/1 estimate whose interval is the union of the stratified-t and the Wilson intervals (``se`` stays
    the stratified SE).
    """

    mean: float
    se: float
    lo: float
    hi: float
    n: int
    n_strata: int | None
    method: str
    df: float | None
    confidence: float
    wilson_floor: bool = False


@dataclass(frozen=True)
class PairedDelta:
    """``mean(other - base)`` over the same items, with its paired CI and test.

    ``b`` counts items the base got right and the other variant wrong, ``c`` the reverse (both 0 when
    the scores are not all 0/1). ``test`` names the p-value's test. ``adjusted`` is the Agresti-Min
    (center, SE) for 0/1 scores, which the CI is built from (with strata: its union with stratified-t).
    """

    delta: float
    se: float
    lo: float
    hi: float
    n: int
    n_strata: int | None
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


def _stratum_codes(strata: Sequence[object] | None, n: int) -> np.ndarray | None:
    """Integer codes for the strata, or None when stratification does not apply: absent, a single
    stratum, or a stratum of one item (whose variance cannot be estimated; see the module docstring)."""
    if strata is None:
        return None
    if len(strata) != n:
        raise ValueError(f"strata: {len(strata)} labels for {n} values; give one stratum label per value.")
    _, codes, sizes = np.unique(np.asarray([str(s) for s in strata]), return_inverse=True, return_counts=True)
    return codes if sizes.size >= 2 and sizes.min() >= 2 else None


def _stratified_se(array: np.ndarray, codes: np.ndarray, equal_weights: bool = False) -> tuple[float, float, float]:
    """(mean, SE, t degrees of freedom) of the stratified mean: weights n_h/n (the plain mean) or 1/H
    (the macro mean); df = n - H."""
    sizes = np.bincount(codes).astype(float)
    means = np.bincount(codes, weights=array) / sizes
    within = np.bincount(codes, weights=(array - means[codes]) ** 2) / (sizes - 1)  # s_h^2
    weights = np.full(sizes.size, 1 / sizes.size) if equal_weights else sizes / array.size
    se = math.sqrt(float(np.sum(weights ** 2 * within / sizes)))
    return float(np.sum(weights * means)), se, float(array.size - sizes.size)


def _plain_se(array: np.ndarray) -> tuple[float, float, float]:
    """(mean, sd/sqrt(n), n - 1); the SE is NaN for a single item."""
    if array.size < 2:
        return float(array.mean()), math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(array.size)), float(array.size - 1)


def _t_quantile(confidence: float, df: float) -> float:
    return float(_sps().t.ppf(0.5 + confidence / 2, df)) if df > 0 else math.nan


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}.")


def _wilson(mean: float, n: int, confidence: float) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(mean * n, n, alpha=1 - confidence, method="wilson")
    return float(lo), float(hi)


def _t_estimate(array: np.ndarray, mean: float, se: float, df: float, n_strata: int | None,
                confidence: float) -> Estimate:
    """The t interval, and for stratified 0/1 scores its union with the Wilson interval at the same mean."""
    half = _t_quantile(confidence, df) * se
    lo, hi = mean - half, mean + half
    if n_strata is None:
        return Estimate(mean, se, lo, hi, array.size, None, "t", df, confidence)
    if _is_binary(array):
        wilson_lo, wilson_hi = _wilson(mean, array.size, confidence)
        return Estimate(mean, se, max(0.0, min(lo, wilson_lo)), min(1.0, max(hi, wilson_hi)),
                        array.size, n_strata, "stratified-t", df, confidence, wilson_floor=True)
    return Estimate(mean, se, lo, hi, array.size, n_strata, "stratified-t", df, confidence)


def mean_ci(values: Sequence[float], strata: Sequence[object] | None = None, confidence: float = 0.95) -> Estimate:
    """Mean of per-item scores with its SE and CI (Wilson, t, or stratified t; see the module docstring)."""
    _check_confidence(confidence)
    array = _as_array(values, "values")
    codes = _stratum_codes(strata, array.size)
    if codes is None and _is_binary(array):
        mean = float(array.mean())
        lo, hi = _wilson(mean, array.size, confidence)
        return Estimate(mean, math.sqrt(mean * (1 - mean) / array.size), lo, hi, array.size, None, "wilson", None,
                        confidence)
    if codes is None:
        return _t_estimate(array, *_plain_se(array), None, confidence)
    return _t_estimate(array, *_stratified_se(array, codes), int(codes.max()) + 1, confidence)


def macro_ci(values: Sequence[float], strata: Sequence[object], confidence: float = 0.95) -> Estimate:
    """The mean of the stratum means (each stratum weighs the same), with the stratified SE under equal
    weights. With a single-item stratum the stratum means themselves are the sample (t interval over them)."""
    _check_confidence(confidence)
    array = _as_array(values, "values")
    codes = _stratum_codes(strata, array.size)
    if codes is None:
        _, codes = np.unique(np.asarray([str(s) for s in strata]), return_inverse=True)
        means = np.bincount(codes, weights=array) / np.bincount(codes)
        return _t_estimate(means, *_plain_se(means), None, confidence)
    return _t_estimate(array, *_stratified_se(array, codes, equal_weights=True), int(codes.max()) + 1, confidence)


def paired_delta(
    base: Sequence[float],
    other: Sequence[float],
    strata: Sequence[object] | None = None,
    confidence: float = 0.95,
) -> PairedDelta:
    """``other - base`` on the same items (same order), with a paired CI and p-value (module docstring)."""
    _check_confidence(confidence)
    base_a, other_a = _as_array(base, "base"), _as_array(other, "other")
    if base_a.size != other_a.size:
        raise ValueError(f"paired_delta: base has {base_a.size} items and other {other_a.size}; "
                         "pair the same items in the same order.")
    codes = _stratum_codes(strata, base_a.size)
    n_strata = None if codes is None else int(codes.max()) + 1
    diff = other_a - base_a
    delta, se, df = _plain_se(diff) if codes is None else _stratified_se(diff, codes)
    half = _t_quantile(confidence, df) * se
    lo, hi = delta - half, delta + half
    t_test = "paired t" if codes is None else "paired t (stratified SE)"
    if not (_is_binary(base_a) and _is_binary(other_a)):
        return PairedDelta(delta, se, lo, hi, base_a.size, n_strata, _two_sided_t_p(delta, se, df), 0, 0, t_test,
                           df, confidence)
    b = int(np.sum((base_a == 1) & (other_a == 0)))
    c = int(np.sum((base_a == 0) & (other_a == 1)))
    center, se_adjusted = _agresti_min(b, c, base_a.size)
    z = float(_sps().norm.ppf(0.5 + confidence / 2))
    if codes is None:
        test, df, se = "exact McNemar", None, se_adjusted
        lo, hi = center - z * se_adjusted, center + z * se_adjusted
        p_value = float(_sps().binomtest(c, b + c, 0.5).pvalue) if b + c else 1.0
    else:  # the interval is the union of both, so the p-value is the larger of both tests'
        test = t_test
        p_value = max(_two_sided_t_p(delta, se, df), float(2 * _sps().norm.sf(abs(center) / se_adjusted)))
        lo, hi = min(lo, center - z * se_adjusted), max(hi, center + z * se_adjusted)
    # A difference of two proportions lies in [-1, 1].
    return PairedDelta(delta, se, max(-1.0, lo), min(1.0, hi), base_a.size, n_strata, p_value, b, c, test, df,
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
    return float(2 * _sps().t.sf(abs(estimate) / se, df))


def violation_p_value(figure: Estimate | PairedDelta, threshold: float, direction: Direction) -> float:
    """One-sided p-value for "the true value violates ``value <direction> threshold``".

    Small means strong evidence of a violation. At level ``(1 - confidence) / 2`` this is the same
    decision as the CI lying wholly on the wrong side: for a Wilson estimate it is the score test that
    the Wilson interval inverts, for an unstratified 0/1 delta the Wald test of the Agresti-Min interval,
    otherwise the t test that the t interval inverts (for stratified 0/1 figures, the larger of the two
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
        adjusted = float(_sps().norm.cdf(sign * (center - threshold) / se_adjusted))
        if figure.n_strata is None:
            return adjusted
    if math.isnan(figure.se):
        return math.nan
    if figure.se == 0:
        p = 0.0 if violated else 1.0
    else:
        p = float(_sps().t.cdf(sign * (point - threshold) / figure.se, figure.df))
    if isinstance(figure, Estimate) and figure.wilson_floor:  # a union of two intervals: both must show it
        return max(p, _wilson_violation_p(point, threshold, figure.n, sign, violated))
    return p if adjusted is None else max(p, adjusted)


def _wilson_violation_p(point: float, threshold: float, n: int, sign: float, violated: bool) -> float:
    """The one-sided score test that the Wilson interval inverts."""
    if not 0 < threshold < 1:  # a proportion cannot sit strictly beyond 0 or 1
        return 0.0 if violated else 1.0
    return float(_sps().norm.cdf(sign * (point - threshold) / math.sqrt(threshold * (1 - threshold) / n)))


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
    dist = _sps().norm if df is None else _sps().t(df)
    return float((dist.ppf(0.5 + confidence / 2) + dist.ppf(power)) * se)
