"""Renderers of a :class:`~evalkit.summary.Summary`: text tables (:mod:`.text`), files (:mod:`.files`),
plots (:mod:`.plots`); :func:`write_report` writes them all into one folder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.report.files import read_cases, to_json, to_markdown, write_cases
from evalkit.report.plots import plot_deltas, plot_tradeoff
from evalkit.report.text import render_text
from evalkit.summary import CaseRecord, Summary, sort_records

if TYPE_CHECKING:
    from evalkit.gates import GateResult

__all__ = ["read_cases", "render_text", "to_json", "to_markdown", "write_report"]


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
