"""The inference runtime: one model loaded at a time, one inference batch per (suite, variant).

The plugin hands the runtime the evaluation items still selected after ``-k``/``-m``; the first test of
a (suite, variant) batch triggers inference over all of that batch's selected items (and the variant's
other batches), through the result cache (an interrupted run resumes), and every test of the batch then
reads its output. Each test's example is measured once (:meth:`Runtime.measure`) and becomes the record
the summary aggregates. A variant's model is loaded once, for all its batches, and let go after the
session's last batch: scoring and reporting 14,042 MMLU tests need no weights.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ContextManager

from evalkit.config import RunConfig, Variant
from evalkit.errors import ConfigError
from evalkit.suites import Example, Generation, Scored, Suite
from evalkit.summary import ALL, CaseRecord


@dataclass(frozen=True)
class EvalItem:
    """One example of one suite for one variant: what a test in tests/eval receives."""

    suite: Suite
    variant: Variant
    example: Example

    @property
    def id(self) -> str:
        return self.example.id

    @property
    def test_id(self) -> str:
        shown = self.example.cluster not in self.example.id and self.example.cluster != ALL  # "all": no clusters
        cluster = f"-{self.example.cluster}" if shown else ""
        return f"{self.suite.name}-{self.variant.name}-{self.example.id}{cluster}"

    @property
    def skip_reason(self) -> str | None:
        return self.example.skip_reason

    def record(self, status: str, **fields: Any) -> CaseRecord:
        return CaseRecord(self.suite.name, self.variant.name, self.example.id, self.example.group,
                          self.example.cluster, self.suite.template, status, **fields)


class Runtime:
    """Per process: the loaded model, and prompts and outputs per (suite, variant) batch.

    ``selected()`` lists the items this session runs; ``uncaptured`` lets the progress bar
    through pytest's output capture; ``baseline_ids`` (with ``--baseline``) are the examples the base
    results cover, per suite.
    """

    def __init__(self, cfg: RunConfig, selected: Callable[[], Sequence[EvalItem]],
                 uncaptured: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                 baseline_ids: dict[str, set[str]] | None = None) -> None:
        from evalkit.inference import ResultCache

        self.cfg = cfg
        self.selected = selected
        self.uncaptured = uncaptured
        self.baseline_ids = baseline_ids
        self.cache = ResultCache(cfg.results_cache / "results.sqlite")
        self.model: Any = None
        self.prompts: dict[tuple[str, str], dict[str, str]] = {}
        self.outputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.failures: dict[tuple[str, str], BaseException] = {}
        self.measured: dict[tuple[str, str, str], tuple[Scored, CaseRecord]] = {}  # each example measured once
        self.facts: list[tuple[str, Any]] = []  # model and inference facts for the next test report

    def _load(self, variant: Variant) -> Any:
        from evalkit.models import adapter_provenance, load_model

        if self.model is None or self.model.adapter != variant.adapter:
            if self.cfg.backend == "vllm":
                self.model = self._vllm(variant)
            else:
                self.release()
                self.model = load_model(self.cfg.model, variant.adapter, dtype=self.cfg.dtype)
            facts = self.model.describe()
            facts["training"] = adapter_provenance(variant.adapter) if variant.adapter else None
            self.facts.append(("tradeoff-model", {"variant": variant.name, **facts}))
        return self.model

    def release(self) -> None:
        """Let the transformers model go and return its memory (a vLLM engine lives for the whole run)."""
        from evalkit.inference.planning import release_memory

        if self.model is not None and self.cfg.backend != "vllm":
            self.model = None
            release_memory()

    def _pending(self) -> dict[tuple[str, str], EvalItem]:
        """One item of each (suite, variant) batch of this session not yet inferred (nor failed)."""
        batches = {(i.suite.name, i.variant.name): i for i in self.selected() if not i.skip_reason}
        return {key: i for key, i in batches.items() if key not in self.outputs and key not in self.failures}

    def _vllm(self, variant: Variant) -> Any:
        """One vLLM engine for the whole run: loaded for the first variant (with LoRA slots when the run has
        adapters), then serving each variant's adapter per request instead of reloading."""
        from evalkit.inference.vllm_backend import VLLMBackend

        if self.model is None:
            lora = any(v.adapter for v in self.cfg.variants)
            return VLLMBackend.load(self.cfg.model, variant.adapter, enable_lora=lora, **dict(self.cfg.vllm_args))
        return self.model.with_adapter(variant.adapter)

    def _check_baseline(self, suite: str, items: Sequence[EvalItem]) -> None:
        if self.baseline_ids is None:
            return
        missing = [i.id for i in items if i.id not in self.baseline_ids.get(suite, set())]
        if missing:
            raise ConfigError(
                f"--baseline {self.cfg.baseline} has no base result for {len(missing)} of the {len(items)} {suite} "
                f"items this run evaluates (e.g. {', '.join(missing[:3])}). Fix: save the baseline with the same "
                "samples, seed and selections (e.g. --spider-sample, --mmlu-subjects), or with 'all'."
            )

    def _infer(self, suite: Suite, variant: Variant) -> None:
        items = [i for i in self.selected()
                 if i.suite.name == suite.name and i.variant.name == variant.name and not i.skip_reason]
        self._check_baseline(suite.name, items)
        self.infer(suite, variant, items)

    def infer(self, suite: Suite, variant: Variant, items: Sequence[EvalItem]) -> float:
        """Infer ``items`` (of one suite and variant) through the result cache, adding their prompts and outputs
        to the batch's; return the seconds it took (a sequential run infers a batch in rounds)."""
        from evalkit.inference import generate

        model = self._load(variant)
        prompts = {i.id: suite.prompt(i.example, model.tokenizer) for i in items}
        texts = list(prompts.values())
        started = time.perf_counter()
        label = f"tradeoff {suite.name} {variant.name}"
        with self.uncaptured():  # a full run infers for an hour: show its progress bar (items/s, ETA)
            if isinstance(suite.request, Generation):
                results = generate(model, texts, max_new_tokens=self.cfg.max_new_tokens, stop=list(suite.request.stop),
                                   batch_size=self.cfg.batch_size, cache=self.cache, progress=label)
            else:
                results = self._loglikelihoods(model, [suite.requests(i.example, prompts[i.id]) for i in items], label)
        seconds = time.perf_counter() - started
        self.facts.append(("tradeoff-inference", {"suite": suite.name, "variant": variant.name, "prompts": len(texts),
                                                  "seconds": round(seconds, 3)}))
        self.prompts.setdefault((suite.name, variant.name), {}).update(prompts)
        self.outputs.setdefault((suite.name, variant.name), {}).update(zip(prompts, results))
        return seconds

    def _loglikelihoods(self, model: Any, requests: Sequence[Sequence[tuple[str, str]]], label: str) -> list[list[float]]:
        """Each example's log-likelihoods, one per (context, continuation) request, in one engine call (so
        contexts shared across examples, such as WinoGrande's sentence up to its blank, are computed once)."""
        from evalkit.inference import choice_logprobs

        flat = [pair for pairs in requests for pair in pairs]
        scores = choice_logprobs(model, [context for context, _ in flat], [[continuation] for _, continuation in flat],
                                 batch_size=self.cfg.batch_size, cache=self.cache, progress=label)
        out, start = [], 0
        for pairs in requests:
            out.append([score for (score,) in scores[start:start + len(pairs)]])
            start += len(pairs)
        return out

    def _batch(self, item: EvalItem) -> tuple[str, str]:
        """Infer the item's batch on its first use, with the variant's other batches while its model is
        loaded (tests run suite by suite; this loads each variant once), then let the model go if no batch
        is left."""
        key = (item.suite.name, item.variant.name)
        if key not in self.outputs and key not in self.failures:
            try:
                self._infer_or_remember(item)
                for other_key, other in self._pending().items():
                    if other_key[1] == item.variant.name:
                        self._infer_or_remember(other)
            finally:
                if not self._pending():
                    self.release()
        if key in self.failures:
            raise self.failures[key]
        return key

    def _infer_or_remember(self, item: EvalItem) -> None:
        try:
            self._infer(item.suite, item.variant)
        except Exception as exc:  # remembered, so the batch's tests fail fast with the same error
            self.failures[(item.suite.name, item.variant.name)] = exc

    def output(self, item: EvalItem) -> Any:
        """The model's output for the item: generated text, or one log-likelihood per continuation."""
        return self.outputs[self._batch(item)][item.id]

    def prompt(self, item: EvalItem) -> str:
        return self.prompts[self._batch(item)][item.id]

    def measure(self, item: EvalItem) -> tuple[Scored, CaseRecord]:
        """Score the item's output once (a sequential run scores it between rounds, its test reads that): the
        measured test case and metric, and the record made from them."""
        key = (item.suite.name, item.variant.name, item.id)
        if key not in self.measured:
            self.measured[key] = self._measure(item)
        return self.measured[key]

    def _measure(self, item: EvalItem) -> tuple[Scored, CaseRecord]:
        prompt = self.prompt(item)
        scored = item.suite.score(item.example, prompt, self.output(item))
        metric = scored.metric
        record = item.record(scored.status, score=float(metric.score), passed=bool(metric.success),
                             reason=metric.reason, prompt=prompt, **scored.fields)
        return scored, record
