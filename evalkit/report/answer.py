"""The trade-off in words: one line per adapter, read off the paired deltas' CIs, then its gates' verdicts.

A reader should not need a statistics course to use the summary. Each sentence says whether the change is
a real gain, a real loss, or not distinguishable from none (the CI straddles 0), and in that last case how
large a change the sample still rules out; a score at chance says so, since its delta is then noise. A gate
that passed on a CI still holding its margin is called inconclusive: the sample cannot tell which side of
the margin the truth is on. Every renderer prints these same lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from evalkit.report.rows import fmt_score
from evalkit.stats import PairedDelta
from evalkit.summary import BASE, Summary, SuiteSummary

if TYPE_CHECKING:
    from evalkit.gates import GateResult


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


def _suite_sentences(summary: Summary, adapter: str) -> list[str]:
    """Each suite's change against the base: the target suites first, then each family's average, then the
    other suites; a family's member is named only when its own CI excludes 0 (the average speaks for the
    rest, and the tables show every member)."""
    in_family = {member for suite in summary.suites.values() for member in suite.members}
    sentences = []
    for suite in sorted(summary.suites.values(),
                        key=lambda s: (s.layout.role != "target", not s.members, s.suite in in_family)):
        delta = suite.deltas.get(adapter)
        if delta is None or (suite.suite in in_family and delta.overall.lo <= 0 <= delta.overall.hi):
            continue
        sentence = delta_sentence(suite.layout.title, delta.overall)
        chance = [v for v in (BASE, adapter) if _at_chance(suite, v)]
        if chance:
            sentence += f" (but {' and '.join(chance)} score at chance here, so this change is noise)"
        sentences.append(sentence)
    return sentences


def _gate_words(adapter: str, gates: Sequence[GateResult]) -> str:
    """How the adapter's gates ended, and which passed without resolving their margin."""
    verdicts = [g for g in gates if g.label.endswith(f"@{adapter}")]
    if not verdicts:
        return ""
    failed = [g.label for g in verdicts if g.verdict != "PASS"]
    words = f" Gates: {len(verdicts) - len(failed)} of {len(verdicts)} pass" + (
        f" (not: {', '.join(failed)})." if failed else ".")
    unresolved = [g for g in verdicts if g.verdict == "PASS" and g.lo is not None and g.hi is not None
                  and g.lo < g.threshold < g.hi]
    if unresolved:
        words += " Inconclusive at " + ", ".join(f"{g.label} (its CI {100 * g.lo:+.1f} to {100 * g.hi:+.1f} pp "
                                                 f"contains the margin {100 * g.threshold:+.1f} pp)"
                                                 for g in unresolved) + ": more questions would resolve it."
    return words


def answer_lines(summary: Summary, gates: Sequence[GateResult] = ()) -> list[str]:
    """The answer, one line per adapter (its suites' changes in words, then its gates); the base's scores
    when no adapter ran."""
    if not summary.adapters:
        return ["base: " + "; ".join(f"{s.layout.title} {fmt_score(s.scores[BASE].overall)}"
                                     for s in summary.suites.values() if BASE in s.scores)]
    return [f"{adapter} vs {BASE}: " + "; ".join(sentences) + "." + _gate_words(adapter, gates)
            for adapter in summary.adapters if (sentences := _suite_sentences(summary, adapter))]
