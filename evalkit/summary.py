"""The trade-off summary: per-example records in, figures with error bars out. The only aggregation.

:func:`summarize` turns :class:`CaseRecord` rows (one per example per variant, from the pytest plugin or
a baseline file) into a :class:`Summary`: for each suite, each variant's score overall, per group and
per cluster (micro: every example weighs the same), its macro score (mean of cluster scores), the counts
of outcomes and, for multiple-choice suites, of predicted answer positions; and for each adapter its
**paired** delta against the base on the examples both scored (:mod:`evalkit.stats`). A suite's
:class:`Layout` says how: which groups in which order, and whether CIs are stratified by cluster. A
family of suites (the forgetting suites) is also summarised as one: the macro average of its members.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evalkit.changes import Changes, changes
from evalkit.records import ALL, BASE, CaseRecord, Figures
from evalkit.stats import Estimate, PairedDelta, macro_ci, macro_of, mean_ci, paired_delta

if TYPE_CHECKING:
    from evalkit.streams import SequentialResult

__all__ = ["ALL", "BASE", "CaseRecord", "Counts", "Figures", "Layout", "Summary", "SuiteSummary", "sort_records",
           "summarize"]



@dataclass(frozen=True)
class Layout:
    """How a suite's figures are titled, grouped and tested.

    ``role`` is ``target`` for the skill fine-tuning trains (Spider) and ``retention`` for what it may
    cost (MMLU, a user's own multiple-choice file): the trade-off plot draws targets against retentions.
    ``choices`` marks multiple-choice suites, whose predicted answer positions are counted and whose
    figures are checked against chance; ``chance_fix`` is the advice when they are at chance. ``metrics``
    names the secondary per-example scores the suite reports (Spider's ``em``), which gates may name.
    """

    title: str
    group_title: str
    cluster_title: str
    groups: tuple[str, ...] = ()
    group_labels: Mapping[str, str] = field(default_factory=dict)
    stratified: bool = False
    role: str = "retention"
    choices: bool = False
    chance_fix: str = "use a larger model"
    metrics: tuple[str, ...] = ()

    def label(self, group: str) -> str:
        return self.group_labels.get(group, group)


@dataclass(frozen=True)
class Counts:
    """How a variant's examples ended: scored (passed + failed), skipped, errors."""

    scored: int = 0
    passed: int = 0
    skipped: int = 0
    errors: int = 0
    skip_reasons: tuple[tuple[str, int], ...] = ()  # (reason, how many), most frequent first

    @property
    def failed(self) -> int:
        return self.scored - self.passed


@dataclass(frozen=True)
class SuiteSummary:
    suite: str
    template: str
    layout: Layout
    counts: dict[str, Counts]
    scores: dict[str, Figures]
    deltas: dict[str, Figures]
    macro: dict[str, Estimate] = field(default_factory=dict)  # mean of cluster scores, per variant
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)  # per variant
    predicted: dict[str, dict[str, int]] = field(default_factory=dict)  # answer positions, choice suites
    expected: dict[str, dict[str, int]] = field(default_factory=dict)  # gold positions, choice suites
    secondary: dict[str, dict[str, Figures]] = field(default_factory=dict)  # metric -> variant -> scores
    secondary_deltas: dict[str, dict[str, Figures]] = field(default_factory=dict)  # metric -> adapter -> deltas
    changes: dict[str, Changes] = field(default_factory=dict)  # per adapter: flips, cluster effects, transitions
    warnings: list[str] = field(default_factory=list)
    members: tuple[str, ...] = ()  # a family's summary: the suites it averages

    @property
    def groups(self) -> list[str]:
        """Group names present in any variant: the layout's order first, then any others sorted."""
        present = {g for figures in self.scores.values() for g in figures.groups}
        return [g for g in self.layout.groups if g in present] + sorted(present - set(self.layout.groups))


@dataclass(frozen=True)
class Summary:
    """All suites' figures for one run; ``variants`` lists the base first, then adapters in order."""

    variants: list[str]
    suites: dict[str, SuiteSummary]
    confidence: float
    sequential: SequentialResult | None = None  # a --sequential run: where each suite stopped, its rounds

    @property
    def adapters(self) -> list[str]:
        return [v for v in self.variants if v != BASE]

    def figure(self, suite: str, label: str | None, kind: str, variant: str,
               metric: str | None = None) -> Estimate | PairedDelta | None:
        """Look a figure up the way gates name it: ``suite[.label][.metric].kind@variant`` (kind: score,
        delta; ``metric`` a secondary score such as Spider's ``em``, None for the suite's own score)."""
        summary = self.suites.get(suite)
        if summary is None:
            return None
        if metric is None:
            by_variant = summary.scores if kind == "score" else summary.deltas
        else:
            by_variant = (summary.secondary if kind == "score" else summary.secondary_deltas).get(metric, {})
        figures = by_variant.get(variant)
        return None if figures is None else figures.get(label)


Value = Callable[[CaseRecord], float]


def _main_score(record: CaseRecord) -> float:
    return float(record.score or 0.0)


def _secondary(metric: str) -> Value:
    return lambda record: (record.secondary or {})[metric]


def _having(records: Sequence[CaseRecord], metric: str) -> list[CaseRecord]:
    """The records that carry a secondary score (Spider's ``em`` is missing where the gold does not parse)."""
    return [r for r in records if metric in (r.secondary or {})]


def _scores(records: Sequence[CaseRecord], stratified: bool, confidence: float, value: Value = _main_score) -> Figures:
    def estimate(rows: Sequence[CaseRecord]) -> Estimate:
        return mean_ci([value(r) for r in rows], [r.cluster for r in rows] if stratified else None, confidence)

    return Figures(
        overall=estimate(records),
        groups={g: estimate([r for r in records if r.group == g]) for g in sorted({r.group for r in records})},
        clusters={c: estimate([r for r in records if r.cluster == c]) for c in sorted({r.cluster for r in records})},
    )


def _deltas(base: Sequence[CaseRecord], other: Sequence[CaseRecord], stratified: bool, confidence: float,
            value: Value = _main_score) -> Figures | None:
    """Paired deltas on the items both variants scored (base order)."""
    by_id = {r.id: r for r in other}
    pairs = [(b, by_id[b.id]) for b in base if b.id in by_id]
    if not pairs:
        return None

    def delta(rows: Sequence[tuple[CaseRecord, CaseRecord]]) -> PairedDelta:
        return paired_delta([value(b) for b, _ in rows], [value(o) for _, o in rows],
                            [b.cluster for b, _ in rows] if stratified else None, confidence)

    return Figures(
        overall=delta(pairs),
        groups={g: delta([p for p in pairs if p[0].group == g]) for g in sorted({b.group for b, _ in pairs})},
        clusters={c: delta([p for p in pairs if p[0].cluster == c]) for c in sorted({b.cluster for b, _ in pairs})},
    )


def _counts(records: Iterable[CaseRecord]) -> Counts:
    rows = list(records)
    return Counts(
        scored=sum(r.status == "scored" for r in rows),
        passed=sum(r.status == "scored" and bool(r.passed) for r in rows),
        skipped=sum(r.status == "skipped" for r in rows),
        errors=sum(r.status == "error" for r in rows),
        skip_reasons=tuple(Counter(r.reason for r in rows if r.status == "skipped").most_common()),
    )


def _macro(records: Sequence[CaseRecord], confidence: float) -> Estimate:
    """The mean of cluster scores; the clusters are fixed strata, so its CI is stratified (stats.macro_ci)."""
    return macro_ci([r.score for r in records], [r.cluster for r in records], confidence)


def _chance_warnings(suite: str, layout: Layout, scored: Mapping[str, Sequence[CaseRecord]],
                     scores: Mapping[str, Figures], confidence: float) -> list[str]:
    """Say when a multiple-choice variant is indistinguishable from guessing, or answers one position
    most of the time: its deltas then measure a shift in guessing, not knowledge."""
    warnings = []
    for variant, rows in scored.items():
        sized = [r for r in rows if r.logprobs]
        if not sized or variant not in scores:
            continue
        chance = sum(1 / len(r.logprobs or ()) for r in sized) / len(sized)
        figure = scores[variant].overall
        if figure.lo <= chance <= figure.hi:
            warnings.append(f"{suite} {variant}: {figure.mean:.1%} [{figure.lo:.1%}, {figure.hi:.1%}] "
                            f"({confidence:.0%} CI, n={figure.n}) includes chance ({chance:.1%}): this score cannot "
                            f"tell knowledge from guessing. Fix: {layout.chance_fix}.")
        position, count = Counter(r.extracted for r in rows).most_common(1)[0]
        if count > len(rows) / 2:
            gold = sum(r.expected == position for r in rows) / len(rows)
            warnings.append(f"{suite} {variant}: answers {position} for {count / len(rows):.0%} of {len(rows)} "
                            f"questions ({position} is right for {gold:.0%}): a position bias, so its deltas may "
                            f"measure a shift in that bias, not in knowledge. Fix: {layout.chance_fix}.")
    return warnings


def sort_records(records: Iterable[CaseRecord], variants: Sequence[str]) -> list[CaseRecord]:
    """A stable order independent of how tests were scheduled (serial or pytest-xdist)."""
    rank = {v: i for i, v in enumerate(variants)}
    return sorted(records, key=lambda r: (r.suite, rank.get(r.variant, len(rank)), r.variant, r.id))


def summarize(records: Iterable[CaseRecord], variants: Sequence[str], layouts: Mapping[str, Layout],
              templates: Mapping[str, str], confidence: float = 0.95,
              families: Mapping[str, tuple[Layout, Sequence[str]]] | None = None) -> Summary:
    """Figures for every suite of ``layouts`` that has records; ``variants`` gives the order (the base first).
    ``families`` (name -> layout and member suites) adds each family's macro average over its members present."""
    rows = sort_records(records, variants)
    suites: dict[str, SuiteSummary] = {}
    for suite, layout in layouts.items():
        in_suite = [r for r in rows if r.suite == suite]
        if not in_suite:
            continue
        by_variant = {v: [r for r in in_suite if r.variant == v] for v in variants}
        scored = {v: [r for r in rs if r.status == "scored"] for v, rs in by_variant.items()}
        scores = {v: _scores(rs, layout.stratified, confidence) for v, rs in scored.items() if rs}
        deltas = {}
        for adapter in variants:
            if adapter != BASE and scored.get(BASE) and scored.get(adapter):
                figures = _deltas(scored[BASE], scored[adapter], layout.stratified, confidence)
                if figures is not None:
                    deltas[adapter] = figures
        metrics = sorted({m for rs in scored.values() for r in rs for m in (r.secondary or {})})
        secondary = {m: {v: _scores(_having(rs, m), layout.stratified, confidence, _secondary(m))
                         for v, rs in scored.items() if _having(rs, m)}
                     for m in metrics}
        secondary_deltas = {m: {a: f for a in deltas
                                if (f := _deltas(_having(scored[BASE], m), _having(scored[a], m), layout.stratified,
                                                 confidence, _secondary(m))) is not None}
                            for m in metrics}
        suites[suite] = SuiteSummary(
            suite, templates.get(suite, ""), layout,
            counts={v: _counts(rs) for v, rs in by_variant.items() if rs},
            scores=scores, deltas=deltas,
            macro={v: _macro(scored[v], confidence) for v, f in scores.items() if len(f.clusters) > 1},
            outcomes={v: dict(sorted(Counter(r.outcome for r in rs).items())) for v, rs in scored.items() if rs},
            predicted={v: dict(sorted(Counter(r.extracted or "unparseable" for r in rs).items()))
                       for v, rs in scored.items() if rs and layout.choices},
            expected={v: dict(sorted(Counter(r.expected for r in rs if r.expected).items()))
                      for v, rs in scored.items() if rs and layout.choices},
            secondary=secondary, secondary_deltas=secondary_deltas,
            changes={a: changes(scored[BASE], scored[a], f, confidence) for a, f in deltas.items()},
            warnings=_chance_warnings(suite, layout, scored, scores, confidence) if layout.choices else [],
        )
    for family, (layout, members) in (families or {}).items():
        present = [suites[m] for m in members if m in suites]
        if present:
            suites[family] = _family_summary(family, layout, present, variants, confidence)
    return Summary(list(variants), suites, confidence)


def _family_summary(family: str, layout: Layout, members: Sequence[SuiteSummary], variants: Sequence[str],
                    confidence: float) -> SuiteSummary:
    """A family's figures: each variant's macro average of its suites' scores and each adapter's macro
    average of their paired deltas (every suite weighs the same, as the forgetting literature averages
    benchmarks), with the members' own figures as the groups."""
    def combined(by_variant: Callable[[SuiteSummary], Mapping[str, Figures]], variant: str) -> Figures | None:
        figures = {m.suite: by_variant(m)[variant].overall for m in members if variant in by_variant(m)}
        if len(figures) < len(members):
            return None
        return Figures(overall=macro_of(list(figures.values()), confidence), groups=figures, clusters=figures)

    scores = {v: f for v in variants if (f := combined(lambda m: m.scores, v)) is not None}
    deltas = {a: f for a in variants if a != BASE and (f := combined(lambda m: m.deltas, a)) is not None}
    counts = {v: Counts(*(sum(getattr(m.counts[v], key) for m in members if v in m.counts)
                          for key in ("scored", "passed", "skipped", "errors")))
              for v in variants if any(v in m.counts for m in members)}
    return SuiteSummary(family, "+".join(m.template for m in members), layout, counts=counts, scores=scores,
                        deltas=deltas, members=tuple(m.suite for m in members))

