"""The trade-off summary and its renderers, on per-example records (no model needed)."""

from __future__ import annotations

import json
import random

import pytest

from evalkit.report import read_cases, render_text, to_json, write_report
from evalkit.suites import REGISTRY
from evalkit.summary import CaseRecord, sort_records, summarize
from evalkit.stats import mean_ci, paired_delta

SUBJECTS = {"abstract_algebra": "stem", "anatomy": "other", "philosophy": "humanities", "sociology": "social_sciences"}
VARIANTS = ["base", "epoch-1", "epoch-3"]
TEMPLATES = {"spider": "spider-chat", "mmlu": "mmlu-0shot"}
LAYOUTS = {name: suite.layout for name, suite in REGISTRY.items()}


def make_records(seed: int = 0) -> list[CaseRecord]:
    """Random 0/1 outcomes for 3 variants on 40 Spider and 60 MMLU items, plus a skipped and an errored case."""
    rng = random.Random(seed)
    records = []
    for variant in VARIANTS:
        for i in range(40):
            score = float(rng.random() < 0.2 + 0.2 * (variant != "base"))
            records.append(CaseRecord("spider", variant, f"dev{i:04d}", ("easy", "medium", "hard", "extra")[i % 4],
                                      f"db{i % 5}", "spider-chat", "scored", score=score, passed=score == 1.0))
        for i in range(60):
            subject = list(SUBJECTS)[i % 4]
            score = float(rng.random() < 0.3)
            records.append(CaseRecord("mmlu", variant, f"{subject}-{i:04d}", SUBJECTS[subject], subject, "mmlu-0shot",
                                      "scored", score=score, passed=score == 1.0))
    records.append(CaseRecord("spider", "base", "dev0999", "easy", "wta_1", "spider-chat", "skipped",
                              reason="database file missing"))
    records.append(CaseRecord("spider", "epoch-1", "dev0998", "hard", "db1", "spider-chat", "error",
                              reason="RuntimeError: boom"))
    return records


def scores(records, suite, variant, **where):
    rows = [r for r in records if r.suite == suite and r.variant == variant and r.status == "scored"
            and all(getattr(r, k) == v for k, v in where.items())]
    return rows


def test_scores_and_counts_follow_the_records():
    records = make_records()
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    spider = summary.suites["spider"]
    assert spider.counts["base"].scored == 40 and spider.counts["base"].skipped == 1
    assert spider.counts["epoch-1"].errors == 1
    base_rows = scores(records, "spider", "base")
    assert spider.counts["base"].passed == sum(r.passed for r in base_rows)
    assert spider.scores["base"].overall == mean_ci([r.score for r in base_rows])
    hard = scores(records, "spider", "epoch-3", group="hard")
    assert spider.scores["epoch-3"].get("hard") == mean_ci([r.score for r in hard])
    assert spider.groups == ["easy", "medium", "hard", "extra"]


def test_mmlu_figures_are_clustered_by_subject():
    records = make_records()
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    rows = scores(records, "mmlu", "epoch-1")
    expected = mean_ci([r.score for r in rows], [r.cluster for r in rows])
    assert summary.figure("mmlu", None, "score", "epoch-1") == expected
    assert expected.n_clusters == 4
    assert summary.figure("mmlu", "anatomy", "score", "epoch-1").n == 15


def test_deltas_pair_the_same_items():
    records = make_records()
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    base = {r.id: r.score for r in scores(records, "spider", "base")}
    other = {r.id: r.score for r in scores(records, "spider", "epoch-3")}
    ids = [i for i in base if i in other]
    assert summary.figure("spider", None, "delta", "epoch-3") == paired_delta([base[i] for i in ids],
                                                                              [other[i] for i in ids])
    assert summary.figure("spider", None, "delta", "epoch-3").test == "exact McNemar"
    assert summary.figure("mmlu", None, "delta", "epoch-1").test == "paired t (cluster-robust SE)"
    assert summary.figure("mmlu", "stem", "delta", "epoch-1").test == "exact McNemar"  # one subject: no clustering
    assert summary.figure("spider", None, "delta", "base") is None


def test_record_order_does_not_change_the_summary():
    records = make_records()
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert to_json(summarize(records, VARIANTS, LAYOUTS, TEMPLATES), [], {}) == to_json(summarize(shuffled, VARIANTS, LAYOUTS, TEMPLATES), [], {})


def test_render_text_has_a_table_per_suite():
    text = render_text(summarize(make_records(), VARIANTS, LAYOUTS, TEMPLATES), width=200)
    assert "Spider execution accuracy (spider-chat)" in text and "MMLU accuracy (mmlu-0shot)" in text
    assert "Δ epoch-3 vs base" in text and "social sciences" in text
    assert "base: 40 scored" in text and "1 skipped" in text


def test_write_report_writes_strict_json_markdown_cases_and_plots(tmp_path):
    records = make_records()
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    paths = write_report(tmp_path, summary, records, [], {"config": {"seed": 0}, "run": {"workers": 1}})
    names = {p.name for p in paths}
    assert names == {"tradeoff.json", "tradeoff.md", "cases.jsonl", "deltas_spider.png", "deltas_mmlu.png", "tradeoff.png",
                     "tradeoff.html", *(f"effects_{s}_{a}.png" for s in ("spider", "mmlu") for a in VARIANTS[1:])}
    data = json.loads((tmp_path / "tradeoff.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert data["config"] == {"seed": 0}
    assert data["suites"]["mmlu"]["clustered_by"] == "subject"
    assert data["suites"]["spider"]["scores"]["base"]["all"]["n"] == 40
    assert data["suites"]["spider"]["counts"]["epoch-1"]["errors"] == 1
    for png in ("deltas_spider.png", "tradeoff.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "tradeoff.md").read_text()
    assert markdown.count("| all |") == 2
    assert read_cases(tmp_path / "cases.jsonl") == sort_records(records, VARIANTS)


def test_no_adapter_means_no_delta_and_no_plots(tmp_path):
    records = [r for r in make_records() if r.variant == "base"]
    summary = summarize(records, ["base"], LAYOUTS, TEMPLATES)
    assert summary.suites["spider"].deltas == {}
    assert {p.name for p in write_report(tmp_path, summary, records, [], {})} == {"tradeoff.json", "tradeoff.md",
                                                                                "cases.jsonl", "tradeoff.html"}
