"""The report's tables as rows of strings, the one table model every renderer lays out: the terminal's
rich tables (:mod:`.text`), Markdown (:mod:`.files`) and HTML (:mod:`.html`). Data flows one way: summary
-> rows -> renderer; no renderer calls back into another.
"""

from __future__ import annotations

import math

from evalkit.changes import RIGHT_TO_WRONG, WRONG_TO_RIGHT, Changes
from evalkit.stats import Estimate, PairedDelta
from evalkit.summary import ALL, BASE, Summary


def finite(value: float | None) -> bool:
    """Whether a figure was computed: an undefined CI end (NaN) prints as n/a, never as a number."""
    return value is not None and not math.isnan(value)


def fmt_score(est: Estimate | None) -> str:
    """``30.0% [21.1, 40.8] n=80``: a score is never shown without its CI and n."""
    if est is None:
        return "-"
    ci = f" [{100 * est.lo:.1f}, {100 * est.hi:.1f}]" if finite(est.lo) and finite(est.hi) else " [n/a]"
    return f"{100 * est.mean:.1f}%{ci} n={est.n}"


def fmt_delta(delta: PairedDelta | None) -> str:
    """``+23.8 pp [+13.7, +32.6] p=3.81e-06``: a paired delta in points, never as a relative change."""
    if delta is None:
        return "-"
    ci = f" [{100 * delta.lo:+.1f}, {100 * delta.hi:+.1f}]" if finite(delta.lo) and finite(delta.hi) else " [n/a]"
    p = f" p={delta.p_value:.3g}" if finite(delta.p_value) else ""
    return f"{100 * delta.delta:+.1f} pp{ci}{p}"


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
    """How each variant's examples ended, and why examples were skipped: what the figures' n leaves out."""
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
    """What the table's intervals and p-values are, so a reader need not look it up."""
    level = f"{100 * summary.confidence:g}%"
    layout = summary.suites[suite].layout
    stratified = f" stratified by {layout.cluster_title}" if layout.stratified else ""
    caption = f"score with {level} CI{stratified}"
    if summary.suites[suite].deltas:
        caption += f"; Δ = paired difference on the same items, {level} CI, p from {_test_names(summary, suite)}"
    return caption


def suite_title(summary: Summary, suite: str) -> str:
    """The suite's title with its prompt template: figures from other templates do not compare."""
    s = summary.suites[suite]
    return f"{s.layout.title} ({s.template})"


def warnings(summary: Summary) -> list[str]:
    """Every suite's warnings (chance, position bias), in suite order."""
    return [w for s in summary.suites.values() for w in s.warnings]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


_WHY = {"decided": "every gate on it decided", "narrow": "every delta's interval narrower than --sequential-width",
        "exhausted": "its examples ran out before a decision: the fixed-n result stands",
        "ungated": "no gate names it (add a gate or --sequential-width to go on)"}


def sequential_lines(summary: Summary) -> list[str]:
    """Where each stream of a --sequential run stopped, why, and the time that saved; the intervals' kind."""
    result = summary.sequential
    if result is None:
        return []
    lines = []
    for s in result.streams:
        what = f"{s.name} ({', '.join(s.suites)})" if s.family else s.name
        stop = "ran all" if s.reason == "exhausted" else "decided" if s.reason == "decided" else "stopped"
        looks = f"{s.looks} round{'s' if s.looks != 1 else ''}"
        saved = (f"; saved about {_minutes(s.saved_seconds)} of inference (estimated {_minutes(s.seconds + s.saved_seconds)} "
                 f"for all {s.total:,})" if s.evaluated < s.total else "")
        lines.append(f"{what}: {stop} at n={s.evaluated:,} of {s.total:,} after {looks}: {_WHY[s.reason]}{saved}; "
                     f"not needed: {s.total - s.evaluated:,} examples")
    if result.extended:
        lines.append(f"The --baseline file lacked the base's results for {len(result.extended):,} of the examples "
                     "needed: the base was evaluated on them and the file extended.")
    lines.append(f"Sequential run: the deltas of suites that stopped early are {100 * (1 - result.alpha):g}% anytime-valid "
                 "confidence sequences, valid at every look (wider than a fixed-n CI at the same n); examples not "
                 "needed were never evaluated and are not counted as skipped or scored.")
    return lines


def sequential_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Every look of every stream: n and each headline or gated delta's anytime-valid interval."""
    rows = []
    for s in summary.sequential.streams if summary.sequential else ():
        for r in s.rounds:
            figure = f"{r['figure']}.{r['group']}" if r["group"] else r["figure"]
            rows.append([s.name, str(r["look"]), f"{r['n']:,}", figure, r["variant"], str(r["items"]),
                         f"{100 * r['delta']:+.1f} pp" if finite(r["delta"]) else "-",
                         f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]"])
    return ["stream", "look", "n", "figure", "adapter", "items", "Δ", "anytime-valid interval (pp)"], rows
