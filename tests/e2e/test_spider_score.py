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


THREE_GOLDS = "".join(f"{sql}\tconcert_singer\n" for sql in (
    "SELECT count(*) FROM singer", "SELECT count(*) FROM singer",
    "SELECT name ,  country ,  age FROM singer ORDER BY age DESC"))


def score_in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """main() in this process (the same code path as the command, without a new interpreter per call)."""
    from evalkit.spider_score import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_issues_misaligned_file_now_scores_aligned(spider_dir: Path, tmp_path: Path) -> None:
    """U+2028 inside a prediction was a line break for str.splitlines(): index 1 scored "all rows" and index
    2 scored prediction 2 against gold 3 (0.333, exit 0). Lines end at "\\n" only; a last empty line is an
    empty prediction."""
    gold, pred = pair_files(tmp_path, THREE_GOLDS,
                            "SELECT count(*) FROM singer -- counted\u2028all rows\nSELECT count(*) FROM singer\n\n")
    run = spider_score("--gold", gold, "--pred", pred, "--db", spider_dir / "database")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[2].split()[-1] == "0.667"
    assert "empty_output 1" in run.stdout


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_only_newline_separates_predictions(separator: str, spider_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    gold, pred = pair_files(tmp_path, THREE_GOLDS, f"SELECT count(*) FROM singer{separator}\r\nSELECT count(*) "
                            f"FROM singer -- {separator} x\nSELECT name, country, age FROM singer ORDER BY age DESC\n")
    code, out, err = score_in_process(capsys, "--gold", gold, "--pred", pred, "--db", spider_dir / "database")
    assert code == 0, err
    assert out.splitlines()[2].split()[-1] == "1.000"


def test_bom_crlf_and_trailing_empty_prediction(spider_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gold.sql").write_bytes(b"\xef\xbb\xbf" + THREE_GOLDS.replace("\n", "\r\n").encode())
    (tmp_path / "pred.sql").write_bytes(b"\xef\xbb\xbfSELECT count(*) FROM singer\r\nSELECT count(*) FROM singer\r\n\r\n")
    out_file = tmp_path / "scores.jsonl"
    code, out, err = score_in_process(capsys, "--gold", tmp_path / "gold.sql", "--pred", tmp_path / "pred.sql",
                                      "--db", spider_dir / "database", "--out", out_file)
    assert code == 0, err
    assert [json.loads(line)["outcome"] for line in out_file.read_text().splitlines()] == ["match", "match", "empty_output"]


@pytest.mark.parametrize(("args", "message"), [
    (("--timeout", "inf"), "--timeout: 'inf' is not a finite number of seconds > 0"),
    (("--timeout", "nan"), "--timeout: 'nan' is not a finite number of seconds > 0"),
    (("--timeout", "0"), "--timeout: '0' is not a finite number of seconds > 0"),
    (("--timeout", "-5"), "--timeout: '-5' is not a finite number of seconds > 0"),
    (("--out", "{tmp}/missing/scores.jsonl"), "--out: the folder {tmp}/missing does not exist"),
    (("--out", "{tmp}"), "--out: cannot write {tmp} (Is a directory)"),
])
def test_bad_options_are_usage_errors(args: tuple[str, str], message: str, spider_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    gold, pred = pair_files(tmp_path, THREE_GOLDS, "SELECT 1\nSELECT 1\nSELECT 1\n")
    code, _, err = score_in_process(capsys, "--gold", gold, "--pred", pred, "--db", spider_dir / "database",
                                    *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and message.format(tmp=tmp_path) in err and "Traceback" not in err


@pytest.mark.parametrize(("gold_bytes", "pred_bytes", "message"), [
    (b"", b"", "gold.sql is empty"),
    (THREE_GOLDS.encode(), b"", "pred.sql is empty"),
    (THREE_GOLDS.encode(), b"SELECT 1\nSELECT 'caf\xe9'\nSELECT 1\n", "pred.sql, line 2: not UTF-8 text (byte 0xe9)"),
    (b"SELECT 1\tconcert_singer\n\xff\n", b"SELECT 1\n\n", "gold.sql, line 2: not UTF-8 text (byte 0xff)"),
])
def test_empty_and_non_utf8_files_are_usage_errors(gold_bytes: bytes, pred_bytes: bytes, message: str,
                                                   spider_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gold.sql").write_bytes(gold_bytes)
    (tmp_path / "pred.sql").write_bytes(pred_bytes)
    code, _, err = score_in_process(capsys, "--gold", tmp_path / "gold.sql", "--pred", tmp_path / "pred.sql",
                                    "--db", spider_dir / "database")
    assert code == 2 and message in err and "Traceback" not in err


def test_a_database_file_that_is_no_database_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 0-byte database made every gold query fail: 'gold_error 1', exit 0."""
    (tmp_path / "db" / "empty").mkdir(parents=True)
    (tmp_path / "db" / "empty" / "empty.sqlite").write_bytes(b"")
    gold, pred = pair_files(tmp_path, "SELECT 1\tempty\n", "SELECT 1\n")
    code, _, err = score_in_process(capsys, "--gold", gold, "--pred", pred, "--db", tmp_path / "db")
    assert code == 2 and "empty.sqlite is an empty file (0 bytes), not a database" in err
