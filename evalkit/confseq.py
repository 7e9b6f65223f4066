"""Anytime-valid confidence sequences for the mean of bounded paired differences, by betting (issue 34).

A sequential run looks at its paired differences ``y = adapter - base`` (``|y| <= bound``) after every
round and stops when a gate is decided, so its interval must hold at every look at once, including the
data-dependent one it stops at. A fixed-n CI recomputed per look does not (its error rate grows with the
looks). This is the betting confidence sequence of Waudby-Smith and Ramdas (2023, JRSS-B, "Estimating
means of bounded random variables by betting"), the tightest of theirs for a bounded mean and far tighter
than Hoeffding or empirical-Bernstein sequences when the variance is small, the usual paired case (most
questions do not change). docs/statistics.md has the long form; ``benchmarks/sequential_simulation.py``
measures it.

On the [0, 1] scale ``x = (y + bound) / (2 bound)``, for a candidate mean m two gamblers bet with
capital 1: ``K+_t(m) = prod (1 + l+_i (x_i - m))`` wins when the mean is above m, ``K-_t(m) =
prod (1 - l-_i (x_i - m))`` when it is below. Under "the mean is at most m" K+ is a nonnegative
supermartingale, so by Ville's inequality it ever reaches 1/p with probability at most p: the running
``min(1, 1 / max_s K+_s(m))`` is an anytime p-value. The two-sided sequence at level alpha is every m that
neither side rejects at alpha/2 (equivalently their hedged process with theta = 1/2, with the running
intersection), so a one-sided p-value compared with alpha/2 is the same decision as "the sequence lies
wholly on one side of m", as the project's fixed-n gates do. The bets are predictable plug-ins ("PrPl"):
``l_t = sqrt(2 log(2/alpha) / (sigma2_{t-1} t log(1 + t)))`` from the regularised variance of the data
before t, truncated at ``c/m`` (``c/(1-m)``) with c = 1/2 so no bet risks more than half the capital.

No library: ``confseq`` on PyPI is an sdist that needs a C++/Boost build, and ``expectation`` does not
install. Both capital processes fall (K+) or rise (K-) monotonically in m, so the sequence is an interval
whose ends are found by bisection, exactly rather than on a grid, in O(n) memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Side = Literal["above", "below"]

TRUNCATION = 0.5  # c: the largest share of the capital a bet may risk (WSR 2023 use 1/2 or 3/4)
_BISECTIONS = 45  # halvings of [0, 1] per end: 3e-14 of the range, below any printed digit


def plug_in_bets(x: np.ndarray, alpha: float) -> np.ndarray:
    """The predictable plug-in bets ``l_1..l_n`` along the last axis of ``x`` (in [0, 1]), before truncation.

    ``l_t`` uses only ``x_1..x_{t-1}`` (through ``sigma2_{t-1}``, with a prior observation of mean 1/2 and
    variance 1/4), which keeps the capital a supermartingale; ``log(2/alpha)`` tunes each one-sided process
    for alpha/2, and ``t log(1 + t)`` spreads the bets over all times instead of one n.
    """
    t = np.arange(1, x.shape[-1] + 1)
    mean = (0.5 + np.cumsum(x, axis=-1)) / (t + 1)
    variance = (0.25 + np.cumsum((x - mean) ** 2, axis=-1)) / (t + 1)
    before = np.concatenate([np.full(x.shape[:-1] + (1,), 0.25), variance[..., :-1]], axis=-1)
    return np.sqrt(2 * math.log(2 / alpha) / (before * t * np.log1p(t)))


def log_capital(x: np.ndarray, bets: np.ndarray, m: float, side: Side) -> np.ndarray:
    """``log K_t(m)`` for t = 1..n along the last axis: the capital of betting that the mean (of ``x``, in
    [0, 1]) is above ``m`` (``side="above"``) or below it. Each factor is at least ``1 - TRUNCATION``."""
    if side == "above":
        cap = TRUNCATION / m if m > 0 else math.inf
        return np.cumsum(np.log1p(np.minimum(bets, cap) * (x - m)), axis=-1)
    if side == "below":
        cap = TRUNCATION / (1 - m) if m < 1 else math.inf
        return np.cumsum(np.log1p(-np.minimum(bets, cap) * (x - m)), axis=-1)
    raise ValueError(f"side must be 'above' or 'below', not {side!r}")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")


@dataclass(frozen=True)
class ConfidenceSequence:
    """The betting confidence sequence after ``n`` observations (module docstring): valid at every n at once."""

    n: int  # observations so far
    mean: float  # their mean (nan when n == 0)
    bound: float  # |y| <= bound
    alpha: float  # the level the bets were tuned for
    _x: np.ndarray = field(repr=False, compare=False)  # the observations on the [0, 1] scale, in order
    _bets: np.ndarray = field(repr=False, compare=False)

    def _max_log_capital(self, m: float, side: Side) -> float:
        """``log max_{s<=n} K_s(m)`` with ``K_0 = 1``: the running maximum is the running intersection."""
        if self.n == 0:
            return 0.0
        return max(0.0, float(log_capital(self._x, self._bets, m, side).max()))

    def p_value(self, value: float, side: Side) -> float:
        """The anytime one-sided p-value of "the mean is above ``value``" (``side="above"``, valid under
        H0: mean <= value) or "below" it: ``min(1, 1 / max_s K_s)``. Below alpha/2 exactly when the
        two-sided sequence at alpha lies wholly on that side of ``value``."""
        if not -self.bound <= value <= self.bound:
            raise ValueError(f"value {value} lies outside [-{self.bound}, {self.bound}] (the bound)")
        m = (value + self.bound) / (2 * self.bound)
        return min(1.0, math.exp(-self._max_log_capital(m, side)))

    def interval(self, alpha: float | None = None) -> tuple[float, float]:
        """Every mean that neither one-sided p-value rejects at alpha/2 (default: ``self.alpha``; any alpha is
        valid, the bets are only tuned for ``self.alpha``). ``(-bound, bound)`` before any observation. If
        the running intersection is empty (probability at most alpha), the point between its two ends."""
        level = self.alpha if alpha is None else alpha
        _check_alpha(level)
        if self.n == 0:
            return -self.bound, self.bound
        threshold = math.log(2 / level)
        lo, hi = self._end("above", threshold), self._end("below", threshold)
        if lo > hi:
            lo = hi = (lo + hi) / 2
        return 2 * self.bound * lo - self.bound, 2 * self.bound * hi - self.bound

    def _end(self, side: Side, threshold: float) -> float:
        """The end of ``{m : max log K_side(m) <= threshold}`` on the [0, 1] scale, by bisection: K+ falls as m
        rises (its set is [lo, 1]) and K- rises (its set is [0, hi]); the returned end belongs to the set."""
        inside, outside = (1.0, 0.0) if side == "above" else (0.0, 1.0)
        if self._max_log_capital(outside, side) <= threshold:
            return outside
        for _ in range(_BISECTIONS):
            middle = (inside + outside) / 2
            if self._max_log_capital(middle, side) <= threshold:
                inside = middle
            else:
                outside = middle
        return inside


def confidence_sequence(values: Sequence[float], bound: float = 1.0, alpha: float = 0.05) -> ConfidenceSequence:
    """The confidence sequence of the mean of ``values`` (``|y| <= bound``), given in the order observed:
    the bets at each step depend on the steps before, so a reordered stream gives another (equally valid)
    sequence. The target is the mean of the population the values are drawn from (no finite-population
    correction)."""
    _check_alpha(alpha)
    if not 0 < bound < math.inf:
        raise ValueError(f"bound must be positive and finite, not {bound}")
    y = np.asarray(values, dtype=float).ravel()
    outside = y[~(np.abs(y) <= bound * (1 + 1e-12))]  # also catches nan
    if outside.size:
        raise ValueError(f"confidence_sequence: {outside.size} values lie outside [-{bound}, {bound}] "
                         f"(the bound), e.g. {outside[0]}")
    x = np.clip((y + bound) / (2 * bound), 0.0, 1.0)
    return ConfidenceSequence(int(y.size), float(y.mean()) if y.size else math.nan, float(bound), float(alpha),
                              x, plug_in_bets(x, alpha))
