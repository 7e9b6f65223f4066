"""DeepEval metrics: ``ExecutionAccuracy`` (Spider) and ``MMLUAccuracy`` (MMLU)."""
