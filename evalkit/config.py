"""One evaluation run's settings: raw option values in, a validated :class:`RunConfig` out.

:func:`parse_run_config` is a pure function of the raw values (strings, and lists for repeatable
options), so every check is unit-tested without pytest; the plugin only gathers the values (command line
> ``TRADEOFF_*`` environment > ``pytest.ini`` > default) and turns a :class:`ConfigError` into a usage error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import ConfigError
from evalkit.gates import Gate, parse_gate
from evalkit.integrations.trackers import check_trackers
from evalkit.models.resolve import DTYPES
from evalkit.suites import FAMILIES, FAMILY_LAYOUTS, REGISTRY, ChoiceFileSuite, Suite, parse_suite_spec
from evalkit.suites.base import parse_count, parse_names
from evalkit.summary import BASE, Layout


@dataclass(frozen=True)
class Option:
    """One plugin option: ``--flag``, ``TRADEOFF_<NAME>`` in the environment, ``tradeoff_<name>`` in pytest.ini."""

    name: str
    help: str
    default: str | None = None
    many: bool = False  # repeatable on the command line; a line list in pytest.ini; ';'-separated in the env
    switch: bool = False  # may be given bare on the command line (``--sequential``), meaning "on"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_name(self) -> str:
        return f"TRADEOFF_{self.name.upper()}"


RUN_OPTIONS = (
    Option("model", "base model: the alias smollm2-135m, a local folder or a hub id", "smollm2-135m"),
    Option("dtype", "auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16 or float16",
           "auto"),
    Option("adapter", "LoRA adapter folder, PATH or NAME=PATH (repeatable; each adds a variant)", many=True),
    Option("suites", "comma-separated suites to run (default: the built-in ones and every --suite)", ""),
    Option("suite", "your own multiple-choice suite, NAME=PATH to a JSONL file (repeatable)", many=True),
    Option("sample_seed", "seed of the stratified samples", "0"),
    Option("data_dir", "folder holding spider/ and mmlu/ (default: TRADEOFF_DATA_DIR or datasets_cache/)"),
    Option("results_cache", "folder of the inference result cache, results.sqlite (default: TRADEOFF_CACHE_DIR "
           "or datasets_cache/)"),
    Option("report_dir", "where tradeoff.json/.md, cases.jsonl and the plots go", "reports/tradeoff"),
    Option("gate", "regression gate such as 'mmlu.delta >= -0.02' (repeatable)", many=True),
    Option("gate_basis", "judge gates on the CI ('ci') or the point estimate ('point')", "ci"),
    Option("gate_correction", "multiple-gate correction: holm or none", "holm"),
    Option("confidence", "confidence level of every interval", "0.95"),
    Option("max_new_tokens", "generation budget per answer of a generating suite (Spider)", "128"),
    Option("batch_size", "inference batch size (default: the engine's)"),
    Option("baseline", "read the base model's results from this file instead of running it"),
    Option("save_baseline", "write the base model's results to this file after the run"),
    Option("backend", "inference backend: hf (transformers) or vllm (vLLM: GPUs, or its CPU build)", "hf"),
    Option("vllm_arg", "vLLM engine argument KEY=VALUE with --backend vllm, e.g. tensor_parallel_size=2 (repeatable)",
           many=True),
    Option("sequential", "evaluate in rounds of growing size and stop each suite as soon as its gates are decided "
           "(anytime-valid confidence sequences; docs/statistics.md): on or off", "off", switch=True),
    Option("sequential_width", "with --sequential: also stop a suite no gate names once each delta's anytime-valid "
           "interval is narrower than this (a fraction: 0.05 is 5 pp)"),
    Option("sequential_first", "with --sequential: examples per suite (per family) in the first round; each later "
           "round covers 1.5 times as many", "100"),
    Option("log_to", "log the run to an experiment tracker: mlflow, wandb or trackio (repeatable; each an optional "
           "extra, configured by its own environment variables)", many=True),
)
SUITE_OPTIONS = tuple(Option(f"{name}_{s.name}", s.help, s.default) for name, cls in REGISTRY.items()
                      for s in cls.settings)
OPTIONS = RUN_OPTIONS + SUITE_OPTIONS


@dataclass(frozen=True)
class Variant:
    name: str
    adapter: Path | None = None


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one evaluation run, validated; ``to_json`` goes into tradeoff.json."""

    model: str
    dtype: str
    variants: tuple[Variant, ...]
    suites: tuple[Suite, ...]
    sample_seed: int
    data_dir: Path
    results_cache: Path
    report_dir: Path
    gates: tuple[Gate, ...]
    gate_basis: str
    gate_correction: str
    confidence: float
    max_new_tokens: int
    batch_size: int | None
    baseline: Path | None
    save_baseline: Path | None
    backend: str = "hf"
    vllm_args: tuple[tuple[str, Any], ...] = ()  # (key, value) pairs for vllm.LLM
    log_to: tuple[str, ...] = ()  # experiment trackers (evalkit.integrations.trackers)
    sequential: bool = False  # rounds until the gates are decided (evalkit.sequential)
    sequential_width: float | None = None  # with sequential: stop an ungated suite once its deltas are this narrow
    sequential_first: int = 100  # with sequential: examples per stream in the first round

    @property
    def templates(self) -> dict[str, str]:
        return {s.name: s.template for s in self.suites}

    @property
    def layouts(self) -> dict[str, Layout]:
        return {s.name: s.layout for s in self.suites}

    @property
    def families(self) -> dict[str, tuple[Layout, tuple[str, ...]]]:
        """Each family with a suite in this run: its layout and its members in this run."""
        names = {s.name for s in self.suites}
        return {family: (FAMILY_LAYOUTS[family], present) for family, members in FAMILIES.items()
                if (present := tuple(m for m in members if m in names))}

    @property
    def run_variants(self) -> tuple[Variant, ...]:
        """The variants this session runs: the base comes from the baseline file when one is given."""
        return tuple(v for v in self.variants if not (v.name == BASE and self.baseline))

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dtype": self.dtype,
            "variants": {v.name: str(v.adapter) if v.adapter else None for v in self.variants},
            "suites": {s.name: s.describe() for s in self.suites},
            "sample_seed": self.sample_seed, "data_dir": str(self.data_dir),
            "results_cache": str(self.results_cache), "report_dir": str(self.report_dir),
            "gates": [g.text for g in self.gates], "gate_basis": self.gate_basis,
            "gate_correction": self.gate_correction, "confidence": self.confidence,
            "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
            "baseline": str(self.baseline) if self.baseline else None,
            "save_baseline": str(self.save_baseline) if self.save_baseline else None,
            "backend": self.backend, "vllm_args": dict(self.vllm_args), "log_to": list(self.log_to),
            "sequential": self.sequential, "sequential_width": self.sequential_width,
            "sequential_first": self.sequential_first,
        }


def _variants(specs: Sequence[str], reserved: set[str]) -> tuple[Variant, ...]:
    variants = [Variant(BASE)]
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = Path(spec.rstrip("/")).name
        if not name or name == BASE or name in reserved or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(f"--adapter {spec!r}: variant name {name!r} is reserved or not usable in test ids. "
                              "Fix: name it explicitly, e.g. --adapter epoch-1=runs/sql/epoch-1 (letters, digits, - _ .).")
        if name in {v.name for v in variants}:
            raise ConfigError(f"--adapter {spec!r}: two adapters are named {name!r}. Fix: use NAME=PATH to tell them apart.")
        if not (Path(path).expanduser() / "adapter_config.json").is_file():
            raise ConfigError(f"--adapter {spec!r}: {path} is not an adapter folder (no adapter_config.json). "
                              "Fix: pass the folder a training run wrote, e.g. runs/<name>/epoch-1.")
        variants.append(Variant(name, Path(path).expanduser()))
    return tuple(variants)


# What a user's suite or adapter cannot be called: the base, and every built-in suite, family and marker
# (``-m easy``, ``--suites=forgetting`` and gates select by these names), read off the registry.
RESERVED = frozenset({BASE, *REGISTRY, *FAMILIES, *(marker for cls in REGISTRY.values() for marker in cls.markers)})


def _own_suites(specs: Sequence[str]) -> list[ChoiceFileSuite]:
    """The ``--suite NAME=PATH`` suites, each under a name of its own: a second file under one name was
    dropped (``--suites=NAME``) or crashed every test, and a marker's name made ``-m easy`` select the file."""
    own: list[ChoiceFileSuite] = []
    for spec in specs:
        suite = parse_suite_spec(spec)
        if suite.name in RESERVED:
            raise ConfigError(f"--suite {spec!r}: the name {suite.name!r} is reserved (the base, or a built-in suite, "
                              f"family or marker). Fix: give your file another name, e.g. --suite my_{suite.name}=...")
        first = next((s for s in own if s.name == suite.name), None)
        if first is not None:
            raise ConfigError(f"--suite {spec!r}: a second suite named {suite.name!r} (the first is {first.path}). "
                              "Fix: give each file a name of its own.")
        own.append(suite)
    return own


def _suites(raw: Mapping[str, Any], data_dir: Path) -> tuple[Suite, ...]:
    own = _own_suites(raw["suite"])
    available = [*REGISTRY, *(s.name for s in own)]
    named = parse_names("--suites", raw["suites"])
    unknown = sorted(set(named) - set(available) - set(FAMILIES))
    if unknown:
        raise ConfigError(f"--suites {raw['suites']!r}: use a comma-separated subset of {', '.join(available)}, "
                          f"or a family ({', '.join(FAMILIES)}) (add your own with --suite NAME=PATH).")
    if named:
        chosen = tuple(dict.fromkeys(m for name in named for m in FAMILIES.get(name, (name,))))
        missing = [name for name in chosen if name in REGISTRY and not REGISTRY[name].available(data_dir)]
        if missing:
            raise ConfigError(f"--suites: no data for {', '.join(missing)} under {data_dir}. Fix: run `python -m "
                              "evalkit.data fetch --from <folder holding it>` (e.g. ../shared/data), or pass --data-dir.")
    else:  # every suite whose data is there: a folder with only Spider and MMLU runs those
        chosen = tuple(name for name in available if name not in REGISTRY or REGISTRY[name].available(data_dir))
    built_in = {name: cls({s.name: raw.get(f"{name}_{s.name}") for s in cls.settings}, data_dir)
                for name, cls in REGISTRY.items() if name in chosen}
    return tuple(built_in.get(name) or next(s for s in own if s.name == name) for name in chosen)


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise ConfigError(f"--confidence {text!r}: use a level between 0 and 1, e.g. 0.95.")
    return value


def _vllm_args(backend: str, specs: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``--vllm-arg KEY=VALUE`` pairs; a value is read as JSON (2, 0.9, true) when it parses, else as text."""
    if backend not in ("hf", "vllm"):
        raise ConfigError(f"--backend {backend!r}: use hf (transformers) or vllm.")
    if specs and backend != "vllm":
        raise ConfigError(f"--vllm-arg {specs[0]!r} without --backend vllm. Fix: add --backend vllm, or drop it.")
    pairs = []
    for spec in specs:
        key, sep, text = spec.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"--vllm-arg {spec!r}: expected KEY=VALUE with a vllm.LLM argument name, "
                              "e.g. tensor_parallel_size=2.")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        pairs.append((key.strip(), value))
    return tuple(pairs)


SWITCH_ON, SWITCH_OFF = ("on", "true", "1", "yes"), ("off", "false", "0", "no", "")


def _switch(flag: str, text: str) -> bool:
    value = str(text).strip().lower()
    if value not in SWITCH_ON + SWITCH_OFF:
        raise ConfigError(f"{flag} {text!r}: use on or off.")
    return value in SWITCH_ON


def _sequential(raw: Mapping[str, Any], gates: Sequence[Gate], basis: str) -> tuple[bool, float | None]:
    """``--sequential`` and ``--sequential-width``, checked against what a sequential run can decide."""
    on = _switch("--sequential", raw["sequential"] or "off")
    width = None
    if raw["sequential_width"]:
        try:
            width = float(raw["sequential_width"])
        except ValueError:
            width = -1.0
        if not 0 < width <= 2:
            raise ConfigError(f"--sequential-width {raw['sequential_width']!r}: use a width in pp as a fraction "
                              "between 0 and 2, e.g. 0.05 for 5 pp.")
        if not on:
            raise ConfigError("--sequential-width without --sequential. Fix: add --sequential, or drop the width.")
    if not on:
        return False, None
    if basis != "ci":
        raise ConfigError("--sequential with --gate-basis point: a sequential run decides gates on anytime-valid "
                          "intervals. Fix: drop --gate-basis point, or --sequential.")
    if not gates and width is None:
        raise ConfigError("--sequential needs something to decide: no --gate and no --sequential-width. Fix: add a "
                          "gate such as --gate \"mmlu.delta >= -0.02\", or --sequential-width 0.05.")
    for gate in gates:
        if gate.metric is not None:
            raise ConfigError(f"Gate {gate.text!r} with --sequential: a sequential run decides gates on each suite's "
                              f"own score, not on its secondary metric {gate.metric!r}. Fix: gate the suite's score, "
                              "or drop --sequential.")
    return True, width


def parse_run_config(raw: Mapping[str, Any], data_dir: Path, results_cache: Path) -> RunConfig:
    """Validate raw option values (names as in :data:`OPTIONS`; absent ones take their defaults).

    ``data_dir`` and ``results_cache`` are the resolved folders (see :mod:`evalkit.paths`). A bad value
    raises :class:`ConfigError` naming the option and the fix.
    """
    raw = {opt.name: raw.get(opt.name, [] if opt.many else opt.default) for opt in OPTIONS}
    suites = _suites(raw, data_dir)
    basis, correction = raw["gate_basis"], raw["gate_correction"]
    if basis not in ("ci", "point") or correction not in ("holm", "none"):
        raise ConfigError(f"--gate-basis {basis!r} / --gate-correction {correction!r}: use ci|point and holm|none.")
    baseline = Path(raw["baseline"]).expanduser() if raw["baseline"] else None
    save_baseline = Path(raw["save_baseline"]).expanduser() if raw["save_baseline"] else None
    if baseline and save_baseline:
        raise ConfigError("--baseline and --save-baseline together: a run either reads the base model's results or "
                          "writes them. Fix: drop one.")
    reserved = RESERVED | {name for s in suites for name in s.all_markers()}
    variants = _variants(raw["adapter"], reserved)
    gated = {s.name: s.layout.metrics for s in suites}
    gated |= {family: () for family, members in FAMILIES.items() if set(members) & set(gated)}
    gates = tuple(parse_gate(text, gated, {v.name for v in variants}) for text in raw["gate"])
    sequential, width = _sequential(raw, gates, basis)
    if raw["dtype"] not in DTYPES:
        raise ConfigError(f"--dtype {raw['dtype']!r}: use one of {', '.join(DTYPES)}.")
    return RunConfig(
        model=raw["model"],
        dtype=raw["dtype"],
        variants=variants,
        suites=suites,
        sample_seed=parse_count("--sample-seed", raw["sample_seed"]),
        data_dir=data_dir,
        results_cache=results_cache,
        report_dir=Path(raw["report_dir"]).expanduser(),
        gates=gates,
        gate_basis=basis,
        gate_correction=correction,
        confidence=_level(raw["confidence"]),
        max_new_tokens=parse_count("--max-new-tokens", raw["max_new_tokens"], minimum=1),
        batch_size=parse_count("--batch-size", raw["batch_size"], minimum=1) if raw["batch_size"] else None,
        baseline=baseline,
        save_baseline=save_baseline,
        backend=raw["backend"],
        vllm_args=_vllm_args(raw["backend"], raw["vllm_arg"]),
        log_to=check_trackers(raw["log_to"]),
        sequential=sequential,
        sequential_width=width,
        sequential_first=parse_count("--sequential-first", raw["sequential_first"], minimum=1),
    )
