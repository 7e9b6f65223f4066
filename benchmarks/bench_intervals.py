"""Coverage, width and agreement of the printed intervals (issue 38), by exact enumeration and Monte Carlo.

    python benchmarks/bench_intervals.py              # about 2 min on a 2-core VM
    python benchmarks/bench_intervals.py --reps 4000  # the figures in docs/benchmarks.md, about 3 min

Calls the project's own functions (:func:`evalkit.stats.paired_delta`, :func:`~evalkit.stats.mean_ci`,
:func:`~evalkit.stats.violation_p_value`) and, for comparison, the intervals they replaced, written out
below (``before``: Agresti-Min with exact McNemar; the stratified t interval joined with a Wilson floor, or
with Agresti-Min for a delta). Prints four Markdown tables:

1. the unstratified paired delta: on every table with b + c <= 40 discordant items at n = 50, 100, 200,
   1,000, how often "p < 0.05" and "the 95 % CI excludes 0" disagree; and its exact coverage and mean
   width, above all where few items change, all one way (an adapter that only breaks things);
2. how often a non-inferiority gate on that delta falsely fails when the true delta is exactly its margin
   (by design about (1 - confidence) / 2 = 2.5 %), by exact enumeration;
3. the stratified paired delta's Monte Carlo coverage in the one-directional designs;
4. the stratified accuracy's Monte Carlo coverage and width against the ideal width
   ``2 z sqrt(sum_h W_h^2 pi_h (1 - pi_h) / n_h)`` (the true SE), in heterogeneous designs where stratification
   should narrow the interval and in few-subject designs where a stratum's sample variance is often 0.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from evalkit.stats import mean_ci, paired_delta, violation_p_value

Z = float(sps.norm.ppf(0.975))


def table(b: int, c: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 scores with b items right -> wrong and c wrong -> right of n."""
    base = np.zeros(n)
    other = np.zeros(n)
    base[:b] = 1
    other[b:b + c] = 1
    return base, other


def agresti_min(b: int, c: int, n: int) -> tuple[float, float]:
    """Before: center and SE of the Agresti-Min (2005) interval, the paired Wald interval after adding 0.5
    to each cell (its gates used the Wald test on them)."""
    return (c - b) / (n + 2), math.sqrt(b + c + 1 - (c - b) ** 2 / (n + 2)) / (n + 2)


def before_paired(b: int, c: int, n: int) -> tuple[float, float, float]:
    """Before: the Agresti-Min interval and, beside it, the exact McNemar p-value."""
    center, se = agresti_min(b, c, n)
    p = float(sps.binomtest(c, b + c, 0.5).pvalue) if b + c else 1.0
    return max(-1.0, center - Z * se), min(1.0, center + Z * se), p


def tables(n: int, p_b: float, p_c: float, floor: float = 1e-10) -> Iterator[tuple[int, int, float]]:
    """Every (b, c) whose trinomial probability exceeds ``floor``, with that probability."""
    for b in range(n + 1):
        if sps.binom.pmf(b, n, p_b) < floor:
            if b > n * p_b:
                break
            continue
        for c in range(n - b + 1):
            probability = float(sps.multinomial.pmf([b, c, n - b - c], n, [p_b, p_c, 1 - p_b - p_c]))
            if probability >= floor:
                yield b, c, probability
            elif c > n * p_c:
                break


def agreement() -> list[str]:
    rows = ["| n | tables (b + c <= 40) | disagree, before | disagree, now |", "|---|---|---|---|"]
    for n in (50, 100, 200, 1000):
        before = now = count = 0
        for b in range(41):
            for c in range(41 - b):
                lo, hi, p = before_paired(b, c, n)
                before += (p < 0.05) != (lo > 0 or hi < 0)
                result = paired_delta(*table(b, c, n))
                now += (result.p_value < 0.05) != (result.lo > 0 or result.hi < 0)
                count += 1
        rows.append(f"| {n:,} | {count} | {before} | {now} |")
    return rows


def coverage() -> list[str]:
    rows = ["| n | right -> wrong | wrong -> right | true delta | coverage, before | coverage, now | "
            "mean width before / now (pp) |", "|---|---|---|---|---|---|---|"]
    designs = [(n, p_b, 0.0) for n in (50, 100, 200, 500, 1000) for p_b in (0.005, 0.01, 0.02, 0.05, 0.1)]
    designs += [(100, 0.0225, 0.0025), (200, 0.0225, 0.0025), (100, 0.05, 0.05), (200, 0.1, 0.05), (1000, 0.03, 0.02)]
    for n, p_b, p_c in designs:
        truth = p_c - p_b
        old = new = old_width = new_width = 0.0
        for b, c, probability in tables(n, p_b, p_c):
            lo, hi, _ = before_paired(b, c, n)
            old += probability * (lo <= truth <= hi)
            old_width += probability * (hi - lo)
            result = paired_delta(*table(b, c, n))
            new += probability * (result.lo <= truth <= result.hi)
            new_width += probability * (result.hi - result.lo)
        rows.append(f"| {n:,} | {p_b:.2%} | {p_c:.2%} | {100 * truth:+.2f} pp | {old:.1%} | {new:.1%} | "
                    f"{100 * old_width:.1f} / {100 * new_width:.1f} |")
    return rows


def gate_size() -> list[str]:
    rows = ["| n | right -> wrong | wrong -> right | margin | false FAIL, before | false FAIL, now |",
            "|---|---|---|---|---|---|"]
    for n, p_b, p_c in [(100, 0.02, 0.0), (100, 0.05, 0.03), (200, 0.02, 0.0), (200, 0.1, 0.08), (1000, 0.05, 0.03)]:
        margin = p_c - p_b
        old = new = 0.0
        for b, c, probability in tables(n, p_b, p_c):
            center, se = agresti_min(b, c, n)
            old += probability * (sps.norm.cdf((center - margin) / se) < 0.025)
            new += probability * (violation_p_value(paired_delta(*table(b, c, n)), margin, ">=") < 0.025)
        rows.append(f"| {n:,} | {p_b:.0%} | {p_c:.0%} | delta >= {100 * margin:+.0f} pp | {old:.2%} | {new:.2%} |")
    return rows


def stratified_t_half(values: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Before, per row of ``values`` (replications x items, strata in blocks of ``sizes``): the half-width
    of the stratified t interval, t_{n-H} * sqrt(sum_h (n_h/n)^2 s_h^2 / n_h)."""
    n, variance, start = sum(sizes), 0.0, 0
    for size in sizes:
        block = values[:, start:start + size]
        variance = variance + (size / n) ** 2 * block.var(axis=1, ddof=1) / size
        start += size
    return sps.t.ppf(0.975, n - len(sizes)) * np.sqrt(variance)


def draw(rng: np.random.Generator, reps: int, sizes: Sequence[int], rates: Sequence[float]) -> np.ndarray:
    """``reps`` rows of 0/1 scores, stratum h's ``sizes[h]`` items right with probability ``rates[h]``."""
    return np.concatenate([rng.random((reps, size)) < rate for size, rate in zip(sizes, rates)], axis=1).astype(float)


def stratified_delta(rng: np.random.Generator, reps: int) -> list[str]:
    rows = ["| design | n | right -> wrong | wrong -> right | coverage, before | coverage, now | "
            "mean width before / now (pp) |", "|---|---|---|---|---|---|---|"]
    designs = [("2 subjects x 10", [10] * 2, 0.1, 0.0), ("4 subjects x 5", [5] * 4, 0.1, 0.0),
               ("4 subjects x 50", [50] * 4, 0.02, 0.0), ("57 subjects x 3-4", [4] * 29 + [3] * 28, 0.02, 0.0),
               ("57 subjects x 3-4", [4] * 29 + [3] * 28, 0.0225, 0.0025), ("57 subjects x 2", [2] * 57, 0.05, 0.0)]
    for name, sizes, p_b, p_c in designs:
        strata = np.repeat(np.arange(len(sizes)), sizes)
        n, truth = sum(sizes), p_c - p_b
        # Each item: right -> wrong with p_b, wrong -> right with p_c, otherwise unchanged (half right, half wrong).
        u = rng.random((reps, n))
        unchanged_right = rng.random((reps, n)) < 0.5
        base = np.where(u < p_b, 1.0, np.where(u < p_b + p_c, 0.0, unchanged_right.astype(float)))
        other = np.where(u < p_b, 0.0, np.where(u < p_b + p_c, 1.0, unchanged_right.astype(float)))
        diff = other - base
        half = stratified_t_half(diff, sizes)
        old = new = old_width = new_width = 0.0
        for i in range(reps):
            b, c = int(np.sum(diff[i] < 0)), int(np.sum(diff[i] > 0))
            am_lo, am_hi, _ = before_paired(b, c, n)
            lo, hi = min(diff[i].mean() - half[i], am_lo), max(diff[i].mean() + half[i], am_hi)
            old += lo <= truth <= hi
            old_width += hi - lo
            result = paired_delta(base[i], other[i], strata)
            new += result.lo <= truth <= result.hi
            new_width += result.hi - result.lo
        rows.append(f"| {name} | {n} | {p_b:.2%} | {p_c:.2%} | {old / reps:.1%} | {new / reps:.1%} | "
                    f"{100 * old_width / reps:.1f} / {100 * new_width / reps:.1f} |")
    return rows


def stratified_accuracy(rng: np.random.Generator, reps: int) -> list[str]:
    rows = ["| design | n | rates | coverage: t alone / before / now | width before / now / ideal (pp) | now / ideal |",
            "|---|---|---|---|---|---|"]
    alternating = [0.05, 0.95] * 29
    sizes57 = [int(s) for s in np.round(np.linspace(2, 30, 57))]
    designs = [
        ("57 subjects of 2-30", sizes57, alternating[:57], ".05/.95 alternating"),
        ("2 subjects x 50", [50, 50], [0.05, 0.95], ".05/.95"),
        ("57 subjects x 2", [2] * 57, alternating[:57], ".05/.95 alternating"),
        ("4 subjects x 20", [20] * 4, [0.9, 0.85, 0.1, 0.05], ".9/.85/.1/.05"),
        ("57 subjects x 2", [2] * 57, [0.26] * 57, ".26 (the demo's MMLU)"),
        ("57 subjects x 2", [2] * 57, [0.5] * 57, ".5"),
        ("40 subjects x 3", [3] * 40, [0.2] * 40, ".2"),
        ("57 subjects x 5", [5] * 57, [0.25] * 57, ".25"),
        ("2 subjects x 2", [2, 2], [0.05, 0.05], ".05"),
        ("2 subjects x 2", [2, 2], [0.2, 0.2], ".2"),
        ("2 subjects x 2", [2, 2], [0.5, 0.5], ".5"),
        ("3 subjects x 10", [10] * 3, [0.02] * 3, ".02"),
        ("3 subjects x 10", [10] * 3, [0.05] * 3, ".05"),
        ("3 subjects x 10", [10] * 3, [0.1] * 3, ".1"),
        ("3 subjects x 10", [10] * 3, [0.2, 0.5, 0.8], ".2/.5/.8"),
        ("2 subjects x 20", [20, 20], [0.1, 0.3], ".1/.3"),
    ]
    for name, sizes, rates, label in designs:
        n = sum(sizes)
        weights, rates_a = np.asarray(sizes) / n, np.asarray(rates)
        truth = float(weights @ rates_a)
        ideal = 2 * Z * math.sqrt(float(np.sum(weights ** 2 * rates_a * (1 - rates_a) / np.asarray(sizes))))
        values = draw(rng, reps, sizes, rates)
        means, half = values.mean(axis=1), stratified_t_half(values, sizes)
        wilson_lo, wilson_hi = proportion_confint(values.sum(axis=1), n, alpha=0.05, method="wilson")
        t_alone = np.mean((means - half <= truth) & (truth <= means + half))
        old_lo = np.maximum(0, np.minimum(means - half, wilson_lo))
        old_hi = np.minimum(1, np.maximum(means + half, wilson_hi))
        old, old_width = np.mean((old_lo <= truth) & (truth <= old_hi)), np.mean(old_hi - old_lo)
        strata = np.repeat(np.arange(len(sizes)), sizes)
        new = new_width = 0.0
        for row in values:
            est = mean_ci(row, strata)
            new += est.lo <= truth <= est.hi
            new_width += est.hi - est.lo
        rows.append(f"| {name} | {n} | {label} | {t_alone:.1%} / {old:.1%} / {new / reps:.1%} | "
                    f"{100 * old_width:.1f} / {100 * new_width / reps:.1f} / {100 * ideal:.1f} | "
                    f"{new_width / reps / ideal:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000, help="Monte Carlo replications per design")
    parser.add_argument("--seed", type=int, default=38)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    sections = [("Unstratified paired delta: p < 0.05 against the CI excluding 0", agreement),
                ("Unstratified paired delta: exact coverage of the 95% CI", coverage),
                ("Non-inferiority gate on the unstratified delta at its margin: exact false-fail rate", gate_size),
                (f"Stratified paired delta: Monte Carlo coverage ({args.reps} runs)",
                 lambda: stratified_delta(rng, args.reps)),
                (f"Stratified accuracy: Monte Carlo coverage and mean width ({args.reps} runs)",
                 lambda: stratified_accuracy(rng, args.reps))]
    for title, rows in sections:
        print(f"\n{title}\n")
        print("\n".join(rows()))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
