"""The evaluation: one test per sampled example of each suite per model variant (parametrized by
evalkit.plugin), its metric measured once and judged by DeepEval.

Run with ``pytest tests/eval --model smollm2-135m --adapter runs/sql/epoch-1`` (``-m spider``, ``-m mmlu``,
``-m stem``, ...); see the README.
"""

from deepeval import assert_test


def test_eval(eval_item, tradeoff):
    case, metric = tradeoff.measure(eval_item)
    assert_test(case, [metric])
