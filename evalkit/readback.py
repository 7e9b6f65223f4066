"""A report folder read back: its ``tradeoff.json`` as the :class:`~evalkit.summary.Summary` and gate
results the renderers take, so ``tradeoff report DIR`` re-renders a finished run without a model, data or
result cache (a CI artifact downloaded on a laptop, a run from last month).

``tradeoff.json`` keeps every figure (NaN written as ``null``); the dataclasses are rebuilt from their
type hints, so a field added to a figure later is read back without touching this module. The suites'
layouts (group titles, group order, which suite is the target) are not in the file: they come from the
suite registry (and its families, with their members in the run), with the title and stratification the
file records; a ``--suite`` file's suite groups by subject.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.changes import Changes
from evalkit.errors import EvalkitError
from evalkit.gates import GateResult
from evalkit.stats import Estimate, PairedDelta
from evalkit.summary import ALL, Counts, Figures, Layout, Summary, SuiteSummary

REPORT_FILE = "tradeoff.json"


class ReportError(EvalkitError):
    """A folder that holds no readable tradeoff report."""


@dataclass(frozen=True)
class SavedReport:
    """A finished run as its report folder keeps it: the summary, the gate results, and the whole
    ``tradeoff.json`` (``doc``: config, models, versions, warnings, answer)."""

    directory: Path
    summary: Summary
    gates: list[GateResult]
    doc: dict[str, Any]


def _decode(kind: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as an instance of the type hint ``kind``: dataclasses field by field (keys
    the class does not know are ignored, missing ones take their defaults), a ``null`` float as NaN."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _decode(next(a for a in args if a is not type(None)), value)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _decode(hints[f.name], value[f.name])
                       for f in dataclasses.fields(kind) if f.init and f.name in value})
    if kind is float:
        return math.nan if value is None else float(value)
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin is tuple:
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_decode(k, v) for k, v in zip(items, value, strict=True))
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    return value


def _figures(kind: type, value: Mapping[str, Any]) -> Figures:
    """A ``{"all", "groups", "clusters"}`` block of ``tradeoff.json`` as :class:`Figures` of ``kind``."""
    return Figures(overall=_decode(kind, value[ALL]),
                   groups={g: _decode(kind, v) for g, v in value.get("groups", {}).items()},
                   clusters={c: _decode(kind, v) for c, v in value.get("clusters", {}).items()})


def _gate(entry: Mapping[str, Any]) -> GateResult:
    """A gate result; ``tradeoff.json`` writes NaN as ``null``, and a judged gate always has a detectable
    effect (NaN when every item scored the same), so its ``null`` is NaN, as the evidence must say."""
    gate = _decode(GateResult, entry)
    return dataclasses.replace(gate, mde=math.nan) if gate.mde is None and gate.verdict != "ERROR" else gate


def known_layouts() -> dict[str, Layout]:
    """The layout of every built-in suite and suite family (e.g. ``forgetting``), by name."""
    from evalkit.suites import FAMILY_LAYOUTS, REGISTRY

    return {**{name: cls.layout for name, cls in REGISTRY.items()}, **FAMILY_LAYOUTS}


def _layout(name: str, entry: Mapping[str, Any], known: Mapping[str, Layout]) -> Layout:
    """The suite's layout: the registry's (or a ``--suite`` file's: grouped by subject, multiple choice),
    with the title, stratification and secondary metrics the file records."""
    layout = known.get(name) or Layout(title=entry["title"], group_title="subject", cluster_title="subject", choices=True)
    stratified_by = entry.get("stratified_by")
    return dataclasses.replace(layout, title=entry["title"], stratified=stratified_by is not None,
                               cluster_title=stratified_by or layout.cluster_title,
                               metrics=tuple(entry.get("secondary", {})) or layout.metrics)


def _members(name: str, suites: Mapping[str, Any]) -> tuple[str, ...]:
    """A suite family's members in the run (the summary averaged those present), else ()."""
    from evalkit.suites import FAMILIES

    return tuple(m for m in FAMILIES.get(name, ()) if m in suites)


def _suite(name: str, entry: Mapping[str, Any], layout: Layout, members: tuple[str, ...]) -> SuiteSummary:
    def per_metric(block: Mapping[str, Mapping[str, Any]], kind: type) -> dict[str, dict[str, Figures]]:
        return {m: {v: _figures(kind, f) for v, f in by_variant.items()} for m, by_variant in block.items()}

    return SuiteSummary(
        suite=name, template=entry.get("template", ""), layout=layout,
        counts={v: _decode(Counts, c) for v, c in entry["counts"].items()},
        scores={v: _figures(Estimate, f) for v, f in entry["scores"].items()},
        deltas={a: _figures(PairedDelta, f) for a, f in entry["deltas"].items()},
        macro={v: _decode(Estimate, e) for v, e in entry.get("macro", {}).items()},
        outcomes=entry.get("outcomes", {}), predicted=entry.get("predicted", {}), expected=entry.get("expected", {}),
        secondary=per_metric(entry.get("secondary", {}), Estimate),
        secondary_deltas=per_metric(entry.get("secondary_deltas", {}), PairedDelta),
        changes={a: _decode(Changes, c) for a, c in entry.get("changes", {}).items()},
        warnings=list(entry.get("warnings", [])), members=members,
    )


def load_report(directory: Path) -> SavedReport:
    """Read ``directory/tradeoff.json`` back; a :class:`ReportError` says what is wrong with the folder."""
    path = directory / REPORT_FILE
    if not path.is_file():
        raise ReportError(f"{directory} holds no {REPORT_FILE}. Fix: pass a report folder written by "
                          "`pytest tests/eval` (--report-dir, default reports/tradeoff).")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path} cannot be read as JSON ({exc}). Fix: pass the folder of a finished run.") from None
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("tradeoff-report/"):
        raise ReportError(f"{path} is not a tradeoff report (no format tradeoff-report/N). Fix: pass the folder "
                          "of a finished run.")
    try:
        known = known_layouts()
        suites = {name: _suite(name, entry, _layout(name, entry, known), _members(name, doc["suites"]))
                  for name, entry in doc["suites"].items()}
        summary = Summary(list(doc["variants"]), suites, float(doc["confidence"]))
        gates = [_gate(g) for g in doc.get("gates", [])]
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{path} ({doc['format']}) does not have the fields this tradeoff reads "
                          f"({type(exc).__name__}: {exc}). Fix: re-render it with the tradeoff version that wrote "
                          f"it ({doc.get('versions', {}).get('evalkit', 'unknown')}).") from None
    return SavedReport(directory, summary, gates, doc)
