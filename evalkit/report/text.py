"""The summary for a terminal: the rich tables of :mod:`.rows`, the count lines, the warnings and the answer."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from evalkit.report.answer import answer_lines
from evalkit.report.rows import counts_line, sequential_lines, suite_caption, suite_rows, suite_title, warnings
from evalkit.summary import Summary

if TYPE_CHECKING:
    from rich.table import Table

    from evalkit.gates import GateResult


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
    for line in sequential_lines(summary):
        console.print(Text(line), soft_wrap=True)
    for warning in warnings(summary):
        console.print(Text(f"Warning: {warning}", style="yellow"), soft_wrap=True)
    for line in answer_lines(summary, gates):
        console.print(Text(f"Answer: {line}", style="bold"), soft_wrap=True)
    return buffer.getvalue()
