"""MMLU test questions, scored by the log-likelihood of the answer letters: what a fine-tune may cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalkit.data.mmlu import CATEGORY_LABELS, SUBJECTS
from evalkit.errors import ConfigError, EvalkitError
from evalkit.suites.base import Example, LogLikelihoods, Scored, Setting, Suite, parse_count, parse_names
from evalkit.summary import Layout

SCHEMES = ("hendrycks", "lm-eval")


class MMLUSuite(Suite):
    """The 57 subjects' test questions, grouped by category, clustered by subject, in the harness's format.

    Figures and deltas are clustered by subject (questions of one subject share a source).
    """

    name = "mmlu"
    layout = Layout(title="MMLU accuracy", group_title="category", cluster_title="subject",
                    groups=tuple(CATEGORY_LABELS), group_labels=CATEGORY_LABELS, clustered=True, choices=True)
    settings = (
        Setting("shots", "MMLU dev shots per prompt, 0-5", "5"),
        Setting("sample", "MMLU questions sampled per subject, or 'all'", "5"),
        Setting("subjects", "comma-separated MMLU subjects (default: all 57)", ""),
        Setting("categories", "category scheme: hendrycks or lm-eval (anatomy is STEM there)", "hendrycks"),
    )
    request = LogLikelihoods()
    markers = {"stem": "MMLU STEM subjects", "humanities": "MMLU humanities subjects",
               "social_sciences": "MMLU social-science subjects", "other": "MMLU other subjects"}

    def __init__(self, values: Mapping[str, str], data_dir: Any) -> None:
        super().__init__(values, data_dir)
        self.shots = parse_count(self.flag("shots"), self.values["shots"])
        if self.shots > 5:
            raise ConfigError(f"{self.flag('shots')} {self.shots}: MMLU's dev split has 5 questions per subject; use 0-5.")
        self._sample = parse_count(self.flag("sample"), self.values["sample"], allow_all=True, minimum=1)
        self.subjects = parse_names(self.flag("subjects"), self.values["subjects"])
        unknown = sorted(set(self.subjects) - set(SUBJECTS))
        if unknown:
            raise ConfigError(f"{self.flag('subjects')}: unknown subject(s) {', '.join(unknown)}. "
                              "Fix: use names such as abstract_algebra (see docs/metrics.md for all 57).")
        if self.values["categories"] not in SCHEMES:
            raise ConfigError(f"{self.flag('categories')} {self.values['categories']!r}: use one of {', '.join(SCHEMES)}.")

    @property
    def template(self) -> str:
        return f"mmlu-{self.shots}shot"

    @property
    def sample(self) -> int | None:
        return self._sample

    def load(self) -> list[Example]:
        from evalkit.data.mmlu import load_mmlu

        try:
            questions = load_mmlu("test", self.data_dir, self.subjects or None, self.values["categories"])
        except EvalkitError as exc:
            raise ConfigError(f"MMLU data: {exc}") from exc
        return [Example(q.id, q.category, q.subject, q.subject, q) for q in questions]

    def checksum(self) -> str:
        from evalkit.data.mmlu import checksum

        return checksum("test", self.data_dir)

    def prompt(self, example: Example, tokenizer: Any) -> str:
        from evalkit.prompts import mmlu_kshot_prompt

        return mmlu_kshot_prompt(example.data, shots=self.shots, data_dir=self.data_dir)

    def continuations(self, example: Example) -> list[str]:
        from evalkit.prompts import MMLU_CONTINUATIONS

        return list(MMLU_CONTINUATIONS)

    def score(self, example: Example, prompt: str, output: Any) -> Scored:
        from evalkit.metrics.mmlu_accuracy import MMLUAccuracy, mmlu_test_case

        case = mmlu_test_case(example.data, prompt, logprobs=output, template=self.template)
        metric = MMLUAccuracy()
        metric.measure(case)
        return Scored(case, metric, "scored", dict(outcome=metric.outcome, extracted=metric.predicted,
                                                   logprobs=tuple(metric.logprobs)))
