"""``tradeoff.html``: the whole report in one self-contained file, with a case browser.

One file, so it can be attached to a CI run or mailed, and opened offline: CSS and JavaScript inline,
the PNGs embedded as ``data:`` URIs, the cases as JSON in a ``<script type="application/json">`` block,
nothing fetched. The case browser shows one row per example (every variant's answer side by side) and
renders one page of rows at a time, so a full run (tens of thousands of examples) stays responsive.

Prompts are stored once per cluster prefix: every prompt of a cluster (an MMLU subject's few-shot
header and shots, a Spider database's schema) starts with the same text, which is kept once; each
example keeps only the rest. That keeps a full run's file a fraction of the prompts' total size.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalkit.report.answer import answer_lines
from evalkit.report.rows import (counts_line, effects_rows, flips_line, positions_rows, sequential_lines, sequential_rows,
                                 short, suite_caption, suite_rows, suite_title, transition_rows, warnings)
from evalkit.summary import BASE, CaseRecord, Summary

if TYPE_CHECKING:
    from evalkit.gates import GateResult

_ASSETS = Path(__file__).with_name("html_assets")
INPUT_CHARS = 160  # the question as the browser's table shows it; the full prompt is in the row's details


def script_json(value: Any) -> str:
    """``value`` as JSON that is inert inside a ``<script>`` element: ``<``, ``>`` and ``&`` written as
    ``\\u003c``... escapes. Escaping only ``</`` is not enough: ``<!--<script>`` in any text (a question, a
    model's SQL) moves the HTML parser into its "script data double escaped" state, where the real
    ``</script>`` no longer closes the block and the page's own script is swallowed as data."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
           f'{html.escape(path.name)}</figcaption></figure>'


def _prefixes(records: Sequence[CaseRecord]) -> dict[tuple[str, str], str]:
    """The text every prompt of a (suite, cluster) starts with."""
    prompts: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.prompt is not None:
            prompts.setdefault((r.suite, r.cluster), set()).add(r.prompt)
    return {key: os.path.commonprefix(sorted(texts)) if len(texts) > 1 else "" for key, texts in prompts.items()}


def _cell(record: CaseRecord) -> list[Any]:
    """One variant's answer: [status, passed, outcome, extracted answer, raw output, reason]."""
    return [record.status, None if record.passed is None else int(record.passed), record.outcome, record.extracted,
            record.output, record.reason]


def case_data(summary: Summary, records: Sequence[CaseRecord]) -> dict[str, Any]:
    """The case browser's data: one row per (suite, example) with a cell per variant, prompts split into
    a per-cluster prefix (stored once) and the rest."""
    prefixes = _prefixes(records)
    keys = sorted(prefixes)
    prefix_index = {key: i for i, key in enumerate(keys)}
    rows: dict[tuple[str, str], list[Any]] = {}
    column = {v: i for i, v in enumerate(summary.variants)}
    for r in records:
        row = rows.get((r.suite, r.id))
        if row is None:
            row = rows[(r.suite, r.id)] = [r.suite, r.id, r.group, r.cluster, short(r.input, INPUT_CHARS),
                                           r.expected, None, None, [None] * len(summary.variants)]
        if r.prompt is not None and row[7] is None:
            key = (r.suite, r.cluster)
            row[6], row[7] = prefix_index[key], r.prompt[len(prefixes[key]):]
        if r.variant in column:
            row[8][column[r.variant]] = _cell(r)
    suites = {name: {"title": s.layout.title, "group": s.layout.group_title, "cluster": s.layout.cluster_title}
              for name, s in summary.suites.items()}
    return {"variants": summary.variants, "base": BASE, "suites": suites,
            "prefixes": [prefixes[key] for key in keys], "rows": list(rows.values())}


def _changes_html(summary: Summary, suite: str) -> str:
    s = summary.suites[suite]
    parts = []
    for adapter, change in s.changes.items():
        parts.append(f"<h3>What changed: {html.escape(adapter)} vs {BASE}</h3><p>{html.escape(flips_line(change))}. "
                     f'<a href="#cases" data-flips="{html.escape(suite)}|{html.escape(adapter)}">Browse the flipped '
                     "examples</a>.</p>")
        if len(change.effects) > 1:
            header, rows = effects_rows(summary, suite, adapter, len(change.effects))
            parts.append(f"<details><summary>Every {html.escape(s.layout.cluster_title)}'s paired delta, sorted "
                         f"(Benjamini-Hochberg marks which stand; CIs unadjusted)</summary>{_table(header, rows)}</details>")
        if len(change.outcomes) > 2:
            parts.append("<p>Outcome transitions (rows: base, columns: adapter):</p>"
                         + _table(*transition_rows(change), cls="matrix"))
    return "".join(parts)


def to_html(summary: Summary, records: Sequence[CaseRecord], gates: Sequence[GateResult], meta: Mapping[str, Any],
            images: Sequence[Path]) -> str:
    """The whole report as one HTML page (see the module docstring)."""
    answer = "".join(f"<li>{html.escape(line)}</li>" for line in answer_lines(summary, gates))
    sections = []
    for suite in summary.suites:
        header, rows = suite_rows(summary, suite)
        part = (f'<section id="suite-{html.escape(suite)}"><h2>{html.escape(suite_title(summary, suite))}</h2>'
                f"{_table(header, rows, cls='figures')}<p class=caption>{html.escape(suite_caption(summary, suite))}.</p>"
                f"<p>Counts: {html.escape(counts_line(summary, suite))}.</p>")
        if summary.suites[suite].predicted:
            part += "<p>Answer positions, predicted vs gold:</p>" + _table(*positions_rows(summary, suite))
        sections.append(part + _changes_html(summary, suite) + "</section>")
    if gates:
        sections.append(f"<section id=gates><h2>Regression gates</h2><p>{html.escape(gates[0].policy)}</p>"
                        + _table(["gate", "figure", "evidence", "verdict"],
                                 [[g.label, g.figure_text, g.evidence, g.verdict] for g in gates], cls="gates")
                        + "".join(f"<p class=warning>{html.escape(g.power_warning)}</p>" for g in gates
                                  if g.power_warning) + "</section>")
    if summary.sequential:
        sections.append("<section id=sequential><h2>Sequential evaluation</h2><ul>"
                        + "".join(f"<li>{html.escape(line)}</li>" for line in sequential_lines(summary)) + "</ul>"
                        + "".join(_image(path) for path in images if path.name == "sequential.png")
                        + "<details><summary>Every look: n and each delta's anytime-valid interval</summary>"
                        + _table(*sequential_rows(summary), cls="sequential") + "</details></section>")
    every = [*warnings(summary), *meta.get("warnings", [])]
    if every:
        sections.append("<section id=warnings><h2>Warnings</h2><ul>"
                        + "".join(f"<li>{html.escape(w)}</li>" for w in every) + "</ul></section>")
    plots = "".join(_image(path) for path in images if path.name != "sequential.png")
    models = "; ".join(f"{v} = {m.get('spec') or m.get('from_baseline', '')}" + (f" + {m['adapter']}" if m.get("adapter") else "")
                       for v, m in meta.get("models", {}).items())
    data = script_json(case_data(summary, records))
    return (_ASSETS / "page.html").read_text(encoding="utf-8").format(
        style=(_ASSETS / "page.css").read_text(encoding="utf-8"),
        script=(_ASSETS / "cases.js").read_text(encoding="utf-8"),
        models=html.escape(models), answer=answer, sections="".join(sections), plots=plots, data=data,
    )
