"""The baseline file: a base model's per-example results, saved once and reused by later runs.

A CI job that evaluates each new adapter need not rerun the base model: ``--save-baseline base.json``
writes its records with everything that decides them (model fingerprint, data checksums, each suite's
prompt template and comparable settings, the generation budget); ``--baseline base.json`` reads them
back and refuses the file when any of those differs from this run's, so a paired delta always pairs
like with like. Each record must also sit in the group and cluster this run gives its example (another
``--mmlu-categories`` scheme regroups every question), and the records are checked one by one (one
base record per example, scores in 0..1 that agree with ``passed``) and against a checksum over them
all: a hand-edited or merged file would otherwise change figures without a word.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.config import RunConfig
from evalkit.errors import ConfigError
from evalkit.paths import folder_problem
from evalkit.report.files import write_text
from evalkit.suites import Generation
from evalkit.summary import BASE, CaseRecord

BASELINE_FORMAT = "tradeoff-baseline/2"  # 2: records_sha256
STATUSES = ("scored", "skipped", "error")
PASS_AT = 1.0  # every suite's metric passes an example at a score of 1 (MeasuredMetric's threshold)
SHOWN = 3  # problems or examples named in one message


def data_checksums(cfg: RunConfig) -> dict[str, str]:
    return {suite.name: suite.checksum() for suite in cfg.suites}


def comparable_settings(cfg: RunConfig) -> dict[str, Any]:
    """What must be equal for base results to be comparable: each suite's settings, the generation length,
    and the dtype the model runs in here ('auto' resolved: a bf16 baseline does not pair with fp32 runs)."""
    from evalkit.models import pick_device, pick_dtype

    settings: dict[str, Any] = {"dtype": str(pick_dtype(pick_device(), cfg.dtype)).replace("torch.", "")}
    for suite in cfg.suites:
        settings.update({f"{suite.name} {key}": value for key, value in suite.comparable().items()})
        if isinstance(suite.request, Generation):
            settings[f"{suite.name} max new tokens"] = cfg.max_new_tokens
    return settings


def records_checksum(records: Sequence[Mapping[str, Any]]) -> str:
    """sha256 over the stored records (ASCII JSON, keys sorted), so any edit to them shows."""
    return hashlib.sha256(json.dumps(list(records), sort_keys=True).encode("ascii")).hexdigest()


def save_path_problem(path: Path) -> str | None:
    """Why ``--save-baseline`` cannot be written, or None: checked at start-up, not after the whole run."""
    if path.is_dir():
        return f"{path} is a folder, not a file"
    return folder_problem(path.parent)


def _unit(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _record_problems(rows: Sequence[Any], suites: Sequence[str]) -> list[str]:
    """What is wrong with the stored records: not one base record per (suite, id), an unknown suite or
    status, a score outside 0..1 or disagreeing with ``passed``."""
    problems, seen = [], set()
    for number, row in enumerate(rows, start=1):
        record = CaseRecord.from_dict(row)
        where = f"record {number} ({record.suite} {record.id})"
        if record.suite not in suites:
            problems.append(f"{where}: suite {record.suite!r} is none of the baseline's ({', '.join(suites)})")
        if record.variant != BASE:
            problems.append(f"{where}: variant {record.variant!r}, not {BASE!r}")
        if (record.suite, record.id) in seen:
            problems.append(f"{where}: a second record of this example")
        seen.add((record.suite, record.id))
        if record.status not in STATUSES:
            problems.append(f"{where}: status {record.status!r} is none of {', '.join(STATUSES)}")
        if record.status != "scored":
            continue
        if not _unit(record.score):
            problems.append(f"{where}: score {record.score!r} is outside 0..1")
        elif record.passed is not (record.score >= PASS_AT):
            problems.append(f"{where}: passed {record.passed!r} disagrees with score {record.score!r}")
        problems += [f"{where}: {name} score {value!r} is outside 0..1"
                     for name, value in (record.secondary or {}).items() if value is not None and not _unit(value)]
    return problems


def _grouping_problems(cfg: RunConfig, records: Sequence[CaseRecord]) -> list[str]:
    """Records whose example this run puts in another group or cluster: their figures would be compared
    across unlike groups (a base grouped by one MMLU category scheme, the adapter by another)."""
    problems = []
    for suite in cfg.suites:
        here = {ex.id: (ex.group, ex.cluster) for ex in suite.load()}
        moved = [(r, here[r.id]) for r in records if r.suite == suite.name and r.id in here
                 and (r.group, r.cluster) != here[r.id]]
        if moved:
            shown = "; ".join(f"{r.id} is in {r.group}/{r.cluster} there, {group}/{cluster} here"
                              for r, (group, cluster) in moved[:SHOWN])
            problems.append(f"its {suite.name} records group {len(moved)} examples otherwise than this run ({shown}): a "
                            "setting that changes groups or clusters differs, such as --mmlu-categories")
    return problems


def read_baseline(cfg: RunConfig, base_fingerprint: str) -> list[CaseRecord]:
    """The base model's records from ``--baseline``, refused unless data, prompts, model and grouping all
    match, and the records are intact (see the module docstring)."""
    path = cfg.baseline
    fix = "Fix: save a new baseline with this configuration (--save-baseline), or run the base model (drop --baseline)."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != BASELINE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this tradeoff reads {BASELINE_FORMAT!r}")
        problems = _record_problems(data["records"], list(data["data"]))
        if problems:
            raise ValueError("; ".join(problems[:SHOWN]) + (f"; {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""))
        if records_checksum(data["records"]) != data["records_sha256"]:
            raise ValueError("its records do not match their checksum: they were edited after the file was saved")
        for suite, checksum in data_checksums(cfg).items():
            if suite not in data["data"]:
                problems.append(f"it holds no {suite} results")
            elif data["data"][suite] != checksum:
                problems.append(f"its {suite} data checksum {data['data'][suite][:12]}… differs from this data's {checksum[:12]}…")
        for key, value in comparable_settings(cfg).items():
            if data["settings"].get(key) != value:
                problems.append(f"its {key} is {data['settings'].get(key)!r}, this run uses {value!r}")
        if data["model"]["base_fingerprint"] != base_fingerprint:
            problems.append(f"it was made with model {data['model']['spec']!r} (fingerprint {data['model']['base_fingerprint']}), "
                            f"this run's --model {cfg.model!r} has fingerprint {base_fingerprint}")
        names = {s.name for s in cfg.suites}
        records = [CaseRecord.from_dict(r) for r in data["records"] if r["suite"] in names]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--baseline {path}: not a readable tradeoff baseline ({exc}). "
                          "Fix: pass a file written by --save-baseline, unedited (or save it again).") from exc
    if not problems:
        problems = _grouping_problems(cfg, records)
    if problems:
        raise ConfigError(f"--baseline {path} refused: {'; '.join(problems)}. {fix}")
    return records


def write_baseline(cfg: RunConfig, records: Sequence[CaseRecord], models: Mapping[str, Any]) -> None:
    base = models.get(BASE)
    if base is None:
        raise ConfigError(f"--save-baseline {cfg.save_baseline}: the base model ran no test in this session, so there "
                          "is nothing to save. Fix: run without -k/-m filters that exclude the base.")
    cfg.save_baseline.parent.mkdir(parents=True, exist_ok=True)
    stored = [r.stored() for r in records if r.variant == BASE]
    payload = {
        "format": BASELINE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"spec": cfg.model, "base_fingerprint": base["base_fingerprint"]},
        "data": data_checksums(cfg),
        "settings": comparable_settings(cfg),
        "config": cfg.to_json(),
        "records": stored,
        "records_sha256": records_checksum(stored),
    }
    write_text(cfg.save_baseline, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
