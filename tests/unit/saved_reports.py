"""A finished run's report folder without a model: records with known outcomes, summarised, gated and
written by the real report writer, for the tests of what reads a report back (``tradeoff report``, the
GitHub, JUnit and tracker integrations)."""

from __future__ import annotations

import random
from pathlib import Path

from evalkit.gates import GateResult, evaluate_gates, parse_gate
from evalkit.report import write_report
from evalkit.suites import REGISTRY
from evalkit.summary import CaseRecord, Summary, summarize

VARIANTS = ["base", "epoch-1"]
TEMPLATES = {"spider": "spider-chat", "mmlu": "mmlu-0shot"}
SUBJECTS = {"abstract_algebra": "stem", "philosophy": "humanities", "sociology": "social_sciences"}
# One gate that passes and one that fails: the adapter's Spider gain is large, its MMLU score is not 95%.
GATES = ("spider.delta.lo >= 0", "mmlu.score >= 0.95")


def records(seed: int = 0) -> list[CaseRecord]:
    """Spider (with exact-set match as a secondary score) and MMLU outcomes; the adapter gains on Spider."""
    rng = random.Random(seed)
    rows = []
    for variant in VARIANTS:
        for i in range(60):
            score = float(rng.random() < (0.2 if variant == "base" else 0.6))
            rows.append(CaseRecord("spider", variant, f"dev{i:04d}", ("easy", "medium", "hard", "extra")[i % 4],
                                   f"db{i % 3}", "spider-chat", "scored", score=score, passed=score == 1.0,
                                   outcome="match" if score else "wrong_result", secondary={"em": score}))
        for i in range(45):
            subject = list(SUBJECTS)[i % 3]
            score = float(rng.random() < 0.4)
            rows.append(CaseRecord("mmlu", variant, f"{subject}-{i:04d}", SUBJECTS[subject], subject, "mmlu-0shot",
                                   "scored", score=score, passed=score == 1.0, outcome="correct" if score else "wrong"))
    rows.append(CaseRecord("spider", "base", "dev0999", "easy", "wta_1", "spider-chat", "skipped",
                           reason="database file missing"))
    return rows


def write_saved_report(directory: Path) -> tuple[Summary, list[GateResult]]:
    """Write a report folder as a run's end does; return its summary and gate results."""
    layouts = {name: REGISTRY[name].layout for name in TEMPLATES}
    rows = records()
    summary = summarize(rows, VARIANTS, layouts, TEMPLATES, 0.95)
    metrics = {name: layout.metrics for name, layout in layouts.items()}
    gates = evaluate_gates([parse_gate(text, metrics, VARIANTS) for text in GATES], summary)
    meta = {"config": {"model": "smollm2-135m", "variants": {"base": None, "epoch-1": "runs/sql/epoch-1"},
                       "gate_basis": "ci"},
            "models": {"base": {"spec": "smollm2-135m"}}, "versions": {"evalkit": "0.1.0"},
            "warnings": ["epoch-1 was trained on spider dev"]}
    write_report(directory, summary, rows, gates, meta)
    return summary, gates
