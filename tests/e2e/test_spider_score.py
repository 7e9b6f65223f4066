"""``python -m evalkit.spider_score`` on the real Spider dev files, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.paths import PROJECT_ROOT


def spider_score(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.spider_score", *map(str, args)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )


def pair_files(folder: Path, gold: str, pred: str) -> tuple[Path, Path]:
    (folder / "gold.sql").write_text(gold)
    (folder / "pred.sql").write_text(pred)
    return folder / "gold.sql", folder / "pred.sql"


@pytest.fixture(scope="module")
def spider_dir(data_dir: Path) -> Path:
    return data_dir / "spider"


def test_gold_as_predictions_scores_one_on_every_executable_dev_pair(spider_dir: Path, tmp_path: Path) -> None:
    gold_lines = (spider_dir / "dev_gold.sql").read_text().splitlines()
    pred = tmp_path / "pred.sql"
    pred.write_text("\n".join(line.split("\t")[0] for line in gold_lines) + "\n")
    out = tmp_path / "scores.jsonl"
    run = spider_score("--gold", spider_dir / "dev_gold.sql", "--pred", pred, "--db", spider_dir / "database", "--out", out)
    assert run.returncode == 0, run.stderr
    table = run.stdout.splitlines()
    assert table[1].split() == ["count", "232", "416", "160", "164", "972"]
    assert table[2].split() == ["execution", "1.000", "1.000", "1.000", "1.000", "1.000"]
    assert "match 972, mismatch 0" in run.stdout and "skipped 62 (database file missing: wta_1 x62)" in run.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(1034))
    assert {r["outcome"] for r in records} == {"match", "skipped"}
    assert all(r["score"] is None and "wta_1.sqlite" in r["reason"] for r in records if r["db_id"] == "wta_1")


def test_mixed_predictions_get_their_typed_outcomes(spider_dir: Path, tmp_path: Path) -> None:
    gold_lines = (spider_dir / "dev_gold.sql").read_text().splitlines()[:6]
    predictions = [
        "SELECT count(*) FROM singer",  # dev0000: match
        "",  # empty prediction line
        "SELECT age, name, country FROM singer ORDER BY age DESC",  # dev0002: columns swapped, still a match
        "SELECT name, country, age FROM singer ORDER BY age ASC",  # dev0003: order reversed
        "DROP TABLE singer",  # dev0004
        "We have 10 singers.",  # dev0005
    ]
    gold, pred = pair_files(tmp_path, "\n".join(gold_lines) + "\n", "\n".join(predictions) + "\n")
    out = tmp_path / "scores.jsonl"
    run = spider_score("--gold", gold, "--pred", pred, "--db", spider_dir / "database", "--out", out)
    assert run.returncode == 0, run.stderr
    outcomes = [json.loads(line)["outcome"] for line in out.read_text().splitlines()]
    assert outcomes == ["match", "empty_output", "match", "mismatch", "execution_error", "syntax_error"]
    assert run.stdout.splitlines()[2].split()[-1] == f"{2 / 6:.3f}"


def test_keep_distinct_mirrors_the_official_flag(spider_dir: Path, tmp_path: Path) -> None:
    gold, pred = pair_files(tmp_path, "SELECT DISTINCT country FROM singer WHERE age  >  20\tconcert_singer\n",
                            "SELECT country FROM singer WHERE age > 20\n")
    default = spider_score("--gold", gold, "--pred", pred, "--db", spider_dir / "database")
    kept = spider_score("--gold", gold, "--pred", pred, "--db", spider_dir / "database", "--keep-distinct")
    assert "match 1, mismatch 0" in default.stdout
    assert "match 0, mismatch 1" in kept.stdout


def test_bad_input_files_get_one_clear_error(spider_dir: Path, tmp_path: Path) -> None:
    gold, pred = pair_files(tmp_path, "SELECT 1\tconcert_singer\nSELECT 2 concert_singer\n", "SELECT 1\nSELECT 2\n")
    malformed = spider_score("--gold", gold, "--pred", pred, "--db", spider_dir / "database")
    assert malformed.returncode == 2 and "line 2: expected 'SQL<TAB>db_id'" in malformed.stderr
    gold.write_text("SELECT 1\tconcert_singer\n")
    counts = spider_score("--gold", gold, "--pred", pred, "--db", spider_dir / "database")
    assert counts.returncode == 2 and "has 2 lines but" in counts.stderr and "one prediction per gold line" in counts.stderr
