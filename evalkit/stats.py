"""Error bars and paired comparisons for eval scores, after Miller (2024), "Adding Error Bars to Evals".

Why these choices (docs/statistics.md has the long form; ``benchmarks/bench_intervals.py`` measures them):

- **One score** (:func:`mean_ci`). Unstratified 0/1 scores get the Wilson score interval (statsmodels
  ``proportion_confint``): the Wald interval collapses to a point at 0 % or 100 % accuracy, which a
  135M model does reach on small samples. Other unstratified scores get the Student-t interval.
- **Strata** (MMLU and multiple-choice files: the subject). The subjects are fixed strata of a fixed test
  set, not a random sample of subjects, so the SE is the stratified one,
  ``sqrt(sum_h W_h^2 s_h^2 / n_h)`` with ``s_h^2`` the sample variance within stratum h and ``W_h`` its
  weight (``n_h / n``). A subject-clustered SE was used before and rejected: with the two or three
  subjects a category has in a small selection it has one or two degrees of freedom, and 202 questions got
  a [0, 93] % interval. For 0/1 scores the interval is **Wilson's at the effective sample size**
  ``n* = p (1 - p) / SE^2 * (z / t_df)^2`` (Korn and Graubard 1998, with Wilson's interval for their
  Clopper-Pearson one, as Dean and Pagano 2015 recommend), ``df`` the Satterthwaite degrees of freedom of
  the stratified variance: the SE credits what stratification removes (strata of different difficulty
  give ``n* > n``), and the t quantile widens it back when the SE rests on few strata with any variation
  (two subjects of two questions, where the plain stratified t interval covered 19 %). When no stratum
  varies (SE 0) ``n* = n``. It replaced the union of the stratified t and Wilson intervals, which never let
  stratification narrow the interval (up to 2.3x too wide). Other stratified scores get the stratified t
  interval (``n - H`` degrees of freedom). When a stratum holds a single item its variance cannot be
  estimated, and the unstratified interval is used (conservative: it also counts the variation between
  strata).
- **Two variants on the same items** (:func:`paired_delta`): the per-item difference
  ``d_i = other_i - base_i``, far tighter than comparing two independent CIs. Unstratified 0/1 scores get
  Tango's (1998) score interval for a paired difference of proportions, and the p-value of the same
  score statistic at 0 (which is the asymptotic McNemar test), so "p < 0.05" and "the CI excludes 0" are
  one decision; it keeps its coverage when few items change, all in one direction (an adapter that only
  breaks things), where the Agresti-Min interval used before fell to 87 %. Stratified 0/1 scores get the
  union of the stratified paired t interval and Tango's, and the larger of the two tests' p-values; other
  unstratified scores the paired t interval and test. A paired bootstrap was rejected: it needs a seed,
  while these are deterministic (so serial and pytest-xdist runs agree to the last digit).
- **Macro** (:func:`macro_ci`): the mean of the stratum means (every subject weighs the same), with
  ``W_h = 1 / H`` and the same rules.
- **Gates** judge a figure against a threshold with a one-sided test at the CI's level
  (:func:`violation_p_value`), the test the interval inverts, so without correction "the p-value is below
  (1 - confidence) / 2" is the same decision as "the whole 95 % CI lies on the wrong side". :func:`holm`
  adjusts several gates at once.
- **Power** (:func:`minimal_detectable_effect`): the smallest true difference a test at this SE detects
  with the given power, ``(q_{1-alpha/2} + q_power) * SE``, to warn when a gate's margin is finer than
  the sample can resolve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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

    ``method`` is ``wilson`` (unstratified 0/1), ``t`` (unstratified, other values), ``stratified-wilson``
    (stratified 0/1) or ``stratified-t`` (stratified, other values); ``df`` is the t distribution's degrees
    of freedom (for ``stratified-wilson`` the Satterthwaite df behind ``n_effective``; None for Wilson and
    when no stratum varies). ``n_strata`` is None when no stratification was applied. ``n_effective`` is
    the sample size a Wilson interval is computed at (``n`` unstratified; see the module docstring).
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
    n_effective: float | None = None


@dataclass(frozen=True)
class PairedDelta:
    """``mean(other - base)`` over the same items, with its paired CI and test.

    ``b`` counts items the base got right and the other variant wrong, ``c`` the reverse (both 0 when
    the scores are not all 0/1). ``test`` names the p-value's test. ``se`` is the SE the interval is built
    from (for an unstratified 0/1 delta, the one Tango's interval implies); ``score_se``, for 0/1 scores,
    is the SE Tango's interval implies, half its width over the normal quantile (not 0 when no item
    changed), which the power figure uses.
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
    score_se: float | None = None


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


def _strata_table(array: np.ndarray, codes: np.ndarray, equal_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sizes n_h, means, weights W_h) of the strata: weights n_h/n (the plain mean) or 1/H (the macro mean)."""
    sizes = np.bincount(codes).astype(float)
    means = np.bincount(codes, weights=array) / sizes
    weights = np.full(sizes.size, 1 / sizes.size) if equal_weights else sizes / array.size
    return sizes, means, weights


def _stratified_se(array: np.ndarray, codes: np.ndarray, equal_weights: bool = False) -> tuple[float, float, float]:
    """(mean, SE, t degrees of freedom) of the stratified mean; df = n - H."""
    sizes, means, weights = _strata_table(array, codes, equal_weights)
    within = np.bincount(codes, weights=(array - means[codes]) ** 2) / (sizes - 1)  # s_h^2
    se = math.sqrt(float(np.sum(weights ** 2 * within / sizes)))
    return float(np.sum(weights * means)), se, float(array.size - sizes.size)


def _plain_se(array: np.ndarray) -> tuple[float, float, float]:
    """(mean, sd/sqrt(n), n - 1); the SE is NaN for a single item."""
    if array.size < 2:
        return float(array.mean()), math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(array.size)), float(array.size - 1)


def _t_quantile(confidence: float, df: float) -> float:
    return float(_sps().t.ppf(0.5 + confidence / 2, df)) if df > 0 else math.nan


def _z_quantile(confidence: float) -> float:
    return float(_sps().norm.ppf(0.5 + confidence / 2))


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}.")


def _wilson(mean: float, n: float, confidence: float) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(mean * n, n, alpha=1 - confidence, method="wilson")
    return float(lo), float(hi)


def _stratified_estimate(array: np.ndarray, codes: np.ndarray, confidence: float, equal_weights: bool) -> Estimate:
    """Wilson's interval at the effective sample size for 0/1 scores, the stratified t interval otherwise."""
    mean, se, df = _stratified_se(array, codes, equal_weights)
    n_strata = int(codes.max()) + 1
    if _is_binary(array):
        sizes, means, weights = _strata_table(array, codes, equal_weights)
        terms = weights ** 2 * means * (1 - means) / (sizes - 1)  # W_h^2 s_h^2 / n_h, with s_h^2 of 0/1 scores
        if se > 0:
            satterthwaite = se ** 4 / float(np.sum(terms ** 2 / (sizes - 1)))
            t_factor = (_z_quantile(confidence) / _t_quantile(confidence, satterthwaite)) ** 2
            n_effective = mean * (1 - mean) / se ** 2 * t_factor
        else:  # no stratum varies: nothing to credit
            satterthwaite, n_effective = None, float(array.size)
        lo, hi = _wilson(mean, n_effective, confidence)
        return Estimate(mean, se, lo, hi, array.size, n_strata, "stratified-wilson", satterthwaite, confidence,
                        n_effective)
    half = _t_quantile(confidence, df) * se
    return Estimate(mean, se, mean - half, mean + half, array.size, n_strata, "stratified-t", df, confidence)


def _t_estimate(array: np.ndarray, confidence: float) -> Estimate:
    mean, se, df = _plain_se(array)
    half = _t_quantile(confidence, df) * se
    return Estimate(mean, se, mean - half, mean + half, array.size, None, "t", df, confidence)


def mean_ci(values: Sequence[float], strata: Sequence[object] | None = None, confidence: float = 0.95) -> Estimate:
    """Mean of per-item scores with its SE and CI (Wilson, t, stratified Wilson or stratified t; see the
    module docstring)."""
    _check_confidence(confidence)
    array = _as_array(values, "values")
    codes = _stratum_codes(strata, array.size)
    if codes is not None:
        return _stratified_estimate(array, codes, confidence, equal_weights=False)
    if _is_binary(array):
        mean = float(array.mean())
        lo, hi = _wilson(mean, array.size, confidence)
        return Estimate(mean, math.sqrt(mean * (1 - mean) / array.size), lo, hi, array.size, None, "wilson", None,
                        confidence, float(array.size))
    return _t_estimate(array, confidence)


def macro_ci(values: Sequence[float], strata: Sequence[object], confidence: float = 0.95) -> Estimate:
    """The mean of the stratum means (each stratum weighs the same), with the stratified SE under equal
    weights. With a single-item stratum the stratum means themselves are the sample (t interval over them)."""
    _check_confidence(confidence)
    array = _as_array(values, "values")
    codes = _stratum_codes(strata, array.size)
    if codes is None:
        _, codes = np.unique(np.asarray([str(s) for s in strata]), return_inverse=True)
        return _t_estimate(np.bincount(codes, weights=array) / np.bincount(codes), confidence)
    return _stratified_estimate(array, codes, confidence, equal_weights=True)


def _ratio(numerator: float, variance: float) -> float:
    """A score statistic ``numerator / sqrt(variance)``; at variance 0 (a hypothesis on the edge of the
    parameter space) it is 0 when the data sit exactly there and infinite otherwise."""
    if variance > 0:
        return numerator / math.sqrt(variance)
    return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)


def _tango_z(b: int, c: int, n: int, delta: float) -> float:
    """Tango's (1998) score statistic for "the paired difference of proportions is ``delta``": b items went
    right -> wrong, c wrong -> right, of n. The variance is taken at the restricted maximum-likelihood
    estimate of the right -> wrong rate, in closed form (Tango 1998); at delta = 0 the statistic
    is McNemar's ``(c - b) / sqrt(b + c)``. It falls as ``delta`` rises."""
    a_, b_ = 2.0 * n, -b - c + (2.0 * n - c + b) * delta
    c_ = -b * delta * (1 - delta)
    rate = (math.sqrt(max(b_ * b_ - 4 * a_ * c_, 0.0)) - b_) / (2 * a_)
    return _ratio(c - b - n * delta, n * (2 * rate + delta * (1 - delta)))


def _tango_interval(b: int, c: int, n: int, confidence: float) -> tuple[float, float]:
    """The differences whose two-sided score test is not rejected: the roots of z = +-q on each side of
    the estimate (the ends of [-1, 1] when the estimate is there)."""
    from scipy.optimize import brentq

    z, estimate = _z_quantile(confidence), (c - b) / n
    lo = -1.0 if b == n else float(brentq(lambda d: _tango_z(b, c, n, d) - z, -1.0, estimate, xtol=1e-15))
    hi = 1.0 if c == n else float(brentq(lambda d: _tango_z(b, c, n, d) + z, estimate, 1.0, xtol=1e-15))
    return lo, hi


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
    n = base_a.size
    b = int(np.sum((base_a == 1) & (other_a == 0)))
    c = int(np.sum((base_a == 0) & (other_a == 1)))
    score_lo, score_hi = _tango_interval(b, c, n, confidence)
    score_se = (score_hi - score_lo) / (2 * _z_quantile(confidence))
    score_p = float(2 * _sps().norm.sf(abs(_tango_z(b, c, n, 0.0))))
    if codes is None:
        return PairedDelta(delta, score_se, score_lo, score_hi, n, None, score_p, b, c, "Tango score", None,
                           confidence, score_se)
    # The interval is the union of both, so the p-value is the larger of both tests'.
    return PairedDelta(delta, se, max(-1.0, min(lo, score_lo)), min(1.0, max(hi, score_hi)), n, n_strata,
                       max(_two_sided_t_p(delta, se, df), score_p), b, c, t_test, df, confidence, score_se)


def _dist(df: float | None) -> Any:
    """The t distribution with ``df`` degrees of freedom, or the normal when ``df`` is None."""
    return _sps().norm if df is None else _sps().t(df)


def _two_sided_t_p(estimate: float, se: float, df: float | None) -> float:
    if math.isnan(se):
        return math.nan
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * _dist(df).sf(abs(estimate) / se))


def violation_p_value(figure: Estimate | PairedDelta, threshold: float, direction: Direction) -> float:
    """One-sided p-value for "the true value violates ``value <direction> threshold``".

    Small means strong evidence of a violation. At level ``(1 - confidence) / 2`` this is the same
    decision as the CI lying wholly on the wrong side, because it is the test the interval inverts: the
    score test of the Wilson (at the effective sample size) or Tango interval, otherwise the t test (for a
    stratified 0/1 delta, the larger of the t and Tango p-values, as its interval is the union of both).
    """
    if direction not in (">=", "<="):
        raise ValueError(f"direction must be '>=' or '<=', got {direction!r}.")
    point = figure.delta if isinstance(figure, PairedDelta) else figure.mean
    sign = 1.0 if direction == ">=" else -1.0  # z > 0: the estimate sits on the passing side, so p > 0.5
    violated = point < threshold if direction == ">=" else point > threshold
    if isinstance(figure, Estimate) and figure.n_effective is not None:  # Wilson: the score test it inverts
        if not 0 < threshold < 1:  # a proportion cannot sit strictly beyond 0 or 1
            return 0.0 if violated else 1.0
        z = (point - threshold) / math.sqrt(threshold * (1 - threshold) / figure.n_effective)
        return float(_sps().norm.cdf(sign * z))
    score = None
    if isinstance(figure, PairedDelta) and figure.score_se is not None:
        score = float(_sps().norm.cdf(sign * _tango_z(figure.b, figure.c, figure.n, threshold)))
        if figure.n_strata is None:
            return score
    if math.isnan(figure.se):
        return math.nan
    if figure.se == 0:
        p = 0.0 if violated else 1.0
    else:
        p = float(_dist(figure.df).cdf(sign * (point - threshold) / figure.se))
    return p if score is None else max(p, score)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, for judging several gates at once (see :func:`adjusted_p_values`)."""
    return adjusted_p_values(p_values, "holm")


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm (1979): the i-th smallest of m p-values times (m - i + 1), made monotone, capped at 1. Written
    out because statsmodels' ``multipletests`` runs ``gc.collect()`` on every call (about 50 ms), which
    adds up when gates are judged per round or per checkpoint."""
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    return adjusted


def adjusted_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """p-values adjusted for multiplicity: ``holm`` (Holm-Bonferroni) or ``fdr_bh`` (Benjamini-Hochberg,
    scipy ``false_discovery_control``); NaN stays NaN and is not counted as a test."""
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "holm": _holm, "fdr_bh": lambda p: _sps().false_discovery_control(p, method="bh")}
    if method not in methods:
        raise ValueError(f"method must be one of {', '.join(methods)}, got {method!r}.")
    values = np.asarray(p_values, dtype=float)
    known = ~np.isnan(values)
    adjusted = np.full(values.shape, math.nan)
    if known.any():
        adjusted[known] = methods[method](values[known])
    return adjusted.tolist()


def minimal_detectable_effect(se: float, df: float | None = None, confidence: float = 0.95, power: float = 0.8) -> float:
    """Smallest true difference that a two-sided test at ``confidence`` detects with probability ``power``.

    ``(q_{1-alpha/2} + q_power) * SE`` with normal quantiles, or t quantiles when ``df`` is given. A
    non-inferiority gate ``delta >= -m`` catches (fails on) a true change of ``-(m + this)`` with that
    probability; a change between the margin and that point usually passes.
    """
    _check_confidence(confidence)
    if not 0 < power < 1:
        raise ValueError(f"power must be between 0 and 1 (e.g. 0.8), got {power}.")
    dist = _dist(df)
    return float((dist.ppf(0.5 + confidence / 2) + dist.ppf(power)) * se)


def macro_of(figures: Sequence[Estimate | PairedDelta], confidence: float) -> Estimate | PairedDelta:
    """The unweighted mean of independent figures (each suite of a family weighs the same), with the normal
    interval of a mean of independent estimates: SE ``sqrt(sum_k SE_k^2) / K``, each SE_k read from that
    figure's own interval (half its width over the normal quantile), so the members' interval methods carry
    over; the p-value is that interval's two-sided normal test, and b, c add up over the members."""
    _check_confidence(confidence)
    if not figures:
        raise ValueError("macro_of: no figures to average.")
    norm = _sps().norm
    z = float(norm.ppf(0.5 + confidence / 2))
    k = len(figures)
    point = sum(f.delta if isinstance(f, PairedDelta) else f.mean for f in figures) / k
    se = math.sqrt(sum(((f.hi - f.lo) / (2 * z)) ** 2 for f in figures)) / k
    lo, hi, n = point - z * se, point + z * se, sum(f.n for f in figures)
    if all(isinstance(f, PairedDelta) for f in figures):
        p_value = float(2 * norm.sf(abs(point) / se)) if se > 0 else float(point == 0)
        return PairedDelta(delta=point, se=se, lo=max(-1.0, lo), hi=min(1.0, hi), n=n, n_strata=k, p_value=p_value,
                           b=sum(f.b for f in figures), c=sum(f.c for f in figures),  # type: ignore[union-attr]
                           test=f"macro average of {k} paired deltas (normal)", df=math.inf, confidence=confidence)
    return Estimate(mean=point, se=se, lo=max(0.0, lo), hi=min(1.0, hi), n=n, n_strata=k, method="macro", df=math.inf,
                    confidence=confidence)
