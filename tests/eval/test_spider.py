"""Spider execution accuracy: one test per sampled example per variant (parametrized by evalkit.plugin).

Run with ``pytest tests/eval -m spider --model smollm2-135m --adapter runs/sql/epoch-1``; see the README.
"""

from deepeval import assert_test
from deepeval.test_case import LLMTestCase

from evalkit.metrics.execution_accuracy import ExecutionAccuracy


def test_execution_accuracy(spider_item, tradeoff):
    example = spider_item.example
    case = LLMTestCase(
        input=example.question,
        actual_output=tradeoff.output(spider_item),
        expected_output=example.query,
        metadata={"db_id": example.db_id, "db_path": str(example.db_path)},
        name=spider_item.test_id,
    )
    metric = ExecutionAccuracy()
    tradeoff.record(spider_item, case, metric)
    assert_test(case, [metric])
