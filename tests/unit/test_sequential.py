"""The sequential run's pieces without a model: its looks, its streams' order and weights, when a gate is
decided, the figures a stopped stream reports, and the options' checks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from evalkit.config import parse_run_config
from evalkit.errors import ConfigError
from evalkit.gates import evaluate_gates, parse_gate
from evalkit.records import BASE, CaseRecord
from evalkit.sequential import anytime_figures, build_streams, decided, gate_tests, schedule
from evalkit.streams import DECIDED, EXHAUSTED, SequentialResult, Stream
from evalkit.summary import Layout, summarize

LAYOUT = Layout(title="Toy", group_title="group", cluster_title="cluster", groups=("g1", "g2"), stratified=False)


def test_schedule_grows_by_half_and_ends_at_the_total():
    assert schedule(1034) == [100, 150, 225, 338, 507, 761, 1034]
    assert schedule(60, first=20) == [20, 30, 45, 60]
    assert schedule(50) == [50] and schedule(0) == [] and schedule(101) == [100, 101]


def test_streams_pool_a_family_in_a_seeded_uniform_order():
    examples = {"spider": [f"s{i}" for i in range(50)], "piqa": [f"p{i}" for i in range(30)],
                "arc_easy": [f"a{i}" for i in range(10)]}
    streams = build_streams(examples, {"forgetting": ("hellaswag", "piqa", "arc_easy")}, seed=0)
    by_name = {s.name: s for s in streams}
    assert set(by_name) == {"forgetting", "spider"}
    family = by_name["forgetting"]
    assert family.family and family.suites == ("piqa", "arc_easy") and family.total == 40
    assert sorted(family.order) == sorted([("piqa", i) for i in examples["piqa"]] + [("arc_easy", i) for i in examples["arc_easy"]])
    # every suite weighs the same in the family's mean: 40 / (2 x 30) and 40 / (2 x 10)
    assert family.weights == pytest.approx({"piqa": 2 / 3, "arc_easy": 2.0})
    again = {s.name: s.order for s in build_streams(examples, {"forgetting": ("piqa", "arc_easy")}, seed=0)}
    assert again["spider"] == by_name["spider"].order  # the order depends on the examples, the seed and the name
    other = {s.name: s.order for s in build_streams(examples, {"forgetting": ("piqa", "arc_easy")}, seed=1)}
    assert other["spider"] != by_name["spider"].order and sorted(other["spider"]) == sorted(by_name["spider"].order)


def _records(n: int, changed: float, seed: int, suite: str = "toy") -> list[CaseRecord]:
    """Base and adapter records of ``n`` items: the base right on half; the adapter loses a share ``changed``
    of all items (each right answer turns wrong with probability ``2 * changed``)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        base = float(i % 2 == 0)
        other = 0.0 if base and rng.random() < 2 * changed else base
        group = "g1" if i % 3 else "g2"
        rows += [CaseRecord(suite, BASE, f"q{i}", group, group, "t", "scored", score=base),
                 CaseRecord(suite, "lora", f"q{i}", group, group, "t", "scored", score=other)]
    return rows


def _stream(records: list[CaseRecord], evaluated: int) -> tuple[Stream, dict]:
    ids = sorted({r.id for r in records}, key=lambda x: int(x[1:]))
    stream = Stream("toy", ("toy",), [("toy", i) for i in ids], evaluated=evaluated)
    return stream, {(r.suite, r.variant, r.id): r for r in records}


GATES = {"toy": ("g1", "g2")}


def _tests(stream: Stream, *texts: str):
    return gate_tests([parse_gate(t, GATES, {BASE, "lora"}) for t in texts], [BASE, "lora"], [stream])


def test_a_clear_loss_is_decided_early_and_a_delta_at_its_margin_never():
    records = _records(2000, changed=0.2, seed=1)  # a 20 pp loss
    stream, scores = _stream(records, evaluated=200)
    assert decided(_tests(stream, "toy.delta >= -0.02"), scores, 0.05) == [True]
    unchanged = [r if r.variant == BASE else CaseRecord(r.suite, r.variant, r.id, r.group, r.cluster, "t", "scored",
                                                        score=next(b.score for b in records if b.id == r.id and b.variant == BASE))
                 for r in records[:1000]]
    stream, scores = _stream(unchanged, evaluated=500)
    # no item changed: far inside a 5 pp margin is decided, exactly at a margin of 0 is not, at any n
    assert decided(_tests(stream, "toy.delta >= -0.05", "toy.delta >= 0"), scores, 0.05) == [True, False]


def test_holm_needs_more_evidence_for_each_of_several_gates():
    records = _records(400, changed=0.04, seed=3)
    stream, scores = _stream(records, evaluated=400)
    one = decided(_tests(stream, "toy.delta >= 0"), scores, 0.05)
    many = decided(_tests(stream, "toy.delta >= 0", *(f"toy.delta@lora >= {-0.5 - i / 100}" for i in range(20))),
                   scores, 0.05)
    assert one == [True] and many[0] is False and all(many[1:])


def test_a_stopped_stream_reports_and_is_judged_on_its_sequence():
    records = _records(600, changed=0.15, seed=2)
    stream, _ = _stream(records, evaluated=300)
    stream.reason = DECIDED
    evaluated = {("toy", i) for _, i in stream.order[:300]}
    rows = [r for r in records if (r.suite, r.id) in evaluated]
    summary = summarize(rows, [BASE, "lora"], {"toy": LAYOUT}, {"toy": "t"})
    fixed = summary.suites["toy"].deltas["lora"].overall
    result = SequentialResult([stream], alpha=0.05)
    shown, lookup = anytime_figures(summary, result, rows)
    anytime = shown.suites["toy"].deltas["lora"].overall
    assert anytime.delta == fixed.delta and anytime.n == fixed.n == 300
    assert anytime.hi - anytime.lo > fixed.hi - fixed.lo and anytime.test.startswith("anytime-valid")
    assert shown.sequential is result and shown.suites["toy"].deltas["lora"].groups["g1"].test.startswith("anytime")
    gate = parse_gate("toy.delta >= -0.02", GATES, {BASE, "lora"})
    verdict, = evaluate_gates([gate], shown, anytime=lookup)
    assert verdict.verdict == "FAIL" and verdict.hi == anytime.hi and "anytime-valid" in verdict.policy
    assert verdict.p_value == lookup("toy", None, "delta", "lora").p_value(-0.02, "below") < 0.025
    stream.reason = EXHAUSTED  # ran out: the fixed-n figures stand
    shown, lookup = anytime_figures(summary, result, rows)
    assert shown.suites["toy"].deltas["lora"].overall == fixed and lookup("toy", None, "delta", "lora") is None


RAW = {"suites": "mmlu", "mmlu_sample": "1"}


def _config(data_dir: Path, tmp_path: Path, **raw: object):
    adapter = tmp_path / "lora"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    return parse_run_config({**RAW, "adapter": [f"lora={adapter}"], **raw}, data_dir, tmp_path)


@pytest.mark.parametrize(("raw", "message"), [
    ({"sequential": "on"}, "--sequential needs something to decide"),
    ({"sequential": "maybe", "gate": ["mmlu.delta >= -0.02"]}, "--sequential 'maybe': use on or off"),
    ({"sequential": "on", "gate": ["mmlu.delta >= -0.02"], "gate_basis": "point"}, "--gate-basis point"),
    ({"sequential_width": "0.05"}, "--sequential-width without --sequential"),
    ({"sequential": "on", "sequential_width": "5"}, "as a fraction between 0 and 2"),
    ({"sequential": "on", "sequential_width": "0.05", "sequential_first": "0"}, "--sequential-first '0'"),
])
def test_sequential_options_refuse_what_cannot_run(data_dir, tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _config(data_dir, tmp_path, **raw)


def test_sequential_options_parse(data_dir, tmp_path):
    cfg = _config(data_dir, tmp_path, sequential="on", sequential_width="0.05", sequential_first="40")
    assert (cfg.sequential, cfg.sequential_width, cfg.sequential_first) == (True, 0.05, 40)
    assert cfg.to_json()["sequential"] is True and not _config(data_dir, tmp_path).sequential
