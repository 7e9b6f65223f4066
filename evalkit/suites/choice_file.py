"""A user's own multiple-choice questions from a JSONL file, scored like MMLU: how to measure forgetting
on your own data. ``--suite mydomain=path/to/questions.jsonl`` adds the suite ``mydomain``.

Each line is one JSON object: ``question`` (text), ``choices`` (a list of 2 to 26 texts), ``answer`` (the
0-based index of the right choice, or its letter "A", "B", ...), optionally ``subject`` (grouping and
strata, like an MMLU subject) and ``id``. Blank lines are ignored. The prompt is the harness's MMLU
format, zero-shot; the model is scored on the log-likelihood of each answer letter.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from evalkit.data.files import sha256_file
from evalkit.errors import ConfigError, DataError
from evalkit.suites.base import Example, LogLikelihoods, Scored, Suite
from evalkit.summary import ALL, Layout

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SURROGATE = re.compile("[\ud800-\udfff]")
NO_SUBJECT = "no_subject"  # the group of the questions without a subject in a file where others have one
FORMAT = ('{"question": "...", "choices": ["...", "..."], "answer": 0 (index) or "A", "subject": "optional", '
          '"id": "optional"}')


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key repeats (json keeps the last value silently: a second "answer")."""
    repeated = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    if repeated:
        raise ValueError(f"field(s) {', '.join(repeated)} given twice")
    return dict(pairs)


def _lone_surrogate(text: str) -> str | None:
    """Where ``text`` holds a lone surrogate (JSON's ``"\\ud800"`` decodes to one), described, or None.
    Such a string is not text: it cannot be encoded as UTF-8, so the result cache, a tokenizer and the report
    would each fail on it mid-run. A surrogate pair written as escapes decodes to one character, not two."""
    match = SURROGATE.search(text)
    return None if match is None else f"the lone surrogate \\u{ord(match[0]):04x} at character {match.start() + 1}"


def _question(path: Path, number: int, line: str) -> dict[str, Any]:
    """One validated line; a DataError names the file, the line and the fix."""
    where = f"{path}, line {number}"
    try:
        row = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}). Fix: write one JSON object per line: {FORMAT}.") from exc
    except ValueError as exc:
        raise DataError(f"{where}: {exc}. Fix: give each field once: {FORMAT}.") from exc
    if not isinstance(row, dict):
        raise DataError(f"{where}: a {type(row).__name__}, not an object. Fix: write one object per line: {FORMAT}.")
    missing = [key for key in ("question", "choices", "answer") if key not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}. Fix: give each line {FORMAT}.")
    question, choices, answer = row["question"], row["choices"], row["answer"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: 'question' must be non-empty text. Fix: put the question's text there.")
    if (not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS)
            or not all(isinstance(c, str) and c.strip() for c in choices)):
        raise DataError(f"{where}: 'choices' must be a list of 2 to {len(LETTERS)} non-empty texts. "
                        "Fix: list the answer options as strings.")
    if isinstance(answer, str) and len(answer) == 1 and answer in LETTERS:
        answer = LETTERS.index(answer)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise DataError(f"{where}: 'answer' {row['answer']!r} is not a choice of the {len(choices)} given. "
                        f"Fix: use the 0-based index (0..{len(choices) - 1}) or the letter (A..{LETTERS[len(choices) - 1]}).")
    subject = row.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject.strip()):
        raise DataError(f"{where}: 'subject' must be non-empty text when given. Fix: name the subject or drop the field.")
    given = row.get("id")  # 0, "" or {"x": 1} would silently become the line number or "{'x': 1}"
    if "id" in row and (not isinstance(given, str) or not given.strip()):
        raise DataError(f"{where}: 'id' {given!r} is not non-empty text. Fix: write the id as a string, e.g. \"q-17\", "
                        "or drop the field to number the question by its line.")
    texts = {"id": given, "question": question, "subject": subject,
             **{f"choices[{i}]": choice for i, choice in enumerate(choices)}}
    for field, text in texts.items():
        problem = _lone_surrogate(text) if text is not None else None
        if problem:
            raise DataError(f"{where}: '{field}' holds {problem}, which is not text (it cannot be encoded as UTF-8). "
                            "Fix: remove it, or write the character it stands for (as itself, or as a full surrogate pair).")
    return {"id": given if given is not None else f"{number:05d}", "question": question, "choices": tuple(choices),
            "answer": LETTERS[answer], "subject": subject.strip() if subject else None}


def read_questions(path: Path) -> list[dict[str, Any]]:
    """Every question of the file, validated, in file order."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the questions file ({exc}). Fix: pass a UTF-8 JSONL file.") from exc
    rows = [_question(path, number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{path}: no questions. Fix: write one JSON object per line: {FORMAT}.")
    seen: dict[str, int] = {}
    for row in rows:
        seen[row["id"]] = seen.get(row["id"], 0) + 1
    duplicated = [key for key, count in seen.items() if count > 1]
    if duplicated:
        raise DataError(f"{path}: id(s) {', '.join(duplicated[:3])} appear more than once. Fix: make each id unique.")
    return rows


class ChoiceFileSuite(Suite):
    """One suite per ``--suite NAME=PATH``; figures grouped and (with 2+ subjects) stratified by subject."""

    request = LogLikelihoods()

    def __init__(self, name: str, path: Path) -> None:
        super().__init__({}, path.parent)
        if not NAME.match(name):
            raise ConfigError(f"--suite {name}={path}: the name must be lower-case letters, digits and _ "
                              "(it names the suite's gates, markers and test ids). Fix: e.g. --suite mydomain=...")
        self.name = name
        self.path = path
        self.questions = read_questions(path)
        subjects = {q["subject"] for q in self.questions}
        # Without any subject the questions are one group, the whole ("all": no second row of the same
        # figures); beside subjects, those without one are a group of their own.
        self.ungrouped = ALL if subjects == {None} else NO_SUBJECT
        groups = sorted({q["subject"] or self.ungrouped for q in self.questions})
        self.layout = Layout(title=f"{name} accuracy", group_title="subject", cluster_title="subject",
                             groups=tuple(g for g in groups if g != ALL), stratified=len(groups) > 1, choices=True)

    @property
    def template(self) -> str:
        return "choices-0shot"

    def load(self) -> list[Example]:
        return [Example(q["id"], group, group, group, q)
                for q, group in ((q, q["subject"] or self.ungrouped) for q in self.questions)]

    def checksum(self) -> str:
        return sha256_file(self.path)

    def describe(self) -> dict[str, Any]:
        return {"template": self.template, "path": str(self.path)}

    def prompt(self, example: Example, tokenizer: Any) -> str:
        from evalkit.prompts import multiple_choice_prompt

        q = example.data
        return multiple_choice_prompt(q["question"], q["choices"], q["subject"])

    def continuations(self, example: Example) -> list[str]:
        return [f" {letter}" for letter in LETTERS[:len(example.data["choices"])]]

    def score(self, example: Example, prompt: str, output: Any) -> Scored:
        from evalkit.metrics.mmlu_accuracy import MMLUAccuracy, choice_test_case
        from evalkit.prompts import lettered_question

        q = example.data
        question = lettered_question(q["question"].strip(), q["choices"])
        case = choice_test_case(f"{self.name}-{q['id']}", question, q["answer"], q["choices"], logprobs=output,
                                template=self.template, subject=q["subject"])
        metric = MMLUAccuracy()
        metric.measure(case)
        return Scored(case, metric, "scored", dict(outcome=metric.outcome, extracted=metric.predicted,
                                                   expected=metric.gold, logprobs=tuple(metric.logprobs),
                                                   input=question))


def parse_suite_spec(spec: str) -> ChoiceFileSuite:
    """``NAME=PATH`` -> the suite, or a ConfigError saying the form."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"--suite {spec!r}: expected NAME=PATH, e.g. --suite mydomain=questions.jsonl.")
    file = Path(path.strip()).expanduser()
    if not file.is_file():
        raise ConfigError(f"--suite {spec!r}: {file} is not a file. Fix: point it at a JSONL file of questions.")
    return ChoiceFileSuite(name.strip(), file)
