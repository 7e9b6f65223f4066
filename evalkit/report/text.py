"""The summary as text: figures formatted with their CIs, one table per suite, the gates (rich)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from evalkit.report.answer import answer
from evalkit.changes import RIGHT_TO_WRONG, WRONG_TO_RIGHT, Changes
from evalkit.stats import Estimate, PairedDelta
from evalkit.summary import ALL, BASE, Summary

if TYPE_CHECKING:
    from rich.table import Table

    from evalkit.gates import GateResult


def finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def fmt_score(est: Estimate | None) -> str:
    if est is None:
        return "-"
    ci = f" [{100 * est.lo:.1f}, {100 * est.hi:.1f}]" if finite(est.lo) and finite(est.hi) else " [n/a]"
    return f"{100 * est.mean:.1f}%{ci} n={est.n}"


def fmt_delta(delta: PairedDelta | None) -> str:
    if delta is None:
        return "-"
    ci = f" [{100 * delta.lo:+.1f}, {100 * delta.hi:+.1f}]" if finite(delta.lo) and finite(delta.hi) else " [n/a]"
    p = f" p={delta.p_value:.3g}" if finite(delta.p_value) else ""
    return f"{100 * delta.delta:+.1f} pp{ci}{p}"


def answer_lines(summary: Summary, gates: Sequence[GateResult] = ()) -> list[str]:
    """The answer, one line per adapter: each suite's change in words (:mod:`evalkit.report.answer`), then
    its gates' verdicts; the base's scores when no adapter ran."""
    if not summary.adapters:
        return ["base: " + "; ".join(f"{s.layout.title} {fmt_score(s.scores[BASE].overall)}"
                                     for s in summary.suites.values() if BASE in s.scores)]
    lines = []
    for line in answer(summary):
        variant = line.split(" vs ", 1)[0]
        verdicts = [g for g in gates if g.label.endswith(f"@{variant}")]
        failed = [g.label for g in verdicts if g.verdict != "PASS"]
        if verdicts:
            line += f" Gates: {len(verdicts) - len(failed)} of {len(verdicts)} pass" + (
                f" (not: {', '.join(failed)})." if failed else ".")
        # A gate passed on a CI that still contains its margin: the sample cannot tell which side it is on.
        unresolved = [g for g in verdicts if g.verdict == "PASS" and g.lo is not None and g.hi is not None
                      and g.lo < g.threshold < g.hi]
        if unresolved:
            line += " Inconclusive at " + ", ".join(f"{g.label} (its CI {100 * g.lo:+.1f} to {100 * g.hi:+.1f} pp "
                                                    f"contains the margin {100 * g.threshold:+.1f} pp)"
                                                    for g in unresolved) + ": more questions would resolve it."
        lines.append(line)
    return lines


def suite_rows(summary: Summary, suite: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a suite's table: one row for all items and one per group; a score column per
    variant and a paired-delta column per adapter."""
    s = summary.suites[suite]
    variants = [v for v in summary.variants if v in s.scores]
    adapters = [a for a in summary.adapters if a in s.deltas]
    header = [s.layout.group_title, *variants, *(f"Δ {a} vs {BASE}" for a in adapters)]
    rows = []
    for label in [ALL, *(g for g in s.groups if g != ALL)]:  # a group of every example repeats the first row
        shown = ALL if label == ALL else s.layout.label(label)
        rows.append([shown, *(fmt_score(s.scores[v].get(label)) for v in variants),
                     *(fmt_delta(s.deltas[a].get(label)) for a in adapters)])
    for metric, scores in s.secondary.items():  # e.g. cloze acc and acc_norm, whichever is scored above
        deltas = s.secondary_deltas.get(metric, {})
        rows.append([f"{ALL} ({metric})", *(fmt_score(scores[v].overall if v in scores else None) for v in variants),
                     *(fmt_delta(deltas[a].overall if a in deltas else None) for a in adapters)])
    return header, rows


def short(text: str | None, limit: int = 80) -> str:
    """One line of at most ``limit`` characters (a question or SQL in a table cell)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def flips_line(change: Changes) -> str:
    """The McNemar cells in words, e.g. ``4 right -> wrong, 9 wrong -> right of 80 paired examples``."""
    c = change.counts
    stands = sum(e.stands for e in change.effects)
    text = f"{c.right_to_wrong} right → wrong, {c.wrong_to_right} wrong → right of {c.n} paired examples"
    if len(change.effects) > 1:
        text += (f"; {stands} of {len(change.effects)} clusters' deltas stand after the Benjamini-Hochberg "
                 "correction")
    return text


def flip_rows(change: Changes, shown: int) -> tuple[list[str], list[list[str]]]:
    """The first ``shown`` flipped examples of each direction: what was asked, gold, each side's answer."""
    rows = []
    for direction in (RIGHT_TO_WRONG, WRONG_TO_RIGHT):
        for flip in [f for f in change.flips if f.direction == direction][:shown]:
            rows.append([direction.replace("_to_", " → "), flip.id, flip.cluster, short(flip.input), short(flip.expected),
                         f"{short(flip.base, 60) or '-'} ({flip.base_outcome})",
                         f"{short(flip.adapter, 60) or '-'} ({flip.adapter_outcome})"])
    return ["flip", "id", "cluster", "question", "gold", BASE, "adapter"], rows


def effects_rows(summary: Summary, suite: str, adapter: str, shown: int) -> tuple[list[str], list[list[str]]]:
    """The clusters with the ``shown`` most negative and most positive paired deltas, with the adjusted p."""
    s = summary.suites[suite]
    effects = s.changes[adapter].effects
    ends = effects if len(effects) <= 2 * shown else [*effects[:shown], *effects[-shown:]]
    return ([s.layout.cluster_title, f"Δ {adapter} vs {BASE}", "p (BH-adjusted)", "stands"],
            [[e.cluster, fmt_delta(e.delta), f"{e.p_adjusted:.3g}" if finite(e.p_adjusted) else "-",
              "yes" if e.stands else "no"] for e in ends])


def transition_rows(change: Changes) -> tuple[list[str], list[list[str]]]:
    """The outcome transition matrix: one row per base outcome, one column per adapter outcome."""
    return ([f"{BASE} ↓ adapter →", *change.outcomes],
            [[b, *(str(change.transitions.get(b, {}).get(a, 0)) for a in change.outcomes)] for b in change.outcomes])


def positions_rows(summary: Summary, suite: str) -> tuple[list[str], list[list[str]]]:
    """A multiple-choice suite's predicted answer positions per variant beside the gold positions."""
    s = summary.suites[suite]
    variants = [v for v in summary.variants if v in s.predicted]
    positions = sorted({p for counts in [*s.predicted.values(), *s.expected.values()] for p in counts})

    def share(counts: dict[str, int], position: str) -> str:
        total = sum(counts.values())
        return f"{counts.get(position, 0) / total:.1%}" if total else "-"

    gold = s.expected.get(variants[0], {}) if variants else {}
    return (["answer", "gold", *(f"{v} predicted" for v in variants)],
            [[p, share(gold, p), *(share(s.predicted[v], p) for v in variants)] for p in positions])


def counts_line(summary: Summary, suite: str) -> str:
    parts = []
    for variant, c in summary.suites[suite].counts.items():
        parts.append(f"{variant}: {c.scored} scored ({c.passed} passed, {c.failed} failed), "
                     f"{c.skipped} skipped, {c.errors} errors")
    reasons = next((c.skip_reasons for c in summary.suites[suite].counts.values() if c.skip_reasons), ())
    if reasons:  # one line for all skips (the same examples are skipped in every variant)
        shown = "; ".join(f"{reason} ({count})" for reason, count in reasons[:2])
        parts.append(f"skipped because: {shown}{'; ...' if len(reasons) > 2 else ''}")
    return "; ".join(parts)


def _test_names(summary: Summary, suite: str) -> str:
    return ", ".join(sorted({f.overall.test for f in summary.suites[suite].deltas.values()}))


def suite_caption(summary: Summary, suite: str) -> str:
    level = f"{100 * summary.confidence:g}%"
    layout = summary.suites[suite].layout
    stratified = f" stratified by {layout.cluster_title}" if layout.stratified else ""
    caption = f"score with {level} CI{stratified}"
    if summary.suites[suite].deltas:
        caption += f"; Δ = paired difference on the same items, {level} CI, p from {_test_names(summary, suite)}"
    return caption


def suite_title(summary: Summary, suite: str) -> str:
    s = summary.suites[suite]
    return f"{s.layout.title} ({s.template})"


def warnings(summary: Summary) -> list[str]:
    """Every suite's warnings (chance, position bias), in suite order."""
    return [w for s in summary.suites.values() for w in s.warnings]


def render_tables(summary: Summary, gates: Sequence[GateResult] = ()) -> list[Table]:
    """rich tables: one per suite, then the gates."""
    from rich.table import Table
    from rich.text import Text

    tables = []
    for suite in summary.suites:
        header, rows = suite_rows(summary, suite)
        table = Table(title=suite_title(summary, suite), caption=suite_caption(summary, suite), caption_justify="left")
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # "[n/a]" is text, not rich markup
        tables.append(table)
    if gates:
        table = Table(title="Regression gates", caption=gates[0].policy, caption_justify="left")
        for name in ("gate", "figure", "evidence", "verdict"):
            table.add_column(name)
        for g in gates:
            colour = {"PASS": "green", "FAIL": "red"}.get(g.verdict, "yellow")
            table.add_row(Text(g.label), Text(g.figure_text), Text(g.evidence), Text(g.verdict, style=colour))
        tables.append(table)
    return tables


def render_text(summary: Summary, gates: Sequence[GateResult] = (), *, width: int = 120, color: bool = False) -> str:
    """The rich tables and the count lines as text for a terminal (ANSI colours when ``color``)."""
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    for table in render_tables(summary, gates):
        console.print(table)
    for suite in summary.suites:
        console.print(f"{suite}: {counts_line(summary, suite)}", soft_wrap=True)
    for warning in warnings(summary):
        console.print(Text(f"Warning: {warning}", style="yellow"), soft_wrap=True)
    for line in answer_lines(summary, gates):
        console.print(Text(f"Answer: {line}", style="bold"), soft_wrap=True)
    return buffer.getvalue()
