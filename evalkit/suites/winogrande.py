"""WinoGrande 1.1 dev (1,267 sentences), as lm-evaluation-harness's ``winogrande`` task: partial evaluation.

Each option fills the blank to make a *context* (``sentence[:idx] + option``, idx the "_"); the one
continuation scored after both is the rest of the sentence (``" " + sentence[idx + 1:].strip()``). The
record's prompt is the sentence with its blank; the two contexts are the requests. Scored by ``acc``
(the harness reports no ``acc_norm`` here: the choices are contexts, not continuations).
"""

from __future__ import annotations

from evalkit.suites.multiple_choice import ChoiceTextSuite, Formulated, choice_layout


class WinoGrandeSuite(ChoiceTextSuite):
    name = "winogrande"
    data_name = "winogrande"
    scored_by = "acc"
    layout = choice_layout("WinoGrande", scored_by="acc")

    def formulate(self) -> list[Formulated]:
        from evalkit.data.commonsense import load_winogrande

        questions = []
        for row in load_winogrande(self.data_dir):
            blank = row.sentence.index("_")
            questions.append(Formulated(row.id, "all", row.sentence,
                                        tuple(row.sentence[:blank] + option for option in row.options), row.gold,
                                        target=row.sentence[blank + 1:].strip()))
        return questions
