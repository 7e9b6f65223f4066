"""The SQL sandbox against attacker-written queries, on a real Spider database.

Each attack runs on a *writable* copy of world_1 (the largest dev database), so it is the sandbox and not
the file's permissions that keeps it intact; attacker-chosen file paths point into the copy's folder,
which must not gain a file. Every attack gets its expected typed status in bounded time, in both modes
(worker process and in-process), and the copy's sha256 never changes. A last pass sends every attack as
raw model output through the metric on the real dev databases and hashes all of them before and after.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from evalkit.data.files import sha256_file
from evalkit.data.spider import load_spider
from evalkit.metrics.execution_accuracy import Outcome, score_execution
from evalkit.sandbox import ExecStatus, Limits, Sandbox

LIMITS = Limits(timeout_s=1.0)
GRACE_S = 1.0
# A query may overrun its budget by one SQLite step and the fetch of one batch; the worker is killed
# at budget + grace. Anything past this bound would be a hang.
BOUND_S = LIMITS.timeout_s + GRACE_S + 3.0

DENIED, SYNTAX, TIMEOUT, LIMIT, OK = (
    ExecStatus.EXECUTION_ERROR, ExecStatus.SYNTAX_ERROR, ExecStatus.TIMEOUT, ExecStatus.RESOURCE_LIMIT, ExecStatus.OK,
)
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"

# (name, SQL with {dir} = the database's folder, acceptable statuses)
ATTACKS: list[tuple[str, str, set[ExecStatus]]] = [
    ("drop_table", "DROP TABLE city", {DENIED}),
    ("delete_all", "DELETE FROM city", {DENIED}),
    ("update", "UPDATE city SET Population = 0", {DENIED}),
    ("insert", "INSERT INTO city VALUES (99999, 'x', 'AFG', 'x', 1)", {DENIED}),
    ("replace", "REPLACE INTO city VALUES (1, 'x', 'AFG', 'x', 1)", {DENIED}),
    ("alter", "ALTER TABLE city RENAME TO town", {DENIED}),
    ("drop_after_select", "SELECT * FROM city; DROP TABLE city", {DENIED}),
    ("delete_after_comment_line", "SELECT 1 -- harmless\n; DELETE FROM city", {DENIED}),
    ("delete_behind_cte", "WITH x AS (SELECT 1) DELETE FROM city WHERE ID IN (SELECT * FROM x)", {DENIED}),
    ("comment_hides_statement", "SELECT count(*) FROM city /* ; DROP TABLE city */", {OK}),
    ("comment_before_write", "/* looks like a comment */ DELETE FROM city", {DENIED}),
    ("attach_new_file", "ATTACH DATABASE '{dir}/evil.sqlite' AS evil", {DENIED}),
    ("attach_after_select", "SELECT 1; ATTACH '{dir}/evil2.sqlite' AS e", {DENIED}),
    ("attach_memory_uri", "ATTACH 'file:{dir}/evil3.sqlite?mode=rwc' AS e", {DENIED}),
    ("vacuum_into", "VACUUM INTO '{dir}/stolen.sqlite'", {DENIED}),
    ("vacuum_into_behind_comment", "-- x\n/* y */ VACUUM INTO '{dir}/stolen2.sqlite'", {DENIED}),
    ("writable_schema", "PRAGMA writable_schema = ON", {DENIED}),
    ("journal_mode", "PRAGMA journal_mode = DELETE", {DENIED}),
    ("pragma_table_function", "SELECT * FROM pragma_database_list", {DENIED}),
    ("temp_table", "CREATE TEMP TABLE t AS SELECT * FROM city", {DENIED}),
    ("temp_trigger", "CREATE TEMP TRIGGER t AFTER INSERT ON city BEGIN SELECT 1; END", {DENIED}),
    ("begin_transaction", "BEGIN IMMEDIATE", {DENIED}),
    ("savepoint", "SAVEPOINT s", {DENIED}),
    ("load_extension", "SELECT load_extension('{dir}/evil.so')", {DENIED}),
    ("fts3_tokenizer_pointer_leak", "SELECT hex(fts3_tokenizer('simple'))", {DENIED}),
    ("readfile", "SELECT readfile('/etc/passwd')", {DENIED}),
    ("recursive_cte_without_end", f"{FOREVER} SELECT count(*) FROM c", {TIMEOUT}),
    ("recursive_cte_rows", f"{FOREVER} SELECT x FROM c", {LIMIT, TIMEOUT}),
    ("five_way_cross_join", "SELECT count(*) FROM city a, city b, city c, city d, city e", {TIMEOUT}),
    ("cross_join_rows", "SELECT * FROM city a, city b", {LIMIT, TIMEOUT}),
    ("cross_join_sort", "SELECT * FROM city a, city b ORDER BY a.Name || b.Name", {TIMEOUT, LIMIT}),
    ("randomblob_bomb", "SELECT randomblob(1000000000)", {LIMIT}),
    ("zeroblob_bomb", "SELECT length(zeroblob(2000000000))", {LIMIT}),
    # ~12 s inside one printf() call: the progress handler never runs, only the worker's hard deadline ends it
    ("printf_bomb", "SELECT printf('%.*c', 2000000000, 'x')", {TIMEOUT}),
    ("group_concat_bomb", "SELECT length(group_concat(a.Name || b.Name)) FROM city a, city b", {LIMIT, TIMEOUT}),
    ("wide_rows", "SELECT randomblob(1000000) FROM city", {LIMIT, TIMEOUT}),
    ("nul_byte", "SELECT 1\x00; DROP TABLE city", {SYNTAX}),
    ("invalid_utf8", "SELECT Name FROM city WHERE Name = '\udcff\udcfe'", {SYNTAX}),
    ("one_megabyte_of_text", "SELECT '" + "A" * 1_000_000 + "'", {LIMIT}),
    ("deep_nesting", "SELECT " + "(" * 5000 + "1" + ")" * 5000, {LIMIT}),
    ("huge_compound", " UNION ALL ".join(["SELECT 1"] * 1000), {LIMIT}),
    ("byte_order_mark", "\ufeffSELECT 1", {SYNTAX}),
    ("prose_not_sql", "We have 10 singers.", {SYNTAX}),
]

SINGLE_CALL = {"printf_bomb"}


@pytest.fixture(scope="module")
def world_copy(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of world_1.sqlite in a folder of its own."""
    target = tmp_path_factory.mktemp("attacked") / "world_1.sqlite"
    shutil.copyfile(data_dir / "spider" / "database" / "world_1" / "world_1.sqlite", target)
    os.chmod(target, 0o644)
    return target


@pytest.fixture(scope="module", params=["worker", "in_process"])
def sandbox(request: pytest.FixtureRequest):
    with Sandbox(LIMITS, isolation=request.param == "worker", grace_s=GRACE_S) as box:
        yield box


@pytest.mark.parametrize("name, sql, expected", ATTACKS, ids=[name for name, _, _ in ATTACKS])
def test_attack_gets_its_typed_status_and_changes_nothing(sandbox: Sandbox, world_copy: Path, name: str, sql: str, expected: set[ExecStatus]) -> None:
    if not sandbox.isolation and name in SINGLE_CALL:
        pytest.skip("blocks ~12 s inside one SQLite call; only the worker process bounds it")
    before = sha256_file(world_copy)
    listing = sorted(os.listdir(world_copy.parent))
    start = time.monotonic()
    result = sandbox.run(world_copy, sql.replace("{dir}", str(world_copy.parent)))
    elapsed = time.monotonic() - start
    assert result.status in expected, f"{name}: {result.status.value} ({result.message})"
    assert elapsed < BOUND_S, f"{name} took {elapsed:.1f} s"
    assert sha256_file(world_copy) == before
    assert sorted(os.listdir(world_copy.parent)) == listing
    if result.status is DENIED:
        assert result.message, name


def test_attack_suite_size() -> None:
    assert len(ATTACKS) >= 30


def test_sandbox_still_answers_after_the_attacks(sandbox: Sandbox, world_copy: Path) -> None:
    result = sandbox.run(world_copy, "SELECT count(*) FROM city")
    assert result.ok and result.rows == [(4079,)] and result.columns == ("count(*)",)


def test_every_attack_as_model_output_through_the_metric_leaves_all_dev_databases_unchanged(data_dir: Path) -> None:
    dev_dbs = sorted({example.db_path for example in load_spider("dev", data_dir) if example.db_path})
    before = {path: sha256_file(path) for path in dev_dbs}
    world = data_dir / "spider" / "database" / "world_1" / "world_1.sqlite"
    outcomes = {}
    with Sandbox(LIMITS, grace_s=GRACE_S) as box:
        for name, sql, _ in ATTACKS:
            raw = f"Sure! Here is the query:\n```sql\n{sql.replace('{dir}', str(world.parent))}\n```\nIt answers the question."
            start = time.monotonic()
            result = score_execution(raw, "SELECT count(*) FROM city", world, sandbox=box)
            assert time.monotonic() - start < BOUND_S, name
            assert isinstance(result.outcome, Outcome) and result.reason, name
            outcomes[name] = result.outcome
    assert {path: sha256_file(path) for path in dev_dbs} == before
    assert len(dev_dbs) == 19
    assert outcomes["drop_table"] is Outcome.EXECUTION_ERROR and outcomes["five_way_cross_join"] is Outcome.TIMEOUT
    # extraction keeps only the first statement, so the SELECT before "; DROP TABLE" is what runs
    assert outcomes["drop_after_select"] is Outcome.MISMATCH


def test_limits_cap_rows_and_bytes(world_copy: Path) -> None:
    with Sandbox(Limits(max_rows=1000), isolation=False) as box:
        assert box.run(world_copy, "SELECT * FROM city LIMIT 1000").ok
        capped = box.run(world_copy, "SELECT * FROM city")
        assert capped.status is LIMIT and "max_rows=1,000" in capped.message and capped.rows == []
    with Sandbox(Limits(max_bytes=10_000), isolation=False) as box:
        assert box.run(world_copy, "SELECT Name FROM city").status is LIMIT


def test_worker_memory_cap_turns_a_memory_hog_into_resource_limit(world_copy: Path) -> None:
    with Sandbox(Limits(timeout_s=20.0, memory_mb=64)) as box:
        result = box.run(world_copy, "SELECT * FROM city a, city b ORDER BY a.Name || b.Name || a.District")
        assert result.status is LIMIT, result.message
        assert box.run(world_copy, "SELECT count(*) FROM city").rows == [(4079,)]


def test_worker_crash_is_a_typed_result_and_the_next_query_runs(world_copy: Path) -> None:
    with Sandbox(Limits(timeout_s=10.0)) as box:
        assert box.run(world_copy, "SELECT 1").ok
        pid = box.worker_pid
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))  # as a segfault or the OOM killer would
        killer.start()
        result = box.run(world_copy, f"{FOREVER} SELECT count(*) FROM c")
        killer.join()
        assert result.status is DENIED and "worker died" in result.message
        assert box.run(world_copy, "SELECT count(*) FROM city").rows == [(4079,)]
        assert box.restarts == 1 and box.worker_pid != pid


def test_worker_blocked_inside_one_sqlite_call_is_killed_at_the_hard_deadline(world_copy: Path) -> None:
    with Sandbox(Limits(timeout_s=0.5), grace_s=0.5) as box:
        start = time.monotonic()
        result = box.run(world_copy, "SELECT printf('%.*c', 2000000000, 'x')")
        assert result.status is TIMEOUT and "worker killed" in result.message
        assert time.monotonic() - start < 3.0
        assert box.run(world_copy, "SELECT 2").rows == [(2,)] and box.restarts == 1


def test_missing_database_and_non_text_are_typed_not_raised(tmp_path: Path) -> None:
    with Sandbox(isolation=False) as box:
        missing = box.run(tmp_path / "nope.sqlite", "SELECT 1")
        assert missing.status is DENIED and "nope.sqlite" in missing.message
        assert box.run(tmp_path / "nope.sqlite", None).status is SYNTAX  # type: ignore[arg-type]


@pytest.mark.parametrize(("sql", "name"), [
    ("SELECT * FROM json_each('[1,2]')", "json_each"),
    ("SELECT value FROM JSON_TREE('[1]')", "json_tree"),
    ("SELECT * FROM pragma_table_info('city')", "pragma_table_info"),
    ("SELECT name FROM city, dbstat WHERE 0", "dbstat"),
])
def test_table_valued_function_denial_names_the_function(sandbox: Sandbox, world_copy: Path, sql: str, name: str) -> None:
    """SQLite authorises an eponymous virtual table as 'UPDATE sqlite_master', which is what the denial
    used to say: a reader would look for a write that the query does not contain."""
    result = sandbox.run(world_copy, sql)
    assert result.status is ExecStatus.EXECUTION_ERROR
    assert result.message == f"denied: table-valued function {name} (a virtual table) is not allowed (read-only evaluation)"
