"""OpenBookQA test (500 questions), as lm-evaluation-harness's ``openbookqa`` task: the bare stem as the
query (no "Question:"), the four choice texts as continuations. Scored by ``acc_norm``."""

from __future__ import annotations

from evalkit.suites.multiple_choice import ChoiceTextSuite, Formulated, choice_layout


class OpenBookQASuite(ChoiceTextSuite):
    name = "openbookqa"
    data_name = "openbookqa"
    layout = choice_layout("OpenBookQA")

    def formulate(self) -> list[Formulated]:
        from evalkit.data.commonsense import load_openbookqa

        return [Formulated(q.id, "all", q.stem, q.choices, q.gold) for q in load_openbookqa(self.data_dir)]
