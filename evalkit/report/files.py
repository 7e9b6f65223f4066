"""The summary as files: ``tradeoff.json`` (every figure), ``tradeoff.md`` (paste-able) and ``cases.jsonl``."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.report.answer import answer_lines
from evalkit.report.rows import (counts_line, effects_rows, flip_rows, flips_line, positions_rows, sequential_lines,
                                 sequential_rows, suite_caption, suite_rows, suite_title, transition_rows, warnings)
from evalkit.summary import ALL, CaseRecord, Figures, Summary

if TYPE_CHECKING:
    from evalkit.gates import GateResult

JSON_FORMAT = "tradeoff-report/2"  # 2: stratified CIs (n_strata, stratified_by)
MD_FLIPS = 5  # flipped examples per direction, and clusters per end, that tradeoff.md shows


def clean(value: Any) -> Any:
    """JSON-safe: dataclasses to dicts, NaN to null (strict JSON has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: clean(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _figures_json(figures: Figures) -> dict[str, Any]:
    return {ALL: clean(figures.overall), "groups": clean(figures.groups), "clusters": clean(figures.clusters)}


def to_json(summary: Summary, gates: Sequence[GateResult], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure, the gates, and ``meta`` (config, models, data checksums, versions, run details)."""
    suites = {}
    for suite, s in summary.suites.items():
        suites[suite] = {
            "title": s.layout.title,
            "template": s.template,
            "stratified_by": s.layout.cluster_title if s.layout.stratified else None,
            "counts": {v: {**clean(c), "failed": c.failed} for v, c in s.counts.items()},
            "scores": {v: _figures_json(f) for v, f in s.scores.items()},
            "macro": clean(s.macro),
            "deltas": {a: _figures_json(f) for a, f in s.deltas.items()},
            "outcomes": s.outcomes,
            "predicted": s.predicted,
            "expected": s.expected,
            "secondary": {m: {v: _figures_json(f) for v, f in scores.items()} for m, scores in s.secondary.items()},
            "secondary_deltas": {m: {a: _figures_json(f) for a, f in deltas.items()}
                                 for m, deltas in s.secondary_deltas.items()},
            "changes": clean(s.changes),
            "warnings": s.warnings,
        }
    return {"format": JSON_FORMAT, **clean(dict(meta)), "answer": answer_lines(summary, gates), "confidence": summary.confidence,
            "variants": summary.variants, "suites": suites, "gates": [clean(g) for g in gates],
            "sequential": clean(summary.sequential.to_json()) if summary.sequential else None}


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def to_markdown(summary: Summary, gates: Sequence[GateResult], meta: Mapping[str, Any]) -> str:
    """A paste-able report: one table per suite, the counts, the gates and the models evaluated."""
    parts = ["# Trade-off report", "", "## The answer", "", *(f"- {line}" for line in answer_lines(summary, gates)), ""]
    models = meta.get("models", {})
    if models:
        parts += ["Models: " + "; ".join(f"`{v}` = {m.get('spec')}" + (f" + {m['adapter']}" if m.get("adapter") else "")
                                         for v, m in models.items()), ""]
    for suite in summary.suites:
        header, rows = suite_rows(summary, suite)
        parts += [f"## {suite_title(summary, suite)}", "", _md_table(header, rows), "",
                  f"_{suite_caption(summary, suite)}._", "", f"Counts: {counts_line(summary, suite)}.", ""]
        if summary.suites[suite].predicted:
            parts += ["Answer positions, predicted vs gold:", "", _md_table(*positions_rows(summary, suite)), ""]
        parts += _changes_markdown(summary, suite)
    if gates:
        parts += ["## Regression gates", "", gates[0].policy, "",
                  _md_table(["gate", "figure", "evidence", "verdict"],
                            [[g.label, g.figure_text, g.evidence, f"**{g.verdict}**"] for g in gates]), ""]
        power = [g.power_warning for g in gates if g.power_warning]
        parts += [f"- Warning: {w}" for w in power] + ([""] if power else [])
    if summary.sequential:
        parts += ["## Sequential evaluation", "", *(f"- {line}" for line in sequential_lines(summary)), "",
                  _md_table(*sequential_rows(summary)), ""]
    every = [*warnings(summary), *meta.get("warnings", [])]
    if every:
        parts += ["## Warnings", "", *(f"- {w}" for w in every), ""]
    return "\n".join(parts)


def _changes_markdown(summary: Summary, suite: str, shown: int = MD_FLIPS) -> list[str]:
    """Per adapter: the flip counts, the first flipped examples of each direction, the clusters' effects
    at both ends, and the outcome transitions where there are more outcomes than right and wrong."""
    parts = []
    s = summary.suites[suite]
    for adapter, change in s.changes.items():
        parts += [f"### What changed: {adapter} vs base", "", flips_line(change) + ".", ""]
        if change.flips:
            header, rows = flip_rows(change, shown)
            parts += [f"First {shown} flipped examples of each direction (all {len(change.flips)} in tradeoff.json, "
                      "and in tradeoff.html):", "", _md_table(header, rows), ""]
        if len(change.effects) > 1:
            header, rows = effects_rows(summary, suite, adapter, shown)
            parts += [f"Per {s.layout.cluster_title}, the {shown} largest losses and gains (all in tradeoff.json):",
                      "", _md_table(header, rows), ""]
        if len(change.outcomes) > 2:
            parts += ["Outcome transitions (rows: base, columns: adapter):", "",
                      _md_table(*transition_rows(change)), ""]
    return parts


def write_text(path: Path, text: str) -> None:
    """UTF-8 ``text`` into ``path``. A lone surrogate (a dataset's ``"\\ud800"``, which JSON decodes to one) is
    not text and has no UTF-8 form: it is written as that escape, which a JSON reader decodes back to the same
    string, so a report or baseline never fails on the data it describes."""
    path.write_text(text, encoding="utf-8", errors="backslashreplace")


def write_cases(records: Iterable[CaseRecord], path: Path) -> None:
    """One JSON line per record (lone surrogates escaped as :func:`write_text` does)."""
    with path.open("w", encoding="utf-8", errors="backslashreplace") as handle:
        for record in records:
            handle.write(json.dumps(clean(record.stored()), ensure_ascii=False) + "\n")


def read_cases(path: Path) -> list[CaseRecord]:
    with path.open(encoding="utf-8") as handle:
        return [CaseRecord.from_dict(json.loads(line)) for line in handle if line.strip()]
