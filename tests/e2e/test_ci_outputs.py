"""A real evaluation run (the embedded model, a random real LoRA adapter, four MMLU questions) inside "GitHub
Actions" (its variables set), with ``--junitxml`` and ``--log-to mlflow`` into a file store: the job summary,
the annotation of a failing gate, the JUnit properties parsed with the standard library, the MLflow run read
back through mlflow's API, and ``tradeoff report`` reprinting the run's summary from the folder alone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from evalkit.integrations.figures import figures, gate_figures
from evalkit.readback import load_report
from plugin_runs import Run, run_project, save_random_adapter
from step_summary import check_step_summary

pytestmark = pytest.mark.model

SMALL = ("--suites=mmlu", "--mmlu-subjects=abstract_algebra,philosophy", "--mmlu-sample=2", "--mmlu-shots=0")
GATES = ("--gate=mmlu.delta >= -1", "--gate=mmlu.score@lora >= 0.99")  # the second fails: no 135M model is 99% right


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Run, Path]:
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip('mlflow is not installed: pip install -e ".[mlflow]" (the [test] extra has it)')
    root = tmp_path_factory.mktemp("ci")
    adapter = save_random_adapter(root / "lora", seed=1)
    (root / "project").mkdir()
    environment = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(root / "step_summary.md"),
                   "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true",
                   "MLFLOW_EXPERIMENT_NAME": "tradeoff-e2e"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        run = run_project(root / "project", data_dir, root / "cache", *SMALL, f"--adapter=lora={adapter}", *GATES,
                          f"--junitxml={root / 'junit.xml'}", "--log-to=mlflow")
    return run, root


def test_the_run_fails_on_its_gate_and_still_writes_everything(ci_run) -> None:
    run, root = ci_run
    assert run.rc == 1, run.out
    assert [g["verdict"] for g in run.json["gates"]] == ["PASS", "FAIL"]
    assert (root / "junit.xml").is_file() and (root / "step_summary.md").is_file()


def test_github_job_summary_and_annotations(ci_run) -> None:
    run, root = ci_run
    check_step_summary((root / "step_summary.md").read_text(), load_report(run.report_dir))
    lines = run.out.splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 1, run.out
    assert errors[0].startswith("::error title=tradeoff gate FAIL%3A mmlu.score@lora >= 0.99 (mmlu.score@lora)::")
    assert [line for line in lines if line.startswith("::notice ")] == [
        f"::notice title=tradeoff answer::{line.replace('%', '%25')}" for line in run.json["answer"]]


def test_junit_xml_carries_each_test_s_record_and_the_run_s_figures(ci_run) -> None:
    run, root = ci_run
    suite = ET.parse(root / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    cases = {(c["variant"], c["id"]): c for c in run.cases()}
    seen = 0
    for testcase in suite.iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in testcase.iter("property")}
        case = cases[(properties["variant"], properties["id"])]
        assert testcase.get("name", "").startswith(f"test_eval[mmlu-{case['variant']}-")
        assert properties["suite"] == "mmlu" and properties["group"] == case["group"]
        assert properties["cluster"] == case["cluster"] and properties["outcome"] == case["outcome"]
        assert float(properties["score"]) == case["score"]
        seen += 1
    assert seen == len(cases) == 8
    top = {p.get("name"): p.get("value") for p in suite.find("properties").iter("property")}
    delta = run.json["suites"]["mmlu"]["deltas"]["lora"]["all"]
    assert float(top["lora/mmlu.delta"]) == delta["delta"] and float(top["lora/mmlu.delta.lo"]) == delta["lo"]
    assert float(top["lora/mmlu.delta.hi"]) == delta["hi"] and float(top["lora/mmlu.delta.p_value"]) == delta["p_value"]
    assert top["lora/gate/mmlu.score at least 0.99"] == "FAIL" and top["lora/gate/mmlu.delta at least -1"] == "PASS"
    assert top["answer"] == run.json["answer"][0]


def test_the_mlflow_run_holds_tradeoff_json_s_figures(ci_run, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    run, root = ci_run
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((root / "mlruns").as_uri())
    [logged] = client.search_runs([client.get_experiment_by_name("tradeoff-e2e").experiment_id])
    assert logged.data.metrics == {**figures(run.json), **gate_figures(run.json)}
    assert logged.data.metrics["lora/mmlu.delta"] == run.json["suites"]["mmlu"]["deltas"]["lora"]["all"]["delta"]
    assert logged.data.tags["tradeoff/model"] == "smollm2-135m"
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "tradeoff")}
    assert {"tradeoff/tradeoff.json", "tradeoff/tradeoff.html", "tradeoff/cases.jsonl"} <= artifacts
    assert f"tradeoff logged to MLflow run {logged.info.run_id}" in run.out


def test_tradeoff_report_reprints_the_run_s_summary(ci_run) -> None:
    run, _ = ci_run
    done = subprocess.run([sys.executable, "-m", "evalkit.cli", "report", str(run.report_dir)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tables = done.stdout.split("WARNING")[0]
    assert tables in run.out  # what the run printed at its end, from tradeoff.json alone
    assert [line.removeprefix("Answer: ") for line in done.stdout.splitlines() if line.startswith("Answer: ")] == \
        run.json["answer"]
    assert json.loads((run.report_dir / "tradeoff.json").read_text())["config"]["log_to"] == ["mlflow"]
