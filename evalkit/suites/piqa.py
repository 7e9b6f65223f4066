"""PIQA validation (1,838 goals, two solutions), as lm-evaluation-harness's ``piqa`` task.

``Question: {goal}\\nAnswer:`` with ``sol1`` and ``sol2`` as continuations, verbatim (some hold doubled
or trailing spaces); label 0 is ``sol1``. Scored by ``acc_norm``.
"""

from __future__ import annotations

from evalkit.suites.multiple_choice import ChoiceTextSuite, Formulated, choice_layout


class PIQASuite(ChoiceTextSuite):
    name = "piqa"
    data_name = "piqa"
    layout = choice_layout("PIQA")

    def formulate(self) -> list[Formulated]:
        from evalkit.data.commonsense import load_piqa

        return [Formulated(row.id, "all", f"Question: {row.goal}\nAnswer:", row.solutions, row.gold)
                for row in load_piqa(self.data_dir)]
