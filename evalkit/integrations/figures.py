"""A finished run's figures as flat name -> value pairs, the form JUnit properties and experiment trackers
store: one set of names for all of them, read off ``tradeoff.json`` so that what a tracker shows equals
what the report says.

Names follow the gates' figure names, under the variant: ``{variant}/{suite}[.{group}][.{metric}].score``
and ``.delta``, with ``.lo``/``.hi`` (the CI), ``.n`` and, for deltas, ``.p_value``; e.g.
``cpu-lora/spider.delta.lo``, ``base/mmlu.stem.score``. Only the overall figure and the groups (Spider
hardness, MMLU category) are named, not every cluster (57 MMLU subjects per variant would drown the rest;
``tradeoff.json`` has them). A gate is ``{variant}/gate/{figure} at least|at most {threshold}``, 1.0 when it
passes and 0.0 when it fails or errs, its verdict in :func:`verdicts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# What every tracker accepts in a name (MLflow's rule, the strictest): letters, digits, _ - . space /
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
_OPS = {">=": "at least", "<=": "at most"}


def _name(variant: str, path: str) -> str:
    return _UNSAFE.sub("_", f"{variant}/{path}")


def _blocks(entry: Mapping[str, Any]) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    """(kind, secondary metric or None, figures per variant) of one suite."""
    yield "score", None, entry["scores"]
    yield "delta", None, entry["deltas"]
    for metric, by_variant in entry.get("secondary", {}).items():
        yield "score", metric, by_variant
    for metric, by_variant in entry.get("secondary_deltas", {}).items():
        yield "delta", metric, by_variant


def figures(doc: Mapping[str, Any]) -> dict[str, float]:
    """Every suite's scores and paired deltas, overall and per group, with CI bounds, n and p-values."""
    out: dict[str, float] = {}
    for suite, entry in doc["suites"].items():
        for kind, metric, by_variant in _blocks(entry):
            for variant, block in by_variant.items():
                for group, figure in [(None, block["all"]), *block.get("groups", {}).items()]:
                    path = ".".join(p for p in (suite, group, metric, kind) if p)
                    stats = {"": figure["delta" if kind == "delta" else "mean"], ".lo": figure["lo"],
                             ".hi": figure["hi"], ".n": figure["n"]}
                    if kind == "delta":
                        stats[".p_value"] = figure["p_value"]
                    out.update({_name(variant, path + suffix): value  # as tradeoff.json has it (n an int)
                                for suffix, value in stats.items() if value is not None})
    return out


def gate_name(gate: Mapping[str, Any]) -> str:
    """``{variant}/gate/{figure} at least|at most {threshold}`` for one entry of ``tradeoff.json``'s gates."""
    path, _, variant = gate["label"].rpartition("@")
    return _name(variant, f"gate/{path} {_OPS.get(gate['op'], gate['op'])} {gate['threshold']:g}")


def verdicts(doc: Mapping[str, Any]) -> dict[str, str]:
    """Each gate's verdict (PASS, FAIL, ERROR) by :func:`gate_name`."""
    return {gate_name(g): g["verdict"] for g in doc.get("gates", [])}


def gate_figures(doc: Mapping[str, Any]) -> dict[str, float]:
    """Each gate as a number a tracker can chart: 1.0 passes, 0.0 fails or errs."""
    return {name: float(verdict == "PASS") for name, verdict in verdicts(doc).items()}


def run_facts(doc: Mapping[str, Any]) -> dict[str, str]:
    """What identifies the run, as text: the model, each adapter, each suite's template, the gates'
    basis, the report's format and the evalkit version."""
    config = doc.get("config", {})
    facts = {"model": str(config.get("model")), "format": str(doc.get("format")),
             "evalkit": str(doc.get("versions", {}).get("evalkit")), "gate_basis": str(config.get("gate_basis"))}
    facts |= {f"adapter/{v}": str(path) for v, path in config.get("variants", {}).items() if path}
    facts |= {f"template/{s}": str(entry.get("template")) for s, entry in doc["suites"].items()}
    return {_UNSAFE.sub("_", k): v for k, v in facts.items()}
