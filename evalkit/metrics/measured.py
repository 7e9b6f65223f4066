"""Measure each example once: a DeepEval metric that keeps its measurement and replays it.

DeepEval's ``assert_test`` does not measure the metric object it is given: it builds a copy from the
object's constructor arguments (``copy_metrics``) and measures that. For a metric that runs SQL in a
sandbox, a second measurement costs a second run, and the verdict could come from another measurement
than the stored record. So :class:`MeasuredMetric` takes its last measurement as a constructor argument:
the copy receives it and, for the same test case, replays it instead of computing again. A different
test case is always measured afresh.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

from deepeval.metrics import BaseMetric
from deepeval.test_case import LLMTestCase


@dataclass(frozen=True)
class Measurement:
    """A metric's verdict on one test case (``key``), with the metric-specific ``detail`` behind it."""

    key: str
    score: float
    reason: str
    detail: Any = None


def case_key(test_case: LLMTestCase) -> str:
    """What identifies a test case's content for replay: input, outputs and metadata."""
    blob = json.dumps([test_case.input, test_case.actual_output, test_case.expected_output, test_case.metadata],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class MeasuredMetric(BaseMetric):
    """A pass/fail metric over one example that computes once per test case (see the module docstring).

    Subclasses implement :meth:`compute` and pass ``measurement`` through their ``__init__``.
    """

    def __init__(self, threshold: float = 1.0, measurement: Measurement | None = None) -> None:
        self.threshold = threshold
        self.measurement = measurement
        self.async_mode = False
        self.include_reason = True
        self.error = None

    @abstractmethod
    def compute(self, test_case: LLMTestCase) -> tuple[float, str, Any]:
        """(score, reason, detail) for one test case."""

    def measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        key = case_key(test_case)
        if self.measurement is None or self.measurement.key != key:
            self.measurement = Measurement(key, *self.compute(test_case))
        self.score = self.measurement.score
        self.reason = self.measurement.reason
        self.success = self.score >= self.threshold
        return self.score

    async def a_measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        return self.measure(test_case, *args, **kwargs)

    def is_successful(self) -> bool:
        return bool(self.success)

    @property
    def detail(self) -> Any:
        """The last measurement's detail (None before any)."""
        return self.measurement.detail if self.measurement else None
