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


def test_mmlu_figures_are_stratified_by_subject():
    records = make_records()
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    rows = scores(records, "mmlu", "epoch-1")
    expected = mean_ci([r.score for r in rows], [r.cluster for r in rows])
    assert summary.figure("mmlu", None, "score", "epoch-1") == expected
    assert expected.n_strata == 4
    assert summary.figure("mmlu", "anatomy", "score", "epoch-1").n == 15


def test_deltas_pair_the_same_items():
    records = make_records()
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    base = {r.id: r.score for r in scores(records, "spider", "base")}
    other = {r.id: r.score for r in scores(records, "spider", "epoch-3")}
    ids = [i for i in base if i in other]
    assert summary.figure("spider", None, "delta", "epoch-3") == paired_delta([base[i] for i in ids],
                                                                              [other[i] for i in ids])
    assert summary.figure("spider", None, "delta", "epoch-3").test == "Tango score"
    assert summary.figure("mmlu", None, "delta", "epoch-1").test == "paired t (stratified SE)"
    assert summary.figure("mmlu", "stem", "delta", "epoch-1").test == "Tango score"  # one subject: no clustering
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
    assert data["suites"]["mmlu"]["stratified_by"] == "subject"
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


@pytest.mark.parametrize(("base", "other", "says"), [
    ([0] * 60 + [1] * 20, [1] * 60 + [1] * 20, "rose 75.0 pp"),
    ([1] * 80, [0] * 30 + [1] * 50, "fell 37.5 pp"),
    ([0, 1] * 40, [1, 0] * 40, "not distinguishable from no change; this sample rules out a loss larger than"),
])
def test_answer_says_gain_loss_or_unresolved_from_the_paired_ci(base, other, says):
    from evalkit.report.answer import delta_sentence

    delta = paired_delta([float(x) for x in base], [float(x) for x in other])
    sentence = delta_sentence("Spider execution accuracy", delta)
    assert sentence.startswith("Spider execution accuracy ") and says in sentence
    assert f"95% CI {100 * delta.lo:+.1f} to {100 * delta.hi:+.1f} pp, n=80" in sentence
    assert sentence.endswith(("a real gain", "a real loss")) == (delta.lo > 0 or delta.hi < 0)


ISSUE_SUBJECTS = ("abstract_algebra,anatomy,business_ethics,college_physics,econometrics,formal_logic,global_facts,"
                  "high_school_geography,management").split(",")


def letter_records(data_dir, variant: str, letter: str) -> list[CaseRecord]:
    """A "model" that always answers ``letter``, on every test question of the issue's 9 subjects."""
    from evalkit.data.mmlu import load_mmlu

    return [CaseRecord("mmlu", variant, q.id, q.category, q.subject, "mmlu-5shot", "scored",
                       score=float(q.answer == letter), passed=q.answer == letter)
            for q in load_mmlu("test", data_dir, ISSUE_SUBJECTS)]


def test_few_subjects_per_category_never_give_absurd_intervals(data_dir):
    """Subjects are fixed strata of a fixed test set: 202 STEM questions from two subjects get an interval
    of a few points, not the [0, 93] a subject-clustered t with 1 degree of freedom gave."""
    records = letter_records(data_dir, "base", "A") + letter_records(data_dir, "epoch-1", "B")
    summary = summarize(records, ["base", "epoch-1"], LAYOUTS, {"mmlu": "mmlu-5shot"})
    mmlu = summary.suites["mmlu"]
    for group in ("stem", "social_sciences", "humanities", "other"):
        est = mmlu.scores["base"].get(group)
        wilson = mean_ci([1.0] * round(est.mean * est.n) + [0.0] * (est.n - round(est.mean * est.n)))
        assert est.hi - est.lo < 1.2 * (wilson.hi - wilson.lo), (group, est)
        assert est.method in ("stratified-wilson", "wilson")
        delta = mmlu.deltas["epoch-1"].get(group)
        rows = [(b, o) for b, o in zip(records[:len(records) // 2], records[len(records) // 2:]) if b.group == group]
        unstratified = paired_delta([b.score for b, _ in rows], [o.score for _, o in rows])
        assert delta.hi - delta.lo < 1.2 * (unstratified.hi - unstratified.lo), (group, delta)
        assert (delta.p_value < 0.05) == (delta.lo > 0 or delta.hi < 0), (group, delta)
    stem = mmlu.scores["base"].get("stem")
    assert stem.n == 202 and stem.n_strata == 2 and stem.hi - stem.lo < 0.13
    assert mmlu.deltas["epoch-1"].overall.test == "paired t (stratified SE)"
    assert "stratified by subject" in render_text(summary)


def test_answer_says_when_a_passed_gate_cannot_resolve_its_margin():
    from evalkit.gates import evaluate_gates, parse_gate
    from evalkit.report.answer import answer_lines

    # 80 MMLU-like questions, 4 flips each way: a delta of 0 whose CI straddles -2 pp.
    base = [1.0] * 40 + [0.0] * 40
    other = [0.0] * 4 + [1.0] * 36 + [1.0] * 4 + [0.0] * 36
    records = [CaseRecord("spider", variant, f"dev{i:04d}", "easy", "db", "spider-chat", "scored", score=s,
                          passed=bool(s)) for variant, scores in (("base", base), ("epoch-1", other))
               for i, s in enumerate(scores)]
    summary = summarize(records, ["base", "epoch-1"], LAYOUTS, TEMPLATES)
    gate = evaluate_gates([parse_gate("spider.delta >= -0.02", {"spider": {"easy"}})], summary)
    assert [g.verdict for g in gate] == ["PASS"]
    line, = answer_lines(summary, gate)
    assert "Gates: 1 of 1 pass." in line
    assert ("Inconclusive at spider.delta@epoch-1 (its CI" in line and "contains the margin -2.0 pp)" in line
            and line.endswith("more questions would resolve it."))
    decisive = evaluate_gates([parse_gate("spider.delta >= -0.5", {"spider": {"easy"}})], summary)
    assert "Inconclusive" not in answer_lines(summary, decisive)[0]


def test_a_suite_without_subjects_has_one_all_row(tmp_path):
    """Its questions form one group, the whole: the table showed two identical `all` rows."""
    from evalkit.report.rows import suite_rows
    from evalkit.suites import ChoiceFileSuite

    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"question": f"Q{i}?", "choices": ["a", "b"], "answer": i % 2}) + "\n"
                            for i in range(6)))
    suite = ChoiceFileSuite("mine", path)
    records = [CaseRecord("mine", variant, e.id, e.group, e.cluster, suite.template, "scored",
                          score=float(passed), passed=passed)
               for variant in ("base", "tuned") for e in suite.load() for passed in [(int(e.id) + len(variant)) % 3 > 0]]
    summary = summarize(records, ["base", "tuned"], {"mine": suite.layout}, {"mine": suite.template})
    header, rows = suite_rows(summary, "mine")
    assert [row[0] for row in rows] == ["all"] and not suite.layout.stratified


def test_text_that_is_not_valid_unicode_is_written_escaped_and_reads_back(tmp_path):
    """A lone surrogate (a dataset row's "\\ud800", which JSON decodes) in a record's text crashed every
    report file's write with UnicodeEncodeError; JSON files now carry it as the escape it came from."""
    from dataclasses import replace

    records = [replace(r, input="caf\ud800", expected="gold \udfff", output="out \ud83d", reason="why \ud800",
                       extracted="x\ud800") if r.suite == "mmlu" else r for r in make_records()]
    summary = summarize(records, VARIANTS, LAYOUTS, TEMPLATES)
    write_report(tmp_path, summary, records, [], {"warnings": ["warn \ud800"]})
    assert read_cases(tmp_path / "cases.jsonl") == sort_records(records, VARIANTS)
    assert "warn \\ud800" in (tmp_path / "tradeoff.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "tradeoff.json").read_text(encoding="utf-8"))["warnings"] == ["warn \ud800"]
