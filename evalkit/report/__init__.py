"""Renderers of a :class:`~evalkit.summary.Summary`: text tables (:mod:`.text`), files (:mod:`.files`),
plots (:mod:`.plots`), the self-contained HTML page (:mod:`.html`), all laying out the same table rows
(:mod:`.rows`) and answer lines (:mod:`.answer`); :func:`write_report` writes them all into one folder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.report.files import read_cases, to_json, to_markdown, write_cases, write_text
from evalkit.report.html import to_html
from evalkit.report.plots import plot_deltas, plot_effects, plot_sequential, plot_tradeoff, plot_transitions
from evalkit.report.text import render_text
from evalkit.summary import CaseRecord, Summary, sort_records

if TYPE_CHECKING:
    from evalkit.gates import GateResult

__all__ = ["read_cases", "render_text", "to_json", "to_markdown", "write_report"]


def _plots(directory: Path, summary: Summary, gates: Sequence[GateResult]) -> list[Path]:
    """Every PNG that has something to show: the trade-off, per suite its deltas, and per suite and
    adapter the clusters' forest plot and the outcome transitions."""
    drawn = []
    if plot_tradeoff(summary, directory / "tradeoff.png", gates):
        drawn.append(directory / "tradeoff.png")
    if plot_sequential(summary, directory / "sequential.png", gates):
        drawn.append(directory / "sequential.png")
    for suite in summary.suites:
        if plot_deltas(summary, suite, directory / f"deltas_{suite}.png"):
            drawn.append(directory / f"deltas_{suite}.png")
        for adapter in summary.suites[suite].changes:
            for name, plot in (("effects", plot_effects), ("transitions", plot_transitions)):
                path = directory / f"{name}_{suite}_{adapter}.png"
                if plot(summary, suite, adapter, path):
                    drawn.append(path)
    return drawn


def write_report(directory: Path, summary: Summary, records: Sequence[CaseRecord], gates: Sequence[GateResult],
                 meta: Mapping[str, Any]) -> list[Path]:
    """Write tradeoff.json, tradeoff.md, cases.jsonl, the PNGs and tradeoff.html into ``directory``; return
    the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = sort_records(records, summary.variants)
    written = [directory / "tradeoff.json", directory / "tradeoff.md", directory / "cases.jsonl"]
    write_text(written[0], json.dumps(to_json(summary, gates, meta), indent=2, ensure_ascii=False) + "\n")
    write_text(written[1], to_markdown(summary, gates, meta))
    write_cases(rows, written[2])
    plots = _plots(directory, summary, gates)
    page = directory / "tradeoff.html"
    write_text(page, to_html(summary, rows, gates, meta, plots))
    return [*written, *plots, page]
