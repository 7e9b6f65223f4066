"""The data the summary is made of: one :class:`CaseRecord` per example per variant, and :class:`Figures`,
a figure overall, per group and per cluster. Shared by the aggregation (:mod:`evalkit.summary`) and what
it derives (:mod:`evalkit.changes`), so neither imports the other for its types."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BASE = "base"
ALL = "all"


@dataclass(frozen=True)
class CaseRecord:
    """One example evaluated by one variant, as the per-example JSONL stores it.

    ``status`` is ``scored`` (the metric ran: ``score``, ``passed``, ``outcome`` are set), ``skipped``
    (``reason`` says why, e.g. a missing database) or ``error`` (inference or scoring crashed, or the
    example itself is broken). ``output`` is the raw generation and ``logprobs`` the choice log-likelihoods;
    ``extracted`` is what the metric read from them (the SQL statement, the answer letter) and ``expected``
    the gold answer (a multiple-choice letter, Spider's gold SQL). ``input`` is the example's own text
    (the question, with its choices), so a list of flipped examples reads without the data files;
    ``prompt`` is the exact text the model saw, carried to the HTML report but kept out of cases.jsonl
    and baselines (:meth:`stored`), where it would repeat the few-shot part or schema per example.
    ``secondary`` holds other per-example scores the suite reports beside its main one (Spider's
    exact-set match ``em``, the cloze format's ``acc`` and ``acc_norm``), aggregated the same way;
    ``details`` is the metric's evidence (e.g. the answer texts' lengths), stored as is.
    """

    suite: str
    variant: str
    id: str
    group: str
    cluster: str
    template: str
    status: str
    score: float | None = None
    passed: bool | None = None
    outcome: str | None = None
    extracted: str | None = None
    output: str | None = None
    logprobs: tuple[float, ...] | None = None
    reason: str | None = None
    expected: str | None = None
    secondary: dict[str, float] | None = None
    details: dict[str, Any] | None = None
    input: str | None = None
    prompt: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("logprobs") is not None:
            values["logprobs"] = tuple(values["logprobs"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def stored(self) -> dict[str, Any]:
        """The record as files keep it: everything but the prompt."""
        return {k: v for k, v in self.to_dict().items() if k != "prompt"}


@dataclass(frozen=True)
class Figures:
    """A figure (score :class:`Estimate` or :class:`PairedDelta`) overall, per group and per cluster."""

    overall: Any
    groups: dict[str, Any] = field(default_factory=dict)
    clusters: dict[str, Any] = field(default_factory=dict)

    def get(self, label: str | None) -> Any:
        """The figure for ``None``/"all" (overall), a group name, or a cluster name; None if absent."""
        if label in (None, ALL):
            return self.overall
        return self.groups.get(label, self.clusters.get(label))
