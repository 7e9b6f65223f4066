"""The trade-off in words: one sentence per adapter and suite, read off the paired deltas' CIs.

A reader should not need a statistics course to use the summary. Each sentence says whether the change is
a real gain, a real loss, or not distinguishable from none (the CI straddles 0), and in that last case how
large a change the sample still rules out; a score at chance says so, since its delta is then noise.
"""

from __future__ import annotations

from evalkit.stats import PairedDelta
from evalkit.summary import BASE, Summary, SuiteSummary


def _points(value: float) -> str:
    return f"{100 * abs(value):.1f} pp"


def _ci(delta: PairedDelta) -> str:
    return f"{100 * delta.confidence:g}% CI {100 * delta.lo:+.1f} to {100 * delta.hi:+.1f} pp, n={delta.n}"


def delta_sentence(title: str, delta: PairedDelta) -> str:
    """What one paired delta says, in words."""
    if delta.lo > 0:
        return f"{title} rose {_points(delta.delta)} ({_ci(delta)}): a real gain"
    if delta.hi < 0:
        return f"{title} fell {_points(delta.delta)} ({_ci(delta)}): a real loss"
    return (f"{title} moved {100 * delta.delta:+.1f} pp ({_ci(delta)}): not distinguishable from no change; "
            f"this sample rules out a loss larger than {_points(delta.lo)} and a gain larger than {_points(delta.hi)}")


def _at_chance(suite: SuiteSummary, variant: str) -> bool:
    return any(w.startswith(f"{suite.suite} {variant}: ") and "includes chance" in w for w in suite.warnings)


def answer(summary: Summary) -> list[str]:
    """One line per adapter: each suite's change against the base, the target suites first."""
    lines = []
    ordered = sorted(summary.suites.values(), key=lambda s: s.layout.role != "target")
    for adapter in summary.adapters:
        parts = []
        for suite in ordered:
            delta = suite.deltas.get(adapter)
            if delta is None:
                continue
            sentence = delta_sentence(suite.layout.title, delta.overall)
            chance = [v for v in (BASE, adapter) if _at_chance(suite, v)]
            if chance:
                sentence += f" (but {' and '.join(chance)} score at chance here, so this change is noise)"
            parts.append(sentence)
        if parts:
            lines.append(f"{adapter} vs {BASE}: " + "; ".join(parts) + ".")
    return lines
