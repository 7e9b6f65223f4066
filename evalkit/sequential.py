"""Sequential evaluation (``--sequential``): rounds of growing size until every gate is decided.

A fixed-n run needs the sample size chosen before it starts, blindly; a sequential run looks after each
round and stops a suite as soon as its gates are decided, with the guarantee of a fixed-n run kept by
anytime-valid confidence sequences (:mod:`evalkit.confseq`, docs/statistics.md).

- **Streams.** Each suite outside a family is one stream; a family's suites present in the run are pooled
  into one (its gates judge their macro average, so they stop together). A stream's examples are put in
  one seeded, uniformly random order (the sequences' guarantee needs each next example to be a uniform draw
  from those not yet asked), and every variant evaluates the same prefix, so deltas stay paired.
- **Rounds.** Look ``k`` covers the first :func:`schedule` ``[k]`` examples (``--sequential-first``, then 1.5
  times as many each round) of each stream still running; a
  round infers each variant's new examples (one model load per variant and round) and scores them once
  (:meth:`Runtime.measure`: their tests later read that measurement).
- **Stopping.** After each round every gate gets the anytime one-sided p-values of "the gate is violated"
  and "the gate holds", Holm-adjusted over the gates as a fixed-n run adjusts them; a gate is decided
  when either is below ``(1 - confidence) / 2``, i.e. the sequence lies wholly on one side of the margin. A
  stream stops when every gate naming one of its suites is decided, or when its examples run out (the
  fixed-n result then stands). A stream no gate names stops when each of its deltas' sequences is
  narrower than ``--sequential-width``, or after its first round without one.
- **The report.** :func:`anytime_figures` replaces a stopped stream's paired deltas by their sequences
  (wider than a fixed-n CI at the same n: the price of looking) and gives the gates the sequences'
  p-values; :class:`SequentialResult` keeps the rounds for the report's tables and plot.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.confseq import ConfidenceSequence, confidence_sequence
from evalkit.records import ALL, BASE, CaseRecord, Figures
from evalkit.stats import holm
from evalkit.streams import (
    DECIDED,
    EXHAUSTED,
    NARROW,
    UNGATED,
    Key,
    SequentialResult,
    Stream,
)

if TYPE_CHECKING:
    from evalkit.config import RunConfig, Variant
    from evalkit.gates import Gate
    from evalkit.runtime import EvalItem, Runtime
    from evalkit.summary import Summary

FIRST_ROUND = 100  # examples per stream in the first look
GROWTH = 1.5  # each later look covers this many times the examples of the one before


def schedule(total: int, first: int = FIRST_ROUND, growth: float = GROWTH) -> list[int]:
    """The cumulative number of examples evaluated at each look of a stream of ``total`` examples: ``first``,
    then ``growth`` times the last (rounded up), ending at ``total``."""
    sizes: list[int] = []
    n = min(first, total)
    while total and (not sizes or sizes[-1] < total):
        sizes.append(n)
        n = min(total, math.ceil(n * growth))
    return sizes


def build_streams(examples: Mapping[str, Sequence[str]], families: Mapping[str, Sequence[str]], seed: int) -> list[Stream]:
    """One stream per family present (its suites pooled) and per other suite, each in a seeded uniform order
    that depends only on the stream's examples, the seed and its name."""
    streams = []
    pooled = {member for members in families.values() for member in members}
    groups = [(family, tuple(m for m in members if m in examples)) for family, members in families.items()]
    groups += [(suite, (suite,)) for suite in examples if suite not in pooled]
    for name, suites in groups:
        order = sorted((suite, example_id) for suite in suites for example_id in examples[suite])
        if order:
            random.Random(f"tradeoff-sequential:{seed}:{name}").shuffle(order)
            streams.append(Stream(name, suites, order, family=name not in suites))
    return streams


Scores = Mapping[tuple[str, str, str], CaseRecord]  # (suite, variant, example id) -> record


def _values(stream: Stream, scores: Scores, kind: str, variant: str, suite: str | None,
            label: str | None) -> tuple[list[float], float]:
    """The observations of one figure in the stream's evaluation order, and their bound: paired differences
    (``kind`` delta; weighted for a family's macro average) or one variant's scores; ``suite`` None is the
    stream's own figure, ``label`` a group or cluster."""
    weights = stream.weights if suite is None else {suite: 1.0}
    values = []
    for key in stream.order[:stream.evaluated]:
        if key[0] not in weights:
            continue
        other, base = scores.get((key[0], variant, key[1])), scores.get((key[0], BASE, key[1]))
        if other is None or other.status != "scored" or label not in (None, ALL, other.group, other.cluster):
            continue
        if kind == "score":
            values.append(float(other.score or 0.0))
        elif base is not None and base.status == "scored":
            values.append(weights[key[0]] * (float(other.score or 0.0) - float(base.score or 0.0)))
    return values, max(weights.values()) if kind == "delta" else 1.0


def sequence(stream: Stream, scores: Scores, kind: str, variant: str, suite: str | None, label: str | None,
             alpha: float) -> ConfidenceSequence:
    values, bound = _values(stream, scores, kind, variant, suite, label)
    return confidence_sequence(values, bound=bound, alpha=alpha)


@dataclass(frozen=True)
class GateTest:
    """One gate applied to one variant, on the stream that holds its suite (or family)."""

    gate: Gate
    variant: str
    stream: Stream

    @property
    def figure(self) -> tuple[str | None, str | None]:
        """(suite, group) of the gated figure: suite None is a family's average; a family's groups are its suites."""
        return figure_of(self.stream, self.gate.suite, self.gate.group)


def figure_of(stream: Stream, suite: str, group: str | None) -> tuple[str | None, str | None]:
    """A figure as (suite, group) within its stream: suite None is the stream's own (pooled) figure."""
    if suite != stream.name:
        return suite, group
    if group in stream.suites:  # a family's groups are its suites
        return group, None
    return None, None if group == ALL else group


def gate_tests(gates: Sequence[Gate], variants: Sequence[str], streams: Sequence[Stream]) -> list[GateTest]:
    adapters = [v for v in variants if v != BASE]
    tests = []
    for gate in gates:
        stream = next((s for s in streams if gate.suite == s.name or gate.suite in s.suites), None)
        targets = [gate.variant] if gate.variant else adapters if gate.kind == "delta" or adapters else [BASE]
        tests += [GateTest(gate, variant, stream) for variant in targets if stream is not None]
    return tests


def decided(tests: Sequence[GateTest], scores: Scores, alpha: float) -> list[bool]:
    """Which gate tests are decided: Holm over the anytime p-values of "violated" and, separately, of "holds",
    either below alpha / 2 (the sequence wholly on one side of the margin)."""
    if not tests:
        return []
    violated, holds = [], []
    for test in tests:
        cs = sequence(test.stream, scores, test.gate.kind, test.variant, *test.figure, alpha)
        below, above = cs.p_value(test.gate.threshold, "below"), cs.p_value(test.gate.threshold, "above")
        violated.append(below if test.gate.op == ">=" else above)
        holds.append(above if test.gate.op == ">=" else below)
    return [min(v, h) < alpha / 2 for v, h in zip(holm(violated), holm(holds))]


def _headline(stream: Stream) -> list[tuple[str, str | None]]:
    """The figures a stream reports per look, as (name, suite): its own, then a family's suites'."""
    return [(stream.name, None)] + ([(suite, suite) for suite in stream.suites] if stream.family else [])


def _look(stream: Stream, scores: Scores, adapters: Sequence[str], tests: Sequence[GateTest],
          alpha: float) -> list[ConfidenceSequence]:
    """Record this look's figures in ``stream.rounds``; return the headline deltas' sequences."""
    headline = []
    figures = {(name, suite, None) for name, suite in _headline(stream)}
    figures |= {(t.gate.suite, *t.figure) for t in tests if t.stream is stream and t.gate.kind == "delta"}
    for adapter in adapters:
        for name, suite, label in sorted(figures, key=lambda f: (f[1] is not None, f[0], f[2] or "")):
            cs = sequence(stream, scores, "delta", adapter, suite, label, alpha)
            lo, hi = cs.interval()
            stream.rounds.append({"look": stream.looks, "n": stream.evaluated, "figure": name, "group": label,
                                  "variant": adapter, "items": cs.n, "delta": cs.mean, "lo": lo, "hi": hi})
            if label is None:
                headline.append(cs)
    return headline


def _stop_reason(stream: Stream, gated: Sequence[bool], headline: Sequence[ConfidenceSequence],
                 width: float | None, alpha: float) -> str | None:
    if gated:
        if all(gated):
            return DECIDED
    elif width is not None:
        if all(hi - lo < width for lo, hi in (cs.interval() for cs in headline)):
            return NARROW
    else:
        return UNGATED
    return EXHAUSTED if stream.evaluated >= stream.total else None


def _items(by_key: Mapping[tuple[str, str, str], EvalItem], keys: Sequence[Key], variant: Variant,
           extend_base: bool, scores: Scores) -> list[EvalItem]:
    """This round's items of ``variant`` among ``keys``; with a baseline, the base's items are those it lacks,
    made from another variant's items (the base has no tests in such a run)."""
    from evalkit.runtime import EvalItem

    if not (extend_base and variant.name == BASE):
        return [by_key[k] for suite, i in keys if (k := (suite, variant.name, i)) in by_key]
    others = {(suite, i): item for (suite, _, i), item in by_key.items()}
    return [EvalItem(others[key].suite, variant, others[key].example) for key in keys
            if key in others and (key[0], BASE, key[1]) not in scores]


def run_sequential(runtime: Runtime, items: Sequence[EvalItem], cfg: RunConfig,
                   baseline: Iterable[CaseRecord] = ()) -> SequentialResult:
    """Evaluate ``items`` (this session's, none skipped) in rounds until each stream stops; every evaluated
    example is measured once through ``runtime``, for its test to read. With ``--baseline``, the base results
    come from ``baseline``, and the base is evaluated on the examples it lacks (:attr:`SequentialResult.extended`)."""
    by_key = {(i.suite.name, i.variant.name, i.id): i for i in items}
    examples: dict[str, list[str]] = {}
    for suite, _, example_id in by_key:
        examples.setdefault(suite, [])
        if example_id not in examples[suite]:
            examples[suite].append(example_id)
    families = {family: members for family, (_, members) in cfg.families.items()}
    streams = build_streams(examples, families, cfg.sample_seed)
    alpha = 1 - cfg.confidence
    extend_base = cfg.baseline is not None
    variants = [v for v in cfg.variants if (extend_base and v.name == BASE) or any(k[1] == v.name for k in by_key)]
    adapters = [v.name for v in cfg.variants if v.name != BASE]
    scores: dict[tuple[str, str, str], CaseRecord] = {(r.suite, BASE, r.id): r for r in baseline}
    extended: list[CaseRecord] = []
    tests = gate_tests(cfg.gates, [v.name for v in cfg.variants], streams)
    sizes = {s.name: schedule(s.total, cfg.sequential_first) for s in streams}
    while running := [s for s in streams if s.reason is None]:
        new = {s.name: s.order[s.evaluated:sizes[s.name][s.looks]] for s in running}
        for variant in variants if running[0].looks % 2 == 0 else variants[::-1]:  # the model loaded last goes first
            for stream in running:
                for suite in stream.suites:
                    batch = _items(by_key, [k for k in new[stream.name] if k[0] == suite], variant, extend_base, scores)
                    if batch:
                        stream.seconds += runtime.infer(batch[0].suite, variant, batch)
                        for item in batch:
                            record = scores[(suite, variant.name, item.id)] = runtime.measure(item)[1]
                            if extend_base and variant.name == BASE:
                                extended.append(record)
        for stream in running:
            stream.evaluated += len(new[stream.name])
            stream.looks += 1
        verdicts = decided(tests, scores, alpha)
        for stream in running:
            headline = _look(stream, scores, adapters, tests, alpha)
            gated = [v for t, v in zip(tests, verdicts) if t.stream is stream]
            stream.reason = _stop_reason(stream, gated, headline, cfg.sequential_width, alpha)
    runtime.release()
    return SequentialResult(streams, alpha, cfg.sequential_width, extended)


def _replaced(figures: Figures, make: Callable[[str | None], ConfidenceSequence]) -> Figures:
    def anytime(delta: Any, label: str | None) -> Any:
        cs = make(label)
        lo, hi = cs.interval()
        p = min(1.0, 2 * min(cs.p_value(0.0, "above"), cs.p_value(0.0, "below")))
        return dataclasses.replace(delta, lo=lo, hi=hi, p_value=p, test="anytime-valid confidence sequence (betting)")

    return Figures(overall=anytime(figures.overall, None),
                   groups={g: anytime(d, g) for g, d in figures.groups.items()},
                   clusters={c: anytime(d, c) for c, d in figures.clusters.items()})


def anytime_figures(summary: Summary, result: SequentialResult,
                    records: Iterable[CaseRecord]) -> tuple[Summary, Callable[..., ConfidenceSequence | None]]:
    """The summary with each stopped stream's paired deltas replaced by their confidence sequences (an exhausted
    stream keeps its fixed-n figures), and a lookup ``(suite, group, kind, variant) -> sequence`` for the gates."""
    scores = {(r.suite, r.variant, r.id): r for r in records}
    stopped = {s.name: s for s in result.streams if s.reason != EXHAUSTED}

    def lookup(suite: str, group: str | None, kind: str, variant: str) -> ConfidenceSequence | None:
        stream = result.stream_of(suite)
        if stream is None or stream.name not in stopped:
            return None
        return sequence(stream, scores, kind, variant, *figure_of(stream, suite, group), result.alpha)

    suites = dict(summary.suites)
    for name, s in summary.suites.items():
        stream = result.stream_of(name)
        if stream is None or stream.name not in stopped:
            continue
        deltas = {a: _replaced(f, lambda label, a=a, suite=name: lookup(suite, label, "delta", a))
                  for a, f in s.deltas.items()}
        suites[name] = dataclasses.replace(s, deltas=deltas)
    return dataclasses.replace(summary, suites=suites, sequential=result), lookup
