"""evalkit.confseq: against a plain-Python transcription of Waudby-Smith and Ramdas (2023), and its coverage,
validity and shape on simulated paired differences (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from evalkit.confseq import confidence_sequence
from evalkit.stats import paired_delta

Z = float(sps.norm.ppf(0.975))


def paired(n: int, lost: float, gained: float, rng: np.random.Generator) -> np.ndarray:
    """n paired differences adapter - base: -1 with probability ``lost``, +1 with ``gained``, else 0."""
    return rng.choice([-1.0, 0.0, 1.0], p=[lost, 1 - lost - gained, gained], size=n)


def reference_p_above(y: list[float], value: float, bound: float, alpha: float) -> float:
    """The anytime p-value of "the mean is above ``value``", one observation at a time, as the paper writes it
    (section 5, PrPl bets, c = 1/2): the capital of the bettor that the mean exceeds m on the [0, 1] scale."""
    m = (value + bound) / (2 * bound)
    total, variance_sum, capital, best = 0.5, 0.25, 1.0, 1.0  # the prior observation: mean 1/2, variance 1/4
    for t, v in enumerate(y, start=1):
        x = (v + bound) / (2 * bound)
        sigma2_before = variance_sum / t  # sigma2_{t-1}
        bet = math.sqrt(2 * math.log(2 / alpha) / (sigma2_before * t * math.log(1 + t)))
        capital *= 1 + min(bet, 0.5 / m if m > 0 else math.inf) * (x - m)
        best = max(best, capital)
        total += x
        variance_sum += (x - total / (t + 1)) ** 2  # (x_t - mu_t)^2, mu_t including x_t
    return min(1.0, 1 / best)


@pytest.mark.parametrize("value", [-0.3, -0.05, 0.0, 0.1])
def test_p_value_equals_the_paper_written_out(value: float) -> None:
    y = list(paired(300, 0.12, 0.08, np.random.default_rng(1)))
    cs = confidence_sequence(y)
    assert cs.p_value(value, "above") == pytest.approx(reference_p_above(y, value, 1.0, 0.05), rel=1e-9)
    # "below" is "above" on the mirrored data
    mirrored = [-v for v in y]
    assert cs.p_value(value, "below") == pytest.approx(reference_p_above(mirrored, -value, 1.0, 0.05), rel=1e-9)


def test_coverage_at_every_look_and_one_sided_validity() -> None:
    """400 streams of 1,000 at a boundary (true delta -2 pp, 20% of questions change): the sequence must miss
    the truth at any look at most alpha of the time, each side at most alpha/2. Its running intersection
    covers at every n exactly when it covers at the last one."""
    rng = np.random.default_rng(2026)
    truth, reps = -0.02, 400
    above = below = 0
    for _ in range(reps):
        cs = confidence_sequence(paired(1000, 0.11, 0.09, rng))
        above += cs.p_value(truth, "above") < 0.025
        below += cs.p_value(truth, "below") < 0.025
        lo, hi = cs.interval()
        assert (lo <= truth <= hi) == (cs.p_value(truth, "above") >= 0.025 and cs.p_value(truth, "below") >= 0.025)
    assert above <= 0.025 * reps and below <= 0.025 * reps
    assert above + below <= 0.05 * reps


def test_coverage_when_few_questions_change() -> None:
    """The low-variance case betting is chosen for: 2% change, all of them losses (true delta -2 pp)."""
    rng = np.random.default_rng(7)
    misses = sum(not (lo <= -0.02 <= hi)
                 for lo, hi in (confidence_sequence(paired(800, 0.02, 0.0, rng)).interval() for _ in range(300)))
    assert misses <= 0.05 * 300


def test_narrows_with_n_and_holds_the_mean() -> None:
    y = paired(4000, 0.06, 0.04, np.random.default_rng(3))
    widths = []
    for n in (100, 200, 400, 800, 1600, 4000):
        cs = confidence_sequence(y[:n])
        lo, hi = cs.interval()
        assert lo <= cs.mean <= hi and lo <= -0.02 <= hi
        widths.append(hi - lo)
    assert all(a >= b for a, b in zip(widths, widths[1:]))  # the running intersection never widens
    assert widths[-1] < widths[0] / 4


@pytest.mark.parametrize("n", [400, 2000])
def test_wider_than_the_fixed_n_intervals(n: int) -> None:
    """The price of looking at every n: wider than the Wald and Tango intervals for the same n (10% change)."""
    y = paired(n, 0.05, 0.05, np.random.default_rng(n))
    lo, hi = confidence_sequence(y).interval()
    wald = 2 * Z * y.std(ddof=1) / math.sqrt(n)
    base = (y == -1).astype(float)
    tango = paired_delta(base, base + y)
    assert hi - lo > wald and hi - lo > tango.hi - tango.lo
    assert hi - lo < 2.5 * wald


def test_p_values_monotone_and_agree_with_the_interval() -> None:
    cs = confidence_sequence(paired(600, 0.1, 0.05, np.random.default_rng(4)))
    grid = np.linspace(-1, 1, 401)
    above = [cs.p_value(m, "above") for m in grid]
    below = [cs.p_value(m, "below") for m in grid]
    assert all(a <= b for a, b in zip(above, above[1:]))
    assert all(a >= b for a, b in zip(below, below[1:]))
    lo, hi = cs.interval()
    assert cs.p_value(lo - 1e-6, "above") < 0.025 <= cs.p_value(lo + 1e-6, "above")
    assert cs.p_value(hi + 1e-6, "below") < 0.025 <= cs.p_value(hi - 1e-6, "below")
    assert cs.p_value(1.0, "above") == 1.0 and cs.p_value(-1.0, "below") == 1.0


def test_mirror_and_scale_symmetry() -> None:
    y = paired(500, 0.08, 0.03, np.random.default_rng(5))
    lo, hi = confidence_sequence(y).interval()
    mirror_lo, mirror_hi = confidence_sequence(-y).interval()
    assert (mirror_lo, mirror_hi) == pytest.approx((-hi, -lo), abs=1e-9)
    # weighted differences y = w d with |y| <= bound: the same sequence, scaled
    assert confidence_sequence(2.5 * y, bound=2.5).interval() == pytest.approx((2.5 * lo, 2.5 * hi), abs=1e-9)


def test_no_change_is_centred_on_zero_and_narrow() -> None:
    cs = confidence_sequence([0.0] * 1000)
    lo, hi = cs.interval()
    assert cs.mean == 0.0 and lo == pytest.approx(-hi, abs=1e-9)
    assert 0 < hi < 0.02  # Wilson's paired interval at n = 1,000 with nothing changed is +-0.0038 (Tango)
    assert cs.p_value(0.0, "above") == 1.0 and cs.p_value(0.0, "below") == 1.0


def test_before_any_observation() -> None:
    cs = confidence_sequence([], bound=2.0)
    assert cs.n == 0 and math.isnan(cs.mean)
    assert cs.interval() == (-2.0, 2.0) and cs.interval(0.1) == (-2.0, 2.0)
    assert cs.p_value(0.5, "above") == 1.0


def test_a_larger_alpha_gives_a_subinterval() -> None:
    cs = confidence_sequence(paired(700, 0.1, 0.1, np.random.default_rng(6)))
    lo95, hi95 = cs.interval()
    lo80, hi80 = cs.interval(0.2)
    assert lo95 < lo80 < hi80 < hi95


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"outside \[-1.0, 1.0\] \(the bound\)"):
        confidence_sequence([0.0, 1.5, -1.0])
    with pytest.raises(ValueError, match="the bound"):
        confidence_sequence([0.0, math.nan])
    with pytest.raises(ValueError, match="the bound"):
        confidence_sequence([3.0], bound=2.0)
    with pytest.raises(ValueError, match="bound must be positive"):
        confidence_sequence([0.0], bound=0.0)
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence([0.0], alpha=1.0)
    cs = confidence_sequence([0.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        cs.interval(0.0)
    with pytest.raises(ValueError, match="the bound"):
        cs.p_value(1.2, "above")
    with pytest.raises(ValueError, match="side"):
        cs.p_value(0.0, "over")  # type: ignore[arg-type]
