"""Checkpoints scored against the base while training, through the code path of ``pytest tests/eval``.

The training config's ``evaluation:`` block names the plugin's suites, their sample sizes and its gates.
:func:`run_config` turns it into the plugin's own :class:`~evalkit.config.RunConfig` (with
:func:`evalkit.config.parse_run_config`, so the suites, their prompt options and the gates are validated by
the same code as ``--suites``/``--spider-sample``/``--gate``), and :class:`Scorer` scores one fixed paired
sample (:func:`evalkit.sampling.stratified`, the plugin's sampler and seed) for each checkpoint:

- every example goes through :class:`evalkit.runtime.Runtime` (``measure(item)``: the suite's prompt, the
  inference engine with the result cache, the suite's score), the runtime being handed the live training
  model wrapped as a :class:`~evalkit.models.LoadedModel` instead of loading one from disk;
- the base is the same weights with the LoRA switched off (peft's ``disable_adapter()``), scored once for
  the run: no second copy of the weights. Its cache key is the base model's fingerprint, so its results are
  the ones a later ``pytest tests/eval`` of the same sample reads from the cache;
- a checkpoint's cache key is the fingerprint of the adapter folder saved for it (``step-<N>/``), as the
  plugin's ``--adapter`` would compute it;
- around the scoring the model's train/eval mode (per module), its attention implementation and every RNG
  (python, numpy, torch CPU and CUDA) are saved and restored exactly, so training after a scored checkpoint
  is the training without it, bit for bit (tested: tests/e2e/test_training_scoring.py);
- the records are summarised (:func:`evalkit.summary.summarize`) and the gates judged
  (:func:`evalkit.gates.evaluate_gates`, Holm over the gates) exactly as the plugin does at the end of a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError


def _suite_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the suites scored, the unknown names) with families (``forgetting``) expanded."""
    from evalkit.suites import FAMILIES, REGISTRY

    suites, unknown = [], []
    for name in names:
        members = FAMILIES.get(name, (name,))
        for member in members:
            if member not in REGISTRY:
                unknown.append(name)
            elif member not in suites:
                suites.append(member)
    return suites, unknown


def raw_options(config: Any, report_dir: Path | str, adapters: Sequence[str] = ()) -> dict[str, Any]:
    """The plugin's raw option values (names as in :data:`evalkit.config.OPTIONS`) for the training config's
    evaluation block: the same suites, samples, gates and prompt options as the adapters were trained with."""
    ev = config.evaluation
    raw: dict[str, Any] = {
        "model": config.model.base,
        "suites": ",".join(ev.suites),
        "sample_seed": str(ev.seed),
        "gate": list(ev.gates),
        "confidence": str(ev.confidence),
        "max_new_tokens": str(ev.max_new_tokens),
        "report_dir": str(report_dir),
        "adapter": list(adapters),
        "spider_schema": config.prompt.schema_style,
        "spider_sample_rows": str(config.prompt.sample_rows),
    }
    for suite, count in ev.samples.items():
        raw[f"{suite}_sample"] = str(count)
    return raw


def plugin_args(config: Any) -> list[str]:
    """The same options as ``pytest tests/eval`` command-line arguments (the sweep's plugin run)."""
    args = []
    for name, value in raw_options(config, "unused").items():
        if name in ("report_dir", "adapter"):
            continue
        flag = "--" + name.replace("_", "-")
        for item in (value if isinstance(value, list) else [value]):
            args.append(f"{flag}={item}")
    return args


def default_gain(suites: Sequence[str]) -> str | None:
    from evalkit.suites import REGISTRY

    return next((s for s in suites if REGISTRY[s].layout.role == "target"), None)


def default_cost(suites: Sequence[str]) -> str | None:
    """The forgetting family's macro delta when one of its suites is scored, else the one retention suite."""
    from evalkit.suites import FAMILIES, REGISTRY

    for family, members in FAMILIES.items():
        if set(members) & set(suites):
            return family
    retention = [s for s in suites if REGISTRY[s].layout.role == "retention"]
    return retention[0] if len(retention) == 1 else None


def check_evaluation(config: Any) -> list[str]:
    """Problems of the evaluation block, each naming the key and the fix (no model or data file is read
    beyond the suites' presence under the data folder)."""
    from evalkit.paths import data_dir
    from evalkit.suites import FAMILIES, REGISTRY

    ev = config.evaluation
    suites, unknown = _suite_names(ev.suites)
    valid = ", ".join([*REGISTRY, *FAMILIES])
    problems = [f"evaluation.suites: unknown suite {name!r}. Fix: use some of {valid}." for name in unknown]
    for name in ev.samples:
        if name not in suites:
            problems.append(f"evaluation.samples.{name}: {name!r} is not among the suites scored "
                            f"({', '.join(suites) or 'none'}). Fix: add it to evaluation.suites or drop the sample.")
    if unknown:
        return problems
    gain = ev.gain or default_gain(suites)
    cost = ev.cost or default_cost(suites)
    scored = set(suites) | {f for f, members in FAMILIES.items() if set(members) & set(suites)}
    if gain is None or gain not in scored:
        problems.append(f"evaluation.gain: {gain!r} is not a scored suite, so no skill gain can be measured. Fix: add "
                        "spider to evaluation.suites (the skill the training teaches), or name a scored suite.")
    if cost is None or cost not in scored:
        problems.append(f"evaluation.cost: {cost!r} is not a scored suite or family. Fix: add a retention suite "
                        "(e.g. arc_easy, hellaswag, mmlu) to evaluation.suites, or set evaluation.cost to one of them.")
    if problems:
        return problems
    folder = data_dir(config.data.data_dir)
    try:
        run_config(config, "unused", folder=folder)
    except ConfigError as exc:  # the plugin's own checks: data present, gate grammar, sample counts
        text = str(exc)
        problems.append(text.replace("Gate ", "evaluation.gates: ", 1) if text.startswith("Gate ")
                        else f"evaluation: {text}")
    return problems


CHECKPOINT = "checkpoint"  # the variant name delta gates are parsed against (each checkpoint gets its own name)


def run_config(config: Any, report_dir: Path | str, folder: Path | None = None, cache: Path | None = None) -> Any:
    """The plugin's RunConfig for the evaluation block: base only (each checkpoint is added as a variant when
    scored), and the gates parsed by the plugin's :func:`~evalkit.gates.parse_gate` as if an adapter were
    evaluated (the plugin refuses a delta gate in a run without one)."""
    from evalkit.config import parse_run_config
    from evalkit.gates import parse_gate
    from evalkit.paths import cache_dir, data_dir
    from evalkit.suites import FAMILIES
    from evalkit.summary import BASE

    raw = raw_options(config, report_dir)
    cfg = parse_run_config({**raw, "gate": []}, folder or data_dir(config.data.data_dir), cache or cache_dir())
    gated: dict[str, Any] = {s.name: s.layout.metrics for s in cfg.suites}
    gated |= {family: () for family, members in FAMILIES.items() if set(members) & set(gated)}
    gates = tuple(parse_gate(text, gated, {BASE, CHECKPOINT}) for text in raw["gate"])
    return dataclasses.replace(cfg, gates=gates)


def _rss_mb(field: str) -> float | None:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process in MB, from /proc (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset VmHWM so the next reading is the peak of what follows (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def preserved(model: Any) -> Iterator[None]:
    """Score inside; leave the model and every RNG as they were: each module's train/eval flag, the attention
    implementation (the CPU evaluation attention while scoring, as the plugin loads models) and the python,
    numpy and torch (CPU and CUDA) generators."""
    import numpy as np
    import torch

    modes = [(module, module.training) for module in model.modules()]
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    inner = _transformers_model(model)
    attention = getattr(getattr(inner, "config", None), "_attn_implementation", None)
    try:
        model.eval()
        if next(model.parameters()).device.type == "cpu" and attention == "sdpa":
            from evalkit.models.attention import register

            inner.set_attn_implementation(register())
        yield
    finally:
        if attention is not None and inner.config._attn_implementation != attention:
            inner.set_attn_implementation(attention)
        for module, mode in modes:
            module.training = mode
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def _transformers_model(model: Any) -> Any:
    """The transformers model inside a peft model (``PeftModel.base_model.model``), or the model itself."""
    base = getattr(model, "base_model", None)
    return getattr(base, "model", model) if base is not None and base is not model else model


@dataclasses.dataclass
class Point:
    """One scored checkpoint: its figures as tradeoff_curve.json records them."""

    name: str
    step: int
    epoch: float
    adapter: str
    gain: dict[str, Any]
    cost: dict[str, Any]
    gates: list[dict[str, Any]]
    passes: bool
    seconds: float
    rss_mb: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _figure(summary: Any, suite: str, variant: str) -> dict[str, Any]:
    figures = summary.suites[suite].deltas.get(variant)
    delta = figures.overall if figures is not None else None
    if delta is None:
        return {"suite": suite, "delta": None, "lo": None, "hi": None, "n": 0, "p_value": None}
    return {"suite": suite, "delta": round(delta.delta, 6), "lo": round(delta.lo, 6), "hi": round(delta.hi, 6),
            "n": delta.n, "p_value": round(delta.p_value, 6), "test": delta.test}


class Scorer:
    """Scores checkpoints of one training run on one fixed paired sample (see the module docstring)."""

    def __init__(self, config: Any, out: Path, device: str) -> None:
        from evalkit.models import base_fingerprint, load_tokenizer, resolve_base
        from evalkit.sampling import stratified

        self.config = config
        self.ev = config.evaluation
        self.out = out
        self.device = device
        self.cfg = run_config(config, out / "scoring")
        self.plan = {s.name: stratified(s.load(), s.sample, self.cfg.sample_seed) for s in self.cfg.suites}
        suites = [s.name for s in self.cfg.suites]
        self.gain = self.ev.gain or default_gain(suites)
        self.cost = self.ev.cost or default_cost(suites)
        source, _ = resolve_base(config.model.base)
        self.tokenizer = load_tokenizer(source)  # the evaluation's tokenizer settings (padding side), not training's
        self.base_fingerprint = base_fingerprint(config.model.base)
        self.base_records: list[Any] | None = None
        self.base_seconds = 0.0

    def sample_ids(self) -> dict[str, list[str]]:
        """The examples every checkpoint is scored on, per suite (for training.json's selection record)."""
        return {suite: [ex.id for ex in examples if not ex.skip_reason] for suite, examples in self.plan.items()}

    def _loaded(self, model: Any, adapter: Path | None) -> Any:
        from evalkit.models import LoadedModel
        from evalkit.models.fingerprint import directory_fingerprint

        return LoadedModel(model=model, tokenizer=self.tokenizer, spec=self.config.model.base, adapter=adapter,
                           device=self.device, base_fingerprint=self.base_fingerprint,
                           adapter_fingerprint=directory_fingerprint(adapter) if adapter else None,
                           quantization="nf4" if self.config.quantization.mode == "4bit" else None)

    def _measure(self, loaded: Any, variant: Any) -> list[Any]:
        from evalkit.runtime import EvalItem, Runtime

        items = [EvalItem(suite, variant, example) for suite in self.cfg.suites for example in self.plan[suite.name]]
        runtime = Runtime(self.cfg, lambda: items)
        runtime.model = loaded  # the live model: Runtime._load keeps a model whose adapter is the variant's
        records = []
        try:
            for item in items:
                if item.skip_reason:
                    records.append(item.record("skipped", reason=item.skip_reason))
                    continue
                _, record = runtime.measure(item)
                records.append(record)
        finally:
            runtime.model = None
            runtime.cache.close()
        return records

    def score(self, model: Any, adapter: Path, name: str, step: int, epoch: float) -> tuple[Point, list[Any]]:
        """Score the saved checkpoint ``adapter`` (the live ``model`` holds its weights) and, the first time,
        the base; return its point on the curve and its records (base records first)."""
        from evalkit.config import Variant
        from evalkit.gates import evaluate_gates
        from evalkit.summary import BASE, summarize

        started = time.perf_counter()
        rss_before = _rss_mb("VmRSS")
        peak_known = _reset_peak()
        with preserved(model):
            if self.base_records is None:
                with model.disable_adapter():
                    self.base_records = self._measure(self._loaded(model, None), Variant(BASE))
                self.base_seconds = round(time.perf_counter() - started, 1)
            records = self._measure(self._loaded(model, adapter), Variant(name, adapter))
        cfg = self.cfg
        summary = summarize([*self.base_records, *records], [BASE, name], cfg.layouts, cfg.templates,
                            cfg.confidence, cfg.families)
        gates = evaluate_gates(cfg.gates, summary, cfg.gate_basis, cfg.gate_correction)
        gate_rows = [{"gate": g.gate, "label": g.label, "verdict": g.verdict, "kind": g.kind, "op": g.op, "threshold": g.threshold,
                      "suite": g.suite, "value": g.value, "lo": g.lo, "hi": g.hi, "n": g.n,
                      "p_adjusted": g.p_adjusted, "message": g.message} for g in gates]
        point = Point(
            name=name, step=step, epoch=round(epoch, 4), adapter=adapter.name,
            gain=_figure(summary, self.gain, name), cost=_figure(summary, self.cost, name),
            gates=gate_rows, passes=all(g.verdict == "PASS" for g in gates),
            seconds=round(time.perf_counter() - started, 1),
            rss_mb={"before": rss_before, "after": _rss_mb("VmRSS"),
                    "peak_while_scoring": _rss_mb("VmHWM") if peak_known else None},
        )
        return point, [*self.base_records, *records]
