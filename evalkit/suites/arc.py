"""ARC-Challenge and ARC-Easy test questions, as lm-evaluation-harness's ``arc_challenge`` / ``arc_easy``.

``Question: {question}\\nAnswer:`` with the choice texts as continuations; the gold is the answer key's
position among the labels (letters, or "1".."4" for the NY Regents questions; 3 to 5 choices). Scored by
``acc_norm``. The two levels are two suites, so each has its own figures and gates.
"""

from __future__ import annotations

from evalkit.suites.multiple_choice import ChoiceTextSuite, Formulated, choice_layout


class _ARCSuite(ChoiceTextSuite):
    level: str

    def formulate(self) -> list[Formulated]:
        from evalkit.data.commonsense import load_arc

        return [Formulated(q.id, "all", f"Question: {q.stem}\nAnswer:", q.choices, q.gold)
                for q in load_arc(self.level, self.data_dir)]


class ARCChallengeSuite(_ARCSuite):
    name = "arc_challenge"
    data_name = "arc_challenge"
    level = "challenge"
    layout = choice_layout("ARC-Challenge")


class ARCEasySuite(_ARCSuite):
    name = "arc_easy"
    data_name = "arc_easy"
    level = "easy"
    layout = choice_layout("ARC-Easy")
