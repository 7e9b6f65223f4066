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

**Cloze cases** (the harness's ``mmlu_continuation``) score the answer texts themselves; their metadata
carries ``lengths``, each answer text's length in characters, and the metric then also computes the
harness's ``acc_norm``: the argmax of log-likelihood divided by length. ``MMLUAccuracy(by="acc_norm")``
scores that one; both predictions are kept in the measurement.

The same metric scores any multiple-choice question with two or more choices (a user's own file): the
letters are A, B, C, ... up to the number of choices. Aggregation (micro and macro accuracy, predicted
positions) is :mod:`evalkit.summary`'s, as for every suite.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deepeval.test_case import LLMTestCase

from evalkit.data.mmlu import LETTERS, MMLUQuestion
from evalkit.errors import ConfigError, DataError
from evalkit.metrics.measured import Measurement, MeasuredMetric

Mode = Literal["loglikelihood", "generative"]
ScoredBy = Literal["acc", "acc_norm"]
Outcome = Literal["correct", "wrong", "unparseable"]
LETTERS_ANY = string.ascii_uppercase  # a question's letters: the first len(choices) of these

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
    text: str,
    *,
    logprobs: Sequence[float] | None = None,
    output: str | None = None,
    template: str = "",
    cloze: bool = False,
) -> LLMTestCase:
    """The DeepEval test case for one MMLU question (see :func:`choice_test_case`); ``cloze`` when the
    log-likelihoods are of the answer texts (the lengths for ``acc_norm`` are then recorded)."""
    return choice_test_case(question.id, text, question.answer, question.choices, logprobs=logprobs, output=output,
                            template=template, subject=question.subject, category=question.category,
                            lengths=[len(c) for c in question.choices] if cloze else None)


def choice_test_case(
    case_id: str,
    text: str,
    answer: str,
    choices: Sequence[str],
    *,
    logprobs: Sequence[float] | None = None,
    output: str | None = None,
    template: str = "",
    subject: str | None = None,
    category: str | None = None,
    lengths: Sequence[int] | None = None,
) -> LLMTestCase:
    """The DeepEval test case for one multiple-choice question: ``text`` as input, the gold letter as
    expected output, and in metadata what the metric and the reports need (log-probs, choices, subject).

    The suites pass the question with its lettered choices, not the model's whole prompt (that one is in
    the tradeoff record): ``deepeval test run`` rewrites its whole test-run file after every test, and
    five solved questions repeated in every case made that file, and each rewrite, about three times larger."""
    metadata: dict[str, Any] = {"id": case_id, "subject": subject, "category": category, "answer": answer,
                                "choices": list(choices), "template": template}
    if logprobs is not None:
        metadata["logprobs"] = [float(x) for x in logprobs]
    if lengths is not None:
        metadata["lengths"] = [int(x) for x in lengths]
    return LLMTestCase(input=text, actual_output=output, expected_output=answer, metadata=metadata, name=case_id)


def _where(test_case: LLMTestCase) -> str:
    metadata = test_case.metadata or {}
    return f"MMLU test case {metadata.get('id') or test_case.name or test_case.input[-60:]!r}"


def _letters(test_case: LLMTestCase) -> str:
    choices = (test_case.metadata or {}).get("choices")
    return LETTERS_ANY[:len(choices)] if choices else "".join(LETTERS)


def _gold_letter(test_case: LLMTestCase, letters: str) -> str:
    from_metadata = (test_case.metadata or {}).get("answer")
    expected = test_case.expected_output.strip() if test_case.expected_output else None
    if from_metadata is not None and expected is not None and from_metadata != expected:
        raise DataError(f"{_where(test_case)}: metadata answer {from_metadata!r} differs from expected_output "
                        f"{expected!r}. Fix: build the case with evalkit.metrics.mmlu_accuracy.mmlu_test_case.")
    gold = from_metadata if from_metadata is not None else expected
    if not gold or gold not in letters or len(gold) != 1:
        raise DataError(f"{_where(test_case)}: gold answer {gold!r} is not one of {', '.join(letters)}. "
                        "Fix: set expected_output (or metadata['answer']) to the question's letter.")
    return gold


def _choice_logprobs(test_case: LLMTestCase, letters: str) -> tuple[float, ...]:
    raw = (test_case.metadata or {}).get("logprobs")
    try:
        values = tuple(float(x) for x in raw)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = ()
    if len(values) != len(letters) or any(math.isnan(v) or v == math.inf for v in values) or max(values) == -math.inf:
        raise DataError(
            f"{_where(test_case)}: metadata['logprobs'] must hold the {len(letters)} log-probabilities of the "
            f"choices {', '.join(letters)} (at least one finite, none NaN), got {raw!r}. Fix: compute them with "
            "evalkit.inference.choice_logprobs, or use MMLUAccuracy(mode='generative') for text-only models."
        )
    return values


def _lengths(test_case: LLMTestCase, letters: str) -> tuple[int, ...] | None:
    raw = (test_case.metadata or {}).get("lengths")
    if raw is None:
        return None
    if len(raw) != len(letters) or not all(isinstance(x, int) and x > 0 for x in raw):
        raise DataError(f"{_where(test_case)}: metadata['lengths'] must hold the {len(letters)} answer texts' "
                        f"lengths in characters (positive integers), got {raw!r}. Fix: build the case with "
                        "mmlu_test_case(..., cloze=True).")
    return tuple(raw)


def argmax(values: Sequence[float]) -> int:
    """The first index of the largest value, as ``numpy.argmax`` breaks ties."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


@dataclass(frozen=True)
class ChoiceVerdict:
    """What the metric read: the predicted letter (None when unparseable), the gold, and the evidence;
    ``predictions`` holds each computed rule's letter (``acc``, and ``acc_norm`` for cloze cases)."""

    predicted: str | None
    gold: str
    outcome: Outcome
    logprobs: tuple[float, ...] | None = None
    extraction: Extraction | None = None
    lengths: tuple[int, ...] | None = None
    predictions: dict[str, str] | None = None


class MMLUAccuracy(MeasuredMetric):
    """1.0 when the predicted letter is the gold one, else 0.0 (threshold 1.0: one question, pass/fail).

    After :meth:`measure`: ``predicted`` (letter or None), ``gold``, ``outcome`` (correct / wrong /
    unparseable), ``logprobs`` (log-likelihood mode) or ``extraction`` (generative mode). Measured once
    per test case (:mod:`evalkit.metrics.measured`).
    """

    def __init__(self, mode: Mode = "loglikelihood", threshold: float = 1.0,
                 measurement: Measurement | None = None, by: ScoredBy = "acc"):
        if mode not in ("loglikelihood", "generative"):
            raise ConfigError(f"MMLUAccuracy mode {mode!r}: use 'loglikelihood' (default) or 'generative'.")
        if by not in ("acc", "acc_norm"):
            raise ConfigError(f"MMLUAccuracy by={by!r}: use 'acc' (summed log-likelihood) or 'acc_norm' (per character).")
        super().__init__(threshold, measurement)
        self.mode = mode
        self.by = by

    def compute(self, test_case: LLMTestCase) -> tuple[float, str, ChoiceVerdict]:
        letters = _letters(test_case)
        gold = _gold_letter(test_case, letters)
        logprobs, extraction, lengths, predictions = None, None, None, None
        if self.mode == "loglikelihood":
            logprobs = _choice_logprobs(test_case, letters)
            lengths = _lengths(test_case, letters)
            if self.by == "acc_norm" and lengths is None:
                raise DataError(f"{_where(test_case)}: acc_norm needs the answer texts' lengths. Fix: score a cloze "
                                "case (mmlu_test_case(..., cloze=True)) or use by='acc'.")
            predictions = {"acc": letters[argmax(logprobs)]}
            if lengths is not None:
                predictions["acc_norm"] = letters[argmax([lp / n for lp, n in zip(logprobs, lengths)])]
            predicted: str | None = predictions[self.by]
            shown = ", ".join(f"{letter} {lp:.4f}" for letter, lp in zip(letters, logprobs))
            values = list(logprobs) if self.by == "acc" else [lp / n for lp, n in zip(logprobs, lengths or ())]
            tie = " (tie, earlier letter taken)" if values.count(max(values)) > 1 else ""
            evidence = f"log-probs {shown}{tie}"
            if lengths is not None:
                evidence += f"; lengths {', '.join(map(str, lengths))}; scored by {self.by}, " + ", ".join(
                    f"{rule} predicts {letter}" for rule, letter in predictions.items())
        else:
            output = test_case.actual_output or ""
            extraction = extract_answer(output, (test_case.metadata or {}).get("choices"))
            predicted = extraction.letter
            evidence = f"read by rule '{extraction.rule}' from output {output[:120]!r}"
        if predicted is None:
            outcome: Outcome = "unparseable"
            reason = f"unparseable: no answer letter found (gold {gold}); {evidence}"
        else:
            outcome = "correct" if predicted == gold else "wrong"
            reason = f"predicted {predicted}, gold {gold}; {evidence}"
        verdict = ChoiceVerdict(predicted, gold, outcome, logprobs, extraction, lengths, predictions)
        return (1.0 if outcome == "correct" else 0.0), reason, verdict

    def _field(self, name: str) -> Any:
        return getattr(self.detail, name) if self.detail is not None else None

    @property
    def predicted(self) -> str | None:
        return self._field("predicted")

    @property
    def gold(self) -> str | None:
        return self._field("gold")

    @property
    def outcome(self) -> Outcome | None:
        return self._field("outcome")

    @property
    def logprobs(self) -> tuple[float, ...] | None:
        return self._field("logprobs")

    @property
    def extraction(self) -> Extraction | None:
        return self._field("extraction")

    @property
    def predictions(self) -> dict[str, str] | None:
        return self._field("predictions")

    @property
    def lengths(self) -> tuple[int, ...] | None:
        return self._field("lengths")

    @property
    def __name__(self) -> str:
        return "MMLU accuracy" if self.mode == "loglikelihood" else "MMLU accuracy (generative)"
