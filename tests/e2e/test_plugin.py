"""The pytest plugin end to end: real pytest runs (pytester subprocesses) of the real tests/eval files on
the embedded model, small real Spider/MMLU samples and a real (random) LoRA adapter.

The runs share one result cache (module scope), so the model computes each output once and later runs
mostly exercise collection, scoring, aggregation and reporting. Expected counts come from the data.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from evalkit.data.spider import load_spider
from plugin_runs import ROOT, Run, make_project, run_args, run_project, save_random_adapter

pytestmark = pytest.mark.model

SPIDER_DB = "concert_singer"
MMLU_SUBJECTS = ("abstract_algebra", "philosophy")  # STEM and humanities
MMLU_PER_SUBJECT = 2
# Options are passed as --name=value: pytest pre-parses the command line before the conftest registers
# the plugin's options, and would take a separate path value for a test path (with the wrong rootdir).
SMALL = ("--suites=spider,mmlu", f"--spider-dbs={SPIDER_DB}", "--spider-sample=1", f"--mmlu-subjects={','.join(MMLU_SUBJECTS)}",
         f"--mmlu-sample={MMLU_PER_SUBJECT}", "--mmlu-shots=0", "--max-new-tokens=24")


def levels_on(db_id: str, data_dir: Path) -> int:
    """Hardness levels present among a database's dev examples (the sample takes one of each)."""
    return len({ex.hardness for ex in load_spider("dev", data_dir) if ex.db_id == db_id})


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_adapter(tmp_path_factory.mktemp("adapter") / "lora", seed=0)


@pytest.fixture(scope="module")
def results_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results-cache")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    make_project(pytester.path)
    return pytester


def run(pytester: pytest.Pytester, data_dir: Path, cache: Path, *args: str, name: str = "report") -> Run:
    report = pytester.path / name
    return Run(pytester.runpytest_subprocess(*run_args(data_dir, cache, report, *args), timeout=600), report)


@pytest.fixture(scope="module")
def joint(tmp_path_factory, data_dir, results_cache, adapter) -> Run:
    """The reference run, shared by several tests: base + adapter on the small sample, with passing gates.

    Module-scoped (pytester is per test), so it is the same subprocess pytester would start."""
    return run_project(tmp_path_factory.mktemp("joint"), data_dir, results_cache, *SMALL, f"--adapter=lora={adapter}",
                       "-v", "--gate", "mmlu.delta >= -1", "--gate", "spider.score >= 0")


def test_summary_counts_files_and_ids(joint, data_dir):
    run_ = joint
    n_spider, n_mmlu = levels_on(SPIDER_DB, data_dir), len(MMLU_SUBJECTS) * MMLU_PER_SUBJECT
    outcomes = run_.result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("wrong", 0) == 2 * (n_spider + n_mmlu), run_.out
    assert "error" not in outcomes and "errors" not in outcomes and "failed" not in outcomes, run_.out
    run_.result.stdout.fnmatch_lines([f"*test_eval?spider-lora-dev????-{SPIDER_DB}?*",
                                      "*test_eval?mmlu-base-abstract_algebra-????? *"])
    suites = run_.json["suites"]
    for suite, n in (("spider", n_spider), ("mmlu", n_mmlu)):
        for variant in ("base", "lora"):
            counts = suites[suite]["counts"][variant]
            assert (counts["scored"], counts["skipped"], counts["errors"]) == (n, 0, 0)
        assert suites[suite]["scores"]["lora"]["all"]["n"] == n
        assert suites[suite]["deltas"]["lora"]["all"]["n"] == n
    assert sum(c["passed"] for s in suites.values() for c in s["counts"].values()) == outcomes.get("passed", 0)
    assert suites["mmlu"]["deltas"]["lora"]["all"]["n_strata"] == 2
    assert set(suites["mmlu"]["scores"]["base"]["groups"]) == {"stem", "humanities"}
    models = run_.json["models"]
    assert models["lora"]["adapter_fingerprint"] and models["lora"]["base_fingerprint"] == models["base"]["base_fingerprint"]
    assert set(run_.json["data"]) == {"spider", "mmlu"} and run_.json["versions"]["deepeval"]
    cases = run_.cases()
    assert len(cases) == 2 * (n_spider + n_mmlu)
    spider_case = next(c for c in cases if c["suite"] == "spider")
    assert spider_case["output"] is not None and spider_case["outcome"] and spider_case["template"] == "spider-chat"
    mmlu_case = next(c for c in cases if c["suite"] == "mmlu")
    assert len(mmlu_case["logprobs"]) == 4 and mmlu_case["extracted"] in "ABCD"
    for name in ("tradeoff.md", "deltas_spider.png", "deltas_mmlu.png", "tradeoff.png"):
        assert (run_.report_dir / name).stat().st_size > 0
    assert "Δ lora vs base" in (run_.report_dir / "tradeoff.md").read_text()
    assert "tradeoff summary" in run_.out and "Spider execution accuracy" in run_.out
    # Wrong answers are counted, not listed; the summary and the answer in words come after pytest's own summary.
    assert outcomes.get("wrong") and "FAILED" not in run_.out and "= FAILURES =" not in run_.out
    assert run_.out.index("Running teardown with pytest sessionfinish") < run_.out.index("tradeoff summary")
    answer = next(line for line in run_.result.stdout.lines if line.startswith("Answer: lora vs base: "))
    assert "Spider execution accuracy" in answer and "MMLU accuracy" in answer
    assert run_.json["answer"] == [answer.removeprefix("Answer: ")]
    assert "## The answer" in (run_.report_dir / "tradeoff.md").read_text()
    # Gates that hold: the gates decide the exit status although examples failed.
    assert run_.rc == 0, run_.out
    assert "gates passed" in run_.out and [g["verdict"] for g in run_.json["gates"]] == ["PASS", "PASS"]


def test_missing_database_is_skipped_with_reason(project, data_dir, results_cache):
    run_ = run(project, data_dir, results_cache, "--suites=spider", "--spider-dbs=wta_1", "--spider-sample=1")
    n = levels_on("wta_1", data_dir)
    outcomes = run_.result.parseoutcomes()
    assert outcomes["unrunnable"] == n and "passed" not in outcomes and "failed" not in outcomes
    # One line names the reason (the summary's counts), not one DeepEval block per skipped test.
    assert "was skipped" not in run_.out
    reason = "database file missing: database/wta_1/wta_1.sqlite (not in this copy of Spider)"
    assert f"skipped because: {reason} ({n})" in run_.out
    counts = run_.json["suites"]["spider"]["counts"]["base"]
    assert (counts["scored"], counts["skipped"]) == (0, n)


def test_markers_filter_tests_and_inference(project, data_dir, results_cache, adapter):
    run_ = run(project, data_dir, results_cache, *SMALL, f"--adapter=lora={adapter}", "--strict-markers",
               "-m", "mmlu and stem and lora")
    total = 2 * (levels_on(SPIDER_DB, data_dir) + len(MMLU_SUBJECTS) * MMLU_PER_SUBJECT)
    assert run_.result.parseoutcomes().get("deselected") == total - MMLU_PER_SUBJECT
    assert {(c["variant"], c["cluster"]) for c in run_.cases()} == {("lora", "abstract_algebra")}
    # Inference ran once, for the selected questions only.
    assert [(b["suite"], b["variant"], b["prompts"]) for b in run_.json["run"]["inference"]] == [
        ("mmlu", "lora", MMLU_PER_SUBJECT)]
    collected = project.runpytest_subprocess("--co", "-q", "--strict-markers", f"--data-dir={data_dir}",
                                             "--suites=spider", "--spider-sample=all", f"--spider-dbs={SPIDER_DB}",
                                             "-m", "spider and not extra")
    extra = [ex.id for ex in load_spider("dev", data_dir) if ex.db_id == SPIDER_DB and ex.hardness == "extra"]
    ids = [line for line in collected.stdout.lines if "test_eval[spider-" in line]
    assert ids and len(ids) == sum(ex.db_id == SPIDER_DB for ex in load_spider("dev", data_dir)) - len(extra)
    assert not any(f"-{ex_id}-" in line for ex_id in extra for line in ids)


WATCH_MODEL = '''
import json
from pathlib import Path

from evalkit.plugin import STATE_KEY, eval_item_of

SEEN = []


def pytest_runtest_teardown(item):
    runtime, evaluated = item.config.stash[STATE_KEY].runtime, eval_item_of(item)
    SEEN.append([evaluated.suite.name, evaluated.variant.name, id(runtime.model) if runtime.model else None])


def pytest_sessionfinish(session):
    Path("seen.json").write_text(json.dumps(SEEN))
'''


def test_each_variant_loads_once_and_the_model_goes_after_the_last_inference(project, data_dir, results_cache,
                                                                           adapter):
    """Tests run suite by suite (spider base, spider lora, mmlu base, mmlu lora), but each variant's model
    is loaded once, for all its batches; after the last inference, scoring and reporting (14,042 tests in
    a full MMLU run) hold no weights."""
    project.makeconftest('pytest_plugins = ["evalkit.plugin"]\n' + WATCH_MODEL)
    run_ = run(project, data_dir, results_cache, *SMALL, f"--adapter=lora={adapter}")
    assert set(run_.result.parseoutcomes()) <= {"passed", "wrong"}, run_.out
    seen = json.loads((project.path / "seen.json").read_text())
    assert list(dict.fromkeys((suite, variant) for suite, variant, _ in seen)) == [
        ("spider", "base"), ("spider", "lora"), ("mmlu", "base"), ("mmlu", "lora")]
    # Loaded through spider base's tests only: mmlu base was inferred with them, and the first spider lora
    # test inferred both lora batches, the last ones, so the model was gone by its end.
    loaded = [model is not None for _, _, model in seen]
    base_first = levels_on(SPIDER_DB, data_dir)
    assert loaded == [True] * base_first + [False] * (len(seen) - base_first), loaded
    assert len({model for _, _, model in seen[:base_first]}) == 1


def test_failing_or_unjudgeable_gates_exit_non_zero(project, data_dir, results_cache):
    # humanities is in the selection (so the gate is accepted at start-up) but deselected by -m.
    failing = run(project, data_dir, results_cache, *SMALL, "--suites=mmlu", "--gate-basis=point",
                  "--gate", "mmlu.score >= 1", "--gate", "mmlu.humanities.score >= 0", "-m", "not humanities")
    assert failing.rc == 1
    verdicts = {g["label"]: g["verdict"] for g in failing.json["gates"]}
    assert verdicts == {"mmlu.score@base": "FAIL", "mmlu.humanities.score@base": "ERROR"}
    assert "group 'humanities' has no scored items" in failing.json["gates"][1]["message"]
    assert "gates FAILED" in failing.out and "ERROR" in failing.out

    deepeval = project.run(str(Path(sys.executable).with_name("deepeval")), "test", "run", "test_eval.py",
                           f"--data-dir={data_dir}", f"--results-cache={results_cache}", *SMALL,
                           f"--report-dir={project.path / 'deepeval-report'}", "--suites=mmlu",
                           "--gate-basis=point", "--gate", "mmlu.score >= 1", "--display", "failing", timeout=600)
    assert deepeval.ret == 1, deepeval.stdout.str()
    # DeepEval's per-case table comes after pytest; the answer is said again after it, last on screen.
    out = deepeval.stdout.str()
    assert out.index("Test Results") < out.rindex("tradeoff (repeated after DeepEval's table):")
    tail = out[out.rindex("tradeoff (repeated after DeepEval's table):"):].strip().splitlines()
    assert tail[1].startswith("Answer: base: MMLU accuracy") and tail[-1].startswith("report: "), tail


def test_baseline_round_trip_and_refusals(project, data_dir, results_cache, adapter, joint, tmp_path):
    baseline = tmp_path / "base.json"
    saved = run(project, data_dir, results_cache, *SMALL, f"--save-baseline={baseline}", name="saved")
    assert baseline.is_file() and str(baseline) in saved.out
    reused = run(project, data_dir, results_cache, *SMALL, f"--adapter=lora={adapter}", f"--baseline={baseline}",
                 "-v", name="reused")
    assert "[mmlu-base-" not in reused.out and "[spider-base-" not in reused.out  # the base model did not run
    assert reused.json["suites"] == joint.json["suites"]
    assert reused.json["models"]["base"] == {"from_baseline": str(baseline)}

    data = json.loads(baseline.read_text())
    data["model"]["base_fingerprint"] = "0" * 16  # as if saved with another model
    baseline.write_text(json.dumps(data))
    refused = run(project, data_dir, results_cache, *SMALL[:-2], "--mmlu-shots=1", "--max-new-tokens=24",
                  f"--adapter=lora={adapter}", f"--baseline={baseline}", name="refused")
    assert refused.rc == pytest.ExitCode.USAGE_ERROR
    assert "refused" in refused.out
    assert "prompt template is 'mmlu-0shot', this run uses 'mmlu-1shot'" in refused.out
    assert "fingerprint 0000000000000000" in refused.out


def test_xdist_gives_the_same_report_as_serial(project, data_dir, results_cache, adapter, joint):
    serial = joint
    parallel = run(project, data_dir, results_cache, *SMALL, f"--adapter=lora={adapter}", "-n", "2", "-v",
                   "--gate", "mmlu.delta >= -1", "--gate", "spider.score >= 0", name="parallel")
    assert parallel.json["run"]["workers"] == 2
    assert parallel.stable_json() == serial.stable_json()
    assert parallel.cases() == serial.cases()
    assert parallel.result.parseoutcomes() == serial.result.parseoutcomes()


def test_adapter_trained_on_the_scored_split_is_flagged(project, data_dir, results_cache, adapter, joint, tmp_path):
    """An adapter whose training.json says it saw Spider dev (the seed reports' mistake) gets a warning before
    the run, in the summary and in both report files; an unreadable training.json stops the run."""
    import shutil

    trained_on_dev = tmp_path / "on-dev"
    shutil.copytree(adapter, trained_on_dev)
    (trained_on_dev / "training.json").write_text(json.dumps(
        {"base_model": "smollm2-135m", "data_split": "dev", "allow_eval_split": True, "trained_on_eval_data": True}))
    flagged = run(project, data_dir, results_cache, *SMALL, "--suites=spider", f"--adapter={trained_on_dev}")
    warning = "adapter 'on-dev' was trained on Spider dev (its training.json), which this run scores"
    assert flagged.out.count(f"WARNING (training data): {warning}") == 2  # header and summary
    assert [w[:len(warning)] for w in flagged.json["warnings"]] == [warning]
    assert flagged.json["models"]["on-dev"]["training"]["data_split"] == "dev"
    assert "## Warnings" in (flagged.report_dir / "tradeoff.md").read_text()
    assert joint.json["warnings"] == [] and joint.json["models"]["lora"]["training"] is None

    (trained_on_dev / "training.json").write_text("{not json")
    broken = project.runpytest_inprocess("--co", f"--adapter={trained_on_dev}")
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{trained_on_dev / 'training.json'} is unreadable" in broken.stderr.str()


def test_crash_then_resume_from_cache(project, data_dir, tmp_path):
    cache = tmp_path / "cache"
    sample = ["--suites=spider", f"--spider-dbs={SPIDER_DB}", "--spider-sample=1", "--max-new-tokens=24",
              "--batch-size=1"]
    database = cache / "results.sqlite"

    def stored() -> dict[str, float]:
        if not database.is_file():
            return {}
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            try:
                return dict(conn.execute("SELECT key, created FROM results"))
            except sqlite3.OperationalError:  # the table is not created yet
                return {}

    process = project.popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--data-dir={data_dir}",
                             f"--results-cache={cache}", *sample],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not stored() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # a hard crash: no cleanup, no report
    process.wait()
    before = stored()
    n = levels_on(SPIDER_DB, data_dir)
    assert 1 <= len(before) < n, "the run should die after its first batch and before its last"

    resumed = run(project, data_dir, cache, *sample, name="resumed")
    assert resumed.json["suites"]["spider"]["counts"]["base"]["scored"] == n
    # The progress bar reaches the terminal (stderr) while inference runs; captured, it would show up only
    # inside a failed test's "Captured stderr" section, which pytest prints on stdout.
    assert "tradeoff spider base" in resumed.result.stderr.str()
    after = stored()
    assert len(after) == n
    assert {key: after[key] for key in before} == before  # results from before the crash were reused, not redone


@pytest.mark.parametrize(("option", "message"), [
    ("--adapter=/nonexistent/epoch-1", "is not an adapter folder (no adapter_config.json)"),
    ("--adapter=spider=/nonexistent", "variant name 'spider' is reserved"),
    ("--mmlu-sample=some", "expected an integer >= 1 or 'all'"),
    ("--suites=spider,gsm8k", "use a comma-separated subset of spider, mmlu"),
    ("--gate=mmlu.delta > 0", "cannot be read"),
    ("--mmlu-shots=7", "use 0-5"),
    ("--spider-template=mmlu-0shot", "use one of spider-chat, spider-fewshot"),
])
def test_bad_options_are_usage_errors(project, option, message):
    result = project.runpytest_inprocess("--co", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def old_schema_cache(folder: Path) -> Path:
    """A result cache written by an older tradeoff (schema version 0)."""
    from evalkit.inference.cache import ResultCache

    with ResultCache(folder / "results.sqlite") as cache:
        cache.put_many({"x": 1}, kind="test", model_key="m")
    conn = sqlite3.connect(folder / "results.sqlite")
    conn.execute("UPDATE meta SET value = '0' WHERE name = 'version'")
    conn.commit()
    conn.close()
    return folder


@pytest.mark.parametrize(("option", "message"), [
    ("--data-dir={tmp}/nowhere", "Spider folder not found: {tmp}/nowhere/spider"),
    ("--spider-dbs=concert_singer,no_such_db", "--spider-dbs: no dev examples on no_such_db"),
    ("--gate=mmlu.no_such_group.score >= 0.1", "Gate 'mmlu.no_such_group.score >= 0.1': group 'no_such_group' is "
                                               "not a group or cluster of suite 'mmlu' in this run"),
    ("--results-cache={tmp}/plain.txt/cache", "{tmp}/plain.txt is a file, not a folder"),
    ("--results-cache={tmp}/old", "is a tradeoff result cache of schema version '0'"),
    ("--report-dir={tmp}/plain.txt/report", "--report-dir {tmp}/plain.txt/report: {tmp}/plain.txt is a file"),
    ("--save-baseline={tmp}/plain.txt/base.json", "--save-baseline {tmp}/plain.txt/base.json: {tmp}/plain.txt is a file"),
    ("--save-baseline={tmp}", "--save-baseline {tmp}: {tmp} is a folder, not a file"),
])
def test_data_cache_and_gate_problems_are_one_line_usage_errors(project, data_dir, option, message):
    """They came out as collection errors with chained tracebacks, an INTERNALERROR (cache under a file),
    a per-test traceback (old cache), or only at the end of the run (an unknown gate group, a report or
    baseline that cannot be written)."""
    tmp = project.path
    (tmp / "plain.txt").write_text("x")
    old_schema_cache(tmp / "old") if "old" in option else None
    result = project.runpytest_inprocess("--co", f"--data-dir={data_dir}", option.format(tmp=tmp))
    errors = result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert message.format(tmp=tmp) in errors and "Fix:" in errors
    assert "Traceback" not in errors + result.stdout.str() and "INTERNALERROR" not in errors + result.stdout.str()


def write_choice_file(path: Path, data_dir: Path, ids: set[str]) -> list[Any]:
    """Real MMLU test rows (the joint run's sample) as a user's own multiple-choice JSONL file."""
    from evalkit.data.mmlu import LETTERS, load_mmlu

    questions = [q for q in load_mmlu("test", data_dir, list(MMLU_SUBJECTS)) if q.id in ids]
    path.write_text("".join(json.dumps({"id": q.id, "question": q.question, "choices": list(q.choices),
                                        "answer": LETTERS.index(q.answer), "subject": q.subject}) + "\n"
                            for q in questions))
    return questions


def test_own_multiple_choice_suite_from_a_jsonl_file(project, data_dir, results_cache, adapter, joint, tmp_path):
    """A user's JSONL suite runs like MMLU: paired deltas, its own gate, its own marker; built from the joint
    run's MMLU questions with their subject, its prompt is MMLU's 0-shot prompt, so its log-likelihoods equal
    the MMLU run's."""
    mmlu = {(c["variant"], c["id"]): c["logprobs"] for c in joint.cases() if c["suite"] == "mmlu"}
    questions = write_choice_file(tmp_path / "mine.jsonl", data_dir, {key[1] for key in mmlu})
    assert len(questions) == len(MMLU_SUBJECTS) * MMLU_PER_SUBJECT
    run_ = run(project, data_dir, results_cache, f"--suite=mine={tmp_path / 'mine.jsonl'}", "--suites=mine",
               f"--adapter=lora={adapter}", "--gate", "mine.delta >= -1", "--strict-markers", "-m", "mine")
    assert run_.rc == 0, run_.out
    suite = run_.json["suites"]["mine"]
    assert set(run_.json["suites"]) == {"mine"} and suite["stratified_by"] == "subject"
    assert suite["deltas"]["lora"]["all"]["n"] == len(questions) and suite["deltas"]["lora"]["all"]["n_strata"] == 2
    assert sum(suite["predicted"]["base"].values()) == len(questions)
    assert [g["verdict"] for g in run_.json["gates"]] == ["PASS"]
    mine = {(c["variant"], c["id"]): c["logprobs"] for c in run_.cases()}
    assert set(mine) == set(mmlu)
    assert all(mine[key] == pytest.approx(mmlu[key], abs=1e-5) for key in mmlu)


@pytest.mark.parametrize(("line", "message"), [
    ('{"question": "Q?", "choices": ["a", "b"], "answer": 2}', "line 2: 'answer' 2 is not a choice of the 2 given"),
    ('{"question": "Q?", "choices": ["a", "b"]}', "line 2: missing field(s) answer"),
    ('{"question": "Q?", "choices": ["a", "b"], "answer": 0', "line 2: not valid JSON"),
    ('{"question": "Q?", "choices": ["a", "b"], "answer": 0, "answer": 1}', "line 2: field(s) answer given twice"),
    ('{"question": "Q\\ud800?", "choices": ["a", "b"], "answer": 0}',
     "line 2: 'question' holds the lone surrogate \\ud800 at character 2, which is not text"),
    ('{"question": "Q?", "choices": ["a", "\\udfff"], "answer": 0}', "line 2: 'choices[1]' holds the lone surrogate \\udfff"),
    ('{"question": "Q?", "choices": ["a", "b"], "answer": 0, "subject": "x\\ud83d"}', "line 2: 'subject' holds the lone"),
    ('{"id": "\\ud800", "question": "Q?", "choices": ["a", "b"], "answer": 0}', "line 2: 'id' holds the lone surrogate"),
    ('{"id": 0, "question": "Q?", "choices": ["a", "b"], "answer": 0}', "line 2: 'id' 0 is not non-empty text"),
    ('{"id": "", "question": "Q?", "choices": ["a", "b"], "answer": 0}', "line 2: 'id' '' is not non-empty text"),
    ('{"id": {"x": 1}, "question": "Q?", "choices": ["a", "b"], "answer": 0}', "line 2: 'id' {'x': 1} is not non-empty"),
])
def test_malformed_choice_file_is_one_usage_error(project, tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "Fine?", "choices": ["yes", "no"], "answer": "A"}\n' + line + "\n")
    result = project.runpytest_inprocess("--co", f"--suite=mine={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{path}, {message}" in result.stderr.str() and "Fix:" in result.stderr.str()


@pytest.mark.parametrize(("names", "message"), [
    (("mine", "mine"), "a second suite named 'mine'"),
    (("easy",), "the name 'easy' is reserved"),
])
def test_suite_names_that_clash_are_usage_errors_at_start_up(project, tmp_path, names, message):
    path = tmp_path / "own.jsonl"
    path.write_text('{"question": "Fine?", "choices": ["yes", "no"], "answer": "A"}\n')
    result = project.runpytest_inprocess("--co", *(f"--suite={name}={path}" for name in names))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str() and "Fix:" in result.stderr.str()


def test_an_eval_test_that_does_not_measure_is_an_error(project, data_dir, results_cache):
    (project.path / "test_eval.py").write_text("def test_lazy(eval_item, tradeoff):\n    pass\n")
    run_ = run(project, data_dir, results_cache, *SMALL, "--suites=mmlu")
    assert run_.result.parseoutcomes().get("failed") == len(MMLU_SUBJECTS) * MMLU_PER_SUBJECT, run_.out
    assert "passed without measuring its example" in run_.out
    assert run_.json["suites"]["mmlu"]["counts"]["base"]["errors"] == len(MMLU_SUBJECTS) * MMLU_PER_SUBJECT


@pytest.mark.parametrize(("runner", "sample", "warned"), [("deepeval", "18", True), ("deepeval", "5", False),
                                                          ("pytest", "18", False)])
def test_a_long_deepeval_test_run_is_warned_about(project, data_dir, runner, sample, warned):
    """`deepeval test run` rewrites its whole test-run file after each test: over 1,000 tests (57 subjects x
    18 questions = 1,026; x 5 = 285) it says so before the first test, and plain pytest never does."""
    command = [str(Path(sys.executable).parent / "deepeval"), "test", "run"] if runner == "deepeval" else \
        [sys.executable, "-m", "pytest"]
    done = subprocess.run([*command, "test_eval.py", "--co", "-q", f"--data-dir={data_dir}", "--suites=mmlu",
                           f"--mmlu-sample={sample}"], cwd=project.path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    warning = "tradeoff WARNING: 1026 evaluation tests under `deepeval test run`"
    assert (warning in done.stdout) is warned
    assert ("Fix: run the same command as `pytest ...`" in done.stdout) is warned
