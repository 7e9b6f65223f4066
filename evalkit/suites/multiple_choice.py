"""What the forgetting suites share: lm-evaluation-harness's ``multiple_choice`` output type, 0-shot.

Each suite turns a row into a :class:`Formulated` question exactly as the harness's task YAML does
(``doc_to_text``, ``doc_to_choice``, ``doc_to_target``); the log-likelihood requests are the harness's
``construct_requests``: ``(query, " " + choice)`` per choice, or, for partial evaluation (WinoGrande),
``(choice, " " + target)`` per choice, where each choice is a context and the target is shared. Scoring
reports ``acc`` (summed log-likelihood) and ``acc_norm`` (per character of the choice text), as the
harness does, and scores the one the Open LLM Leaderboard reports (:attr:`ChoiceTextSuite.scored_by`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from evalkit.errors import ConfigError, EvalkitError
from evalkit.suites.base import Example, LogLikelihoods, Scored, Setting, Suite, parse_count
from evalkit.summary import Layout

TARGET_DELIMITER = " "  # the harness's default target_delimiter
FAMILY = "forgetting"
FAMILY_LAYOUT = Layout(title="Forgetting suites (macro average)", group_title="suite", cluster_title="suite")


@dataclass(frozen=True)
class Formulated:
    """One question as the harness formulates it; ``target`` is set for partial evaluation only."""

    id: str
    group: str
    query: str
    choices: tuple[str, ...]
    gold: int
    target: str | None = None

    def requests(self) -> list[tuple[str, str]]:
        if self.target is None:
            return [(self.query, TARGET_DELIMITER + choice) for choice in self.choices]
        return [(choice, TARGET_DELIMITER + self.target) for choice in self.choices]


def score_choices(case: Any, scored_by: str, question: str) -> Scored:
    """Measure a multiple-choice case (log-likelihoods in its metadata) by ``scored_by``; when the case
    carries the answer texts' lengths (cloze: MMLU's and these suites'), the record keeps every rule's
    verdict (``secondary``) and the evidence (``details``). MMLU scores through it too."""
    from evalkit.metrics.mmlu_accuracy import MMLUAccuracy

    metric = MMLUAccuracy(by=scored_by)
    metric.measure(case)
    fields: dict[str, Any] = dict(outcome=metric.outcome, extracted=metric.predicted, expected=metric.gold,
                                  logprobs=tuple(metric.logprobs), input=question)
    if metric.lengths is not None:
        predictions = metric.predictions or {}
        fields["secondary"] = {rule: float(letter == metric.gold) for rule, letter in predictions.items()}
        fields["details"] = {"lengths": list(metric.lengths), "predictions": predictions}
    return Scored(case, metric, "scored", fields)


def choice_layout(title: str, scored_by: str = "acc_norm", groups: tuple[str, ...] = (), group_title: str = "set") -> Layout:
    """A forgetting suite's layout: multiple choice (chance and position warnings apply), every rule the
    harness reports as a secondary, gateable score (WinoGrande's ``acc`` alone is its score)."""
    return Layout(title=f"{title} {scored_by}", group_title=group_title, cluster_title=group_title, groups=groups,
                  choices=True, metrics=("acc", "acc_norm") if scored_by == "acc_norm" else ())


class ChoiceTextSuite(Suite):
    """A harness ``multiple_choice`` task over one benchmark's upstream file, in the forgetting family."""

    request = LogLikelihoods()
    family: ClassVar[str | None] = FAMILY
    scored_by: ClassVar[str] = "acc_norm"
    data_name: ClassVar[str]  # the key of evalkit.data.commonsense.FILES
    settings = (Setting("sample", "questions sampled (per group where the suite samples by group), or 'all'",
                        "100"),)
    markers = {FAMILY: "the forgetting suites: HellaSwag, ARC, WinoGrande, PIQA, OpenBookQA"}

    def __init__(self, values: Mapping[str, str], data_dir: Path) -> None:
        super().__init__(values, data_dir)
        self._sample = parse_count(self.flag("sample"), self.values["sample"], allow_all=True, minimum=1)

    @classmethod
    def available(cls, data_dir: Path) -> bool:
        from evalkit.data.commonsense import available

        return available(cls.data_name, data_dir)

    @property
    def template(self) -> str:
        return f"{self.name}-0shot"

    @property
    def sample(self) -> int | None:
        return self._sample

    @abstractmethod
    def formulate(self) -> list[Formulated]:
        """Every question of the split, formulated, in file order."""

    def stratum(self, question: Formulated) -> str:
        """The sampling stratum: one simple random sample over the whole split unless a suite says otherwise."""
        return "all"

    def load(self) -> list[Example]:
        try:
            questions = self.formulate()
        except EvalkitError as exc:
            raise ConfigError(f"{self.layout.title.split(' ')[0]} data: {exc}") from exc
        return [Example(q.id, q.group, q.group, self.stratum(q), q) for q in questions]

    def checksum(self) -> str:
        from evalkit.data.commonsense import checksum

        return checksum(self.data_name, self.data_dir)

    def prompt(self, example: Example, tokenizer: Any) -> str:
        return example.data.query

    def requests(self, example: Example, prompt: str) -> list[tuple[str, str]]:
        return example.data.requests()

    def score(self, example: Example, prompt: str, output: Any) -> Scored:
        from evalkit.metrics.mmlu_accuracy import LETTERS_ANY, choice_test_case
        from evalkit.prompts import lettered_question

        q: Formulated = example.data
        question = lettered_question(q.query, q.choices) if q.target is None else q.query
        lengths = [len(choice) for choice in q.choices] if self.scored_by == "acc_norm" else None
        case = choice_test_case(f"{self.name}-{q.id}", question, LETTERS_ANY[q.gold], q.choices, logprobs=output,
                                template=self.template, subject=q.group, lengths=lengths)
        return score_choices(case, self.scored_by, question)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scored_by": self.scored_by}

    def comparable(self) -> dict[str, Any]:
        return {**super().comparable(), "scored by": self.scored_by}
