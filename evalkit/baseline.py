"""The baseline file: a base model's per-example results, saved once and reused by later runs.

A CI job that evaluates each new adapter need not rerun the base model: ``--save-baseline base.json``
writes its records with everything that decides them (model fingerprint, data checksums, each suite's
prompt template and comparable settings, the generation budget); ``--baseline base.json`` reads them
back and refuses the file when any of those differs from this run's, so a paired delta always pairs
like with like.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.config import RunConfig
from evalkit.errors import ConfigError
from evalkit.suites import Generation
from evalkit.summary import BASE, CaseRecord

BASELINE_FORMAT = "tradeoff-baseline/1"


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


def read_baseline(cfg: RunConfig, base_fingerprint: str) -> list[CaseRecord]:
    """The base model's records from ``--baseline``, refused unless data, prompts and model all match."""
    path = cfg.baseline
    fix = "Fix: save a new baseline with this configuration (--save-baseline), or run the base model (drop --baseline)."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != BASELINE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        problems = []
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
                          "Fix: pass a file written by --save-baseline.") from exc
    if problems:
        raise ConfigError(f"--baseline {path} refused: {'; '.join(problems)}. {fix}")
    return records


def write_baseline(cfg: RunConfig, records: Sequence[CaseRecord], models: Mapping[str, Any]) -> None:
    base = models.get(BASE)
    if base is None:
        raise ConfigError(f"--save-baseline {cfg.save_baseline}: the base model ran no test in this session, so there "
                          "is nothing to save. Fix: run without -k/-m filters that exclude the base.")
    cfg.save_baseline.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": BASELINE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"spec": cfg.model, "base_fingerprint": base["base_fingerprint"]},
        "data": data_checksums(cfg),
        "settings": comparable_settings(cfg),
        "config": cfg.to_json(),
        "records": [r.stored() for r in records if r.variant == BASE],
    }
    cfg.save_baseline.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
