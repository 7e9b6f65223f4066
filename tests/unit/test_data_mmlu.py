"""MMLU loader on the real CSVs, and its errors on corrupted copies of them."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from evalkit.data import mmlu
from evalkit.errors import DataError


def test_counts_per_split_and_category(data_dir: Path) -> None:
    test = mmlu.load_mmlu("test", data_dir)
    assert len(test) == 14042
    assert len(mmlu.load_mmlu("dev", data_dir)) == 285
    assert len(mmlu.load_mmlu("val", data_dir)) == 1531
    # Hendrycks' categories.py: 18 STEM, 13 humanities, 12 social sciences, 14 other subjects.
    subjects = Counter(mmlu.category_of(s) for s in mmlu.SUBJECTS)
    assert subjects == {"stem": 18, "humanities": 13, "social_sciences": 12, "other": 14}
    per_category = Counter(q.category for q in test)
    assert per_category == {"stem": 3018, "humanities": 4705, "social_sciences": 3077, "other": 3242}
    assert Counter(q.answer for q in test) == {"A": 3222, "B": 3462, "C": 3582, "D": 3776}


def test_anatomy_scheme_is_selectable(data_dir: Path) -> None:
    hendrycks = mmlu.load_mmlu("test", data_dir, subjects=["anatomy"])
    harness = mmlu.load_mmlu("test", data_dir, subjects=["anatomy"], scheme="lm-eval")
    assert {q.category for q in hendrycks} == {"other"}
    assert {q.category for q in harness} == {"stem"}


def test_rows_with_embedded_newlines_and_crlf_files_parse(data_dir: Path) -> None:
    questions = mmlu.load_mmlu("test", data_dir)
    assert sum("\n" in q.question or any("\n" in c for c in q.choices) for q in questions) > 0
    first = questions[0]
    assert first.id == "abstract_algebra-0000" and first.subcategory == "math" and len(first.choices) == 4


def test_shots_are_first_five_dev_rows_in_file_order(data_dir: Path) -> None:
    shots = mmlu.load_shots("anatomy", 5, data_dir)
    assert [s.index for s in shots] == [0, 1, 2, 3, 4]
    assert all(s.split == "dev" for s in shots)


def _append_row(path: Path, row: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write("\r\n" + row + "\r\n")


@pytest.fixture
def corrupt_copy(data_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(data_dir / "mmlu", tmp_path / "mmlu")
    return tmp_path


def test_wrong_field_count_names_file_row_and_fix(corrupt_copy: Path) -> None:
    path = corrupt_copy / "mmlu/data/test/astronomy_test.csv"
    _append_row(path, "a lone question,with,three")
    with pytest.raises(DataError, match=r"astronomy_test\.csv, row 153 .*: expected 6 fields.*Fix"):
        mmlu.load_mmlu("test", corrupt_copy, subjects=["astronomy"])


def test_answer_outside_a_to_d_is_rejected(corrupt_copy: Path) -> None:
    path = corrupt_copy / "mmlu/data/dev/virology_dev.csv"
    _append_row(path, "q?,1,2,3,4,E")  # this file is CRLF without a final newline
    with pytest.raises(DataError, match=r"virology_dev\.csv, row 6 .*: answer 'E'"):
        mmlu.load_mmlu("dev", corrupt_copy, subjects=["virology"])


def test_non_utf8_and_missing_files(corrupt_copy: Path) -> None:
    path = corrupt_copy / "mmlu/data/test/virology_test.csv"
    path.write_bytes(b"\xff\xfe" + path.read_bytes())
    with pytest.raises(DataError, match="not UTF-8"):
        mmlu.load_mmlu("test", corrupt_copy, subjects=["virology"])
    (corrupt_copy / "mmlu/data/test/sociology_test.csv").unlink()
    with pytest.raises(DataError, match=r"sociology_test\.csv.*Fix: run `python -m evalkit.data fetch"):
        mmlu.load_mmlu("test", corrupt_copy, subjects=["sociology"])


def test_missing_folder_and_unknown_subject(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(DataError, match="MMLU folder not found"):
        mmlu.load_mmlu("test", tmp_path)
    with pytest.raises(DataError, match="Unknown MMLU subject"):
        mmlu.load_mmlu("test", data_dir, subjects=["astrology"])


def test_byte_order_mark_is_not_part_of_the_first_question(corrupt_copy: Path, data_dir: Path) -> None:
    path = corrupt_copy / "mmlu/data/test/virology_test.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert mmlu.load_mmlu("test", corrupt_copy, ["virology"]) == mmlu.load_mmlu("test", data_dir, ["virology"])


def test_empty_test_file_is_an_error_not_zero_questions(corrupt_copy: Path) -> None:
    (corrupt_copy / "mmlu/data/test/virology_test.csv").write_bytes(b"\r\n")
    with pytest.raises(DataError, match=r"virology_test\.csv has no questions\. Fix: restore"):
        mmlu.load_mmlu("test", corrupt_copy, ["virology"])


def test_a_subject_named_twice_is_loaded_once(data_dir: Path) -> None:
    """--mmlu-subjects=anatomy,anatomy ran every anatomy question twice (n doubled, the CI too narrow)."""
    assert mmlu.load_mmlu("test", data_dir, ["anatomy", "virology", "anatomy"]) == mmlu.load_mmlu(
        "test", data_dir, ["anatomy", "virology"])
