"""MMLU test questions, scored by log-likelihood: what a fine-tune may cost.

Two formats, both as lm-evaluation-harness builds them: ``letters`` (task ``mmlu``: lettered choices, the
answer letters " A".." D" scored) and ``cloze`` (task ``mmlu_continuation``: the answer texts scored,
for small models that answer letters at chance). Cloze reports the harness's ``acc`` and ``acc_norm``
(per-character) and scores the one ``--mmlu-cloze-metric`` names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from evalkit.data.mmlu import CATEGORY_LABELS, SUBJECTS
from evalkit.errors import ConfigError, EvalkitError
from evalkit.suites.base import Example, LogLikelihoods, Scored, Setting, Suite, parse_count, parse_names
from evalkit.summary import Layout

SCHEMES = ("hendrycks", "lm-eval")
FORMATS = ("letters", "cloze")
CLOZE_METRICS = ("acc_norm", "acc")


class MMLUSuite(Suite):
    """The 57 subjects' test questions, grouped by category, stratified by subject, in the harness's format.

    Figures and deltas are stratified by subject (the subjects are fixed, not a sample of subjects).
    """

    name = "mmlu"
    layout = Layout(title="MMLU accuracy", group_title="category", cluster_title="subject",
                    groups=tuple(CATEGORY_LABELS), group_labels=CATEGORY_LABELS, stratified=True, choices=True,
                    chance_fix="score the answer text with --mmlu-format=cloze, or use a larger model")
    settings = (
        Setting("shots", "MMLU dev shots per prompt, 0-5", "5"),
        Setting("sample", "MMLU questions sampled per subject, or 'all'", "5"),
        Setting("subjects", "comma-separated MMLU subjects (default: all 57)", ""),
        Setting("categories", "category scheme: hendrycks or lm-eval (anatomy is STEM there)", "hendrycks"),
        Setting("format", "letters (score the answer letter) or cloze (score the answer text; for small models)",
                "letters"),
        Setting("cloze_metric", "cloze score: acc_norm (log-likelihood per character) or acc (summed)", "acc_norm"),
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
        self.format = self.values["format"]
        if self.format not in FORMATS:
            raise ConfigError(f"{self.flag('format')} {self.format!r}: use letters or cloze.")
        self.cloze_metric = self.values["cloze_metric"]
        if self.cloze_metric not in CLOZE_METRICS:
            raise ConfigError(f"{self.flag('cloze_metric')} {self.cloze_metric!r}: use acc_norm or acc.")
        if self.format == "cloze":
            self.layout = dataclasses.replace(MMLUSuite.layout, title=f"MMLU cloze {self.cloze_metric}",
                                              chance_fix="use a larger model", metrics=CLOZE_METRICS)

    @property
    def template(self) -> str:
        from evalkit.prompts import mmlu_cloze_template_name

        return mmlu_cloze_template_name(self.shots) if self.format == "cloze" else f"mmlu-{self.shots}shot"

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
        from evalkit.prompts import mmlu_cloze_kshot_prompt, mmlu_kshot_prompt

        build = mmlu_cloze_kshot_prompt if self.format == "cloze" else mmlu_kshot_prompt
        return build(example.data, shots=self.shots, data_dir=self.data_dir)

    def continuations(self, example: Example) -> list[str]:
        from evalkit.prompts import MMLU_CONTINUATIONS, mmlu_cloze_continuations

        return mmlu_cloze_continuations(example.data) if self.format == "cloze" else list(MMLU_CONTINUATIONS)

    def score(self, example: Example, prompt: str, output: Any) -> Scored:
        from evalkit.metrics.mmlu_accuracy import mmlu_test_case
        from evalkit.prompts import lettered_question
        from evalkit.suites.multiple_choice import score_choices

        cloze = self.format == "cloze"
        question = lettered_question(example.data.question.strip(), example.data.choices)
        case = mmlu_test_case(example.data, question, logprobs=output, template=self.template, cloze=cloze)
        return score_choices(case, self.cloze_metric if cloze else "acc", question)

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.format != "cloze":
            described.pop("cloze_metric")
        return described

    def comparable(self) -> dict[str, Any]:
        scored_by = {"scored by": self.cloze_metric} if self.format == "cloze" else {}
        return {**super().comparable(), **scored_by}
