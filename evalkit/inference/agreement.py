"""How closely two backends agree on the same requests: what to check before trusting a new backend (vLLM)
with an evaluation whose figures were made with another (transformers).

Two backends never agree bit for bit: their kernels sum in other orders. What matters is whether the
scored outcome changes: the Spider verdict of each generated query, and the MMLU letter with the highest
log-likelihood. Greedy generation amplifies a tiny logit difference into a different text wherever the
two best next tokens nearly tie, so a text difference is reported with both verdicts; a letter
difference is reported with the first backend's margin between its two best letters.
Used by tests/e2e/test_vllm_backend.py and benchmarks/bench_vllm.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evalkit.data.spider import SpiderExample
from evalkit.metrics.mmlu_accuracy import argmax


@dataclass
class GenerationAgreement:
    """Texts of two backends on the same prompts, and the execution verdicts of their SQL."""

    n: int
    same_text: int
    same_verdict: int
    differences: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return (f"Spider: n={self.n}, identical SQL {self.same_text}/{self.n}, "
                f"identical verdicts {self.same_verdict}/{self.n}")


@dataclass
class ScoreAgreement:
    """Log-likelihoods of two backends on the same choices, and their argmax choices."""

    n: int
    max_abs_delta: float
    same_argmax: int
    differences: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return (f"MMLU: n={self.n}, max |Δ log-prob| {self.max_abs_delta:.2e}, "
                f"argmax agreement {self.same_argmax}/{self.n}")


def compare_generations(examples: Sequence[SpiderExample], first: Sequence[str],
                        second: Sequence[str]) -> GenerationAgreement:
    """Compare two backends' texts for ``examples`` and execute both on each example's database."""
    from evalkit.metrics.execution_accuracy import score_execution

    same_text = same_verdict = 0
    differences = []
    for example, a, b in zip(examples, first, second, strict=True):
        verdict_a = score_execution(a, example.query, example.db_path, signals=False).outcome.value
        verdict_b = verdict_a if a == b else score_execution(b, example.query, example.db_path,
                                                              signals=False).outcome.value
        same_text += a == b
        same_verdict += verdict_a == verdict_b
        if a != b:
            differences.append({"id": example.id, "db": example.db_id, "first": a, "second": b,
                                "first_verdict": verdict_a, "second_verdict": verdict_b})
    return GenerationAgreement(len(examples), same_text, same_verdict, differences)


def compare_scores(first: Sequence[Sequence[float]], second: Sequence[Sequence[float]]) -> ScoreAgreement:
    """Compare two backends' log-likelihoods, one list of choices per question."""
    max_delta, same = 0.0, 0
    differences = []
    for index, (a, b) in enumerate(zip(first, second, strict=True)):
        max_delta = max(max_delta, *(abs(x - y) for x, y in zip(a, b, strict=True)))
        best_a, best_b = argmax(a), argmax(b)
        same += best_a == best_b
        if best_a != best_b:
            ranked = sorted(a, reverse=True)
            differences.append({"index": index, "first_argmax": best_a, "second_argmax": best_b,
                                "first_margin": ranked[0] - ranked[1]})
    return ScoreAgreement(len(first), max_delta, same, differences)
