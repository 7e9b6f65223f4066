"""What the end-to-end tests of the plugin share: a user's project with the real tests/eval files, a
finished run and its report files, and real (random) LoRA adapters for the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# pytester's in-process runs (``runpytest_inprocess``) drop every module first imported inside them; torch
# imported in one such run and again in the next crashes the interpreter in garbage collection (a segfault,
# seen when test_plugin.py runs alone). Imported here, before any of them, it stays loaded.
import torch  # noqa: F401  (isort: skip)

EVAL_TESTS = Path(__file__).resolve().parents[1] / "eval"
ROOT = Path(__file__).resolve().parents[2]


def save_random_adapter(path: Path, seed: int) -> Path:
    """A real LoRA adapter file for the embedded model: random A and B (B != 0), so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model

    from evalkit.models import load_model

    torch.manual_seed(seed)
    base = load_model("smollm2-135m")
    model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    model.save_pretrained(path)
    return path


def make_project(path: Path) -> None:
    """A user's project: the real evaluation test files and a conftest that loads the plugin."""
    (path / "conftest.py").write_text('pytest_plugins = ["evalkit.plugin"]\n')
    (path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings =\n"
                                     "    ignore::DeprecationWarning\n")
    (path / "test_eval.py").write_text((EVAL_TESTS / "test_eval.py").read_text())


class Run:
    """One finished pytest run: exit code, output, and the report files it wrote."""

    def __init__(self, result: pytest.RunResult, report_dir: Path) -> None:
        self.result = result
        self.rc = int(result.ret)
        self.out = result.stdout.str() + result.stderr.str()
        self.report_dir = report_dir
        path = report_dir / "tradeoff.json"
        self.json: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def cases(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.report_dir / "cases.jsonl").read_text().splitlines()]

    def stable_json(self) -> dict[str, Any]:
        """Everything but the run's timing and machine details (and where its report went)."""
        data = {k: v for k, v in self.json.items() if k != "run"}
        data["config"] = {k: v for k, v in data["config"].items() if k != "report_dir"}
        return data


def run_args(data_dir: Path, cache: Path, report: Path, *args: str) -> list[str]:
    return ["-p", "no:cacheprovider", "--tb=line", "-rs", f"--data-dir={data_dir}", f"--results-cache={cache}",
            f"--report-dir={report}", *args]


def run_project(path: Path, data_dir: Path, cache: Path, *args: str, timeout: float = 1500) -> Run:
    """A finished evaluation in a new project at ``path``, run as a plain pytest subprocess (pytester's
    fixtures are per test; this serves module-scoped fixtures), its report in ``path / "report"``."""
    make_project(path)
    command = [sys.executable, "-m", "pytest", *run_args(data_dir, cache, path / "report", *args)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=timeout)
    result = pytest.RunResult(done.returncode, done.stdout.splitlines(), done.stderr.splitlines(),
                              time.monotonic() - started)
    return Run(result, path / "report")
