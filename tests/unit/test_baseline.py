"""The baseline file (evalkit.baseline) on real MMLU data, written and read back without a model: what
makes it comparable to a run, and what a damaged or hand-edited file is refused for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalkit.baseline import read_baseline, write_baseline
from evalkit.config import RunConfig, parse_run_config
from evalkit.errors import ConfigError
from evalkit.summary import CaseRecord

FINGERPRINT = "f" * 16
SUBJECTS = "abstract_algebra,anatomy"  # anatomy is "other" in Hendrycks' scheme, STEM in lm-eval's


def config(tmp_path: Path, data_dir: Path, **raw: str) -> RunConfig:
    return parse_run_config({"suites": "mmlu", "mmlu_subjects": SUBJECTS, **raw}, data_dir, tmp_path / "cache")


def base_records(cfg: RunConfig) -> list[CaseRecord]:
    """A base record per question of the run's suite, as the run would group it; every third one right."""
    suite = cfg.suites[0]
    return [CaseRecord(suite.name, "base", ex.id, ex.group, ex.cluster, suite.template, "scored", score=float(i % 3 == 0),
                       passed=i % 3 == 0) for i, ex in enumerate(suite.load())]


@pytest.fixture
def saved(tmp_path: Path, data_dir: Path) -> Path:
    """A baseline written by write_baseline from the Hendrycks-grouped run."""
    path = tmp_path / "base.json"
    cfg = config(tmp_path, data_dir, save_baseline=str(path))
    write_baseline(cfg, base_records(cfg), {"base": {"base_fingerprint": FINGERPRINT}})
    return path


def read(tmp_path: Path, data_dir: Path, path: Path, **raw: str) -> list[CaseRecord]:
    return read_baseline(config(tmp_path, data_dir, baseline=str(path), **raw), FINGERPRINT)


def edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_baseline_reads_back_the_records_it_was_saved_with(tmp_path, data_dir, saved):
    cfg = config(tmp_path, data_dir)
    assert read(tmp_path, data_dir, saved) == base_records(cfg)


def test_a_baseline_grouped_by_another_category_scheme_is_refused(tmp_path, data_dir, saved):
    """Saved under Hendrycks' categories and read by an lm-eval run, it was accepted: the base kept anatomy
    in 'other', the adapter put it in STEM, and a delta was printed between unlike groups."""
    with pytest.raises(ConfigError, match=r"refused: its mmlu records group \d+ examples otherwise than this run "
                                          r"\(anatomy-\d+ is in other/anatomy there, stem/anatomy here.*--mmlu-categories"):
        read(tmp_path, data_dir, saved, mmlu_categories="lm-eval")


def duplicate(data: dict[str, Any]) -> None:
    data["records"].append(dict(data["records"][0]))


@pytest.mark.parametrize(("change", "message"), [
    (duplicate, r"record \d+ \(mmlu abstract_algebra-\d+\): a second record of this example"),
    (lambda d: d["records"][1].update(score=5.0, passed=True), r"record 2 \(mmlu .*\): score 5.0 is outside 0..1"),
    (lambda d: d["records"][1].update(score=1.0, passed=False), r"record 2 .*: passed False disagrees with score 1.0"),
    (lambda d: d["records"][2].update(variant="lora"), r"record 3 .*: variant 'lora', not 'base'"),
    (lambda d: d["records"][0].update(suite="gsm8k"), r"record 1 \(gsm8k .*\): suite 'gsm8k' is none of the baseline's"),
    (lambda d: d["records"][0].update(score=1.0 - d["records"][0]["score"], passed=not d["records"][0]["passed"]),
     "its records do not match their checksum: they were edited after the file was saved"),
    (lambda d: d.update(format="tradeoff-baseline/1"), "format 'tradeoff-baseline/1', this tradeoff reads"),
])
def test_damaged_or_edited_records_are_refused_naming_the_problem(tmp_path, data_dir, saved, change, message):
    """A duplicated record gave `base 40.0% n=5` on 4 questions, `score: 5.0` printed `125.0% [-412.8, 662.8]`,
    a record of another variant changed the adapter's n: all were read as they were."""
    edit(saved, change)
    with pytest.raises(ConfigError, match=f"--baseline {saved}: not a readable tradeoff baseline \\(.*{message}"):
        read(tmp_path, data_dir, saved)


def test_save_baseline_naming_a_folder_is_a_problem_at_start_up(tmp_path):
    """It was caught only after the whole run, with a message blaming the report."""
    from evalkit.baseline import save_path_problem

    assert save_path_problem(tmp_path) == f"{tmp_path} is a folder, not a file"
    assert save_path_problem(tmp_path / "new" / "base.json") is None
