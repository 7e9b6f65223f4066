"""What changed between base and adapter (flips, cluster effects, outcome transitions), exact-set match as a
gateable secondary metric, and how the reports show them, on hand-made records (no model needed)."""

from __future__ import annotations

import json

import pytest
from statsmodels.stats.multitest import multipletests

from evalkit.changes import RIGHT_TO_WRONG, WRONG_TO_RIGHT
from evalkit.gates import evaluate_gates, parse_gate
from evalkit.report import write_report
from evalkit.report.html import case_data
from evalkit.suites import REGISTRY
from evalkit.summary import CaseRecord, summarize

LAYOUTS = {name: suite.layout for name, suite in REGISTRY.items()}
SUITES = {name: suite.layout.metrics for name, suite in REGISTRY.items()}
TEMPLATES = {"spider": "spider-chat", "mmlu": "mmlu-0shot"}
# (base outcome, adapter outcome) per question; exact-set match follows execution accuracy except dev0003
PAIRS = [("match", "match"), ("match", "mismatch"), ("syntax_error", "match"), ("syntax_error", "mismatch"),
         ("syntax_error", "mismatch"), ("execution_error", "match"), ("mismatch", "mismatch"), ("empty_output", "timeout")]


def spider(variant: str, i: int, outcome: str) -> CaseRecord:
    passed = outcome == "match"
    return CaseRecord("spider", variant, f"dev{i:04d}", "easy", f"db{i % 2}", "spider-chat", "scored",
                      score=float(passed), passed=passed, outcome=outcome, extracted=f"SELECT {variant} {i}",
                      expected=f"SELECT gold {i}", input=f"Question {i}?",
                      prompt=f"Schema of db{i % 2}: singer(name, age)\nQuestion {i}?",
                      secondary={"em": float(passed or (variant == "a" and i == 3))}, reason=f"{outcome}: why")


def records() -> list[CaseRecord]:
    return [spider(v, i, pair[k]) for i, pair in enumerate(PAIRS) for k, v in enumerate(("base", "a"))]


@pytest.fixture
def summary():
    return summarize(records(), ["base", "a"], LAYOUTS, TEMPLATES)


def test_flips_list_each_discordant_example_with_both_answers(summary):
    change = summary.suites["spider"].changes["a"]
    assert (change.counts.right_to_wrong, change.counts.wrong_to_right, change.counts.n) == (1, 2, 8)
    assert [(f.id, f.direction) for f in change.flips] == [("dev0001", RIGHT_TO_WRONG), ("dev0002", WRONG_TO_RIGHT),
                                                          ("dev0005", WRONG_TO_RIGHT)]
    flip = change.flips[0]
    assert (flip.input, flip.expected, flip.base, flip.adapter) == ("Question 1?", "SELECT gold 1", "SELECT base 1",
                                                                    "SELECT a 1")
    assert (flip.base_outcome, flip.adapter_outcome, flip.cluster) == ("match", "mismatch", "db1")
    assert {c: (n.right_to_wrong, n.wrong_to_right) for c, n in change.cluster_counts.items()} == {
        "db0": (0, 1), "db1": (1, 1)}


def test_transitions_count_every_pair_passing_outcome_first(summary):
    change = summary.suites["spider"].changes["a"]
    assert change.outcomes[0] == "match"
    assert change.transitions["syntax_error"] == {"match": 1, "mismatch": 2}
    assert change.transitions["empty_output"] == {"timeout": 1}
    assert sum(n for row in change.transitions.values() for n in row.values()) == len(PAIRS)


def test_cluster_effects_sorted_and_benjamini_hochberg_adjusted(summary):
    effects = summary.suites["spider"].changes["a"].effects
    assert [e.delta.delta for e in effects] == sorted(e.delta.delta for e in effects)
    raw = [e.delta.p_value for e in effects]
    assert [e.p_adjusted for e in effects] == pytest.approx(list(multipletests(raw, method="fdr_bh")[1]))
    assert not any(e.stands for e in effects)  # four questions per database prove nothing


def test_exact_match_is_a_secondary_figure_and_gateable(summary):
    spider_summary = summary.suites["spider"]
    assert spider_summary.secondary["em"]["a"].overall.mean == 4 / 8  # dev0003 matches structurally only
    assert spider_summary.secondary_deltas["em"]["a"].overall.delta == pytest.approx(2 / 8)
    gate = parse_gate("spider.em.delta >= -0.5", SUITES)
    assert (gate.metric, gate.group, gate.kind) == ("em", None, "delta")
    hard = parse_gate("spider.hard.em.score@a >= 0", SUITES)
    assert (hard.group, hard.metric, hard.variant) == ("hard", "em", "a")
    assert parse_gate("spider.delta >= 0", SUITES).metric is None  # execution accuracy stays the default
    result = evaluate_gates([gate], summary)[0]
    assert result.label == "spider.em.delta@a" and result.verdict == "PASS"
    assert result.value == spider_summary.secondary_deltas["em"]["a"].overall.delta
    missing = evaluate_gates([parse_gate("mmlu.score >= 0", SUITES), parse_gate("spider.em.score >= 0", SUITES)],
                             summarize([r for r in records() if r.variant == "base"], ["base"], LAYOUTS, TEMPLATES))
    assert [r.verdict for r in missing] == ["ERROR", "PASS"]


def test_reports_carry_flips_effects_transitions_and_the_html_page(tmp_path, summary):
    gates = evaluate_gates([parse_gate("spider.delta >= -0.3", SUITES)], summary)
    paths = {p.name for p in write_report(tmp_path, summary, records(), gates, {})}
    assert {"effects_spider_a.png", "transitions_spider_a.png", "tradeoff.html"} <= paths
    data = json.loads((tmp_path / "tradeoff.json").read_text())
    change = data["suites"]["spider"]["changes"]["a"]
    assert len(change["flips"]) == 3 and change["flips"][0]["input"] == "Question 1?"
    assert change["correction"] == "benjamini-hochberg" and change["transitions"]["syntax_error"]["mismatch"] == 2
    markdown = (tmp_path / "tradeoff.md").read_text()
    assert "1 right → wrong, 2 wrong → right of 8 paired examples" in markdown
    assert "| right → wrong | dev0001 | db1 | Question 1? | SELECT gold 1 | SELECT base 1 (match) |" in markdown
    assert "| base ↓ adapter → | match | mismatch | syntax_error | empty_output | execution_error | timeout |" in markdown
    assert "| syntax_error | 1 | 2 | 0 | 0 | 0 | 0 |" in markdown
    assert "prompt" not in (tmp_path / "cases.jsonl").read_text()  # the prompts live in the HTML page only


def test_case_data_stores_each_cluster_prompt_prefix_once(summary):
    data = case_data(summary, records())
    assert data["prefixes"] == ["Schema of db0: singer(name, age)\nQuestion ", "Schema of db1: singer(name, age)\nQuestion "]
    row = data["rows"][0]
    assert row[:6] == ["spider", "dev0000", "easy", "db0", "Question 0?", "SELECT gold 0"]
    assert data["prefixes"][row[6]] + row[7] == "Schema of db0: singer(name, age)\nQuestion 0?"
    assert [cell[2] for cell in row[8]] == ["match", "match"]
