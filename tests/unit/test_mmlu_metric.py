"""MMLUAccuracy: answer extraction, both scoring modes through DeepEval, aggregation, and the real model."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from deepeval import assert_test

from evalkit.data.mmlu import LETTERS, load_mmlu
from evalkit.errors import ConfigError, DataError
from evalkit.metrics.mmlu_accuracy import Extraction, MMLUAccuracy, extract_answer, mmlu_test_case
from evalkit.suites.mmlu import MMLUSuite
from evalkit.summary import CaseRecord, summarize
from evalkit.prompts import MMLU_CONTINUATIONS, build_prompt

HISTONES_CHOICES = ("Lipids", "Carbohydrates", "Nucleotides", "Proteins")


@pytest.fixture(scope="module")
def histones():
    return load_mmlu("test", subjects=["nutrition"])[155]  # gold D (Proteins)


@pytest.mark.parametrize(
    ("text", "letter", "rule"),
    [
        ("Answer: C", "C", "explicit"),
        ("The answer is C.", "C", "explicit"),
        ("The correct option is D) Proteins", "D", "explicit"),
        ("Answer: **D**", "D", "explicit"),
        ("The answer is (A). On reflection, the answer is D", "D", "explicit"),  # the final statement wins
        ("(C)", "C", "leading"),
        ("C.", "C", "leading"),
        (" B", "B", "leading"),
        ("C\nBecause histones are proteins.", "C", "leading"),
        (" B\n\nQuestion: next one?\nAnswer: C", "B", "leading"),  # a completion that runs on
        ("A. Lipids", "A", "leading"),
        ("Proteins", "D", "choice-text"),
        ("  proteins.\n", "D", "choice-text"),
        ("I would pick (B) here", "B", "parenthesised"),
    ],
)
def test_extract_answer_reads_the_letter(text, letter, rule):
    assert extract_answer(text, HISTONES_CHOICES) == Extraction(letter, rule)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A lot of proteins are involved.",  # the article, not option A
        "the answer is a protein",  # lowercase letters are articles, never options
        "Between (A) and (B) I cannot decide",
        "Histones are DNA-packaging molecules.",
        "Carbohydrates and Lipids",  # two choice texts
    ],
)
def test_extract_answer_says_unparseable_instead_of_guessing(text):
    extraction = extract_answer(text, HISTONES_CHOICES)
    assert extraction.unparseable and extraction.letter is None and extraction.rule == "unparseable"


def test_loglikelihood_mode_predicts_the_argmax_and_explains(histones):
    case = mmlu_test_case(histones, "prompt", logprobs=[-2.5, -1.25, -3.0, -0.5])
    metric = MMLUAccuracy()
    assert metric.measure(case) == 1.0 and metric.is_successful()
    assert (metric.predicted, metric.gold, metric.outcome) == ("D", "D", "correct")
    assert metric.reason == "predicted D, gold D; log-probs A -2.5000, B -1.2500, C -3.0000, D -0.5000"
    assert_test(case, [metric])  # passes through DeepEval's runner

    wrong = mmlu_test_case(histones, "prompt", logprobs=[-0.1, -0.1, -3.0, float("-inf")])
    metric.measure(wrong)
    assert (metric.score, metric.outcome, metric.predicted) == (0.0, "wrong", "A")
    assert "tie, earlier letter taken" in metric.reason and "D -inf" in metric.reason
    with pytest.raises(AssertionError, match="predicted A, gold D"):
        assert_test(wrong, [MMLUAccuracy()])


@pytest.mark.parametrize(
    "logprobs", [None, [-1.0, -2.0, -3.0], [-1.0, float("nan"), -2.0, -3.0], [float("-inf")] * 4, ["x", 1, 2, 3]]
)
def test_loglikelihood_mode_rejects_bad_logprobs(histones, logprobs):
    case = mmlu_test_case(histones, "prompt", logprobs=None)
    case.metadata["logprobs"] = logprobs
    with pytest.raises(DataError, match=r"nutrition-0155.*choice_logprobs"):
        MMLUAccuracy().measure(case)


def test_gold_letter_must_be_consistent(histones):
    case = mmlu_test_case(histones, "prompt", logprobs=[0.0, -1.0, -1.0, -1.0])
    case.expected_output = "B"
    with pytest.raises(DataError, match="differs from expected_output"):
        MMLUAccuracy().measure(case)


def test_generative_mode_scores_text_and_counts_unparseable(histones):
    metric = MMLUAccuracy(mode="generative")
    assert metric.measure(mmlu_test_case(histones, "p", output="The answer is D.")) == 1.0
    assert metric.measure(mmlu_test_case(histones, "p", output="Nucleotides")) == 0.0
    assert (metric.predicted, metric.outcome, metric.extraction.rule) == ("C", "wrong", "choice-text")
    assert metric.measure(mmlu_test_case(histones, "p", output="A lot of things.")) == 0.0
    assert (metric.predicted, metric.outcome) == (None, "unparseable")
    assert metric.reason.startswith("unparseable: no answer letter found (gold D)")


def test_cloze_case_scores_acc_and_acc_norm_as_the_harness(histones):
    """Lengths 6, 13, 11, 8 (Lipids, Carbohydrates, Nucleotides, Proteins): the summed log-likelihood favours
    the short 'Lipids', per character the long 'Carbohydrates'; both predictions are kept."""
    logprobs = [-6.0, -9.1, -12.0, -9.0]
    case = mmlu_test_case(histones, "p", logprobs=logprobs, cloze=True)
    assert case.metadata["lengths"] == [6, 13, 11, 8]
    by_acc, by_norm = MMLUAccuracy(), MMLUAccuracy(by="acc_norm")
    assert by_acc.measure(case) == 0.0 and by_acc.predicted == "A"
    assert by_norm.measure(case) == 0.0 and by_norm.predicted == "B"
    assert by_norm.predictions == by_acc.predictions == {"acc": "A", "acc_norm": "B"}
    assert by_norm.lengths == (6, 13, 11, 8)
    assert "lengths 6, 13, 11, 8; scored by acc_norm, acc predicts A, acc_norm predicts B" in by_norm.reason
    right = mmlu_test_case(histones, "p", logprobs=[-6.0, -13.0, -11.0, -1.0], cloze=True)
    assert by_norm.measure(right) == 1.0 and by_norm.predictions == {"acc": "D", "acc_norm": "D"}


def test_cloze_ties_go_to_the_first_choice_as_numpy_argmax(histones):
    import numpy as np

    logprobs = [-6.0, -13.0, -22.0, -16.0]  # per character: A and B tie at -1.0, C and D -2.0
    case = mmlu_test_case(histones, "p", logprobs=logprobs, cloze=True)
    metric = MMLUAccuracy(by="acc_norm")
    metric.measure(case)
    assert metric.predicted == "ABCD"[int(np.argmax(np.array(logprobs) / np.array([6.0, 13.0, 11.0, 8.0])))] == "A"
    assert "tie, earlier letter taken" in metric.reason


def test_acc_norm_needs_a_cloze_case(histones):
    with pytest.raises(DataError, match="acc_norm needs the answer texts' lengths"):
        MMLUAccuracy(by="acc_norm").measure(mmlu_test_case(histones, "p", logprobs=[-1.0, -2.0, -3.0, -4.0]))
    with pytest.raises(ConfigError, match="use 'acc'"):
        MMLUAccuracy(by="norm")


def always_a_records(questions, variant="base"):
    """Records of a predictor that always answers 'A' (the first question: unparseable)."""
    rows = []
    for index, q in enumerate(questions):
        predicted = None if index == 0 else "A"
        score = float(predicted == q.answer)
        rows.append(CaseRecord("mmlu", variant, q.id, q.category, q.subject, "mmlu-0shot", "scored", score=score,
                               passed=bool(score), outcome="correct" if score else ("wrong" if predicted else "unparseable"),
                               extracted=predicted))
    return rows


def test_summary_of_known_answers_on_real_questions():
    """Always answering 'A' must score exactly the share of gold 'A', overall, per subject and per category;
    macro accuracy is the mean of subject accuracies; predicted positions are counted."""
    questions = load_mmlu("test", subjects=["anatomy", "astronomy", "philosophy", "sociology"])
    summary = summarize(always_a_records(questions), ["base"], {"mmlu": MMLUSuite.layout}, {"mmlu": "mmlu-0shot"})
    s = summary.suites["mmlu"]
    correct = [i > 0 and q.answer == "A" for i, q in enumerate(questions)]
    assert s.scores["base"].overall.n == len(questions)
    assert s.scores["base"].overall.mean == pytest.approx(sum(correct) / len(correct))
    per_subject: dict[str, list[bool]] = {}
    for q, ok in zip(questions, correct):
        per_subject.setdefault(q.subject, []).append(ok)
    subject_acc = {k: sum(v) / len(v) for k, v in per_subject.items()}
    assert {k: e.mean for k, e in s.scores["base"].clusters.items()} == pytest.approx(subject_acc)
    assert s.macro["base"].mean == pytest.approx(sum(subject_acc.values()) / 4) and s.macro["base"].n == len(questions)
    # The subjects are fixed strata, each weighing 1/4: SE = sqrt(sum_h s_h^2 / n_h) / 4, s_h^2 with n_h - 1.
    within = [sum((ok - subject_acc[k]) ** 2 for ok in v) / (len(v) - 1) / len(v) for k, v in per_subject.items()]
    assert s.macro["base"].se == pytest.approx(math.sqrt(sum(within)) / 4)
    # One subject per category (Hendrycks' scheme puts anatomy under 'other'): category = subject figures.
    assert {c: e.n for c, e in s.scores["base"].groups.items()} == {
        "other": len(per_subject["anatomy"]), "stem": len(per_subject["astronomy"]),
        "humanities": len(per_subject["philosophy"]), "social_sciences": len(per_subject["sociology"])}
    assert s.predicted["base"] == {"A": len(questions) - 1, "unparseable": 1}
    assert s.outcomes["base"]["unparseable"] == 1


def test_chance_and_position_bias_warnings_name_the_variant_and_the_fix():
    """On real questions: a variant that knows the answers gets no warning; one right on every 4th question,
    spreading its answers, is at chance; one always answering 'A' (18% here, below chance) is position-biased.
    The letters format's advice is the cloze format."""
    questions = load_mmlu("test", subjects=["anatomy", "astronomy"])

    def variant(name, pick):
        rows = []
        for index, q in enumerate(questions):
            letter = pick(index, q)
            rows.append(CaseRecord("mmlu", name, q.id, q.category, q.subject, "mmlu-5shot", "scored",
                                   score=float(letter == q.answer), passed=letter == q.answer, extracted=letter,
                                   expected=q.answer, logprobs=(-1.0, -2.0, -3.0, -4.0)))
        return rows

    def wrong(q):
        return LETTERS[(LETTERS.index(q.answer) + 1) % 4]

    records = (variant("base", lambda i, q: q.answer) + variant("guess", lambda i, q: q.answer if i % 4 == 0 else wrong(q))
               + variant("always_a", lambda i, q: "A"))
    suite = MMLUSuite({"format": "letters"}, None)
    s = summarize(records, ["base", "guess", "always_a"], {"mmlu": suite.layout}, {"mmlu": suite.template}).suites["mmlu"]
    assert [w.split(":")[0] for w in s.warnings] == ["mmlu guess", "mmlu always_a"]
    chance, bias = s.warnings
    assert "includes chance (25.0%): this score cannot tell knowledge from guessing" in chance
    assert chance.endswith("Fix: score the answer text with --mmlu-format=cloze, or use a larger model.")
    share = sum(q.answer == "A" for q in questions) / len(questions)
    assert f"answers A for 100% of {len(questions)} questions (A is right for {share:.0%}): a position bias" in bias
    assert s.expected["base"] == dict(sorted(Counter(q.answer for q in questions).items()))
    cloze = MMLUSuite({"format": "cloze"}, None)
    assert cloze.layout.chance_fix == "use a larger model" and cloze.template == "mmlu-cloze-5shot"


def test_assert_test_replays_the_measurement_instead_of_measuring_again(histones, monkeypatch):
    """DeepEval measures a copy of the metric; the copy replays the first measurement for the same case."""
    calls = []
    compute = MMLUAccuracy.compute
    monkeypatch.setattr(MMLUAccuracy, "compute", lambda self, case: calls.append(case) or compute(self, case))
    case = mmlu_test_case(histones, "p", logprobs=[-1.0, -2.0, -3.0, -0.1])
    metric = MMLUAccuracy()
    assert metric.measure(case) == 1.0 and metric.predicted == "D"
    assert_test(case, [metric])
    assert len(calls) == 1
    other = mmlu_test_case(histones, "p", logprobs=[-0.1, -2.0, -3.0, -1.0])
    assert metric.measure(other) == 0.0 and len(calls) == 2  # another case is measured afresh


@pytest.mark.model
def test_metric_on_real_logprobs_from_the_embedded_model(embedded_model):
    """Six real 5-shot questions (two subjects, so the engine shares each subject's few-shot prefix)
    through the engine's log-likelihoods and the metric."""
    from evalkit.inference import choice_logprobs

    questions = [q for s in ("nutrition", "sociology") for q in load_mmlu("test", subjects=[s])[:3]]
    prompts = [build_prompt("mmlu-5shot", q) for q in questions]
    logprobs = choice_logprobs(embedded_model, [p.text for p in prompts], MMLU_CONTINUATIONS, progress=False)
    for question, prompt, row in zip(questions, prompts, logprobs):
        case = mmlu_test_case(question, prompt.text, logprobs=row, template=prompt.template)
        metric = MMLUAccuracy()
        metric.measure(case)
        assert len(row) == 4 and all(math.isfinite(x) and x < 0 for x in row)
        assert metric.predicted == LETTERS[max(range(4), key=lambda i: row[i])]
        assert metric.reason.startswith(f"predicted {metric.predicted}, gold {question.answer}; log-probs A ")
        print(f"{question.id}: {metric.predicted} (gold {question.answer})")
