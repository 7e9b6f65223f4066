"""What a sequential run (:mod:`evalkit.sequential`) evaluated: its streams, how far each got and why it
stopped, and every look's figures. Plain data, which the summary carries to the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evalkit.records import CaseRecord

DECIDED, NARROW, EXHAUSTED, UNGATED = "decided", "narrow", "exhausted", "ungated"  # why a stream stopped

Key = tuple[str, str]  # (suite, example id)


@dataclass
class Stream:
    """One stream's examples in evaluation order, and how far it got and why it stopped."""

    name: str  # the suite, or the family whose suites it pools
    suites: tuple[str, ...]
    order: list[Key]
    family: bool = False
    evaluated: int = 0
    looks: int = 0
    reason: str | None = None  # DECIDED, NARROW, EXHAUSTED, UNGATED once stopped
    seconds: float = 0.0  # inference time spent on it, all variants
    rounds: list[dict[str, Any]] = field(default_factory=list)  # one row per look, figure and adapter

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def weights(self) -> dict[str, float]:
        """Each suite's weight in the stream's mean: a uniform draw from the pool, weighted so, has the family's
        macro average (every suite weighs the same) as its mean."""
        sizes = {s: sum(key[0] == s for key in self.order) for s in self.suites}
        present = {s: n for s, n in sizes.items() if n}
        return {s: self.total / (len(present) * n) for s, n in present.items()}

    @property
    def saved_seconds(self) -> float:
        """Inference time the stop saved, estimated from this run's seconds per example."""
        return self.seconds / self.evaluated * (self.total - self.evaluated) if self.evaluated else 0.0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "suites": list(self.suites), "total": self.total, "evaluated": self.evaluated,
                "looks": self.looks, "reason": self.reason, "seconds": round(self.seconds, 1),
                "saved_seconds": round(self.saved_seconds, 1), "rounds": self.rounds}


@dataclass
class SequentialResult:
    """What a sequential run evaluated, per stream; ``alpha`` is ``1 - confidence``."""

    streams: list[Stream]
    alpha: float
    width: float | None = None
    extended: list[CaseRecord] = field(default_factory=list)  # base results a --baseline lacked, evaluated here

    def stream_of(self, suite: str) -> Stream | None:
        return next((s for s in self.streams if suite in s.suites or suite == s.name), None)

    def evaluated(self) -> set[Key]:
        return {key for s in self.streams for key in s.order[:s.evaluated]}

    def needed(self, suite: str, example_id: str) -> bool:
        stream = self.stream_of(suite)
        return stream is None or (suite, example_id) in set(stream.order[:stream.evaluated])

    def to_json(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "width": self.width, "streams": [s.describe() for s in self.streams],
                "baseline_extended_by": len(self.extended)}
