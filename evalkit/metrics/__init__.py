"""DeepEval metrics: ``ExecutionAccuracy`` (Spider, ``execution_accuracy.py``) and ``MMLUAccuracy``
(MMLU, ``mmlu_accuracy.py``); ``exact_set.py`` holds the structural (non-scoring) Spider signal."""

from evalkit.metrics.execution_accuracy import ExecutionAccuracy, Outcome
from evalkit.metrics.mmlu_accuracy import MMLUAccuracy

__all__ = ["ExecutionAccuracy", "MMLUAccuracy", "Outcome"]
