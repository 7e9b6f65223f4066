"""What a finished run hands to GitHub, JUnit and experiment trackers, on a report folder written by the real
report writer: GitHub's job summary parsed as GitHub-flavoured Markdown, the workflow commands, and each
tracker's real local store read back (MLflow's file store through mlflow's API, W&B's offline run file,
trackio's SQLite store). The plugin run that does all of it at once is tests/e2e/test_integrations.py."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import ConfigError
from evalkit.integrations import github, publish
from evalkit.integrations.figures import figures, gate_figures, gate_name, verdicts
from evalkit.integrations.junit import case_properties, suite_properties
from evalkit.integrations.trackers import TRACKERS, check_trackers, log_to
from evalkit.models.loading import worker_device, workers_note
from evalkit.readback import SavedReport, load_report
from evalkit.summary import CaseRecord
from saved_reports import write_saved_report
from step_summary import check_step_summary


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> SavedReport:
    directory = tmp_path_factory.mktemp("report")
    write_saved_report(directory)
    return load_report(directory)


def needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install -e \".[{module}]\" (the [test] extra has it)")


def test_figures_are_tradeoff_json_s_under_gate_style_names(saved: SavedReport) -> None:
    doc, named = saved.doc, figures(saved.doc)
    spider = doc["suites"]["spider"]
    assert named["epoch-1/spider.delta"] == spider["deltas"]["epoch-1"]["all"]["delta"]
    assert named["epoch-1/spider.delta.lo"] == spider["deltas"]["epoch-1"]["all"]["lo"]
    assert named["epoch-1/spider.delta.p_value"] == spider["deltas"]["epoch-1"]["all"]["p_value"]
    assert named["base/spider.hard.score.hi"] == spider["scores"]["base"]["groups"]["hard"]["hi"]
    assert named["epoch-1/spider.em.delta.n"] == spider["secondary_deltas"]["em"]["epoch-1"]["all"]["n"] == 60
    assert named["base/mmlu.stem.score"] == doc["suites"]["mmlu"]["scores"]["base"]["groups"]["stem"]["mean"]
    assert not any("abstract_algebra" in name for name in named)  # clusters stay in tradeoff.json
    assert verdicts(doc) == {"epoch-1/gate/spider.delta.lo at least 0": "PASS",
                             "epoch-1/gate/mmlu.score at least 0.95": "FAIL"}
    assert gate_figures(doc) == {"epoch-1/gate/spider.delta.lo at least 0": 1.0,
                                 "epoch-1/gate/mmlu.score at least 0.95": 0.0}
    odd = {"label": "mine.a:b,c.score@v1", "op": "<=", "threshold": 0.5}
    assert gate_name(odd) == "v1/gate/mine.a_b_c.score at most 0.5"  # what every tracker accepts in a name


def test_github_step_summary_and_annotations(saved: SavedReport, tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    lines = github.publish(saved, {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTIONS": "true"})
    check_step_summary(summary.read_text().removeprefix("earlier step\n"), saved)
    errors = [line for line in lines if line.startswith("::error ")]
    # in the title (a property) ":" and "," are escaped, in the message only "%" and line breaks
    failed = saved.gates[1]
    assert failed.figure_text.startswith("44.4% [")
    assert errors == [f"::error title=tradeoff gate FAIL%3A mmlu.score >= 0.95 (mmlu.score@epoch-1)::"
                      f"{failed.figure_text.replace('%', '%25')}; {failed.evidence}. "
                      f"Report: {saved.directory / 'tradeoff.md'}"]
    notices = [line for line in lines if line.startswith("::notice ")]
    assert notices == [f"::notice title=tradeoff answer::{saved.doc['answer'][0].replace('%', '%25')}"]
    assert github.publish(saved, {}) == []  # outside GitHub Actions: nothing printed, nothing written


def test_a_step_summary_too_large_for_github_is_cut_at_a_section() -> None:
    markdown = "# Report\n\n## The answer\n\nshort\n\n## Big\n\n" + "x" * 2000 + "\n"
    cut = github.fit(markdown, limit=1000)
    assert cut.startswith("# Report\n\n## The answer\n\nshort\n") and "## Big" not in cut
    assert "did not fit GitHub's 1 MiB job summary" in cut and len(cut.encode()) <= 1000
    assert github.fit(markdown) == markdown


def test_junit_properties() -> None:
    scored = CaseRecord("spider", "epoch-1", "dev0001", "easy", "concert_singer", "spider-chat", "scored",
                        score=1.0, outcome="match")
    assert case_properties(scored) == [("suite", "spider"), ("variant", "epoch-1"), ("id", "dev0001"),
                                       ("group", "easy"), ("cluster", "concert_singer"), ("score", 1.0),
                                       ("outcome", "match")]
    skipped = CaseRecord("spider", "base", "dev0999", "easy", "wta_1", "spider-chat", "skipped")
    assert case_properties(skipped)[-2:] == [("cluster", "wta_1"), ("outcome", "skipped")]


def test_junit_suite_properties_are_the_figures_verdicts_and_answer(saved: SavedReport) -> None:
    properties = suite_properties(saved)
    named = dict(properties)
    assert float(named["epoch-1/spider.delta.hi"]) == figures(saved.doc)["epoch-1/spider.delta.hi"]
    assert named["epoch-1/gate/mmlu.score at least 0.95"] == "FAIL"
    assert ("answer", saved.doc["answer"][0]) in properties


def test_log_to_mlflow_file_store(saved: SavedReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.18 wants a database store otherwise
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tradeoff-unit")
    [line] = log_to(["mlflow"], saved)
    assert line.startswith("tradeoff logged to MLflow run "), line
    run = MlflowClient(uri).get_run(line.split()[5])
    assert run.data.metrics == {**figures(saved.doc), **gate_figures(saved.doc)}
    assert run.data.tags["tradeoff/epoch-1/gate/mmlu.score at least 0.95"] == "FAIL: mmlu.score >= 0.95"
    assert run.data.tags["tradeoff/answer/0"] == saved.doc["answer"][0]
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id, "tradeoff")}
    assert {"tradeoff/tradeoff.json", "tradeoff/tradeoff.md", "tradeoff/cases.jsonl"} <= artifacts


def test_an_unreachable_tracker_is_a_warning(saved: SavedReport, monkeypatch: pytest.MonkeyPatch) -> None:
    needs("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    [line] = log_to(["mlflow"], saved)
    assert line.startswith("WARNING (--log-to mlflow): nothing was logged (")
    assert line.endswith(f"The report is in {saved.directory}.")


def _wandb_records(run_file: Path) -> list[Any]:
    """The records of a W&B run file: W&B's LevelDB-style log (a 7-byte file header, then 32 KiB blocks of
    records, each a 7-byte header: CRC, length, type full/first/middle/last) of protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending, records = run_file.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        room = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if room < 7 or (kind == 0 and length == 0):  # the rest of the block is padding
            position += room
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full, or last of a record split over blocks
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_log_to_wandb_offline(saved: SavedReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs("wandb")
    for name, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_PROJECT": "tradeoff-unit",
                        "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(name, value)
    [line] = log_to(["wandb"], saved)
    assert line.startswith("tradeoff logged to W&B run "), line
    [run_file] = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    records = _wandb_records(run_file)
    kinds = [r.WhichOneof("record_type") for r in records]
    history = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
               for r in records if r.HasField("history") for item in r.history.item}
    summary = {u.key or "/".join(u.nested_key): json.loads(u.value_json)
               for r in records if r.HasField("summary") for u in r.summary.update}
    expected = {**figures(saved.doc), **gate_figures(saved.doc)}
    assert {k: v for k, v in history.items() if not k.startswith("_")} == expected
    assert summary["epoch-1/gate/mmlu.score at least 0.95"] == "FAIL: mmlu.score >= 0.95"
    assert summary["epoch-1/spider.delta.lo"] == expected["epoch-1/spider.delta.lo"]
    [run] = [r.run for r in records if r.HasField("run")]
    assert (run.project, run.job_type) == ("tradeoff-unit", "evaluation")
    [artifact] = [r.artifact for r in records if r.HasField("artifact")]
    assert artifact.type == "evaluation" and "tradeoff.json" in {c.path for c in artifact.manifest.contents}
    assert "exit" in kinds  # the run was finished


def test_log_to_trackio_local_store(saved: SavedReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs("trackio")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("TRACKIO_PROJECT", "tradeoff-unit")
    import trackio.sqlite_storage as storage
    import trackio.utils

    # trackio reads TRACKIO_DIR once, at its first import (maybe an earlier test's), into these constants
    monkeypatch.setattr(storage, "TRACKIO_DIR", tmp_path / "trackio")
    monkeypatch.setattr(trackio.utils, "ARTIFACTS_DIR", tmp_path / "trackio" / "artifacts")
    monkeypatch.setattr(trackio.utils, "MEDIA_DIR", tmp_path / "trackio" / "media")
    [line] = log_to(["trackio"], saved)
    assert line.startswith("tradeoff logged to trackio run "), line
    [run] = storage.SQLiteStorage.get_runs("tradeoff-unit")
    [logged] = storage.SQLiteStorage.get_logs("tradeoff-unit", run)
    expected = {**figures(saved.doc), **gate_figures(saved.doc)}
    assert {k: v for k, v in logged.items() if k in expected} == expected
    assert (tmp_path / "trackio" / "artifacts" / "tradeoff-unit").is_dir()


def test_trackers_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--log-to 'neptune': unknown tracker. Fix: use one of mlflow, wandb, trackio"):
        check_trackers(["neptune"])
    monkeypatch.setitem(TRACKERS, "mlflow", ("tradeoff_no_such_module", "mlflow", TRACKERS["mlflow"][2]))
    with pytest.raises(ConfigError, match=r'not installed. Fix: pip install -e "\.\[mlflow\]"'):
        check_trackers(["mlflow"])
    assert check_trackers(["wandb", "wandb"]) == ("wandb",)


def test_log_to_is_a_run_option(data_dir: Path, tmp_path: Path) -> None:
    from evalkit.config import parse_run_config

    needs("mlflow")
    needs("trackio")
    cfg = parse_run_config({"log_to": ["mlflow", "trackio"]}, data_dir, tmp_path)
    assert cfg.log_to == ("mlflow", "trackio") and cfg.to_json()["log_to"] == ["mlflow", "trackio"]
    with pytest.raises(ConfigError, match="--log-to 'neptune': unknown tracker"):
        parse_run_config({"log_to": ["neptune"]}, data_dir, tmp_path)


def test_publish_without_a_report_is_a_warning(tmp_path: Path) -> None:
    [line] = publish(tmp_path, ["mlflow"], environ={"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    assert line.startswith("WARNING: nothing published to GitHub, JUnit or trackers: ")
    assert not (tmp_path / "summary.md").exists()
    assert publish(tmp_path, [], environ={}) == []  # nothing asked for, nothing read


@pytest.mark.parametrize(("worker", "devices", "device"), [
    ("gw0", 2, "cuda:0"), ("gw1", 2, "cuda:1"), ("gw2", 2, "cuda:0"), ("gw3", 2, "cuda:1"), ("gw5", 8, "cuda:5"),
    ("gw1", 1, "cuda:0"), (None, 2, None), ("master", 2, None), ("gw1", 0, None)])
def test_each_xdist_worker_gets_its_own_cuda_device(worker: str | None, devices: int, device: str | None) -> None:
    assert worker_device(worker, devices) == device


def test_the_header_says_when_workers_share_devices() -> None:
    assert workers_note(2, 2) == "2 pytest-xdist workers, one CUDA device each: worker i (gw<i>) uses cuda:i."
    shared = workers_note(5, 2)
    assert shared is not None and "share 2 CUDA device(s) round-robin" in shared and "up to 3 models" in shared
    assert shared.endswith("Fix, if they do not fit: -n 2.")
    assert workers_note(1, 4) is None and workers_note(4, 0) is None
