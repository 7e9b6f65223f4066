"""The forgetting benchmarks from their upstream files, as staged in ``../shared/data`` (MANIFEST.md 4-8).

- ARC (``arc/ARC-{Challenge,Easy}/ARC-*-Test.jsonl``): AI2's release; answer keys are letters or, for the
  NY Regents questions, "1".."4", so the gold is the *position* of the key among the choice labels.
- HellaSwag (``hellaswag/hellaswag_val.jsonl``): rowanz's validation file; ``ind`` repeats across
  sources (433 values twice), so a row's id is its line number.
- WinoGrande 1.1 (``winogrande/dev.jsonl``): ``answer`` "1"/"2"; each sentence holds one "_".
- PIQA (``piqa/dev.jsonl`` + ``dev-labels.lst``, the AI2 leaderboard release): label 0 is ``sol1``.
- OpenBookQA (``openbookqa/Main/test.jsonl``): ARC's layout.

Rows are returned as written (no stripping: the harness's prompts keep the text verbatim); every loader
checks each row and names the file, the line and the fix when one is malformed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from evalkit.data.files import FETCH_HINT, decode_utf8, sha256_files
from evalkit.errors import DataError
from evalkit.paths import data_dir as resolve_data_dir

ARC_LEVELS = ("challenge", "easy")
FILES = {
    "arc_challenge": ("arc/ARC-Challenge/ARC-Challenge-Test.jsonl",),
    "arc_easy": ("arc/ARC-Easy/ARC-Easy-Test.jsonl",),
    "hellaswag": ("hellaswag/hellaswag_val.jsonl",),
    "winogrande": ("winogrande/dev.jsonl",),
    "piqa": ("piqa/dev.jsonl", "piqa/dev-labels.lst"),
    "openbookqa": ("openbookqa/Main/test.jsonl",),
}
FOLDERS = ("arc", "hellaswag", "winogrande", "piqa", "openbookqa")
# Where each upstream release is, for `python -m evalkit.data fetch --upstream` (these are not on the hub in
# their release form).
UPSTREAM = {
    "ARC": ("arc", "AI2's ARC-V1-Feb2018.zip (allenai.org/data/arc): ARC-Challenge/ and ARC-Easy/ as released"),
    "HellaSwag": ("hellaswag", "github.com/rowanz/hellaswag, data/hellaswag_val.jsonl"),
    "WinoGrande": ("winogrande", "AI2's winogrande_1.1.zip (winogrande.allenai.org): dev.jsonl, dev-labels.lst"),
    "PIQA": ("piqa", "AI2's physicaliqa-train-dev.zip (leaderboard.allenai.org/physicaliqa): dev.jsonl, "
                     "dev-labels.lst"),
    "OpenBookQA": ("openbookqa", "AI2's OpenBookQA-V1-Sep2018.zip (allenai.org/data/open-book-qa): Data/Main/ "
                                 "as Main/"),
}
EXPECTED_COUNTS = {"arc_challenge": 1172, "arc_easy": 2376, "hellaswag": 10042, "winogrande": 1267, "piqa": 1838,
                   "openbookqa": 500}
T = TypeVar("T")


class RowError(ValueError):
    """A malformed row: the message says what is wrong and how to fix it; the loader adds file and line."""


@dataclass(frozen=True)
class StemQuestion:
    """An ARC or OpenBookQA question: the stem, the choice texts and labels, and the gold position."""

    id: str
    stem: str
    choices: tuple[str, ...]
    labels: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class HellaSwagRow:
    id: str  # the line number: ``ind`` is not unique
    activity_label: str
    ctx_a: str
    ctx_b: str
    endings: tuple[str, ...]
    gold: int
    source: str  # ActivityNet or WikiHow, from ``source_id``
    split_type: str


@dataclass(frozen=True)
class WinoGrandeRow:
    id: str
    sentence: str
    options: tuple[str, str]
    gold: int


@dataclass(frozen=True)
class PIQARow:
    id: str
    goal: str
    solutions: tuple[str, str]
    gold: int


def files(name: str, root: Path | None = None) -> list[Path]:
    """The upstream files benchmark ``name`` is read from."""
    base = root if root is not None else resolve_data_dir()
    return [base / rel for rel in FILES[name]]


def available(name: str, root: Path) -> bool:
    """Whether the benchmark's files are there (a data folder with only Spider and MMLU is valid)."""
    return all(path.is_file() for path in files(name, root))


def counts(root: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """For ``verify``: the rows of each benchmark present, those absent, and the problems met reading them."""
    loaders = {"arc_challenge": lambda: load_arc("challenge", root), "arc_easy": lambda: load_arc("easy", root),
               "hellaswag": lambda: load_hellaswag(root), "winogrande": lambda: load_winogrande(root),
               "piqa": lambda: load_piqa(root), "openbookqa": lambda: load_openbookqa(root)}
    found, missing, problems = {}, [], []
    for name, load in loaders.items():
        if not available(name, root):
            missing.append(name)
            continue
        try:
            found[name] = len(load())
        except DataError as exc:
            problems.append(str(exc))
    return found, missing, problems


def checksum(name: str, root: Path) -> str:
    return sha256_files(files(name, root))


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise RowError(f"field {key!r} is {'missing' if value is None else type(value).__name__}, not text")
    return value


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"{path} not found. Fix: {FETCH_HINT}.")
    text = decode_utf8(path.read_bytes(), path)
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line


def _read_jsonl(path: Path, parse: Callable[[dict[str, Any], int], T], fix: str) -> list[T]:
    """Every row of a JSONL file through ``parse``; a malformed row is one DataError naming file and line."""
    rows = []
    for number, line in _lines(path):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise RowError(f"a JSON {type(row).__name__}, not an object")
            rows.append(parse(row, number))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg}). Fix: {fix}.") from None
        except RowError as exc:
            raise DataError(f"{path}, line {number}: {exc}. Fix: {fix}.") from None
    if not rows:
        raise DataError(f"{path}: no rows. Fix: {fix}.")
    return rows


def _restore(name: str) -> str:
    return f"restore the upstream {name} file ({FETCH_HINT}; checksums in its SHA256SUMS)"


def _stem_question(row: dict[str, Any], number: int) -> StemQuestion:
    question = row.get("question")
    if not isinstance(question, dict):
        raise RowError("field 'question' must be an object with 'stem' and 'choices'")
    raw = question.get("choices")
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(c, dict) for c in raw):
        raise RowError("'question.choices' must be a list of at least 2 {text, label} objects")
    choices = tuple(_text(c, "text") for c in raw)
    labels = tuple(_text(c, "label") for c in raw)
    key = _text(row, "answerKey").lstrip()
    if key not in labels:
        raise RowError(f"answerKey {key!r} is not one of the choice labels {', '.join(labels)}")
    return StemQuestion(_text(row, "id"), _text(question, "stem"), choices, labels, labels.index(key))


def _hellaswag(row: dict[str, Any], number: int) -> HellaSwagRow:
    endings = row.get("endings")
    if not isinstance(endings, list) or len(endings) != 4 or not all(isinstance(e, str) for e in endings):
        raise RowError("'endings' must be a list of 4 texts")
    label = row.get("label")
    if isinstance(label, str) and label.isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < 4:
        raise RowError(f"label {row.get('label')!r} is not 0-3")
    source = _text(row, "source_id").split("~", 1)[0]
    return HellaSwagRow(f"{number:05d}", _text(row, "activity_label"), _text(row, "ctx_a"), _text(row, "ctx_b"),
                        tuple(endings), label, {"activitynet": "ActivityNet", "wikihow": "WikiHow"}.get(source, source),
                        _text(row, "split_type"))


def _winogrande(row: dict[str, Any], number: int) -> WinoGrandeRow:
    sentence = _text(row, "sentence")
    if sentence.count("_") != 1:
        raise RowError(f"the sentence has {sentence.count('_')} blanks ('_'), WinoGrande needs exactly one")
    answer = _text(row, "answer")
    if answer not in ("1", "2"):
        raise RowError(f"answer {answer!r} is not \"1\" or \"2\"")
    return WinoGrandeRow(_text(row, "qID"), sentence, (_text(row, "option1"), _text(row, "option2")), int(answer) - 1)


def _piqa(row: dict[str, Any], number: int) -> tuple[str, str, str, str]:
    return _text(row, "id"), _text(row, "goal"), _text(row, "sol1"), _text(row, "sol2")


def load_arc(level: str, root: Path | None = None) -> list[StemQuestion]:
    """ARC-Challenge or ARC-Easy test questions, in file order."""
    if level not in ARC_LEVELS:
        raise DataError(f"ARC level {level!r}: use challenge or easy.")
    (path,) = files(f"arc_{level}", root)
    return _read_jsonl(path, _stem_question, _restore(f"ARC-{level.capitalize()}"))


def load_openbookqa(root: Path | None = None) -> list[StemQuestion]:
    (path,) = files("openbookqa", root)
    return _read_jsonl(path, _stem_question, _restore("OpenBookQA"))


def load_hellaswag(root: Path | None = None) -> list[HellaSwagRow]:
    (path,) = files("hellaswag", root)
    return _read_jsonl(path, _hellaswag, _restore("HellaSwag"))


def load_winogrande(root: Path | None = None) -> list[WinoGrandeRow]:
    (path,) = files("winogrande", root)
    return _read_jsonl(path, _winogrande, _restore("WinoGrande"))


def load_piqa(root: Path | None = None) -> list[PIQARow]:
    """PIQA's questions with their labels from the separate ``dev-labels.lst`` (one 0/1 a line, in order)."""
    questions_path, labels_path = files("piqa", root)
    questions = _read_jsonl(questions_path, _piqa, _restore("PIQA"))
    labels = list(_lines(labels_path))
    if len(labels) != len(questions):
        raise DataError(f"{labels_path}: {len(labels)} labels for the {len(questions)} questions of {questions_path}. "
                        f"Fix: {_restore('PIQA')}.")
    rows = []
    for (number, label), (qid, goal, sol1, sol2) in zip(labels, questions):
        if label.strip() not in ("0", "1"):
            raise DataError(f"{labels_path}, line {number}: label {label.strip()!r} is not 0 or 1. Fix: {_restore('PIQA')}.")
        rows.append(PIQARow(qid, goal, (sol1, sol2), int(label)))
    return rows
