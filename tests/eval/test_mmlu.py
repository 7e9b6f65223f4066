"""MMLU: one test per sampled question per variant (parametrized by evalkit.plugin), scored on the
log-probabilities of " A".." D" after the prompt.

Run with ``pytest tests/eval -m mmlu --model smollm2-135m --adapter runs/sql/epoch-1``; see the README.
"""

from deepeval import assert_test

from evalkit.metrics.mmlu_accuracy import MMLUAccuracy, mmlu_test_case


def test_mmlu(mmlu_item, tradeoff):
    case = mmlu_test_case(
        mmlu_item.example,
        tradeoff.prompt(mmlu_item),
        logprobs=tradeoff.output(mmlu_item),
        template=tradeoff.template(mmlu_item),
    )
    metric = MMLUAccuracy()
    tradeoff.record(mmlu_item, case, metric)
    assert_test(case, [metric])
