"""`python -m evalkit.data fetch/verify` on the real data: copy, checksums, counts, format converters."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from evalkit.data import fetch, mmlu
from evalkit.errors import DataError


def test_fetch_from_local_copy_then_verify(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "cache"
    done = subprocess.run(
        [sys.executable, "-m", "evalkit.data", "fetch", "--from", str(data_dir), "--to", str(target)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "389 files checked against SHA256SUMS, 0 problem(s)" in done.stdout
    assert "spider dev: 1034 examples, 972 executable (missing databases: wta_1)" in done.stdout
    assert "mmlu: dev 285, val 1531, test 14042" in done.stdout
    # A changed file is reported by verify, with a non-zero exit.
    victim = target / "mmlu/data/test/virology_test.csv"
    victim.write_text(victim.read_text(encoding="utf-8").replace("virus", "vírus", 1), encoding="utf-8")
    again = subprocess.run([sys.executable, "-m", "evalkit.data", "verify", "--data-dir", str(target)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 1
    assert "virology_test.csv: sha256 differs" in again.stderr


def test_fetch_from_a_folder_without_the_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="must hold spider/ and mmlu/"):
        fetch.copy_local(tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="--from folder not found"):
        fetch.copy_local(tmp_path / "nope", tmp_path / "out")


def test_hub_rows_are_written_back_byte_for_byte_as_original_csv_rows(data_dir: Path, tmp_path: Path) -> None:
    """The upstream path converts cais/mmlu rows (choices list, answer index) to the original CSV layout."""
    original = mmlu.load_mmlu("test", data_dir, subjects=["astronomy", "virology"])
    rows = [{"question": q.question, "subject": q.subject, "choices": list(q.choices),
             "answer": mmlu.LETTERS.index(q.answer)} for q in original]
    assert fetch.write_mmlu_csvs({"test": rows}, tmp_path) == len(original)
    with (tmp_path / "mmlu/data/test/astronomy_test.csv").open(newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    with (data_dir / "mmlu/data/test/astronomy_test.csv").open(newline="", encoding="utf-8") as handle:
        assert written == list(csv.reader(handle))


def test_spider_release_zip_is_unpacked(data_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "spider_data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("dev.json", "tables.json", "database/pets_1/pets_1.sqlite"):
            zipped.write(data_dir / "spider" / name, f"spider_data/{name}")
    fetch.extract_spider_zip(archive, tmp_path)
    assert (tmp_path / "spider/database/pets_1/pets_1.sqlite").is_file()
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError, match="not a zip archive"):
        fetch.extract_spider_zip(tmp_path / "broken.zip", tmp_path)


def test_upstream_fetch_offline_fails_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"Cannot download cais/mmlu.*Fix: connect to the internet"):
        fetch.fetch_upstream(tmp_path)


def test_a_byte_order_mark_in_sha256sums_is_not_part_of_the_first_sum(tmp_path: Path) -> None:
    """An editor on Windows saves SHA256SUMS with a BOM: the intact first file was reported as corrupt."""
    from evalkit.data.files import sha256_file

    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.txt").write_text("beta\n")
    lines = [f"{sha256_file(tmp_path / name)}  ./{name}" for name in ("a.txt", "b.txt")]
    (tmp_path / "SHA256SUMS").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    assert fetch._check_sums(tmp_path) == (2, [])
    (tmp_path / "SHA256SUMS").write_bytes(b"\xff" + "\n".join(lines).encode())
    checked, problems = fetch._check_sums(tmp_path)
    assert checked == 0 and "SHA256SUMS, line 1: not UTF-8 text (byte 0xff)" in problems[0]
