"""The pytest plugin: one test per example per variant, batched inference, the trade-off summary, gates.

Run the evaluation with ``pytest tests/eval --model smollm2-135m --adapter runs/sql/epoch-1`` (or
``deepeval test run tests/eval ...``). The plugin

- parametrizes every test that asks for the ``spider_item`` / ``mmlu_item`` fixture with the sampled
  examples of each variant (the base model, then one per ``--adapter``), with ids such as
  ``epoch-1-dev0042-concert_singer`` and markers for the suite, the Spider hardness or MMLU category,
  and the variant; Spider examples whose database is missing are collected as skipped, with the reason;
- runs inference once per (variant, suite), on the first test that needs it, over exactly the tests
  still selected after ``-k``/``-m`` (so filters shrink inference), through the engine's result cache
  (so an interrupted run resumes);
- records each scored example in the test report (``user_properties``), which pytest-xdist carries to
  the controller, so ``-n 2`` and a serial run summarise the same records; under xdist it switches the
  default ``--dist load`` to ``loadgroup`` so one worker runs all tests of a (variant, suite) batch;
- at the end builds the summary (:mod:`evalkit.report`), judges the gates (:mod:`evalkit.gates`),
  writes the report folder and, when gates were given, lets the gates decide the exit status.

Options come from the command line, else ``TRADEOFF_*`` environment variables, else ``pytest.ini``
(``tradeoff_<name>``), else the defaults (see :data:`OPTIONS` and the README's plugin section).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import ConfigError, EvalkitError
from evalkit.gates import Gate, evaluate_gates, parse_gate
from evalkit.report import BASE, SUITES, CaseRecord, Summary, render_text, summarize, write_report

# ------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    default: str | None = None
    many: bool = False  # repeatable on the command line; a line list in pytest.ini; ';'-separated in the env
    env: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_name(self) -> str:
        return self.env or f"TRADEOFF_{self.name.upper()}"


OPTIONS = (
    Option("model", "base model: the alias smollm2-135m, a local folder or a hub id", "smollm2-135m"),
    Option("adapter", "LoRA adapter folder, PATH or NAME=PATH (repeatable; each adds a variant)", many=True),
    Option("suites", "comma-separated suites to run", "spider,mmlu"),
    Option("spider_split", "Spider split: dev or train", "dev"),
    Option("spider_template", "Spider prompt template (spider-chat, spider-fewshot)", "spider-chat"),
    Option("spider_sample", "Spider examples sampled per hardness level, or 'all'", "20"),
    Option("spider_dbs", "comma-separated Spider databases to draw from (default: all)", ""),
    Option("mmlu_shots", "MMLU dev shots per prompt, 0-5", "5"),
    Option("mmlu_sample", "MMLU questions sampled per subject, or 'all'", "5"),
    Option("mmlu_subjects", "comma-separated MMLU subjects (default: all 57)", ""),
    Option("sample_seed", "seed of the stratified samples", "0"),
    Option("data_dir", "folder holding spider/ and mmlu/ (default: TRADEOFF_DATA_DIR or datasets_cache/)"),
    Option("results_cache", "folder of the inference result cache, results.sqlite (default: TRADEOFF_CACHE_DIR "
           "or datasets_cache/)"),
    Option("report_dir", "where tradeoff.json/.md, cases.jsonl and the plots go", "reports/tradeoff"),
    Option("gate", "regression gate such as 'mmlu.delta >= -0.02' (repeatable)", many=True),
    Option("gate_basis", "judge gates on the CI ('ci') or the point estimate ('point')", "ci"),
    Option("gate_correction", "multiple-gate correction: holm or none", "holm"),
    Option("confidence", "confidence level of every interval", "0.95"),
    Option("max_new_tokens", "generation budget per Spider answer", "128"),
    Option("batch_size", "inference batch size (default: the engine's)"),
    Option("baseline", "read the base model's results from this file instead of running it"),
    Option("save_baseline", "write the base model's results to this file after the run"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tradeoff", "tradeoff evaluation (base model vs adapters)")
    for opt in OPTIONS:
        group.addoption(opt.flag, dest=f"tradeoff_{opt.name}", action="append" if opt.many else "store",
                        default=None, help=f"{opt.help} [env {opt.env_name}; ini tradeoff_{opt.name}]")
        parser.addini(f"tradeoff_{opt.name}", opt.help, type="linelist" if opt.many else "string", default=None)


def _raw_option(config: pytest.Config, opt: Option) -> Any:
    """Command line > environment > pytest.ini > default."""
    value = config.getoption(f"tradeoff_{opt.name}")
    if value is not None:
        return value
    env = os.environ.get(opt.env_name)
    if env:
        return [v.strip() for v in env.split(";") if v.strip()] if opt.many else env
    ini = config.getini(f"tradeoff_{opt.name}")
    if ini:
        return ini
    return [] if opt.many else opt.default


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Variant:
    name: str
    adapter: Path | None = None


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one evaluation run, validated; ``to_json`` goes into tradeoff.json."""

    model: str
    variants: tuple[Variant, ...]
    suites: tuple[str, ...]
    spider_split: str
    spider_template: str
    spider_sample: int | None
    spider_dbs: tuple[str, ...]
    mmlu_shots: int
    mmlu_sample: int | None
    mmlu_subjects: tuple[str, ...]
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

    @property
    def mmlu_template(self) -> str:
        return f"mmlu-{self.mmlu_shots}shot"

    @property
    def templates(self) -> dict[str, str]:
        return {"spider": self.spider_template, "mmlu": self.mmlu_template}

    @property
    def run_variants(self) -> tuple[Variant, ...]:
        """The variants this session runs: the base comes from the baseline file when one is given."""
        return tuple(v for v in self.variants if not (v.name == BASE and self.baseline))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["variants"] = {v.name: str(v.adapter) if v.adapter else None for v in self.variants}
        data["gates"] = [g.text for g in self.gates]
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def _int(name: str, text: str, *, allow_all: bool = False, minimum: int = 0) -> int | None:
    if allow_all and text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        hint = f"an integer >= {minimum}" + (" or 'all'" if allow_all else "")
        raise ConfigError(f"--{name.replace('_', '-')} {text!r}: expected {hint}.")
    return value


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _variants(specs: Sequence[str]) -> tuple[Variant, ...]:
    reserved = {*SUITES, "stem", "humanities", "social_sciences", "other", "easy", "medium", "hard", "extra"}
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


def training_data_warnings(cfg: RunConfig) -> list[str]:
    """One warning per adapter whose ``training.json`` says it was trained on the Spider split this run scores
    (the seed reports fine-tuned on dev and evaluated on dev): its Spider figures measure recall of the
    answers, not skill. Adapters without a ``training.json`` are not judged."""
    from evalkit.models import adapter_provenance

    if "spider" not in cfg.suites:
        return []
    warnings = []
    for variant in cfg.variants:
        facts = adapter_provenance(variant.adapter) if variant.adapter else None
        if not facts:
            continue
        same_split = facts.get("data_split") == cfg.spider_split
        if same_split or (cfg.spider_split == "dev" and facts.get("trained_on_eval_data")):
            seen = f"Spider {cfg.spider_split}" if same_split else "questions of Spider dev"
            warnings.append(f"adapter {variant.name!r} was trained on {seen} (its training.json), which this run "
                            f"scores: its Spider figures and deltas are not held-out results. Fix: train with "
                            f"data.split: train and allow_eval_split: false.")
    return warnings


def load_config(config: pytest.Config) -> RunConfig:
    """Read and validate every option; a bad value raises :class:`ConfigError` naming the option and the fix."""
    from evalkit.paths import cache_dir, data_dir
    from evalkit.prompts import TEMPLATES

    raw = {opt.name: _raw_option(config, opt) for opt in OPTIONS}
    suites = _csv(raw["suites"])
    unknown = sorted(set(suites) - set(SUITES))
    if not suites or unknown:
        raise ConfigError(f"--suites {raw['suites']!r}: use a comma-separated subset of {', '.join(SUITES)}.")
    if raw["spider_template"] not in TEMPLATES or not raw["spider_template"].startswith("spider"):
        raise ConfigError(f"--spider-template {raw['spider_template']!r}: use one of "
                          f"{', '.join(t for t in TEMPLATES if t.startswith('spider'))}.")
    if raw["spider_split"] not in ("dev", "train"):
        raise ConfigError(f"--spider-split {raw['spider_split']!r}: use dev or train.")
    shots = _int("mmlu_shots", raw["mmlu_shots"])
    if shots > 5:
        raise ConfigError(f"--mmlu-shots {shots}: MMLU's dev split has 5 questions per subject; use 0-5.")
    basis, correction = raw["gate_basis"], raw["gate_correction"]
    if basis not in ("ci", "point") or correction not in ("holm", "none"):
        raise ConfigError(f"--gate-basis {basis!r} / --gate-correction {correction!r}: use ci|point and holm|none.")
    try:
        confidence = float(raw["confidence"])
    except ValueError:
        confidence = -1.0
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence {raw['confidence']!r}: use a level between 0 and 1, e.g. 0.95.")
    baseline = Path(raw["baseline"]).expanduser() if raw["baseline"] else None
    save_baseline = Path(raw["save_baseline"]).expanduser() if raw["save_baseline"] else None
    if baseline and save_baseline:
        raise ConfigError("--baseline and --save-baseline together: a run either reads the base model's results or "
                          "writes them. Fix: drop one.")
    return RunConfig(
        model=raw["model"],
        variants=_variants(raw["adapter"]),
        suites=suites,
        spider_split=raw["spider_split"],
        spider_template=raw["spider_template"],
        spider_sample=_int("spider_sample", raw["spider_sample"], allow_all=True, minimum=1),
        spider_dbs=_csv(raw["spider_dbs"]),
        mmlu_shots=shots,
        mmlu_sample=_int("mmlu_sample", raw["mmlu_sample"], allow_all=True, minimum=1),
        mmlu_subjects=_csv(raw["mmlu_subjects"]),
        sample_seed=_int("sample_seed", raw["sample_seed"]),
        data_dir=data_dir(raw["data_dir"]),
        results_cache=cache_dir(raw["results_cache"]),
        report_dir=Path(raw["report_dir"]).expanduser(),
        gates=tuple(parse_gate(text) for text in raw["gate"]),
        gate_basis=basis,
        gate_correction=correction,
        confidence=confidence,
        max_new_tokens=_int("max_new_tokens", raw["max_new_tokens"], minimum=1),
        batch_size=_int("batch_size", raw["batch_size"], minimum=1) if raw["batch_size"] else None,
        baseline=baseline,
        save_baseline=save_baseline,
    )


# ---------------------------------------------------------------------------------------- the items


@dataclass(frozen=True)
class EvalItem:
    """One example for one variant: what a test in tests/eval receives."""

    suite: str
    variant: Variant
    example: Any  # SpiderExample or MMLUQuestion
    group: str  # Spider hardness or MMLU category
    cluster: str  # Spider database or MMLU subject

    @property
    def id(self) -> str:
        return self.example.id

    @property
    def test_id(self) -> str:
        suffix = f"-{self.cluster}" if self.suite == "spider" else ""
        return f"{self.variant.name}-{self.example.id}{suffix}"

    @property
    def skip_reason(self) -> str | None:
        return getattr(self.example, "skip_reason", None)


def _stratified(strata: dict[str, list[Any]], per_stratum: int | None, seed: int) -> list[Any]:
    """``per_stratum`` examples drawn at random from each stratum (all when None), back in file order."""
    rng = random.Random(seed)
    chosen = []
    for name in sorted(strata):
        members = strata[name]
        chosen += members if per_stratum is None or per_stratum >= len(members) else rng.sample(members, per_stratum)
    return sorted(chosen, key=lambda ex: ex.id)


def plan_examples(cfg: RunConfig, suite: str) -> list[tuple[Any, str, str]]:
    """(example, group, cluster) for one suite: the stratified sample every variant is evaluated on."""
    if suite == "spider":
        from evalkit.data.spider import load_spider

        examples = load_spider(cfg.spider_split, cfg.data_dir)
        if cfg.spider_dbs:
            unknown = sorted(set(cfg.spider_dbs) - {ex.db_id for ex in examples})
            if unknown:
                raise ConfigError(f"--spider-dbs: no {cfg.spider_split} examples on {', '.join(unknown)}. "
                                  "Fix: use database ids from the split (e.g. concert_singer).")
            examples = [ex for ex in examples if ex.db_id in cfg.spider_dbs]
        strata: dict[str, list[Any]] = {}
        for ex in examples:
            strata.setdefault(ex.hardness, []).append(ex)
        return [(ex, ex.hardness, ex.db_id) for ex in _stratified(strata, cfg.spider_sample, cfg.sample_seed)]
    from evalkit.data.mmlu import load_mmlu

    try:
        questions = load_mmlu("test", cfg.data_dir, cfg.mmlu_subjects or None)
    except EvalkitError as exc:
        raise ConfigError(f"--mmlu-subjects: {exc}") from exc
    strata = {}
    for q in questions:
        strata.setdefault(q.subject, []).append(q)
    return [(q, q.category, q.subject) for q in _stratified(strata, cfg.mmlu_sample, cfg.sample_seed)]


def data_checksums(cfg: RunConfig) -> dict[str, str]:
    from evalkit.data import mmlu, spider

    sums = {}
    if "spider" in cfg.suites:
        sums["spider"] = spider.checksum(cfg.spider_split, cfg.data_dir)
    if "mmlu" in cfg.suites:
        sums["mmlu"] = mmlu.checksum("test", cfg.data_dir)
    return sums


# ------------------------------------------------------------------------------------------ baseline

BASELINE_FORMAT = "tradeoff-baseline/1"


def _baseline_settings(cfg: RunConfig) -> dict[str, Any]:
    """What must be equal for base results to be comparable: prompts and generation length per suite."""
    settings: dict[str, Any] = {f"{s} prompt template": cfg.templates[s] for s in cfg.suites}
    if "spider" in cfg.suites:
        settings["spider max new tokens"] = cfg.max_new_tokens
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
        for key, value in _baseline_settings(cfg).items():
            if data["settings"].get(key) != value:
                problems.append(f"its {key} is {data['settings'].get(key)!r}, this run uses {value!r}")
        if data["model"]["base_fingerprint"] != base_fingerprint:
            problems.append(f"it was made with model {data['model']['spec']!r} (fingerprint {data['model']['base_fingerprint']}), "
                            f"this run's --model {cfg.model!r} has fingerprint {base_fingerprint}")
        records = [CaseRecord.from_dict(r) for r in data["records"] if r["suite"] in cfg.suites]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--baseline {path}: not a readable tradeoff baseline ({exc}). "
                          "Fix: pass a file written by --save-baseline.") from exc
    if problems:
        raise ConfigError(f"--baseline {path} refused: {'; '.join(problems)}. {fix}")
    return records


def write_baseline(cfg: RunConfig, records: Sequence[CaseRecord], models: dict[str, Any]) -> None:
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
        "settings": _baseline_settings(cfg),
        "config": cfg.to_json(),
        "records": [r.to_dict() for r in records if r.variant == BASE],
    }
    cfg.save_baseline.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------- inference

RECORD_KEY = pytest.StashKey["dict[str, Any]"]()
STATE_KEY = pytest.StashKey["State"]()
SPIDER_STOP = (";",)
MMLU_CHOICES = (" A", " B", " C", " D")


class Runtime:
    """Per process: the loaded model (one at a time), prompts and outputs per (suite, variant) batch."""

    def __init__(self, cfg: RunConfig, session: pytest.Session, baseline_ids: dict[str, set[str]] | None) -> None:
        from evalkit.inference import ResultCache

        if _is_worker(session.config):  # workers share the cores instead of each taking all of them
            import torch

            workers = int(session.config.workerinput.get("workercount", 1))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        self.cfg = cfg
        self.session = session
        self.baseline_ids = baseline_ids
        self.cache = ResultCache(cfg.results_cache / "results.sqlite")
        self.model: Any = None
        self.prompts: dict[tuple[str, str], dict[str, str]] = {}
        self.outputs: dict[tuple[str, str], dict[str, Any]] = {}
        self.failures: dict[tuple[str, str], BaseException] = {}
        self.pending: list[tuple[str, Any]] = []  # model and inference facts for the next test report

    def _load(self, variant: Variant) -> Any:
        from evalkit.models import adapter_provenance, load_model

        if self.model is None or self.model.adapter != variant.adapter:
            self.model = None
            gc.collect()
            self.model = load_model(self.cfg.model, variant.adapter)
            m = self.model
            self.pending.append(("tradeoff-model", {"variant": variant.name, "spec": m.spec,
                                                    "adapter": str(m.adapter) if m.adapter else None,
                                                    "base_fingerprint": m.base_fingerprint,
                                                    "adapter_fingerprint": m.adapter_fingerprint,
                                                    "fingerprint": m.fingerprint, "device": m.device,
                                                    "training": adapter_provenance(m.adapter) if m.adapter else None}))
        return self.model

    def _selected(self, suite: str, variant: str) -> list[EvalItem]:
        items = []
        for node in self.session.items:
            item = eval_item_of(node)
            if item and item.suite == suite and item.variant.name == variant and not item.skip_reason:
                items.append(item)
        return items

    def _check_baseline(self, suite: str, items: Sequence[EvalItem]) -> None:
        if self.baseline_ids is None:
            return
        missing = [i.id for i in items if i.id not in self.baseline_ids.get(suite, set())]
        if missing:
            raise ConfigError(
                f"--baseline {self.cfg.baseline} has no base result for {len(missing)} of the {len(items)} {suite} "
                f"items this run evaluates (e.g. {', '.join(missing[:3])}). Fix: save the baseline with the same "
                "--spider-sample/--mmlu-sample/--sample-seed/--spider-dbs/--mmlu-subjects, or with 'all'."
            )

    def _uncaptured(self) -> Any:
        """Let the progress bar reach the terminal: inference runs inside the first test of a batch, whose
        output pytest captures (and shows only for failures)."""
        capture = self.session.config.pluginmanager.getplugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    def _infer(self, suite: str, variant: Variant) -> None:
        from evalkit.inference import choice_logprobs, generate
        from evalkit.prompts import build_prompt

        items = self._selected(suite, variant.name)
        self._check_baseline(suite, items)
        model = self._load(variant)
        template = self.cfg.templates[suite]
        prompts = {i.id: build_prompt(template, i.example, model.tokenizer).text for i in items}
        texts = list(prompts.values())
        started = time.perf_counter()
        label = f"tradeoff {suite} {variant.name}"
        with self._uncaptured():  # a full run infers for an hour: show its progress bar (items/s, ETA)
            if suite == "spider":
                results = generate(model, texts, max_new_tokens=self.cfg.max_new_tokens, stop=list(SPIDER_STOP),
                                   batch_size=self.cfg.batch_size, cache=self.cache, progress=label)
            else:
                results = choice_logprobs(model, texts, list(MMLU_CHOICES), batch_size=self.cfg.batch_size,
                                          cache=self.cache, progress=label)
        self.pending.append(("tradeoff-inference", {"suite": suite, "variant": variant.name, "prompts": len(texts),
                                                    "seconds": round(time.perf_counter() - started, 3)}))
        self.prompts[(suite, variant.name)] = prompts
        self.outputs[(suite, variant.name)] = dict(zip(prompts, results))

    def output(self, item: EvalItem) -> Any:
        key = (item.suite, item.variant.name)
        if key in self.failures:
            raise self.failures[key]
        if key not in self.outputs:
            try:
                self._infer(item.suite, item.variant)
            except BaseException as exc:  # remembered, so the batch's other tests fail fast with the same error
                self.failures[key] = exc
                raise
        return self.outputs[key][item.id]

    def prompt(self, item: EvalItem) -> str:
        self.output(item)
        return self.prompts[(item.suite, item.variant.name)][item.id]


def eval_item_of(node: pytest.Item) -> EvalItem | None:
    params = getattr(getattr(node, "callspec", None), "params", {})
    for name in ("spider_item", "mmlu_item"):
        if isinstance(params.get(name), EvalItem):
            return params[name]
    return None


class Evaluation:
    """The ``tradeoff`` fixture: outputs for one test's item and the recording of its score."""

    def __init__(self, runtime: Runtime, node: pytest.Item) -> None:
        self._runtime = runtime
        self._node = node

    def output(self, item: EvalItem) -> Any:
        """The model's output for the item: generated text (Spider) or the 4 choice log-probs (MMLU)."""
        return self._runtime.output(item)

    def prompt(self, item: EvalItem) -> str:
        return self._runtime.prompt(item)

    def template(self, item: EvalItem) -> str:
        return self._runtime.cfg.templates[item.suite]

    def record(self, item: EvalItem, test_case: Any, metric: Any) -> None:
        """Measure ``metric`` on the case and keep the result for the report.

        deepeval's ``assert_test`` measures a *copy* of the metric, so the structured result (outcome,
        extracted SQL or letter) would be lost; the test calls this first, then ``assert_test``.
        """
        metric.measure(test_case)
        if item.suite == "spider":
            result = metric.result
            fields = dict(outcome=result.outcome.value, extracted=result.extracted_sql, output=result.raw_output)
            status = "error" if result.outcome.value == "gold_error" else "scored"
        else:
            fields = dict(outcome=metric.outcome, extracted=metric.predicted,
                          logprobs=tuple(metric.logprobs) if metric.logprobs else None)
            status = "scored"
        self._node.stash[RECORD_KEY] = _base_record(item, self.template(item), status) | fields | dict(
            score=float(metric.score), passed=bool(metric.success), reason=metric.reason)


def _base_record(item: EvalItem, template: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return CaseRecord(item.suite, item.variant.name, item.id, item.group, item.cluster, template, status,
                      reason=reason).to_dict()


# ------------------------------------------------------------------------------------- pytest hooks


@dataclass
class State:
    """Per session: the configuration, the planned items, and (on the controller) the collected records."""

    cfg: RunConfig
    plan: dict[str, list[tuple[Any, str, str]]] = field(default_factory=dict)
    baseline: list[CaseRecord] = field(default_factory=list)
    runtime: Runtime | None = None
    records: list[CaseRecord] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    inference: list[dict[str, Any]] = field(default_factory=list)
    other_failures: int = 0
    started: float = field(default_factory=time.time)
    summary: Summary | None = None
    gate_results: list[Any] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    finish_error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect records: on the controller under xdist (reports carry them), else in this process."""
        scored = False
        for name, value in report.user_properties:
            if name == "tradeoff":
                self.records.append(CaseRecord.from_dict(value))
                scored = value["status"] == "scored"
            elif name == "tradeoff-model":
                self.models[value["variant"]] = {k: v for k, v in value.items() if k != "variant"}
            elif name == "tradeoff-inference":
                self.inference.append(value)
        if report.failed and not scored:
            self.other_failures += 1


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker, text in (("spider", "Spider text-to-SQL execution accuracy"), ("mmlu", "MMLU multiple choice"),
                         ("stem", "MMLU STEM subjects"), ("humanities", "MMLU humanities subjects"),
                         ("social_sciences", "MMLU social-science subjects"), ("other", "MMLU other subjects"),
                         ("easy", "Spider easy"), ("medium", "Spider medium"), ("hard", "Spider hard"),
                         ("extra", "Spider extra hard")):
        config.addinivalue_line("markers", f"{marker}: {text} (tradeoff)")
    try:
        cfg = load_config(config)
        warnings = training_data_warnings(cfg)
    except EvalkitError as exc:
        raise pytest.UsageError(str(exc)) from exc
    state = config.stash[STATE_KEY] = State(cfg=cfg, warnings=warnings)
    config.pluginmanager.register(state, "tradeoff-state")
    for variant in cfg.variants:
        config.addinivalue_line("markers", f"{variant.name}: tests of variant {variant.name} (tradeoff)")
    if _is_worker(config):
        if config.workerinput.get("tradeoff_loadgroup"):
            config.option.loadgroup = True  # xdist adds the group to node ids, which the controller schedules by
    elif getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Training-data warnings before the run, not only after hours of inference."""
    state = config.stash.get(STATE_KEY, None)
    return [f"tradeoff WARNING (training data): {w}" for w in state.warnings] if state else []


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell workers that tests are grouped per (variant, suite) batch."""
    node.workerinput["tradeoff_loadgroup"] = node.config.getoption("dist") == "loadgroup"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, suite in (("spider_item", "spider"), ("mmlu_item", "mmlu")):
        if fixture not in metafunc.fixturenames:
            continue
        state = metafunc.config.stash[STATE_KEY]
        cfg = state.cfg
        if suite not in cfg.suites:
            metafunc.parametrize(fixture, [])  # deselected in pytest_collection_modifyitems
            continue
        if suite not in state.plan:
            try:
                state.plan[suite] = plan_examples(cfg, suite)
            except EvalkitError as exc:
                raise pytest.UsageError(str(exc)) from exc
        params = []
        for variant in cfg.run_variants:
            for example, group, cluster in state.plan[suite]:
                item = EvalItem(suite, variant, example, group, cluster)
                marks = [getattr(pytest.mark, suite), getattr(pytest.mark, group), getattr(pytest.mark, variant.name),
                         pytest.mark.xdist_group(f"{variant.name}-{suite}")]
                if item.skip_reason:
                    marks.append(pytest.mark.skip(reason=item.skip_reason))
                params.append(pytest.param(item, id=item.test_id, marks=marks))
        metafunc.parametrize(fixture, params)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the placeholder of a suite that --suites turned off."""
    empty = [i for i in items if {"spider_item", "mmlu_item"} & set(getattr(i, "fixturenames", ()))
             and eval_item_of(i) is None]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [i for i in items if i not in empty]


@pytest.fixture(scope="session")
def _tradeoff_runtime(request: pytest.FixtureRequest) -> Runtime:
    state = request.config.stash[STATE_KEY]
    cfg = state.cfg
    baseline_ids = None
    if cfg.baseline:
        baseline_ids = {}
        for record in state.baseline or _load_baseline(state):
            baseline_ids.setdefault(record.suite, set()).add(record.id)
    state.runtime = Runtime(cfg, request.session, baseline_ids)
    return state.runtime


@pytest.fixture
def tradeoff(_tradeoff_runtime: Runtime, request: pytest.FixtureRequest) -> Evaluation:
    """Outputs and score recording for the current evaluation test."""
    return Evaluation(_tradeoff_runtime, request.node)


def _load_baseline(state: State) -> list[CaseRecord]:
    from evalkit.models import load_model

    cfg = state.cfg
    fingerprint = load_model(cfg.model).base_fingerprint
    gc.collect()
    try:
        state.baseline = read_baseline(cfg, fingerprint)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from exc
    return state.baseline


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state and state.cfg.baseline and not _is_worker(session.config):
        _load_baseline(state)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Attach the example's record to its report (xdist carries it to the controller) and shorten a
    metric failure to DeepEval's own message."""
    report = yield
    evaluated = eval_item_of(item)
    if evaluated is None:
        return report
    state = item.config.stash[STATE_KEY]
    extra: list[tuple[str, Any]] = []
    if state.runtime is not None and state.runtime.pending:
        extra, state.runtime.pending = state.runtime.pending, []
    record = None
    if report.when == "setup" and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        record = _base_record(evaluated, state.cfg.templates[evaluated.suite], "skipped", reason.removeprefix("Skipped: "))
    elif report.when == "setup" and report.failed or report.when == "call":
        record = item.stash.get(RECORD_KEY, None)
        if record is None and not report.passed:
            reason = call.excinfo.exconly()[:500] if call.excinfo else "unknown error"
            record = _base_record(evaluated, state.cfg.templates[evaluated.suite],
                                  "skipped" if report.skipped else "error", reason)
        elif record is not None and report.failed and call.excinfo and call.excinfo.errisinstance(AssertionError):
            report.longrepr = call.excinfo.exconly()
    if record is not None:
        extra.append(("tradeoff", record))
    if extra:
        report.user_properties = [*report.user_properties, *extra]
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Summarise, judge the gates, write the report; with gates, the gates decide the exit status."""
    state = session.config.stash.get(STATE_KEY, None)
    if state is None or _is_worker(session.config) or not state.records:
        return
    cfg = state.cfg
    records = [r for r in state.records if not (cfg.baseline and r.variant == BASE)]
    ran = {(r.suite, r.id) for r in records}
    records += [r for r in state.baseline if (r.suite, r.id) in ran]
    variants = [v.name for v in cfg.variants]
    state.summary = summarize(records, variants, cfg.templates, cfg.confidence)
    state.gate_results = evaluate_gates(cfg.gates, state.summary, cfg.gate_basis, cfg.gate_correction)
    meta = {
        "config": cfg.to_json(),
        "models": {v: state.models[v] for v in variants if v in state.models},
        "data": data_checksums(cfg),
        "versions": _versions(),
        "warnings": state.warnings,
        "run": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(state.started)),
                "seconds": round(time.time() - state.started, 1),
                "workers": getattr(session.config.option, "numprocesses", None) or 1,
                "inference": sorted(state.inference, key=lambda x: (x["suite"], x["variant"]))},
    }
    if cfg.baseline:
        meta["models"][BASE] = {"from_baseline": str(cfg.baseline)}
    try:
        state.written = write_report(cfg.report_dir, state.summary, records, state.gate_results, meta)
        if cfg.save_baseline:
            write_baseline(cfg, records, state.models)
            state.written.append(cfg.save_baseline)
    except (OSError, EvalkitError) as exc:
        state.finish_error = f"tradeoff could not write its report: {exc}"
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    gates_failed = any(g.verdict != "PASS" for g in state.gate_results)
    if state.finish_error or gates_failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif cfg.gates and state.other_failures == 0:
        session.exitstatus = pytest.ExitCode.OK


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "deepeval", "sqlglot", "pytest", "scipy", "statsmodels"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    from evalkit import __version__

    versions["evalkit"] = __version__
    return versions


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.summary is None:
        return
    tr = terminalreporter
    tr.section("tradeoff summary")
    # A log file has no width to respect: wide tables there stay one line per row.
    width = config.get_terminal_writer().fullwidth if tr.isatty() else 160
    tr.write(render_text(state.summary, state.gate_results, width=width, color=tr.hasmarkup))
    for result in state.gate_results:
        if result.power_warning:
            tr.write_line(f"WARNING (power): {result.power_warning}", yellow=True)
    for warning in state.warnings:
        tr.write_line(f"WARNING (training data): {warning}", yellow=True)
    cfg = state.cfg
    if cfg.gates:
        verdict = "FAILED" if any(g.verdict != "PASS" for g in state.gate_results) else "passed"
        tr.write_line(f"gates {verdict}: the exit status follows the gates (per-example failures are the data they "
                      f"judge; errors outside the metric still fail the run)", red=verdict == "FAILED",
                      green=verdict == "passed")
    if state.written:
        tr.write_line(f"report: {', '.join(str(p) for p in state.written)}")
    if state.finish_error:
        tr.write_line(state.finish_error, red=True)
