"""``python -m evalkit demo`` end to end on a tiny sample setting: it trains the adapter (a few steps, the
compact schema), evaluates base vs adapter through the pytest plugin with the adapter's prompt options,
and ends with the summary and the answer; a rerun reuses the adapter and the result cache."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evalkit.paths import PROJECT_ROOT

pytestmark = pytest.mark.model


def _demo(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evalkit", "demo", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_demo_trains_evaluates_answers_and_reuses_on_rerun(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"),
        "data": {"split": "train", "sample": 8, "seed": 1, "data_dir": str(data_dir)},
        "prompt": {"schema": "compact"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "trainer": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "max_length": 256, "device": "cpu"},
    }))
    report = tmp_path / "report"
    args = ["--config", str(config), "--report-dir", str(report), "--spider-sample=1", "--mmlu-sample=1", "--forgetting-sample=2",
            "--mmlu-subjects=anatomy,global_facts", f"--results-cache={tmp_path / 'cache'}", f"--data-dir={data_dir}"]
    cold = _demo(*args)
    out = cold.stdout + cold.stderr
    assert cold.returncode in (0, 1), out  # the gates decide the exit status
    assert "step 1/2: training the CPU adapter" in cold.stderr
    trained = json.loads((tmp_path / "run" / "final" / "training.json").read_text())
    assert trained["prompt"] == {"sample_rows": 0, "schema": "compact"}
    # Evaluated with the adapter's prompt options; the summary and the answer are the last block, followed
    # only by pytest's one-line counts.
    assert "--spider-schema=compact" in cold.stderr
    lines = cold.stdout.rstrip().splitlines()
    assert re.fullmatch(r"\d+ (passed|wrong).* in [\d.]+s.*", lines[-1]) and lines[-2].startswith("report: ")
    assert any(line.startswith("Answer: cpu-lora vs base: ") for line in lines[-8:-2])
    assert "tradeoff summary" in cold.stdout and "=== " not in cold.stdout[cold.stdout.index("tradeoff summary"):]
    result = json.loads((report / "tradeoff.json").read_text())
    assert result["answer"] and result["answer"][0].startswith("cpu-lora vs base: ")
    assert result["suites"]["mmlu"]["template"] == "mmlu-cloze-5shot"
    # The cost side: the forgetting suites the embedded model is above chance on, and their macro average.
    assert {"hellaswag", "arc_easy", "piqa", "openbookqa", "forgetting"} <= set(result["suites"])
    assert result["suites"]["forgetting"]["deltas"]["cpu-lora"]["all"]["n"] == 8
    assert [g["gate"] for g in result["gates"]] == ["spider.delta >= 0", "forgetting.delta >= -0.02",
                                                    "mmlu.delta >= -0.02"]

    warm = _demo(*args)
    assert warm.returncode == cold.returncode, warm.stdout + warm.stderr
    assert "exists, reusing it" in warm.stderr and "step 1/2: training" not in warm.stderr
    assert json.loads((report / "tradeoff.json").read_text())["answer"] == result["answer"]
    assert "took " in warm.stderr.splitlines()[-1]
