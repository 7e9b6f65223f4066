"""The ``tradeoff`` console command, and ``tradeoff report DIR`` re-rendering a written report folder from its
tradeoff.json alone (no model, data or result cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit import __version__
from evalkit.cli import main
from evalkit.readback import load_report
from evalkit.report import render_text, to_json, to_markdown, write_report
from evalkit.summary import CaseRecord, summarize
from saved_reports import write_saved_report

TRADEOFF = Path(sys.executable).parent / "tradeoff"  # the console script `pip install -e .` puts beside python


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("report")
    summary, gates = write_saved_report(directory)
    return directory, summary, gates


def test_the_console_script_lists_every_command_and_its_version() -> None:
    if not TRADEOFF.is_file():
        pytest.skip(f"{TRADEOFF} is not installed: pip install -e . registers the console script")
    done = subprocess.run([TRADEOFF, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("demo", "data", "spider-score", "report"):
        assert f"    {command}" in done.stdout
    version = subprocess.run([TRADEOFF, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"tradeoff {__version__}"


def test_a_tool_gets_the_rest_of_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "verify", "--help"])
    assert exit_.value.code == 0
    assert "--data-dir" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["spider-score", "--help"])
    assert "--gold" in capsys.readouterr().out


def test_report_prints_what_the_run_printed(report, capsys: pytest.CaptureFixture[str]) -> None:
    directory, summary, gates = report
    assert main(["report", str(directory)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(render_text(summary, gates, width=160))
    assert out.endswith("WARNING (training data): epoch-1 was trained on spider dev\n")
    assert main(["report", str(directory), "--format", "markdown"]) == 0
    assert capsys.readouterr().out == (directory / "tradeoff.md").read_text()


def test_the_summary_reads_back_to_the_same_tradeoff_json(report) -> None:
    directory = report[0]
    doc = json.loads((directory / "tradeoff.json").read_text())
    saved = load_report(directory)
    meta = {k: doc[k] for k in ("config", "models", "versions", "warnings")}
    assert json.loads(json.dumps(to_json(saved.summary, saved.gates, meta))) == doc
    assert [g.figure_text for g in saved.gates] == [g.figure_text for g in report[2]]


def test_a_suite_family_reads_back_with_its_members(tmp_path: Path) -> None:
    """A family (the forgetting suites' macro average) is answered for as one: its members must come back."""
    from evalkit.suites import FAMILIES, FAMILY_LAYOUTS, REGISTRY

    family, members = next((f, tuple(m)[:2]) for f, m in FAMILIES.items())
    rows = [CaseRecord(suite, variant, f"{suite}-{i}", "all", "all", f"{suite}-0shot", "scored", score=score,
                       passed=bool(score), outcome="correct" if score else "wrong")
            for suite in members for variant in ("base", "lora") for i in range(20)
            for score in [float((i * (2 + (variant == "lora")) + len(suite)) % 5 < 2)]]
    summary = summarize(rows, ["base", "lora"], {m: REGISTRY[m].layout for m in members},
                        {m: f"{m}-0shot" for m in members}, 0.95, {family: (FAMILY_LAYOUTS[family], members)})
    meta = {"config": {}, "models": {}, "warnings": []}
    write_report(tmp_path, summary, rows, [], meta)
    saved = load_report(tmp_path)
    assert saved.summary.suites[family].members == members
    assert render_text(saved.summary, saved.gates, width=160) == render_text(summary, [], width=160)
    assert to_markdown(saved.summary, saved.gates, saved.doc) == (tmp_path / "tradeoff.md").read_text()


def test_report_loads_no_model(report) -> None:
    code = ("import sys; from evalkit.cli import main; main(['report', sys.argv[1]]); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'deepeval') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(report[0])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert "Answer: epoch-1 vs base:" in done.stdout


def test_report_says_what_is_wrong_with_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert f"{tmp_path} holds no tradeoff.json" in capsys.readouterr().err
    (tmp_path / "tradeoff.json").write_text('{"format": "something-else"}')
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a tradeoff report" in capsys.readouterr().err
    (tmp_path / "tradeoff.json").write_text('{"format": "tradeoff-report/2", "suites": {}}')
    assert main(["report", str(tmp_path)]) == 2
    assert "does not have the fields this tradeoff reads (KeyError" in capsys.readouterr().err
