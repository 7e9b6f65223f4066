"""GitHub's job summary as GitHub renders it, shared by the unit test of the GitHub integration and the plugin
run that writes one (tests/e2e/test_ci_outputs.py)."""

from __future__ import annotations

from evalkit.readback import SavedReport


def tables_of(markdown: str) -> list[list[list[str]]]:
    """Every table as GitHub renders it (markdown-it with GFM tables): rows of cell texts."""
    from markdown_it import MarkdownIt

    tables, rows, cells = [], [], None
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            rows = []
        elif token.type == "tr_open":
            cells = []
        elif token.type == "inline" and cells is not None:
            cells.append(token.content)
        elif token.type == "tr_close":
            rows.append(cells)
            cells = None
        elif token.type == "table_close":
            tables.append(rows)
    return tables


def check_step_summary(text: str, saved: SavedReport) -> None:
    """The job summary is the report's tradeoff.md, and every one of its tables renders as a table with the
    answer, each suite's figures and the gates in their cells."""
    markdown = (saved.directory / "tradeoff.md").read_text()
    assert text == markdown + "\n"
    tables = tables_of(text)
    assert len(tables) == sum(line.startswith("|---") for line in markdown.splitlines())
    assert all(len(row) == len(table[0]) for table in tables for row in table)
    assert text.index(saved.doc["answer"][0]) < text.index("## Regression gates")
    gates = next(t for t in tables if t[0] == ["gate", "figure", "evidence", "verdict"])
    assert [(row[0], row[3]) for row in gates[1:]] == [(g.label, f"**{g.verdict}**") for g in saved.gates]
    for suite in saved.summary.suites.values():  # each suite's table, its overall row first
        table = next(t for t in tables if t[0][0] == suite.layout.group_title)
        assert table[1][0] == "all" and table[1][1].endswith(f"n={suite.scores['base'].overall.n}")
