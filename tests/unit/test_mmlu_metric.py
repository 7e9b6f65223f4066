"""MMLUAccuracy: answer extraction, both scoring modes through DeepEval, aggregation, and the real model."""

from __future__ import annotations

import math

import pytest
from deepeval import assert_test

from evalkit.data.mmlu import LETTERS, load_mmlu
from evalkit.errors import ConfigError, DataError
from evalkit.metrics.mmlu_accuracy import (
    Extraction,
    MMLUAccuracy,
    MMLUScore,
    extract_answer,
    mmlu_test_case,
    summarize,
)
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


def test_summarize_known_answers_on_real_questions():
    """Always answering 'A' must score exactly the share of gold 'A' per subject, overall and per category."""
    questions = load_mmlu("test", subjects=["anatomy", "astronomy", "philosophy", "sociology"])
    scores = [MMLUScore(q.id, q.subject, q.category, q.answer, "A") for q in questions]
    scores[0] = MMLUScore(scores[0].id, scores[0].subject, scores[0].category, scores[0].gold, None)
    summary = summarize(scores)

    correct = [s.gold == "A" and s.predicted == "A" for s in scores]
    assert summary.n == len(questions) and summary.overall.n == len(questions)
    assert summary.overall.mean == pytest.approx(sum(correct) / len(correct))
    assert (summary.overall.method, summary.overall.n_clusters) == ("cluster-t", 4)
    assert summary.overall.lo < summary.overall.mean < summary.overall.hi
    per_subject = {}
    for s, ok in zip(scores, correct):
        per_subject.setdefault(s.subject, []).append(ok)
    subject_acc = [sum(v) / len(v) for v in per_subject.values()]
    assert {k: e.mean for k, e in summary.subjects.items()} == pytest.approx(
        dict(zip(per_subject, subject_acc)))
    assert all(e.method == "wilson" for e in summary.subjects.values())
    assert summary.macro.mean == pytest.approx(sum(subject_acc) / 4) and summary.macro.n == 4
    sd = math.sqrt(sum((a - summary.macro.mean) ** 2 for a in subject_acc) / 3)
    assert summary.macro.se == pytest.approx(sd / 2)  # plain t over the 4 subjects
    # One subject per category (Hendrycks' scheme puts anatomy under 'other'): category = subject figures.
    assert {c: e.n for c, e in summary.categories.items()} == {
        "other": summary.subjects["anatomy"].n, "stem": summary.subjects["astronomy"].n,
        "humanities": summary.subjects["philosophy"].n, "social_sciences": summary.subjects["sociology"].n}
    assert sum(e.n for e in summary.categories.values()) == summary.n
    assert summary.predicted == {"A": len(questions) - 1, "B": 0, "C": 0, "D": 0, "unparseable": 1}
    assert summary.unparseable == 1 and summary.predicted_share("A") == pytest.approx(1 - 1 / len(questions))
    assert [r["scope"] for r in summary.rows()[:3]] == [
        "overall (micro)", "macro (mean of subjects)", "category humanities"]


def test_summarize_from_metrics_and_rejects_duplicates(histones):
    metric = MMLUAccuracy()
    metric.measure(mmlu_test_case(histones, "p", logprobs=[-1.0, -2.0, -3.0, -0.1]))
    score = MMLUScore.from_metric(histones, metric)
    assert score == MMLUScore("nutrition-0155", "nutrition", "other", "D", "D") and score.correct
    with pytest.raises(ConfigError, match="more than once"):
        summarize([score, score])


@pytest.mark.model
def test_metric_on_real_logprobs_from_the_embedded_model(embedded_model):
    """Six real 5-shot questions (two subjects, so the engine shares each subject's few-shot prefix)
    through the engine's log-likelihoods and the metric."""
    from evalkit.inference import choice_logprobs

    questions = [q for s in ("nutrition", "sociology") for q in load_mmlu("test", subjects=[s])[:3]]
    prompts = [build_prompt("mmlu-5shot", q) for q in questions]
    logprobs = choice_logprobs(embedded_model, [p.text for p in prompts], MMLU_CONTINUATIONS, progress=False)
    scores = []
    for question, prompt, row in zip(questions, prompts, logprobs):
        case = mmlu_test_case(question, prompt.text, logprobs=row, template=prompt.template)
        metric = MMLUAccuracy()
        metric.measure(case)
        assert len(row) == 4 and all(math.isfinite(x) and x < 0 for x in row)
        assert metric.predicted == LETTERS[max(range(4), key=lambda i: row[i])]
        assert metric.reason.startswith(f"predicted {metric.predicted}, gold {question.answer}; log-probs A ")
        scores.append(MMLUScore.from_metric(question, metric))
    summary = summarize(scores)
    print(*(f"{s.id}: {s.predicted} (gold {s.gold})" for s in scores), sep="\n")
    assert summary.n == 6 and sum(summary.predicted.values()) == 6 and summary.unparseable == 0
