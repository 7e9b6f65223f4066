"""The trade-off summary: per-example records in, figures with error bars out, rendered four ways.

:func:`summarize` turns :class:`CaseRecord` rows (one per example per variant, from the pytest plugin or
a baseline file) into a :class:`Summary`: for each suite, each variant's score overall, per group (Spider
hardness, MMLU category) and per cluster (Spider database, MMLU subject), and for each adapter its
**paired** delta against the base on the items both scored (:mod:`evalkit.stats`). MMLU figures are
clustered by subject; Spider's are not (McNemar's exact test on the questions, as is usual for Spider).

Renderers: :func:`render_tables` (rich, for the terminal), :func:`to_json` (every figure, plus the run's
metadata the caller passes), :func:`to_markdown` (paste-able), :func:`plot_deltas` and
:func:`plot_tradeoff` (matplotlib PNGs) and :func:`write_cases` (one JSON line per example).
:func:`write_report` writes them all into a folder.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.data.hardness import LEVELS
from evalkit.data.mmlu import CATEGORY_LABELS
from evalkit.stats import Estimate, PairedDelta, mean_ci, paired_delta

if TYPE_CHECKING:
    from rich.table import Table

    from evalkit.gates import GateResult

BASE = "base"
SUITES: dict[str, dict[str, Any]] = {
    "spider": {"title": "Spider execution accuracy", "groups": LEVELS, "group_title": "hardness",
               "cluster_title": "database", "clustered": False},
    "mmlu": {"title": "MMLU accuracy", "groups": tuple(CATEGORY_LABELS), "group_title": "category",
             "cluster_title": "subject", "clustered": True},
}
ALL = "all"


@dataclass(frozen=True)
class CaseRecord:
    """One example evaluated by one variant, as the per-example JSONL stores it.

    ``status`` is ``scored`` (the metric ran: ``score``, ``passed``, ``outcome`` are set), ``skipped``
    (``reason`` says why, e.g. a missing database) or ``error`` (inference or scoring crashed).
    ``output`` is the raw generation (Spider) and ``logprobs`` the four choice log-probabilities (MMLU);
    ``extracted`` is what the metric read from it (the SQL statement, the letter).
    """

    suite: str
    variant: str
    id: str
    group: str
    cluster: str
    template: str
    status: str
    score: float | None = None
    passed: bool | None = None
    outcome: str | None = None
    extracted: str | None = None
    output: str | None = None
    logprobs: tuple[float, ...] | None = None
    reason: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("logprobs") is not None:
            values["logprobs"] = tuple(values["logprobs"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Counts:
    """How a variant's examples ended: scored (passed + failed), skipped, errors."""

    scored: int = 0
    passed: int = 0
    skipped: int = 0
    errors: int = 0

    @property
    def failed(self) -> int:
        return self.scored - self.passed


@dataclass(frozen=True)
class Figures:
    """A figure (score :class:`Estimate` or :class:`PairedDelta`) overall, per group and per cluster."""

    overall: Any
    groups: dict[str, Any] = field(default_factory=dict)
    clusters: dict[str, Any] = field(default_factory=dict)

    def get(self, label: str | None) -> Any:
        """The figure for ``None``/"all" (overall), a group name, or a cluster name; None if absent."""
        if label in (None, ALL):
            return self.overall
        return self.groups.get(label, self.clusters.get(label))


@dataclass(frozen=True)
class SuiteSummary:
    suite: str
    template: str
    counts: dict[str, Counts]
    scores: dict[str, Figures]
    deltas: dict[str, Figures]

    @property
    def groups(self) -> list[str]:
        """Group names present in any variant, in the suite's canonical order."""
        present = {g for figures in self.scores.values() for g in figures.groups}
        return [g for g in SUITES[self.suite]["groups"] if g in present]


@dataclass(frozen=True)
class Summary:
    """All suites' figures for one run; ``variants`` lists the base first, then adapters in order."""

    variants: list[str]
    suites: dict[str, SuiteSummary]
    confidence: float

    @property
    def adapters(self) -> list[str]:
        return [v for v in self.variants if v != BASE]

    def figure(self, suite: str, label: str | None, kind: str, variant: str) -> Estimate | PairedDelta | None:
        """Look a figure up the way gates name it: ``suite[.label].kind@variant`` (kind: score, delta)."""
        summary = self.suites.get(suite)
        if summary is None:
            return None
        figures = (summary.scores if kind == "score" else summary.deltas).get(variant)
        return None if figures is None else figures.get(label)


# ----------------------------------------------------------------------------------------- summarize


def _scores(records: Sequence[CaseRecord], clustered: bool, confidence: float) -> Figures:
    def estimate(rows: Sequence[CaseRecord]) -> Estimate:
        return mean_ci([r.score for r in rows], [r.cluster for r in rows] if clustered else None, confidence)

    return Figures(
        overall=estimate(records),
        groups={g: estimate([r for r in records if r.group == g]) for g in sorted({r.group for r in records})},
        clusters={c: estimate([r for r in records if r.cluster == c]) for c in sorted({r.cluster for r in records})},
    )


def _deltas(base: Sequence[CaseRecord], other: Sequence[CaseRecord], clustered: bool, confidence: float) -> Figures | None:
    """Paired deltas on the items both variants scored (base order)."""
    by_id = {r.id: r for r in other}
    pairs = [(b, by_id[b.id]) for b in base if b.id in by_id]
    if not pairs:
        return None

    def delta(rows: Sequence[tuple[CaseRecord, CaseRecord]]) -> PairedDelta:
        return paired_delta([b.score for b, _ in rows], [o.score for _, o in rows],
                            [b.cluster for b, _ in rows] if clustered else None, confidence)

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
    )


def sort_records(records: Iterable[CaseRecord], variants: Sequence[str]) -> list[CaseRecord]:
    """A stable order independent of how tests were scheduled (serial or pytest-xdist)."""
    rank = {v: i for i, v in enumerate(variants)}
    return sorted(records, key=lambda r: (r.suite, rank.get(r.variant, len(rank)), r.variant, r.id))


def summarize(records: Iterable[CaseRecord], variants: Sequence[str], templates: Mapping[str, str],
              confidence: float = 0.95) -> Summary:
    """Figures for every suite that has records; ``variants`` gives the order (the base first)."""
    rows = sort_records(records, variants)
    suites: dict[str, SuiteSummary] = {}
    for suite in SUITES:
        in_suite = [r for r in rows if r.suite == suite]
        if not in_suite:
            continue
        clustered = SUITES[suite]["clustered"]
        by_variant = {v: [r for r in in_suite if r.variant == v] for v in variants}
        scored = {v: [r for r in rs if r.status == "scored"] for v, rs in by_variant.items()}
        scores = {v: _scores(rs, clustered, confidence) for v, rs in scored.items() if rs}
        deltas = {}
        for adapter in variants:
            if adapter != BASE and scored.get(BASE) and scored.get(adapter):
                figures = _deltas(scored[BASE], scored[adapter], clustered, confidence)
                if figures is not None:
                    deltas[adapter] = figures
        suites[suite] = SuiteSummary(suite, templates.get(suite, ""),
                                     {v: _counts(rs) for v, rs in by_variant.items() if rs}, scores, deltas)
    return Summary(list(variants), suites, confidence)


# -------------------------------------------------------------------------------------------- format


def _finite(value: float) -> bool:
    return value is not None and not math.isnan(value)


def fmt_score(est: Estimate | None) -> str:
    if est is None:
        return "-"
    ci = f" [{100 * est.lo:.1f}, {100 * est.hi:.1f}]" if _finite(est.lo) and _finite(est.hi) else " [n/a]"
    return f"{100 * est.mean:.1f}%{ci} n={est.n}"


def fmt_delta(delta: PairedDelta | None) -> str:
    if delta is None:
        return "-"
    ci = f" [{100 * delta.lo:+.1f}, {100 * delta.hi:+.1f}]" if _finite(delta.lo) and _finite(delta.hi) else " [n/a]"
    p = f" p={delta.p_value:.3g}" if _finite(delta.p_value) else ""
    return f"{100 * delta.delta:+.1f} pp{ci}{p}"


def _label(suite: str, group: str) -> str:
    return CATEGORY_LABELS.get(group, group) if suite == "mmlu" else group


def suite_rows(summary: Summary, suite: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a suite's table: one row for all items and one per group; a score column per
    variant and a paired-delta column per adapter."""
    s = summary.suites[suite]
    variants = [v for v in summary.variants if v in s.scores]
    adapters = [a for a in summary.adapters if a in s.deltas]
    header = [SUITES[suite]["group_title"], *variants, *(f"Δ {a} vs {BASE}" for a in adapters)]
    rows = []
    for label in [ALL, *s.groups]:
        shown = ALL if label == ALL else _label(suite, label)
        rows.append([shown, *(fmt_score(s.scores[v].get(label)) for v in variants),
                     *(fmt_delta(s.deltas[a].get(label)) for a in adapters)])
    return header, rows


def counts_line(summary: Summary, suite: str) -> str:
    parts = []
    for variant, c in summary.suites[suite].counts.items():
        parts.append(f"{variant}: {c.scored} scored ({c.passed} passed, {c.failed} failed), "
                     f"{c.skipped} skipped, {c.errors} errors")
    return "; ".join(parts)


def _test_names(summary: Summary, suite: str) -> str:
    return ", ".join(sorted({f.overall.test for f in summary.suites[suite].deltas.values()}))


def _suite_caption(summary: Summary, suite: str) -> str:
    level = f"{100 * summary.confidence:g}%"
    clustered = " clustered by subject" if SUITES[suite]["clustered"] else ""
    caption = f"score with {level} CI{clustered}"
    if summary.suites[suite].deltas:
        caption += f"; Δ = paired difference on the same items, {level} CI, p from {_test_names(summary, suite)}"
    return caption


def render_tables(summary: Summary, gates: Sequence[GateResult] = ()) -> list[Table]:
    """rich tables: one per suite, then the gates."""
    from rich.table import Table
    from rich.text import Text

    tables = []
    for suite, s in summary.suites.items():
        header, rows = suite_rows(summary, suite)
        table = Table(title=f"{SUITES[suite]['title']} ({s.template})", caption=_suite_caption(summary, suite),
                      caption_justify="left")
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

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False)
    for table in render_tables(summary, gates):
        console.print(table)
    for suite in summary.suites:
        console.print(f"{suite}: {counts_line(summary, suite)}", soft_wrap=True)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ json / md


def _clean(value: Any) -> Any:
    """JSON-safe: dataclasses to dicts, NaN to null (strict JSON has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _clean(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _figures_json(figures: Figures) -> dict[str, Any]:
    return {ALL: _clean(figures.overall), "groups": _clean(figures.groups), "clusters": _clean(figures.clusters)}


def to_json(summary: Summary, gates: Sequence[GateResult], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure, the gates, and ``meta`` (config, models, data checksums, versions, run details)."""
    suites = {}
    for suite, s in summary.suites.items():
        suites[suite] = {
            "template": s.template,
            "clustered_by": SUITES[suite]["cluster_title"] if SUITES[suite]["clustered"] else None,
            "counts": {v: {**_clean(c), "failed": c.failed} for v, c in s.counts.items()},
            "scores": {v: _figures_json(f) for v, f in s.scores.items()},
            "deltas": {a: _figures_json(f) for a, f in s.deltas.items()},
        }
    return {"format": "tradeoff-report/1", **_clean(dict(meta)), "confidence": summary.confidence,
            "variants": summary.variants, "suites": suites, "gates": [_clean(g) for g in gates]}


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def to_markdown(summary: Summary, gates: Sequence[GateResult], meta: Mapping[str, Any]) -> str:
    """A paste-able report: one table per suite, the counts, the gates and the models evaluated."""
    parts = ["# Trade-off report", ""]
    models = meta.get("models", {})
    if models:
        parts += ["Models: " + "; ".join(f"`{v}` = {m.get('spec')}" + (f" + {m['adapter']}" if m.get("adapter") else "")
                                         for v, m in models.items()), ""]
    for suite, s in summary.suites.items():
        header, rows = suite_rows(summary, suite)
        parts += [f"## {SUITES[suite]['title']} (`{s.template}`)", "", _md_table(header, rows), "",
                  f"_{_suite_caption(summary, suite)}._", "", f"Counts: {counts_line(summary, suite)}.", ""]
    if gates:
        parts += ["## Regression gates", "", gates[0].policy, "",
                  _md_table(["gate", "figure", "evidence", "verdict"],
                            [[g.label, g.figure_text, g.evidence, f"**{g.verdict}**"] for g in gates]), ""]
        warnings = [g.power_warning for g in gates if g.power_warning]
        parts += [f"- Warning: {w}" for w in warnings] + ([""] if warnings else [])
    if meta.get("warnings"):
        parts += ["## Warnings", "", *(f"- {w}" for w in meta["warnings"]), ""]
    return "\n".join(parts)


def write_cases(records: Iterable[CaseRecord], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(_clean(record.to_dict()), ensure_ascii=False) + "\n")


def read_cases(path: Path) -> list[CaseRecord]:
    with path.open(encoding="utf-8") as handle:
        return [CaseRecord.from_dict(json.loads(line)) for line in handle if line.strip()]


# -------------------------------------------------------------------------------------------- plots


def plot_deltas(summary: Summary, suite: str, path: Path) -> bool:
    """Per-group paired deltas (percentage points) with CI whiskers, one marker series per adapter."""
    from matplotlib.figure import Figure

    s = summary.suites[suite]
    adapters = [a for a in summary.adapters if a in s.deltas]
    if not adapters:
        return False
    labels = [ALL, *s.groups]
    fig = Figure(figsize=(max(5.0, 1.3 * len(labels) + 2), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.7 / len(adapters)
    for i, adapter in enumerate(adapters):
        xs, ys, err = [], [], [[], []]
        for j, label in enumerate(labels):
            d = s.deltas[adapter].get(label)
            if d is None or not _finite(d.lo):
                continue
            xs.append(j - 0.35 + width * (i + 0.5))
            ys.append(100 * d.delta)
            err[0].append(100 * (d.delta - d.lo))
            err[1].append(100 * (d.hi - d.delta))
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=4, label=adapter)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)), [_label(suite, lab).split(" (")[0] for lab in labels])
    ax.set_ylabel(f"Δ vs {BASE} (pp), {100 * summary.confidence:g}% CI")
    ax.set_title(f"{SUITES[suite]['title']}: paired delta by {SUITES[suite]['group_title']}")
    ax.legend()
    fig.savefig(path, dpi=120)
    return True


def plot_tradeoff(summary: Summary, path: Path) -> bool:
    """Spider gain (y) against MMLU change (x), one point per adapter with both CIs; adapters joined in
    the order given (e.g. checkpoints) to draw the trade-off curve."""
    from matplotlib.figure import Figure

    if not {"spider", "mmlu"} <= set(summary.suites):
        return False
    points = [(a, summary.suites["mmlu"].deltas[a].overall, summary.suites["spider"].deltas[a].overall)
              for a in summary.adapters if a in summary.suites["mmlu"].deltas and a in summary.suites["spider"].deltas]
    if not points:
        return False
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    xs = [100 * m.delta for _, m, _ in points]
    ys = [100 * s.delta for _, _, s in points]
    xerr = [[100 * (m.delta - m.lo) for _, m, _ in points], [100 * (m.hi - m.delta) for _, m, _ in points]]
    yerr = [[100 * (s.delta - s.lo) for _, _, s in points], [100 * (s.hi - s.delta) for _, _, s in points]]
    if len(points) > 1:
        ax.plot(xs, ys, color="grey", linewidth=0.8, zorder=1)
    ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", capsize=4, zorder=2)
    for (name, _, _), x, y in zip(points, xs, ys):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6))
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_xlabel(f"MMLU Δ vs {BASE} (pp)")
    ax.set_ylabel(f"Spider execution accuracy Δ vs {BASE} (pp)")
    ax.set_title(f"Trade-off per adapter ({100 * summary.confidence:g}% paired CIs)")
    fig.savefig(path, dpi=120)
    return True


def write_report(directory: Path, summary: Summary, records: Sequence[CaseRecord], gates: Sequence[GateResult],
                 meta: Mapping[str, Any]) -> list[Path]:
    """Write tradeoff.json, tradeoff.md, cases.jsonl and the PNGs into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "tradeoff.json", directory / "tradeoff.md", directory / "cases.jsonl"]
    written[0].write_text(json.dumps(to_json(summary, gates, meta), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written[1].write_text(to_markdown(summary, gates, meta), encoding="utf-8")
    write_cases(sort_records(records, summary.variants), written[2])
    for suite in summary.suites:
        if plot_deltas(summary, suite, directory / f"deltas_{suite}.png"):
            written.append(directory / f"deltas_{suite}.png")
    if plot_tradeoff(summary, directory / "tradeoff.png"):
        written.append(directory / "tradeoff.png")
    return written
