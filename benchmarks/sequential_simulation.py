"""Is sequential evaluation honest? Simulated paired 0/1 outcomes judged by evalkit.confseq at the looks of
evalkit.sequential.schedule (issue 34).

    OMP_NUM_THREADS=1 python benchmarks/sequential_simulation.py             # 2,000 runs per scenario
    OMP_NUM_THREADS=1 python benchmarks/sequential_simulation.py --runs 200  # a quick look

Each run is a stream of paired differences d = adapter - base in {-1, 0, 1} (b lost, c gained per
question, discordance b + c) looked at only at ``schedule(N)``, stopping when the anytime-valid sequence
lies wholly above or below the gate's margin, else at N (the fixed design's n, the full set). Populations:

- ``infinite``: every d drawn afresh (an iid stream);
- ``fixed N``: one set of N questions with exactly the rates' counts (its own mean is the margin), only
  the order random in each run: sampling without replacement from a fixed benchmark;
- ``57 strata``: MMLU's 57 test-set subject sizes (14,042 questions), each subject with its own
  discordance and delta (weighted averages: the scenario's), the questions drawn in each run and put in
  one uniformly random order, so subjects arrive without replacement.

Printed (Markdown): at the boundary (true delta = margin) how often the sequence ever lies wholly above
the margin (a false pass for a gate that needs the gain shown) or wholly below (a false fail), each to be
at most alpha/2 = 2.5%, with Clopper-Pearson 95% intervals, and coverage of the true delta at every look;
away from the margin (+-3 and 6 pp) the mean and median n at the stop as a share of N; and the width of
the sequence against fixed-n intervals at n = 400 and 2,000. The decisions use the module's own bets and
capital (``plug_in_bets``, ``log_capital``) vectorised over runs, the widths ``confidence_sequence``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy import stats as sps

from evalkit.confseq import confidence_sequence, log_capital, plug_in_bets
from evalkit.sequential import schedule
from evalkit.stats import _tango_z, paired_delta

ALPHA = 0.05
THRESHOLD = math.log(2 / ALPHA)  # a one-sided capital at 2/alpha rejects at alpha/2
Z = float(sps.norm.ppf(1 - ALPHA / 2))
MARGINS = (-0.02, 0.0)
DISCORDANCE = (0.05, 0.15, 0.30)
OFFSETS = (-0.06, -0.03, 0.03, 0.06)
MMLU_SIZES = np.array([100, 135, 152, 100, 265, 144, 100, 100, 100, 173, 102, 100, 235, 114, 145, 378, 126, 100,
                       310, 203, 100, 165, 198, 193, 390, 270, 238, 151, 545, 216, 204, 237, 223, 131, 121, 108,
                       163, 112, 103, 234, 100, 783, 346, 895, 306, 311, 324, 282, 1534, 272, 612, 110, 245, 201,
                       100, 166, 171])
CHUNK = 100  # runs per block: 100 x 14,042 float64 is 11 MB per array

Draw = Callable[[int, np.random.Generator], np.ndarray]  # (runs, rng) -> runs x N differences


def infinite(n: int, lost: float, gained: float) -> Draw:
    def draw(runs: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random((runs, n))
        return (u < gained).astype(float) - (u >= 1 - lost)
    return draw


def fixed(n: int, lost: float, gained: float) -> Draw:
    """One population with round(n * rate) questions lost and gained, shuffled afresh in every run."""
    population = np.zeros(n)
    population[:round(n * lost)] = -1
    population[n - round(n * gained):] = 1
    return lambda runs, rng: rng.permuted(np.tile(population, (runs, 1)), axis=1)


def strata(lost: float, gained: float) -> Draw:
    """57 subjects of MMLU's sizes whose discordances spread 0.4-1.6x the mean and whose share of losses
    among the changed questions spreads around the mean's, both averaging (weighted) exactly to the scenario."""
    weight = MMLU_SIZES / MMLU_SIZES.sum()
    spread = np.random.default_rng(57).permutation(np.linspace(0.4, 1.6, MMLU_SIZES.size))
    discordance = (lost + gained) * spread / (weight @ spread)
    share = (gained - lost) / (lost + gained)  # delta / discordance, in [-1, 1]
    tilt = 0.5 * (1 - abs(share)) * np.where(np.arange(MMLU_SIZES.size) % 2, 1.0, -1.0)
    tilt -= (weight * discordance) @ tilt / (weight @ discordance)  # keeps the weighted delta exact
    delta = discordance * (share + tilt)
    subject_lost, subject_gained = (discordance - delta) / 2, (discordance + delta) / 2
    labels = np.repeat(np.arange(MMLU_SIZES.size), MMLU_SIZES)

    def draw(runs: int, rng: np.random.Generator) -> np.ndarray:
        order = rng.permuted(np.tile(labels, (runs, 1)), axis=1)
        u = rng.random(order.shape)
        return (u < subject_gained[order]).astype(float) - (u >= 1 - subject_lost[order])
    return draw


def first_crossing(x: np.ndarray, bets: np.ndarray, value: float, side: str) -> np.ndarray:
    """Per run, the first n at which the one-sided p-value of ``value`` falls below alpha/2 (N + 1 if never)."""
    m = (value + 1) / 2
    crossed = log_capital(x, bets, m, side) >= THRESHOLD  # type: ignore[arg-type]
    return np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, x.shape[1] + 1)


def fixed_n_side(x: np.ndarray, margin: float) -> np.ndarray:
    """Per run, the fixed-n gate on all N: +1 when Tango's interval lies wholly above the margin, -1 below."""
    z = np.array([_tango_z(int(b), int(c), x.shape[1], margin)
                  for b, c in zip((x == 0).sum(axis=1), (x == 1).sum(axis=1))])
    return (z > Z).astype(int) - (z < -Z)


def simulate(draw: Draw, n: int, margin: float, truth: float, runs: int, seed: int) -> dict[str, np.ndarray]:
    """Per run: ever wholly above / below the margin, the truth covered at every look, the n at the stop, the
    fixed-n test's side at N, and the side a run decides when an undecided stream falls back to that test."""
    looks = np.array(schedule(n))
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"above": [], "below": [], "covered": [], "stop": [], "fixed": [],
                                         "fallback": []}
    for start in range(0, runs, CHUNK):
        x = (draw(min(CHUNK, runs - start), rng) + 1) / 2
        bets = plug_in_bets(x, ALPHA)
        above, below = first_crossing(x, bets, margin, "above"), first_crossing(x, bets, margin, "below")
        if truth == margin:
            covered = (above > n) & (below > n)
        else:
            covered = (first_crossing(x, bets, truth, "above") > n) & (first_crossing(x, bets, truth, "below") > n)
        decided = np.minimum(above, below)
        stop = looks[np.minimum(np.searchsorted(looks, decided), looks.size - 1)]
        first = np.where(decided > n, 0, np.where(above < below, 1, -1))
        fixed = fixed_n_side(x, margin)
        for key, value in (("above", above <= n), ("below", below <= n), ("covered", covered), ("stop", stop),
                           ("fixed", fixed), ("fallback", np.where(first == 0, fixed, first))):
            parts[key].append(value)
    return {key: np.concatenate(value) for key, value in parts.items()}


def rate(hits: np.ndarray) -> str:
    low, high = sps.binomtest(int(hits.sum()), hits.size).proportion_ci(method="exact")
    return f"{100 * hits.mean():.2f}% [{100 * low:.2f}, {100 * high:.2f}]"


def populations(lost: float, gained: float) -> list[tuple[str, int, Draw]]:
    n_mmlu = int(MMLU_SIZES.sum())
    return [("infinite, N=14,042", n_mmlu, infinite(n_mmlu, lost, gained)),
            ("fixed N=1,000", 1000, fixed(1000, lost, gained)),
            ("fixed N=14,042", n_mmlu, fixed(n_mmlu, lost, gained)),
            ("57 strata, N=14,042", n_mmlu, strata(lost, gained))]


def decisions(runs: int) -> None:
    boundary = ["| population | margin | discordance | wholly above (false pass) | wholly below (false fail) "
                "| coverage at every look | then Tango at N: above / below |", "|---|---|---|---|---|---|---|"]
    away = ["| population | margin | discordance | " + " | ".join(f"delta = margin {o * 100:+.0f} pp" for o in OFFSETS)
            + " | coverage at every look (lowest) |", "|---|---|---|" + "---|" * (len(OFFSETS) + 1)]
    seed = 0
    for margin in MARGINS:
        for discordance in DISCORDANCE:
            for index in range(4):
                cells, coverage, name = [], [], ""
                for offset in (0.0, *OFFSETS):
                    delta = margin + offset
                    seed += 1
                    if abs(delta) > discordance + 1e-12:
                        cells.append("—")
                        continue
                    name, n, draw = populations((discordance - delta) / 2, (discordance + delta) / 2)[index]
                    result = simulate(draw, n, margin, delta, runs, seed)
                    coverage.append(result["covered"].mean())
                    if offset == 0.0:
                        boundary.append(f"| {name} | {margin * 100:+.0f} pp | {discordance:.0%} | "
                                        f"{rate(result['above'])} | {rate(result['below'])} | "
                                        f"{rate(result['covered'])} | {100 * np.mean(result['fallback'] == 1):.2f}% / "
                                        f"{100 * np.mean(result['fallback'] == -1):.2f}% |")
                    else:
                        share = result["stop"] / n
                        decided = np.mean(result["above"] | result["below"])
                        cells.append(f"{100 * share.mean():.1f}% / {100 * np.median(share):.1f}% "
                                     f"({100 * decided:.0f}%; {100 * np.mean(result['fixed'] != 0):.0f}%)")
                away.append(f"| {name} | {margin * 100:+.0f} pp | {discordance:.0%} | " + " | ".join(cells)
                            + f" | {100 * min(coverage):.2f}% |")
    print(f"At the boundary (true delta = margin), {runs} runs each: how often the sequence ever lies wholly on one"
          " side of the margin (at most 2.5% each, Clopper-Pearson 95% CI); the last column, how often a run"
          " decides each way when an undecided stream falls back to the fixed-n Tango test on all N\n")
    print("\n".join(boundary))
    print(f"\nAway from the margin, {runs} runs each: mean / median n at the stop as a share of N (the fixed design's"
          " n), and in brackets the share of runs the sequence decides by N; the fixed-n test's at N; — where the delta"
          " exceeds the discordance\n")
    print("\n".join(away))


def running_bounds(x: np.ndarray, bets: np.ndarray, variance_terms: np.ndarray) -> np.ndarray:
    """Width (on the [-1, 1] scale) of the running intersection of a predictable-mixture sequence at the
    last n: centre ``sum l x / sum l`` +- ``(log(2/alpha) + sum of variance terms) / sum l`` (WSR 2023, eq. 13)."""
    weights = np.cumsum(bets, axis=1)
    centre = np.cumsum(bets * x, axis=1) / weights
    half = (THRESHOLD + np.cumsum(variance_terms, axis=1)) / weights
    return 2 * (np.minimum.accumulate(centre + half, axis=1) - np.maximum.accumulate(centre - half, axis=1))[:, -1]


def widths(runs: int) -> None:
    print(f"\nMean width of 95% intervals at n (true delta 0, {runs} runs): anytime-valid sequences against"
          " fixed-n intervals\n")
    print("| discordance | n | betting (evalkit.confseq) | empirical Bernstein (PrPl-EB) | Hoeffding (PrPl-H) "
          "| Tango, fixed n | Wald, fixed n | betting / Tango |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(400)
    z = float(sps.norm.ppf(1 - ALPHA / 2))
    for discordance in (0.02, 0.10, 0.30):
        for n in (400, 2000):
            d = infinite(n, discordance / 2, discordance / 2)(runs, rng)
            x = (d + 1) / 2
            betting = np.array([np.subtract(*confidence_sequence(row).interval()[::-1]) for row in d])
            t = np.arange(1, n + 1)
            mean_before = np.concatenate([np.full((runs, 1), 0.5), (0.5 + np.cumsum(x, axis=1)[:, :-1]) / t[1:]],
                                         axis=1)
            eb_bets = np.minimum(plug_in_bets(x, ALPHA), 0.5)
            eb = running_bounds(x, eb_bets, (x - mean_before) ** 2 * (-np.log1p(-eb_bets) - eb_bets))  # v psi_E
            h_bets = np.minimum(np.sqrt(8 * THRESHOLD / (t * np.log1p(t))), 1.0) * np.ones((runs, 1))
            hoeffding = running_bounds(x, h_bets, h_bets ** 2 / 8)
            tango = np.array([paired_delta((row == -1).astype(float), (row == -1) + row) for row in d])
            tango_width = np.array([delta.hi - delta.lo for delta in tango])
            wald = 2 * z * d.std(axis=1, ddof=1) / math.sqrt(n)
            print(f"| {discordance:.0%} | {n:,} | {100 * betting.mean():.2f} pp | {100 * eb.mean():.2f} pp | "
                  f"{100 * hoeffding.mean():.2f} pp | {100 * tango_width.mean():.2f} pp | {100 * wald.mean():.2f} pp | "
                  f"{betting.mean() / tango_width.mean():.2f} |")


def timing() -> None:
    d = np.random.default_rng(15).choice([-1.0, 0.0, 1.0], p=[0.06, 0.9, 0.04], size=15_000)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        confidence_sequence(d).interval()
        best = min(best, time.perf_counter() - start)
    print(f"\nconfidence_sequence + interval, n = 15,000: {1000 * best:.1f} ms (best of 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per scenario (default 2000)")
    parser.add_argument("--width-runs", type=int, default=500, help="runs per width figure (default 500)")
    args = parser.parse_args()
    start = time.perf_counter()
    decisions(args.runs)
    widths(args.width_runs)
    timing()
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
