"""HellaSwag validation (10,042 contexts, four endings each), as lm-evaluation-harness's ``hellaswag`` task.

The harness's ``process_docs``: the query is ``activity_label + ": " + ctx_a + " " + ctx_b.capitalize()``
and each ending a choice, all through its ``preprocess`` (strip, " [title]" to ". ", drop every
``[...]`` (WikiHow's markup), one pass of double spaces to single). Scored by ``acc_norm``; grouped by
source (ActivityNet, WikiHow), sampled at random over the whole split.
"""

from __future__ import annotations

import re

from evalkit.suites.multiple_choice import ChoiceTextSuite, Formulated, choice_layout

_MARKUP = re.compile(r"\[.*?\]")


def preprocess(text: str) -> str:
    """The harness's ``hellaswag/utils.preprocess``, byte for byte."""
    text = text.strip().replace(" [title]", ". ")
    return _MARKUP.sub("", text).replace("  ", " ")


class HellaSwagSuite(ChoiceTextSuite):
    name = "hellaswag"
    data_name = "hellaswag"
    layout = choice_layout("HellaSwag", groups=("ActivityNet", "WikiHow"), group_title="source")

    def formulate(self) -> list[Formulated]:
        from evalkit.data.commonsense import load_hellaswag

        return [Formulated(row.id, row.source,
                           preprocess(row.activity_label + ": " + row.ctx_a + " " + row.ctx_b.capitalize()),
                           tuple(preprocess(ending) for ending in row.endings), row.gold)
                for row in load_hellaswag(self.data_dir)]
