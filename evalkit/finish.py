"""The end of a run: records in, summary, gate verdicts and report files out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.config import RunConfig
from evalkit.errors import EvalkitError
from evalkit.gates import GateResult, evaluate_gates
from evalkit.sequential import anytime_figures
from evalkit.streams import SequentialResult
from evalkit.summary import BASE, CaseRecord, Summary, summarize
from evalkit.versions import package_versions

VERSIONED = ("torch", "transformers", "peft", "deepeval", "sqlglot", "pytest", "scipy", "statsmodels")


@dataclass
class Outcome:
    """What a finished run produced; ``error`` says why a file could not be written."""

    summary: Summary
    gates: list[GateResult]
    written: list[Path] = field(default_factory=list)
    error: str | None = None


def finish(cfg: RunConfig, records: Sequence[CaseRecord], baseline: Sequence[CaseRecord],
           models: Mapping[str, dict[str, Any]], inference: Sequence[dict[str, Any]], warnings: Sequence[str],
           started: float, workers: int, sequential: SequentialResult | None = None) -> Outcome:
    """Summarise this run's records (with the baseline's base records for the items that ran), judge the
    gates, and write the report folder and, when asked, the baseline file. A sequential run's stopped suites
    show and are judged on their anytime-valid sequences."""
    from evalkit import __version__
    from evalkit.baseline import data_checksums, write_baseline
    from evalkit.report import write_report

    rows = [r for r in records if not (cfg.baseline and r.variant == BASE)]
    ran = {(r.suite, r.id) for r in rows}
    rows += [r for r in baseline if (r.suite, r.id) in ran]
    variants = [v.name for v in cfg.variants]
    summary = summarize(rows, variants, cfg.layouts, cfg.templates, cfg.confidence, cfg.families)
    anytime = None
    if sequential is not None:
        summary, anytime = anytime_figures(summary, sequential, rows)
    outcome = Outcome(summary, evaluate_gates(cfg.gates, summary, cfg.gate_basis, cfg.gate_correction, anytime))
    meta = {
        "config": cfg.to_json(),
        "models": {v: models[v] for v in variants if v in models},
        "data": data_checksums(cfg),
        "versions": {**package_versions(VERSIONED), "evalkit": __version__},
        "warnings": list(warnings),
        "run": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "seconds": round(time.time() - started, 1), "workers": workers,
                "inference": sorted(inference, key=lambda x: (x["suite"], x["variant"]))},
    }
    if cfg.baseline:
        meta["models"][BASE] = {"from_baseline": str(cfg.baseline)}
    try:
        outcome.written = write_report(cfg.report_dir, summary, rows, outcome.gates, meta)
        if cfg.save_baseline:
            write_baseline(cfg, rows, models)
            outcome.written.append(cfg.save_baseline)
        if cfg.baseline and sequential is not None and sequential.extended:  # a later run reads them from the file
            write_baseline(dataclasses.replace(cfg, save_baseline=cfg.baseline), baseline, models)
            outcome.written.append(cfg.baseline)
    except (OSError, EvalkitError) as exc:
        outcome.error = f"tradeoff could not write its report: {exc}"
    return outcome
