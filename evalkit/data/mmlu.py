"""MMLU (Hendrycks et al., 2021) from the original CSVs: ``mmlu/data/{dev,val,test}/<subject>_<split>.csv``.

Each row is ``question,A,B,C,D,answer`` with no header. Files mix LF and CRLF and 1285 rows hold
newlines inside quoted fields, so rows are read with :mod:`csv` (``newline=""``), never split by lines.
A UTF-8 byte-order mark (an edited copy) is dropped; a file without rows is an error.

Categories follow Hendrycks' ``categories.py`` (subject -> subcategory -> category). The one subject that
lm-evaluation-harness maps differently is ``anatomy`` (Hendrycks: other/health, harness: STEM); pass
``scheme="lm-eval"`` to use the harness's grouping.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evalkit.data.files import FETCH_HINT, sha256_files
from evalkit.errors import DataError
from evalkit.paths import data_dir as resolve_data_dir

Split = Literal["dev", "val", "test"]
Scheme = Literal["hendrycks", "lm-eval"]
LETTERS = ("A", "B", "C", "D")

# Category keys double as pytest marker names; labels are Hendrycks' exact strings.
CATEGORY_LABELS = {
    "stem": "STEM",
    "humanities": "humanities",
    "social_sciences": "social sciences",
    "other": "other (business, health, misc.)",
}
SUBCATEGORY_TO_CATEGORY = {
    **dict.fromkeys(["physics", "chemistry", "biology", "computer science", "math", "engineering"], "stem"),
    **dict.fromkeys(["history", "philosophy", "law"], "humanities"),
    **dict.fromkeys(["politics", "culture", "economics", "geography", "psychology"], "social_sciences"),
    **dict.fromkeys(["other", "business", "health"], "other"),
}
SUBJECT_TO_SUBCATEGORY = {
    "abstract_algebra": "math", "anatomy": "health", "astronomy": "physics",
    "business_ethics": "business", "clinical_knowledge": "health", "college_biology": "biology",
    "college_chemistry": "chemistry", "college_computer_science": "computer science",
    "college_mathematics": "math", "college_medicine": "health", "college_physics": "physics",
    "computer_security": "computer science", "conceptual_physics": "physics", "econometrics": "economics",
    "electrical_engineering": "engineering", "elementary_mathematics": "math", "formal_logic": "philosophy",
    "global_facts": "other", "high_school_biology": "biology", "high_school_chemistry": "chemistry",
    "high_school_computer_science": "computer science", "high_school_european_history": "history",
    "high_school_geography": "geography", "high_school_government_and_politics": "politics",
    "high_school_macroeconomics": "economics", "high_school_mathematics": "math",
    "high_school_microeconomics": "economics", "high_school_physics": "physics",
    "high_school_psychology": "psychology", "high_school_statistics": "math",
    "high_school_us_history": "history", "high_school_world_history": "history", "human_aging": "health",
    "human_sexuality": "culture", "international_law": "law", "jurisprudence": "law",
    "logical_fallacies": "philosophy", "machine_learning": "computer science", "management": "business",
    "marketing": "business", "medical_genetics": "health", "miscellaneous": "other",
    "moral_disputes": "philosophy", "moral_scenarios": "philosophy", "nutrition": "health",
    "philosophy": "philosophy", "prehistory": "history", "professional_accounting": "other",
    "professional_law": "law", "professional_medicine": "health", "professional_psychology": "psychology",
    "public_relations": "politics", "security_studies": "politics", "sociology": "culture",
    "us_foreign_policy": "politics", "virology": "health", "world_religions": "philosophy",
}
SUBJECTS = tuple(sorted(SUBJECT_TO_SUBCATEGORY))
LM_EVAL_OVERRIDES = {"anatomy": "stem"}


def category_of(subject: str, scheme: Scheme = "hendrycks") -> str:
    """The category key (``stem``, ``humanities``, ``social_sciences``, ``other``) of a subject."""
    if scheme == "lm-eval" and subject in LM_EVAL_OVERRIDES:
        return LM_EVAL_OVERRIDES[subject]
    return SUBCATEGORY_TO_CATEGORY[SUBJECT_TO_SUBCATEGORY[subject]]


@dataclass(frozen=True)
class MMLUQuestion:
    """One MMLU question; ``index`` is its 0-based row in ``<subject>_<split>.csv``."""

    subject: str
    split: str
    index: int
    question: str
    choices: tuple[str, str, str, str]
    answer: str
    subcategory: str
    category: str

    @property
    def id(self) -> str:
        """Stable id used in test ids and caches, e.g. ``abstract_algebra-0013``."""
        return f"{self.subject}-{self.index:04d}"


def mmlu_root(data_dir: str | Path | None = None) -> Path:
    """The folder holding ``dev/``, ``val/`` and ``test/`` (``<data>/mmlu/data``)."""
    root = resolve_data_dir(data_dir) / "mmlu" / "data"
    if not root.is_dir():
        raise DataError(f"MMLU folder not found: {root}. Fix: {FETCH_HINT}.")
    return root


def subject_file(subject: str, split: Split, data_dir: str | Path | None = None) -> Path:
    return mmlu_root(data_dir) / split / f"{subject}_{split}.csv"


def _read_subject(path: Path, subject: str, split: str, scheme: Scheme) -> list[MMLUQuestion]:
    if not path.is_file():
        raise DataError(f"MMLU file not found: {path}. Fix: {FETCH_HINT}.")
    questions = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: a byte-order mark is not question text
            reader = csv.reader(handle)
            for row in reader:
                if not row:  # a blank line, e.g. a doubled final newline
                    continue
                index = len(questions)
                if len(row) != 6:
                    raise DataError(
                        f"{path}, row {index + 1} (line {reader.line_num}): expected 6 fields (question,A,B,C,D,answer), got {len(row)}. "
                        "Fix: restore the original CSV (fields with commas or newlines must be quoted)."
                    )
                answer = row[5].strip()
                if answer not in LETTERS:
                    raise DataError(
                        f"{path}, row {index + 1} (line {reader.line_num}): answer {row[5]!r} is not one of A, B, C, D. "
                        "Fix: restore the original CSV."
                    )
                questions.append(
                    MMLUQuestion(
                        subject=subject,
                        split=split,
                        index=index,
                        question=row[0],
                        choices=(row[1], row[2], row[3], row[4]),
                        answer=answer,
                        subcategory=SUBJECT_TO_SUBCATEGORY[subject],
                        category=category_of(subject, scheme),
                    )
                )
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}). Fix: restore the original CSV.") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable CSV ({exc}). Fix: restore the original CSV.") from exc
    if not questions:  # every MMLU file has rows; an empty one would silently drop its subject
        raise DataError(f"{path} has no questions. Fix: restore the original CSV ({FETCH_HINT}).")
    return questions


def load_mmlu(
    split: Split = "test",
    data_dir: str | Path | None = None,
    subjects: list[str] | tuple[str, ...] | None = None,
    scheme: Scheme = "hendrycks",
) -> list[MMLUQuestion]:
    """Load a split of MMLU, subjects in the order given (alphabetical by default), each once, and
    questions in file order."""
    chosen = tuple(dict.fromkeys(subjects)) if subjects else SUBJECTS  # a repeated name would double its questions
    unknown = sorted(set(chosen) - set(SUBJECTS))
    if unknown:
        raise DataError(f"Unknown MMLU subject(s): {', '.join(unknown)}. Fix: use names such as 'abstract_algebra'.")
    out: list[MMLUQuestion] = []
    for subject in chosen:
        out.extend(_read_subject(subject_file(subject, split, data_dir), subject, split, scheme))
    return out


def load_shots(subject: str, k: int = 5, data_dir: str | Path | None = None) -> list[MMLUQuestion]:
    """The first ``k`` dev questions of a subject, in file order (the harness's ``first_n`` sampler)."""
    shots = _read_subject(subject_file(subject, "dev", data_dir), subject, "dev", "hendrycks")
    if len(shots) < k:
        raise DataError(f"{subject_file(subject, 'dev', data_dir)} has {len(shots)} rows, {k} shots requested.")
    return shots[:k]


def checksum(split: Split = "test", data_dir: str | Path | None = None) -> str:
    """sha256 over the split's CSVs and the dev CSVs (the shots), for reports and baselines."""
    root = mmlu_root(data_dir)
    return sha256_files({*root.joinpath(split).glob("*.csv"), *root.joinpath("dev").glob("*.csv")})
