"""Gate expressions and verdicts, against summaries built from per-example records (no model needed)."""

from __future__ import annotations

import pytest

from evalkit.errors import ConfigError
from evalkit.gates import Gate, check_gate_groups, evaluate_gates, parse_gate
from evalkit.suites import REGISTRY
from evalkit.summary import CaseRecord, summarize
from evalkit.stats import holm, minimal_detectable_effect, violation_p_value

TEMPLATES = {"spider": "spider-chat", "mmlu": "mmlu-0shot"}
SUITES = {name: suite.layout.metrics for name, suite in REGISTRY.items()}
LAYOUTS = {name: suite.layout for name, suite in REGISTRY.items()}


def spider_records(base: list[int], adapters: dict[str, list[int]]) -> list[CaseRecord]:
    rows = []
    for variant, outcomes in {"base": base, **adapters}.items():
        for i, score in enumerate(outcomes):
            rows.append(CaseRecord("spider", variant, f"dev{i:04d}", ("easy", "hard")[i % 2], "db", "spider-chat",
                                   "scored", score=float(score), passed=bool(score)))
    return rows


@pytest.mark.parametrize(("text", "expected"), [
    ("mmlu.delta >= -0.02", Gate("mmlu.delta >= -0.02", "mmlu", None, "delta", None, None, ">=", -0.02)),
    ("mmlu.stem.delta>=-0.05", Gate("mmlu.stem.delta>=-0.05", "mmlu", "stem", "delta", None, None, ">=", -0.05)),
    ("spider.score@epoch-3 <= .9", Gate("spider.score@epoch-3 <= .9", "spider", None, "score", None, "epoch-3", "<=", 0.9)),
    ("spider.delta.lo >= 0", Gate("spider.delta.lo >= 0", "spider", None, "delta", "lo", None, ">=", 0.0)),
    ("mmlu.abstract_algebra.score >= 1e-1", Gate("mmlu.abstract_algebra.score >= 1e-1", "mmlu", "abstract_algebra",
                                                 "score", None, None, ">=", 0.1)),
])
def test_parse_gate(text, expected):
    assert parse_gate(text, SUITES) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("mmlu.delta > 0", "cannot be read"),
    ("mmlu.accuracy >= 0.3", "must end in .score or .delta"),
    ("gsm8k.score >= 0.3", "suite 'gsm8k' is not in this run"),
    ("mmlu.score >= 30", "outside 0..1; thresholds are fractions"),
    ("mmlu.delta >= -2", "outside -1..1"),
    ("mmlu.delta >= high", "cannot be read"),
    ("spider..delta >= 0", "empty part between dots"),
    ("mmlu.stem..delta >= 0", "empty part between dots"),
])
def test_parse_gate_rejects_with_the_form(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_gate(text, SUITES)


def test_ci_basis_fails_only_when_the_whole_interval_is_below():
    base = [1, 0] * 50
    worse = [0] * 100  # every base success lost: delta -0.5, CI far below -0.02
    same = base[:]
    summary = summarize(spider_records(base, {"worse": worse, "same": same}), ["base", "worse", "same"], LAYOUTS, TEMPLATES)
    results = {r.label: r for r in evaluate_gates([parse_gate("spider.delta >= -0.02", SUITES)], summary, correction="none")}
    assert results["spider.delta@worse"].verdict == "FAIL"
    assert results["spider.delta@worse"].hi < -0.02
    assert results["spider.delta@same"].verdict == "PASS"


def test_point_basis_and_bounds():
    base = [0] * 40
    better = [1] * 3 + [0] * 37  # +7.5 pp, CI includes 0
    summary = summarize(spider_records(base, {"a": better}), ["base", "a"], LAYOUTS, TEMPLATES)
    point = evaluate_gates([parse_gate("spider.delta >= 0.05", SUITES)], summary, basis="point")[0]
    assert point.verdict == "PASS" and point.value == pytest.approx(0.075)
    lower = evaluate_gates([parse_gate("spider.delta.lo >= 0", SUITES)], summary)[0]
    assert lower.verdict == "FAIL" and lower.value == summary.figure("spider", None, "delta", "a").lo


def test_holm_adjusts_several_ci_gates():
    base = [1, 0] * 30
    summary = summarize(spider_records(base, {"a": [0, 0] * 5 + base[10:]}), ["base", "a"], LAYOUTS, TEMPLATES)
    gates = [parse_gate("spider.delta >= 0.0", SUITES), parse_gate("spider.easy.delta >= 0.0", SUITES), parse_gate("spider.score >= 0.1", SUITES)]
    results = evaluate_gates(gates, summary)
    raw = [violation_p_value(summary.figure("spider", g.group, g.kind, "a"), g.threshold, g.op) for g in gates]
    assert [r.p_value for r in results] == pytest.approx(raw)
    assert [r.p_adjusted for r in results] == pytest.approx(holm(raw))
    assert "Holm-adjusted over 3 gates" in results[0].policy


def test_gates_over_figures_not_run_are_errors():
    summary = summarize(spider_records([1, 0, 1, 0], {}), ["base"], LAYOUTS, TEMPLATES)
    results = evaluate_gates([parse_gate("mmlu.score >= 0.2", SUITES), parse_gate("spider.delta >= 0", SUITES),
                              parse_gate("spider.score@epoch-9 >= 0", SUITES), parse_gate("spider.medium.score >= 0", SUITES)], summary)
    assert [r.verdict for r in results] == ["ERROR"] * 4
    assert "suite 'mmlu'" in results[0].message
    assert "no adapter" in results[1].message
    assert "'epoch-9' was not evaluated" in results[2].message
    assert "group 'medium'" in results[3].message


def test_score_gates_apply_to_adapters_or_else_the_base():
    records = spider_records([1, 0, 1, 1], {"a": [1, 1, 1, 1]})
    with_adapter = evaluate_gates([parse_gate("spider.score >= 0.5", SUITES)], summarize(records, ["base", "a"], LAYOUTS, TEMPLATES))
    assert [r.label for r in with_adapter] == ["spider.score@a"]
    base_only = evaluate_gates([parse_gate("spider.score >= 0.5", SUITES)],
                               summarize(records[:4], ["base"], LAYOUTS, TEMPLATES))
    assert [r.label for r in base_only] == ["spider.score@base"]


def test_power_warning_when_margin_is_finer_than_the_sample_resolves():
    base = [1, 0, 0, 1, 0] * 8
    other = [1, 0, 1, 0, 0] * 8
    summary = summarize(spider_records(base, {"a": other}), ["base", "a"], LAYOUTS, TEMPLATES)
    result = evaluate_gates([parse_gate("spider.delta >= -0.02", SUITES)], summary)[0]
    assert result.mde > 0.02
    assert "smallest true change detectable with 80% power" in result.power_warning
    # What the figure means: a drop of the margin plus it is caught 80 % of the time (not "a change of the
    # margin's size would go unnoticed", which a non-inferiority gate does by design at any n).
    caught = f"catches a true change of {100 * (-0.02 - result.mde):+.1f} pp (the margin minus {100 * result.mde:.1f} pp)"
    assert caught in result.power_warning and "unnoticed" not in result.power_warning
    upper = evaluate_gates([parse_gate("spider.delta <= 0.02", SUITES)], summary)[0]
    assert f"catches a true change of {100 * (0.02 + upper.mde):+.1f} pp (the margin plus" in upper.power_warning
    coarse = evaluate_gates([parse_gate(f"spider.delta >= -{result.mde + 0.01}", SUITES)], summary)[0]
    assert coarse.power_warning is None


def test_gate_groups_are_checked_against_the_runs_examples():
    gates = [parse_gate("spider.easy.delta >= -0.1", SUITES), parse_gate("spider.concert_singer.score >= 0", SUITES)]
    check_gate_groups(gates, {"spider": {"easy", "hard", "concert_singer"}})
    with pytest.raises(ConfigError, match=r"group 'eays' is not a group or cluster of suite 'spider' in this run\. "
                                          r"Fix: did you mean easy\?"):
        check_gate_groups([parse_gate("spider.eays.score >= 0.1", SUITES)], {"spider": {"easy", "hard"}})


def test_a_zero_standard_error_is_not_infinite_power():
    """Two wrong answers have SE 0: the summary said "detectable ±0.0 pp"."""
    summary = summarize(spider_records([0, 0], {}), ["base"], LAYOUTS, TEMPLATES)
    result = evaluate_gates([parse_gate("spider.score >= 0.9", SUITES)], summary)[0]
    assert "detectable ±0.0" not in result.evidence
    assert "power cannot be computed: every item scored the same" in result.evidence


def test_stratified_delta_without_changes_gets_the_power_of_its_interval():
    """No answer changed on 40 MMLU items: the stratified SE is 0 but the interval is Tango's, and so is the
    detectable effect (as for Spider), not ±0.0 pp."""
    rows = [CaseRecord("mmlu", v, f"q{i}", "stem", ("algebra", "physics")[i % 2], "t", "scored",
                       score=float(i % 3 == 0), passed=i % 3 == 0) for v in ("base", "a") for i in range(40)]
    summary = summarize(rows, ["base", "a"], LAYOUTS, TEMPLATES)
    result = evaluate_gates([parse_gate("mmlu.delta >= -0.02", SUITES)], summary)[0]
    figure = summary.figure("mmlu", None, "delta", "a")
    assert figure.se == 0 and result.mde == pytest.approx(minimal_detectable_effect(figure.score_se, figure.df))
    assert "detectable ±0.0" not in result.evidence and "smallest true change detectable" in result.power_warning


@pytest.mark.parametrize(("text", "variants", "message"), [
    ("mmlu.delta >= -0.02", {"base"}, "no adapter is evaluated in this run, so there is no delta"),
    ("mmlu.delta@base >= -0.02", {"base", "a"}, "the base has no delta against itself"),
])
def test_delta_gates_that_can_never_be_computed_are_refused_at_start_up(text, variants, message):
    """They were an ERROR verdict only after the whole run."""
    with pytest.raises(ConfigError, match=message):
        parse_gate(text, SUITES, variants)
