"""MMLU accuracy as a DeepEval metric, scored the published way, with honest aggregation.

**Log-likelihood mode (default)** is what lm-evaluation-harness (``acc``) and Hendrycks' ``evaluate.py``
do: after the prompt ending in ``"Answer:"``, compare the log-probabilities of the four continuations
``" A"`` .. ``" D"`` and predict the largest (ties go to the earlier letter, as ``numpy.argmax``). The
log-probs come in the test case's metadata (``{"logprobs": [4 floats], "answer": "C"}``), computed by
``evalkit.inference.choice_logprobs``. This never parses text, so it cannot fail the way the seed
notebooks did (0 % from reading the last character of generated text).

**Generative mode** is for models that only return text (API or chat models). :func:`extract_answer`
reads the answer letter from a leading letter ("C", "C.", "(C)", "C) ..."), explicit statements ("The
answer is C", "Answer: (C)"), the text of exactly one choice, or a single parenthesised letter. When
none applies the outcome is ``unparseable``: it scores 0, is counted in :class:`MMLUSummary` and shown
in the reason, and is never silently read as some letter.

**Aggregation** (:func:`summarize`): micro accuracy (every question weighs the same, as Hendrycks and
the harness report it) overall and per category, with cluster-robust CIs by subject (Miller 2024);
macro accuracy (mean of subject accuracies) alongside, its CI treating the subjects as the sample; and
the distribution of predicted letters, whose share of 'A' (or any one letter) exposes position bias.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deepeval.metrics import BaseMetric
from deepeval.test_case import LLMTestCase

from evalkit.data.mmlu import LETTERS, MMLUQuestion
from evalkit.errors import ConfigError, DataError
from evalkit.stats import Estimate, mean_ci

Mode = Literal["loglikelihood", "generative"]
Outcome = Literal["correct", "wrong", "unparseable"]

# ---------------------------------------------------------------------------------- answer extraction

# Only capital letters count: a lowercase "a" is far more often the article ("the answer is a prime").
_EXPLICIT = re.compile(
    r"(?i:\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|will\s+be))?(?:\s*(?:is|:|-))?)"
    r"[\s*_\[(]*([ABCD])(?![A-Za-z0-9])"
)
# A letter opening the text, closed by punctuation, a line end or the text's end ("A lot" is not one).
_LEADING = re.compile(r"^[\s*_]*[(\[]?([ABCD])(?:[)\].:*,]|[ \t]*(?:\n|$))")
_PARENTHESISED = re.compile(r"\(([ABCD])\)")


@dataclass(frozen=True)
class Extraction:
    """The letter read from a model's text, or None (``unparseable``), and the rule that decided."""

    letter: str | None
    rule: Literal["explicit", "leading", "choice-text", "parenthesised", "unparseable"]

    @property
    def unparseable(self) -> bool:
        return self.letter is None


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .'\"`*")


def _choice_text_letter(text: str, choices: Sequence[str]) -> str | None:
    """The letter whose choice text equals the whole answer or its first line (None if none or several)."""
    normalised = [_normalise(c) for c in choices]
    for candidate in (_normalise(text), _normalise(text.strip().split("\n", 1)[0])):
        hits = [LETTERS[i] for i, choice in enumerate(normalised) if choice and choice == candidate]
        if len(hits) == 1:
            return hits[0]
    return None


def extract_answer(text: str, choices: Sequence[str] | None = None) -> Extraction:
    """Read the answer letter from generated text, most explicit evidence first.

    1. a leading letter: "C", " C", "C.", "(C)", "C) text", "C: text", "C\\n..." (what a completion
       prompt ending in "Answer:" gets, even when the model then rambles on with more questions);
    2. an explicit statement ("The answer is C", "Answer: (C)", "option C"): the last one wins, since a
       reasoning model states its final answer last;
    3. the text of exactly one choice (the whole answer or its first line), when ``choices`` are given;
    4. exactly one distinct parenthesised letter anywhere ("... so (C)").
    Anything else is ``unparseable``.
    """
    leading = _LEADING.match(text)
    if leading:
        return Extraction(leading.group(1), "leading")
    explicit = _EXPLICIT.findall(text)
    if explicit:
        return Extraction(explicit[-1], "explicit")
    if choices is not None:
        letter = _choice_text_letter(text, choices)
        if letter:
            return Extraction(letter, "choice-text")
    parenthesised = set(_PARENTHESISED.findall(text))
    if len(parenthesised) == 1:
        return Extraction(parenthesised.pop(), "parenthesised")
    return Extraction(None, "unparseable")


# ------------------------------------------------------------------------------------------- metric


def mmlu_test_case(
    question: MMLUQuestion,
    prompt: str,
    *,
    logprobs: Sequence[float] | None = None,
    output: str | None = None,
    template: str = "",
) -> LLMTestCase:
    """The DeepEval test case for one question: the prompt as input, the gold letter as expected output,
    and in metadata what the metric and the reports need (log-probs, choices, subject, template)."""
    metadata: dict[str, Any] = {
        "id": question.id,
        "subject": question.subject,
        "category": question.category,
        "answer": question.answer,
        "choices": list(question.choices),
        "template": template,
    }
    if logprobs is not None:
        metadata["logprobs"] = [float(x) for x in logprobs]
    return LLMTestCase(input=prompt, actual_output=output, expected_output=question.answer,
                       metadata=metadata, name=question.id)


def _where(test_case: LLMTestCase) -> str:
    metadata = test_case.metadata or {}
    return f"MMLU test case {metadata.get('id') or test_case.name or test_case.input[-60:]!r}"


def _gold_letter(test_case: LLMTestCase) -> str:
    from_metadata = (test_case.metadata or {}).get("answer")
    expected = test_case.expected_output.strip() if test_case.expected_output else None
    if from_metadata is not None and expected is not None and from_metadata != expected:
        raise DataError(f"{_where(test_case)}: metadata answer {from_metadata!r} differs from expected_output "
                        f"{expected!r}. Fix: build the case with evalkit.metrics.mmlu_accuracy.mmlu_test_case.")
    gold = from_metadata if from_metadata is not None else expected
    if gold not in LETTERS:
        raise DataError(f"{_where(test_case)}: gold answer {gold!r} is not one of A, B, C, D. "
                        "Fix: set expected_output (or metadata['answer']) to the question's letter.")
    return gold


def _choice_logprobs(test_case: LLMTestCase) -> tuple[float, float, float, float]:
    raw = (test_case.metadata or {}).get("logprobs")
    try:
        values = tuple(float(x) for x in raw)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or any(math.isnan(v) or v == math.inf for v in values) or max(values) == -math.inf:
        raise DataError(
            f"{_where(test_case)}: metadata['logprobs'] must hold the four log-probabilities of ' A'..' D' "
            f"(at least one finite, none NaN), got {raw!r}. Fix: compute them with "
            "evalkit.inference.choice_logprobs, or use MMLUAccuracy(mode='generative') for text-only models."
        )
    return values  # type: ignore[return-value]


class MMLUAccuracy(BaseMetric):
    """1.0 when the predicted letter is the gold one, else 0.0 (threshold 1.0: one question, pass/fail).

    After :meth:`measure`: ``predicted`` (letter or None), ``gold``, ``outcome`` (correct / wrong /
    unparseable), ``logprobs`` (log-likelihood mode) or ``extraction`` (generative mode).
    """

    def __init__(self, mode: Mode = "loglikelihood", threshold: float = 1.0):
        if mode not in ("loglikelihood", "generative"):
            raise ConfigError(f"MMLUAccuracy mode {mode!r}: use 'loglikelihood' (default) or 'generative'.")
        self.mode = mode
        self.threshold = threshold
        self.async_mode = False
        self.include_reason = True
        self.predicted: str | None = None
        self.gold: str | None = None
        self.outcome: Outcome | None = None
        self.logprobs: tuple[float, float, float, float] | None = None
        self.extraction: Extraction | None = None

    def measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        self.gold = _gold_letter(test_case)
        if self.mode == "loglikelihood":
            self.logprobs = _choice_logprobs(test_case)
            best = max(self.logprobs)
            self.predicted = LETTERS[self.logprobs.index(best)]
            shown = ", ".join(f"{letter} {lp:.4f}" for letter, lp in zip(LETTERS, self.logprobs))
            tie = " (tie, earlier letter taken)" if self.logprobs.count(best) > 1 else ""
            evidence = f"log-probs {shown}{tie}"
        else:
            output = test_case.actual_output or ""
            self.extraction = extract_answer(output, (test_case.metadata or {}).get("choices"))
            self.predicted = self.extraction.letter
            evidence = f"read by rule '{self.extraction.rule}' from output {output[:120]!r}"
        if self.predicted is None:
            self.outcome = "unparseable"
            self.reason = f"unparseable: no answer letter found (gold {self.gold}); {evidence}"
        else:
            self.outcome = "correct" if self.predicted == self.gold else "wrong"
            self.reason = f"predicted {self.predicted}, gold {self.gold}; {evidence}"
        self.score = 1.0 if self.outcome == "correct" else 0.0
        self.success = self.score >= self.threshold
        return self.score

    async def a_measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        return self.measure(test_case, *args, **kwargs)

    def is_successful(self) -> bool:
        return bool(self.success)

    @property
    def __name__(self) -> str:
        return "MMLU accuracy" if self.mode == "loglikelihood" else "MMLU accuracy (generative)"


# -------------------------------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class MMLUScore:
    """One scored question, as aggregation needs it (``predicted`` None means unparseable)."""

    id: str
    subject: str
    category: str
    gold: str
    predicted: str | None

    @property
    def correct(self) -> bool:
        return self.predicted == self.gold

    @classmethod
    def from_metric(cls, question: MMLUQuestion, metric: MMLUAccuracy) -> MMLUScore:
        """The score of ``question`` from a metric that has just measured it."""
        if metric.gold is None:
            raise ConfigError(f"{question.id}: the MMLUAccuracy metric has not measured anything yet. "
                              "Fix: call metric.measure(test_case) (or assert_test) first.")
        return cls(question.id, question.subject, question.category, metric.gold, metric.predicted)


@dataclass(frozen=True)
class MMLUSummary:
    """Micro accuracy overall, per category and per subject; macro accuracy; predicted-letter counts."""

    overall: Estimate
    macro: Estimate
    categories: Mapping[str, Estimate]
    subjects: Mapping[str, Estimate]
    predicted: Mapping[str, int]  # "A".."D" and "unparseable" -> number of questions
    n: int

    @property
    def unparseable(self) -> int:
        return self.predicted["unparseable"]

    def predicted_share(self, letter: str) -> float:
        """Fraction of questions predicted as ``letter`` (e.g. "A": the position-bias check)."""
        return self.predicted[letter] / self.n

    def rows(self) -> list[dict[str, Any]]:
        """One row per figure (overall, macro, each category, each subject) for tables and reports."""
        figures = [("overall (micro)", self.overall), ("macro (mean of subjects)", self.macro)]
        figures += [(f"category {name}", e) for name, e in self.categories.items()]
        figures += [(f"subject {name}", e) for name, e in self.subjects.items()]
        return [{"scope": scope, "n": e.n, "accuracy": e.mean, "ci_lo": e.lo, "ci_hi": e.hi, "se": e.se,
                 "method": e.method} for scope, e in figures]


def summarize(scores: Sequence[MMLUScore], confidence: float = 0.95) -> MMLUSummary:
    """Aggregate per-question scores (unparseable answers count as wrong and are counted separately).

    Micro figures weigh every question equally and cluster the CI by subject; with one subject the
    CI is Wilson's. Macro is the mean of subject accuracies; its CI is the t interval over subjects
    (``n`` = number of subjects), i.e. it treats the subjects as a sample of possible subjects.
    """
    if not scores:
        raise ConfigError("summarize: no MMLU scores to aggregate. Fix: score at least one question.")
    ids = Counter(s.id for s in scores)
    duplicated = [i for i, count in ids.items() if count > 1]
    if duplicated:
        raise ConfigError(f"summarize: question(s) scored more than once: {', '.join(sorted(duplicated)[:5])}. "
                          "Fix: aggregate one score per question.")

    def micro(subset: Sequence[MMLUScore]) -> Estimate:
        return mean_ci([float(s.correct) for s in subset], [s.subject for s in subset], confidence)

    by_subject: dict[str, list[MMLUScore]] = {}
    for s in scores:
        by_subject.setdefault(s.subject, []).append(s)
    subjects = {name: mean_ci([float(s.correct) for s in group], None, confidence)
                for name, group in sorted(by_subject.items())}
    # One cluster per subject makes mean_ci give the plain t interval over subjects (never Wilson).
    macro = mean_ci([e.mean for e in subjects.values()], list(subjects), confidence)
    categories = {name: micro([s for s in scores if s.category == name])
                  for name in sorted({s.category for s in scores})}
    predicted = Counter(s.predicted or "unparseable" for s in scores)
    return MMLUSummary(
        overall=micro(scores),
        macro=macro,
        categories=categories,
        subjects=subjects,
        predicted={key: predicted.get(key, 0) for key in (*LETTERS, "unparseable")},
        n=len(scores),
    )
