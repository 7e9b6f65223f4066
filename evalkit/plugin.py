"""The pytest plugin: declares the options, parametrizes the evaluation, reports the trade-off.

Run the evaluation with ``pytest tests/eval --model smollm2-135m --adapter runs/sql/epoch-1`` (or
``deepeval test run tests/eval ...``). The plugin only declares; the work happens elsewhere:

- options (:data:`evalkit.config.OPTIONS`: the run's and each suite's settings) are read from the command
  line, else ``TRADEOFF_*`` environment variables, else ``pytest.ini`` (``tradeoff_<name>``), and validated
  by :func:`evalkit.config.parse_run_config`;
- every test asking for ``eval_item`` is parametrized with each suite's sampled examples
  (:mod:`evalkit.suites`, :mod:`evalkit.sampling`) for each variant (the base, then one per ``--adapter``),
  with markers for the suite, its group and the variant; an example that cannot run is collected as skipped;
- the ``tradeoff`` fixture measures an item once through :class:`evalkit.runtime.Runtime` (one inference
  batch per suite and variant, over the tests still selected after ``-k``/``-m``, through the result cache);
- each test report carries its record (pytest-xdist brings it to the controller, so ``-n 2`` and a serial
  run summarise the same records); at the end the records are summarised (:mod:`evalkit.summary`), the
  gates judged (:mod:`evalkit.gates`), the report written (:mod:`evalkit.report`), and with gates the
  gates decide the exit status.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from evalkit.config import OPTIONS, Option, RunConfig
from evalkit.errors import EvalkitError
from evalkit.integrations.junit import case_properties
from evalkit.runtime import EvalItem, Runtime
from evalkit.suites import REGISTRY
from evalkit.summary import CaseRecord, Summary

DEEPEVAL_RUN_TESTS = 1000  # above this many tests `deepeval test run` is several times slower than pytest
RECORD_KEY = pytest.StashKey["CaseRecord"]()
STATE_KEY = pytest.StashKey["State"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tradeoff", "tradeoff evaluation (base model vs adapters)")
    for opt in OPTIONS:
        bare = {"nargs": "?", "const": "on"} if opt.switch else {}
        group.addoption(opt.flag, dest=f"tradeoff_{opt.name}", action="append" if opt.many else "store",
                        default=None, help=f"{opt.help} [env {opt.env_name}; ini tradeoff_{opt.name}]", **bare)
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


def load_config(config: pytest.Config) -> RunConfig:
    from evalkit.config import parse_run_config
    from evalkit.paths import cache_dir, data_dir

    raw = {opt.name: _raw_option(config, opt) for opt in OPTIONS}
    return parse_run_config(raw, data_dir(raw["data_dir"]), cache_dir(raw["results_cache"]))


def training_data_warnings(cfg: RunConfig) -> list[str]:
    """One warning per adapter whose ``training.json`` overlaps what a suite scores; a ConfigError for an
    adapter trained on other prompt options than the run's."""
    from evalkit.models import adapter_provenance

    warnings = []
    for variant in cfg.variants:
        facts = adapter_provenance(variant.adapter) if variant.adapter else None
        for suite in cfg.suites if facts else ():
            suite.check_training(variant.name, facts)
            warning = suite.contamination(variant.name, facts)
            if warning:
                warnings.append(warning)
    return warnings


def check_outputs(cfg: RunConfig) -> None:
    """Raise an :class:`EvalkitError` when the result cache, the report folder or the baseline file's
    folder cannot be written."""
    from evalkit.baseline import save_path_problem
    from evalkit.errors import ConfigError
    from evalkit.inference import ResultCache
    from evalkit.paths import folder_problem

    with ResultCache(cfg.results_cache / "results.sqlite") as cache:
        cache.check()
    for flag, path, problem in (("--report-dir", cfg.report_dir, folder_problem(cfg.report_dir)),
                                ("--save-baseline", cfg.save_baseline, cfg.save_baseline and save_path_problem(cfg.save_baseline))):
        if problem:
            raise ConfigError(f"{flag} {path}: {problem}. Fix: pass a path in a folder you can write to.")


@dataclass
class State:
    """Per session: the configuration, the planned items, and (on the controller) the collected records."""

    cfg: RunConfig
    plan: dict[str, list[Any]] = field(default_factory=dict)
    baseline: list[CaseRecord] = field(default_factory=list)
    runtime: Runtime | None = None
    records: list[CaseRecord] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    inference: list[dict[str, Any]] = field(default_factory=list)
    other_failures: int = 0
    started: float = field(default_factory=time.time)
    summary: Summary | None = None
    gate_results: list[Any] = field(default_factory=list)
    written: list[Any] = field(default_factory=list)
    finish_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    usage_error: str | None = None  # found while parametrizing; raised once collection is over
    published: list[str] = field(default_factory=list)  # GitHub annotations, trackers' notes (evalkit.integrations)
    sequential: Any = None  # a --sequential run's SequentialResult, once its rounds ran

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
    for cls in REGISTRY.values():
        for marker, text in {cls.name: cls.layout.title, **cls.markers}.items():
            config.addinivalue_line("markers", f"{marker}: {text} (tradeoff)")
    try:
        cfg = load_config(config)
        warnings = training_data_warnings(cfg)
    except EvalkitError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = config.stash[STATE_KEY] = State(cfg=cfg, warnings=warnings)
    config.pluginmanager.register(state, "tradeoff-state")
    for suite in cfg.suites:
        for marker, text in suite.all_markers().items():
            config.addinivalue_line("markers", f"{marker}: {text} (tradeoff)")
    for variant in cfg.variants:
        config.addinivalue_line("markers", f"{variant.name}: tests of variant {variant.name} (tradeoff)")
    if cfg.sequential and (getattr(config.option, "numprocesses", None) or _is_worker(config)):
        raise pytest.UsageError("--sequential with pytest-xdist (-n): a sequential run decides after each round on "
                                "every variant's results, in one process. Fix: drop -n, or --sequential.")
    if _is_worker(config):
        if config.workerinput.get("tradeoff_loadgroup"):
            config.option.loadgroup = True  # xdist adds the group to node ids, which the controller schedules by
    elif getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Training-data warnings before the run, not only after hours of inference."""
    from evalkit.models.loading import xdist_header

    state = config.stash.get(STATE_KEY, None)
    warnings = [f"tradeoff WARNING (training data): {w}" for w in state.warnings] if state else []
    return [*warnings, *xdist_header(config.getoption("numprocesses", None))]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell workers that tests are grouped per (variant, suite) batch."""
    node.workerinput["tradeoff_loadgroup"] = node.config.getoption("dist") == "loadgroup"


def _plan(state: State) -> None:
    """Load and sample every suite's examples (once), and check, before hours of inference rather than
    after them, that each gate's group is among them and that the outputs can be written. Only a session
    that collects evaluation tests gets here: other pytest runs with the plugin installed are not checked."""
    from evalkit.gates import check_gate_groups
    from evalkit.sampling import stratified

    check_outputs(state.cfg)
    for suite in state.cfg.suites:
        if suite.name not in state.plan:
            state.plan[suite.name] = stratified(suite.load(), suite.sample, state.cfg.sample_seed)
    groups = {name: {n for ex in plan for n in (ex.group, ex.cluster)} for name, plan in state.plan.items()}
    groups |= {family: set(members) for family, (_, members) in state.cfg.families.items()}  # a family's groups
    check_gate_groups(state.cfg.gates, groups)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eval_item" not in metafunc.fixturenames:
        return
    state = metafunc.config.stash[STATE_KEY]
    cfg = state.cfg
    try:  # an error raised here would be a collection error with a traceback: keep it for the usage error
        _plan(state)
    except EvalkitError as exc:
        state.usage_error = str(exc)
        metafunc.parametrize("eval_item", [])
        return
    params = []
    for suite in cfg.suites:
        for variant in cfg.run_variants:
            for example in state.plan[suite.name]:
                item = EvalItem(suite, variant, example)
                marks = [getattr(pytest.mark, suite.name), getattr(pytest.mark, variant.name),
                         pytest.mark.xdist_group(f"{variant.name}-{suite.name}")]
                if example.group in suite.all_markers():
                    marks.append(getattr(pytest.mark, example.group))
                if suite.family:
                    marks.append(getattr(pytest.mark, suite.family))
                if item.skip_reason:
                    marks.append(pytest.mark.skip(reason=item.skip_reason))
                params.append(pytest.param(item, id=item.test_id, marks=marks))
    metafunc.parametrize("eval_item", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A data, selection or gate problem found while parametrizing: one usage error line (exit 4). An
    xdist worker that raised would crash the controller (INTERNALERROR), so it runs nothing and hands
    the error over (:func:`pytest_testnodedown`)."""
    state = config.stash.get(STATE_KEY, None)
    if state is None or not state.usage_error:
        return
    if not _is_worker(config):
        raise pytest.UsageError(state.usage_error)
    items.clear()
    config.workeroutput["tradeoff_usage_error"] = state.usage_error


def pytest_collection_finish(session: pytest.Session) -> None:
    """Warn before a long ``deepeval test run``: its cost grows with the square of the number of tests."""
    from deepeval.utils import get_is_running_deepeval

    count = sum(eval_item_of(item) is not None for item in session.items)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if count > DEEPEVAL_RUN_TESTS and get_is_running_deepeval() and reporter is not None:
        reporter.write_line(
            f"tradeoff WARNING: {count} evaluation tests under `deepeval test run`, which reads and rewrites its "
            f"whole test-run file after every test, so each test costs more than the last: several times "
            f"slower than pytest at this size, hours for a full MMLU run (docs/benchmarks.md). Fix: run the same "
            f"command as `pytest ...` (the same tests, gates, report and exit status), or select fewer tests.",
            yellow=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: take over a worker's usage error (the summary prints it, the exit status is 4)."""
    state = node.config.stash.get(STATE_KEY, None)
    message = getattr(node, "workeroutput", {}).get("tradeoff_usage_error")
    if state is not None and message:
        state.usage_error = message


def eval_item_of(node: pytest.Item) -> EvalItem | None:
    item = getattr(getattr(node, "callspec", None), "params", {}).get("eval_item")
    return item if isinstance(item, EvalItem) else None


class Evaluation:
    """The ``tradeoff`` fixture: measures the current test's item once and keeps its record."""

    def __init__(self, runtime: Runtime, node: pytest.Item) -> None:
        self._runtime = runtime
        self._node = node

    def measure(self, item: EvalItem) -> tuple[Any, Any]:
        """(DeepEval test case, measured metric) for ``item``; ``assert_test(case, [metric])`` replays it."""
        scored, record = self._runtime.measure(item)
        self._node.stash[RECORD_KEY] = record
        return scored.test_case, scored.metric


def _runtime(config: pytest.Config, session: pytest.Session) -> Runtime:
    """The session's runtime, made on first use (by the first evaluation test, or a sequential run's rounds)."""
    import contextlib

    state = config.stash[STATE_KEY]
    if state.runtime is not None:
        return state.runtime
    if _is_worker(config):  # workers share the cores instead of each taking all of them
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(config.workerinput.get("workercount", 1))))
    baseline_ids = None
    if state.cfg.baseline:
        baseline_ids = {}
        for record in state.baseline or _load_baseline(state):
            baseline_ids.setdefault(record.suite, set()).add(record.id)

    def selected() -> list[EvalItem]:
        return [i for i in map(eval_item_of, session.items) if i]

    def uncaptured() -> Any:
        capture = config.pluginmanager.getplugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    state.runtime = Runtime(state.cfg, selected, uncaptured, baseline_ids)
    return state.runtime


@pytest.fixture(scope="session")
def _tradeoff_runtime(request: pytest.FixtureRequest) -> Runtime:
    return _runtime(request.config, request.session)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A sequential run: before the first evaluation test, evaluate in rounds until the gates are decided
    (:mod:`evalkit.sequential`); then run only the tests of the examples evaluated. The others are not run at
    all (no report: they are neither skipped nor scored), and the summary counts them once."""
    evaluated = eval_item_of(item)
    state = item.config.stash.get(STATE_KEY, None)
    if evaluated is None or state is None or not state.cfg.sequential or evaluated.skip_reason:
        return None
    if state.sequential is None:
        from evalkit.sequential import run_sequential

        runtime = _runtime(item.config, item.session)
        items = [i for i in runtime.selected() if not i.skip_reason]
        try:
            state.sequential = run_sequential(runtime, items, state.cfg, state.baseline)
            state.baseline.extend(state.sequential.extended)  # base results the --baseline file lacked
        except Exception as exc:  # every test of the run fails with it, as a failed inference batch does
            runtime.failures.update({(i.suite.name, i.variant.name): exc for i in items})
            state.sequential = False
    if state.sequential is False or state.sequential.needed(evaluated.suite.name, evaluated.id):
        return None
    return True


@pytest.fixture
def tradeoff(_tradeoff_runtime: Runtime, request: pytest.FixtureRequest) -> Evaluation:
    """Measures the current evaluation test's item: ``case, metric = tradeoff.measure(eval_item)``."""
    return Evaluation(_tradeoff_runtime, request.node)


def _load_baseline(state: State) -> list[CaseRecord]:
    from evalkit.baseline import read_baseline
    from evalkit.models import base_fingerprint

    try:  # the files the run loads: load_model reads the embedded model from the default cache, whatever --results-cache
        state.baseline = read_baseline(state.cfg, base_fingerprint(state.cfg.model))
    except EvalkitError as exc:
        raise pytest.UsageError(str(exc)) from None
    return state.baseline


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state and state.cfg.baseline and not _is_worker(session.config):
        _load_baseline(state)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Attach the example's record to its report (xdist carries it to the controller), shorten a metric
    failure to DeepEval's own message, and fail an evaluation test that passed without measuring."""
    report = yield
    evaluated = eval_item_of(item)
    if evaluated is None:
        return report
    state = item.config.stash[STATE_KEY]
    extra: list[tuple[str, Any]] = []
    if state.runtime is not None and state.runtime.facts:
        extra, state.runtime.facts = state.runtime.facts, []
    record = None
    if report.when == "setup" and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        record = evaluated.record("skipped", reason=reason.removeprefix("Skipped: "))
    elif report.when == "setup" and report.failed or report.when == "call":
        record = item.stash.get(RECORD_KEY, None)
        if record is None and report.passed:
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} passed without measuring its example, so it left no tradeoff record. "
                               "Fix: call `case, metric = tradeoff.measure(eval_item)` and assert_test(case, [metric]).")
        if record is None and not report.skipped:
            reason = call.excinfo.exconly()[:500] if call.excinfo else str(report.longrepr)[:500]
            record = evaluated.record("error", reason=reason)
        elif record is not None and report.failed and call.excinfo and call.excinfo.errisinstance(AssertionError):
            report.longrepr = call.excinfo.exconly()
    if record is not None:
        extra.append(("tradeoff", record.to_dict()))
        # as record_property does: JUnit XML takes a test's properties from its teardown report, made from these
        item.user_properties += case_properties(record)
    if extra:
        report.user_properties = [*report.user_properties, *extra]
    return report


@pytest.hookimpl(tryfirst=True)  # before pytest's JUnit writer writes its file: it gets the run's figures
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Summarise, judge the gates, write the report, hand it to GitHub, JUnit and trackers
    (:mod:`evalkit.integrations`); with gates, the gates decide the exit status."""
    from _pytest.junitxml import xml_key

    from evalkit.finish import finish
    from evalkit.integrations import publish

    state = session.config.stash.get(STATE_KEY, None)
    if state is not None and state.usage_error and not _is_worker(session.config):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if state is None or _is_worker(session.config) or not state.records:
        return
    done = finish(state.cfg, state.records, state.baseline, state.models, state.inference, state.warnings,
                  state.started, getattr(session.config.option, "numprocesses", None) or 1, state.sequential or None)
    state.summary, state.gate_results, state.written, state.finish_error = done.summary, done.gates, done.written, done.error
    if done.error is None:
        state.published = publish(state.cfg.report_dir, state.cfg.log_to, session.config.stash.get(xml_key, None))
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    gates_failed = any(g.verdict != "PASS" for g in state.gate_results)
    if state.finish_error or gates_failed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif state.cfg.gates and state.other_failures == 0:
        session.exitstatus = pytest.ExitCode.OK


def _record_status(report: pytest.TestReport) -> str | None:
    """The status of the tradeoff record a report carries (scored, skipped, error), or None."""
    for name, value in report.user_properties:
        if name == "tradeoff":
            return value.get("status")
    return None


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A wrong answer is the data the summary counts, not a defect to list: it reports as ``wrong`` (``w``),
    so pytest's failure sections and short summary keep to real failures (errors, broken examples) and a
    full run does not print thousands of FAILED lines over the summary. It still fails the run unless the
    gates decide. An example that cannot run (its database is missing) reports as ``unrunnable``: the
    summary's counts line gives the reason once instead of one block per test."""
    if report.when == "call" and report.failed and _record_status(report) == "scored":
        return "wrong", "w", "WRONG"
    if report.when == "setup" and report.skipped and _record_status(report) == "skipped":
        # The summary's counts line names the reason once; DeepEval prints a block per "skipped" report.
        return "unrunnable", "s", "SKIPPED"
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> Iterator[None]:
    """The trade-off summary comes last, after pytest's (and DeepEval's) own summaries, so it stays on screen."""
    yield
    state = config.stash.get(STATE_KEY, None)
    if state is not None and state.usage_error:
        terminalreporter.write_line(f"ERROR: {state.usage_error}", red=True)
    if state is None or state.summary is None:
        return
    from evalkit.report import render_text

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
    if state.cfg.gates:
        verdict = "FAILED" if any(g.verdict != "PASS" for g in state.gate_results) else "passed"
        tr.write_line(f"gates {verdict}: the exit status follows the gates (per-example failures are the data they "
                      f"judge; errors outside the metric still fail the run)", red=verdict == "FAILED",
                      green=verdict == "passed")
    if state.written:
        tr.write_line(f"report: {', '.join(str(p) for p in state.written)}")
    for line in state.published:
        tr.write_line(line, yellow=line.startswith("WARNING"))
    if state.finish_error:
        tr.write_line(state.finish_error, red=True)
    from deepeval.utils import get_is_running_deepeval

    if get_is_running_deepeval():
        _repeat_answer_at_exit(state)


def _repeat_answer_at_exit(state: Any) -> None:
    """Under ``deepeval test run`` DeepEval prints its per-case table after pytest returns, and its CLI
    cannot turn the table off (``--display`` only picks all, failing or passing cases): say the answer
    again when the process exits, so it is still the last thing on the screen."""
    import atexit

    from evalkit.report.answer import answer_lines

    lines = [f"Answer: {line}" for line in answer_lines(state.summary, state.gate_results)]
    if state.written:
        lines.append(f"report: {state.written[0].parent}")
    atexit.register(print, "\n".join(["", "tradeoff (repeated after DeepEval's table):", *lines]), flush=True)
