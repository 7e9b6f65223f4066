"""A sequential run (``--sequential``) through the real plugin on the embedded model: a tiny run that stops
early, with its counts, its words in the summary, and its rounds in the report files and the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_runs import ROOT, Run, make_project, run_args, save_random_adapter

pytestmark = pytest.mark.model
FIRST = 20
PIQA, OBQA = 200, 60


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made before pytester's per-test module snapshot, so transformers stays imported (see plugin_runs)."""
    return save_random_adapter(tmp_path_factory.mktemp("adapter") / "lora", seed=5)


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, adapter: Path,
        tmp_path_factory: pytest.TempPathFactory):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    make_project(pytester.path)
    cache = tmp_path_factory.mktemp("cache")

    def run_(*args: str, name: str = "report") -> Run:
        report = pytester.path / name
        common = (f"--adapter=lora={adapter}", "--sequential", f"--sequential-first={FIRST}")
        return Run(pytester.runpytest_subprocess(*run_args(data_dir, cache, report, *common, *args), timeout=900), report)

    return run_


def test_a_decided_gate_stops_early_and_the_report_says_where(run):
    """A margin of -50 pp is decided on the first round's 20 examples; PIQA's other 180 are never run."""
    done = run("--suites=piqa,mmlu", f"--piqa-sample={PIQA}", "--mmlu-sample=1", "--mmlu-format=cloze",
               "--gate", "piqa.delta >= -0.5", "--sequential-width", "0.9")
    assert done.rc == 0, done.out
    streams = {s["name"]: s for s in done.json["sequential"]["streams"]}
    piqa = streams["forgetting"]
    assert (piqa["evaluated"], piqa["total"], piqa["looks"], piqa["reason"]) == (FIRST, PIQA, 1, "decided")
    outcomes = done.result.parseoutcomes()
    mmlu = streams["mmlu"]
    assert outcomes.get("passed", 0) + outcomes.get("wrong", 0) == 2 * (FIRST + mmlu["evaluated"]), done.out
    assert "skipped" not in outcomes and "deselected" not in outcomes
    assert len(done.cases()) == 2 * (FIRST + mmlu["evaluated"])
    assert f"decided at n={FIRST} of {PIQA} after 1 round: every gate on it decided" in done.out
    assert f"not needed: {PIQA - FIRST} examples" in done.out and "anytime-valid" in done.out
    gate = done.json["gates"][0]
    assert gate["verdict"] == "PASS" and gate["n"] == FIRST and gate["lo"] > -0.5
    delta = done.json["suites"]["piqa"]["deltas"]["lora"]["all"]
    assert delta["test"].startswith("anytime-valid") and (delta["lo"], delta["hi"]) == (gate["lo"], gate["hi"])
    rounds = piqa["rounds"]
    assert {r["look"] for r in rounds} == {1} and {r["figure"] for r in rounds} == {"forgetting", "piqa"}
    assert "## Sequential evaluation" in (done.report_dir / "tradeoff.md").read_text()
    page = (done.report_dir / "tradeoff.html").read_text()
    section = page[page.index("<section id=sequential>"):]
    assert section.index('alt="sequential" src="data:image/png') < section.index("</section>")  # the plot, inlined
    assert (done.report_dir / "sequential.png").stat().st_size > 0


def test_an_undecided_gate_runs_every_round_and_the_fixed_n_result_stands(run):
    """A margin of 0 against a random adapter's small change is not decided on 60 questions: the run goes
    through every round (20, 30, 45, 60), and the gate is judged on the fixed-n CI, as without --sequential."""
    done = run("--suites=openbookqa", f"--openbookqa-sample={OBQA}", "--gate", "openbookqa.delta >= 0")
    stream = done.json["sequential"]["streams"][0]
    assert (stream["evaluated"], stream["looks"], stream["reason"]) == (OBQA, 4, "exhausted"), done.out
    assert [r["n"] for r in stream["rounds"] if r["figure"] == "forgetting"] == [20, 30, 45, 60]
    his = [r["hi"] - r["lo"] for r in stream["rounds"] if r["figure"] == "forgetting"]
    assert his == sorted(his, reverse=True)  # the running intersection only narrows
    assert done.json["suites"]["openbookqa"]["deltas"]["lora"]["all"]["test"] != "anytime-valid confidence sequence (betting)"
    assert f"ran all at n={OBQA} of {OBQA}" in done.out and "the fixed-n result stands" in done.out


def test_sequential_refuses_what_it_cannot_decide(run):
    done = run("--suites=piqa", "--piqa-sample=5", name="nothing")
    assert done.rc == 4 and "--sequential needs something to decide" in done.out
    done = run("--suites=spider", "--spider-sample=1", "--gate", "spider.em.delta >= 0", name="metric")
    assert done.rc == 4 and "secondary metric 'em'" in done.out
    assert json.dumps(done.json) == "{}"


def test_a_sequential_baseline_holds_what_it_evaluated_and_a_later_run_extends_it(run, tmp_path: Path):
    """The base saved by a run decided at 20 examples holds those 20; a later adapter run against it that
    needs all 60 evaluates the base on the other 40 and writes them into the file."""
    baseline = tmp_path / "base.json"
    first = run("--suites=openbookqa", f"--openbookqa-sample={OBQA}", "--gate", "openbookqa.delta >= -0.9",
                f"--save-baseline={baseline}", name="first")
    assert first.rc == 0 and first.json["sequential"]["streams"][0]["evaluated"] == FIRST, first.out
    assert len(json.loads(baseline.read_text())["records"]) == FIRST
    later = run("--suites=openbookqa", f"--openbookqa-sample={OBQA}", "--gate", "openbookqa.delta >= 0",
                f"--baseline={baseline}", name="later")
    stream = later.json["sequential"]["streams"][0]
    assert stream["evaluated"] == OBQA and later.json["sequential"]["baseline_extended_by"] == OBQA - FIRST, later.out
    assert len(json.loads(baseline.read_text())["records"]) == OBQA
    assert "lacked the base's results for 40 of the examples needed" in later.out
    assert later.json["suites"]["openbookqa"]["deltas"]["lora"]["all"]["n"] == OBQA
