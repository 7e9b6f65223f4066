"""The on-disk result cache: round trips, keys, concurrent writer processes, corrupt and foreign files."""

from __future__ import annotations

import multiprocessing
import sqlite3
import warnings
from pathlib import Path

import pytest

from evalkit.errors import CacheError, DataError, EvalkitError
from evalkit.inference.cache import SQLITE_MAGIC, ResultCache, default_cache_path, result_key


def test_round_trip_and_exact_values(tmp_path: Path) -> None:
    values = {"a": -1.2345678901234567, "b": "SELECT name FROM singer WHERE age > 30;\n", "c": "naïve ünïcode ✓"}
    with ResultCache(tmp_path / "r.sqlite") as cache:
        assert cache.get_many(list(values)) == {}
        cache.put_many(values, kind="test", model_key="m")
        assert cache.get_many(["a", "zzz", "c"]) == {"a": values["a"], "c": values["c"]}
        cache.put_many({"a": 0.5}, kind="test", model_key="m")  # a rerun overwrites, never duplicates
        assert len(cache) == 3
    # A new object on the same file (a new process, a rerun) reads everything back.
    assert ResultCache(tmp_path / "r.sqlite").get_many(list(values) + ["a"]) == {**values, "a": 0.5}
    # More keys than SQLite accepts as bound parameters in one query.
    many = {f"k{i}": i for i in range(1500)}
    cache = ResultCache(tmp_path / "r.sqlite")
    cache.put_many(many, kind="test", model_key="m")
    assert cache.get_many(list(many)) == many


def test_keys_separate_everything_that_changes_a_result() -> None:
    base = result_key("hf-1", "generate", "hf:abc:float32:none", {"prompt": "p", "max_new_tokens": 8, "stop": []})
    variants = [
        result_key("hf-2", "generate", "hf:abc:float32:none", {"prompt": "p", "max_new_tokens": 8, "stop": []}),
        result_key("hf-1", "loglikelihood", "hf:abc:float32:none", {"prompt": "p", "max_new_tokens": 8, "stop": []}),
        result_key("hf-1", "generate", "hf:abd:float32:none", {"prompt": "p", "max_new_tokens": 8, "stop": []}),
        result_key("hf-1", "generate", "hf:abc:bfloat16:none", {"prompt": "p", "max_new_tokens": 8, "stop": []}),
        result_key("hf-1", "generate", "hf:abc:float32:none", {"prompt": "p ", "max_new_tokens": 8, "stop": []}),
        result_key("hf-1", "generate", "hf:abc:float32:none", {"prompt": "p", "max_new_tokens": 9, "stop": []}),
        result_key("hf-1", "generate", "hf:abc:float32:none", {"prompt": "p", "max_new_tokens": 8, "stop": [";"]}),
    ]
    assert len({base, *variants}) == 1 + len(variants)
    # Dict order does not matter.
    assert base == result_key("hf-1", "generate", "hf:abc:float32:none",
                              {"stop": [], "max_new_tokens": 8, "prompt": "p"})


def test_default_location_follows_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEOFF_CACHE_DIR", str(tmp_path / "cachedir"))
    assert default_cache_path() == (tmp_path / "cachedir" / "results.sqlite").resolve()
    assert ResultCache().path == default_cache_path()


def _writer(path: str, worker: int, batches: int) -> None:
    cache = ResultCache(path)
    for batch in range(batches):
        cache.put_many({f"w{worker}-b{batch}-{i}": [worker, batch, i] for i in range(5)}, kind="test", model_key="m")


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(str(path), w, 40)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    cache = ResultCache(path)
    assert len(cache) == 4 * 40 * 5
    expected = {f"w{w}-b{b}-{i}": [w, b, i] for w in range(4) for b in range(40) for i in range(5)}
    assert cache.get_many(list(expected)) == expected


def test_garbage_file_is_set_aside_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not a database, just some text someone saved here\n" * 20)
    cache = ResultCache(path)
    with pytest.warns(RuntimeWarning, match=r"results\.sqlite was unusable \(it is not a SQLite database\); moved it"):
        assert cache.get_many(["x"]) == {}
    aside = list(tmp_path.glob("results.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    cache.put_many({"x": 1}, kind="test", model_key="m")
    assert ResultCache(path).get_many(["x"]) == {"x": 1}


def test_damaged_database_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    cache = ResultCache(path)
    cache.put_many({f"k{i}": "v" * 200 for i in range(300)}, kind="test", model_key="m")
    cache.close()
    # Checkpoint the WAL into the main file, then overwrite pages in the middle (header intact).
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(path.read_bytes())
    assert data.startswith(SQLITE_MAGIC) and len(data) > 20000
    data[8192:16384] = b"\xff" * 8192
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="integrity check failed|SQLite cannot read it"):
        assert ResultCache(path).get_many(["k1"]) == {}
    assert list(tmp_path.glob("results.sqlite.corrupt-*"))


def _sql(path: Path, *statements: str) -> None:
    """Change the file behind the cache's back, as another program (or a person) would."""
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "mine.sqlite"
    _sql(path, "CREATE TABLE singer (id INTEGER, name TEXT)", "INSERT INTO singer VALUES (1, 'Joe')")
    before = path.read_bytes()
    with pytest.raises(EvalkitError, match=r"mine\.sqlite is a SQLite database but not a tradeoff result cache "
                                           r"\(tables: singer\).*Fix: pass another cache path"):
        ResultCache(path).get_many(["x"])
    assert path.read_bytes() == before


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultCache(path).put_many({"x": 1}, kind="test", model_key="m")
    _sql(path, "UPDATE meta SET value = '0' WHERE name = 'version'")
    with pytest.raises(EvalkitError, match=r"schema version '0'.*Fix: delete the file"):
        ResultCache(path).get_many(["x"])


def test_tampered_entry_is_an_error_not_a_wrong_result(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultCache(path).put_many({"x": 1.5}, kind="test", model_key="m")
    _sql(path, "UPDATE results SET value = '1.5 or so' WHERE key = 'x'")
    with pytest.raises(EvalkitError, match="not valid JSON.*Fix: delete the file"):
        ResultCache(path).get_many(["x"])


@pytest.mark.parametrize("folder", ["100%41 done", "run #3", "what?", "a%2Fb"])
def test_valid_cache_in_a_folder_with_uri_characters_is_reused(tmp_path: Path, folder: str) -> None:
    """The integrity check built an unescaped file: URI, so '%41' opened another name (the cache was judged
    corrupt and set aside at every open) and '#'/'?' cut the path (an empty stray file was left)."""
    path = tmp_path / folder / "results.sqlite"
    with ResultCache(path) as cache:
        cache.put_many({"x": 1}, kind="test", model_key="m")

    def files() -> list[str]:  # SQLite's -wal/-shm come and go with open connections
        return sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(("-wal", "-shm")))

    before = files()
    with warnings.catch_warnings(), ResultCache(path) as cache:
        warnings.simplefilter("error")  # a "moved it to ...corrupt" warning fails the test
        assert cache.get_many(["x"]) == {"x": 1}
    assert files() == before


def test_cache_path_that_is_a_folder_or_under_a_file_is_a_cache_error(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "folder.sqlite").mkdir()
    for path, message in [(tmp_path / "folder.sqlite", "is a folder"),
                          (tmp_path / "plain.txt" / "results.sqlite", "plain.txt is a file, not a folder"),
                          (tmp_path / "plain.txt" / "deeper" / "results.sqlite", "plain.txt is a file, not a folder")]:
        with pytest.raises(CacheError, match=message) as caught:
            ResultCache(path).check()
        assert str(path) in str(caught.value) and "Fix:" in str(caught.value)
        with pytest.raises(CacheError, match=message):  # not only check(): every use says the same
            ResultCache(path).get_many(["x"])


CHECK_THEN_READ = """
import warnings
from evalkit.inference.cache import ResultCache
from evalkit.errors import CacheError
warnings.simplefilter("error")
try:
    ResultCache({path!r}).check()
except CacheError as exc:
    print("CacheError:", exc)
"""


def test_read_only_folder_is_refused_before_computing_and_the_cache_kept(tmp_path: Path, run_unprivileged) -> None:
    """A read-only folder made a valid WAL cache look corrupt, and setting it aside raised PermissionError."""
    path = tmp_path / "ro" / "results.sqlite"
    ResultCache(path).put_many({"x": 1}, kind="test", model_key="m")
    before = path.read_bytes()
    path.parent.chmod(0o555)
    try:
        run = run_unprivileged(CHECK_THEN_READ.format(path=str(path)))
    finally:
        path.parent.chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert f"CacheError: Result cache {path}: {path.parent} cannot be written" in run.stdout and "Fix:" in run.stdout
    assert path.read_bytes() == before and not list(path.parent.glob("*.corrupt-*"))


def test_read_only_cache_file_is_refused_before_computing(tmp_path: Path, run_unprivileged) -> None:
    """A read-only file read fine and the first write raised 'attempt to write a readonly database' after
    the batch had been computed."""
    path = tmp_path / "results.sqlite"
    ResultCache(path).put_many({"x": 1}, kind="test", model_key="m")
    path.chmod(0o444)
    try:
        run = run_unprivileged(CHECK_THEN_READ.format(path=str(path)))
    finally:
        path.chmod(0o644)
    assert run.returncode == 0, run.stderr
    assert f"CacheError: Result cache {path}: {path} cannot be written" in run.stdout


def test_a_batch_that_cannot_be_stored_is_returned_with_a_warning(tmp_path: Path) -> None:
    """When the cache breaks mid-run (here SQLite's "database or disk is full", from a page limit), the
    computed results still reach the caller; the warning says they were not stored."""
    from evalkit.inference import _cached_run

    cache = ResultCache(tmp_path / "results.sqlite")
    cache.check()
    conn = cache._connection()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.warns(RuntimeWarning, match=r"could not store 2 results \(database or disk is full\).*computed "
                                            r"results are used"):
        out = _cached_run(["a", "b"], lambda indices: iter([[(i, "x" * 5000 * (i + 1)) for i in indices]]),
                          cache=cache, kind="t", model_key="m", progress=False, unit="x")
    assert out == ["x" * 5000, "x" * 10000]


def test_a_request_that_is_not_valid_unicode_is_a_data_error_naming_it() -> None:
    """A lone surrogate in a prompt raised a bare UnicodeEncodeError from the cache key, mid-run."""
    with pytest.raises(DataError, match=r"A generate request holds a lone surrogate \(\\ud800\).*Question: caf\\ud800\?"):
        result_key("hf-1", "generate", "m", {"prompt": "Question: caf\ud800?", "max_new_tokens": 8})
    assert result_key("hf-1", "generate", "m", {"prompt": "caf\U0001f600"})  # a real astral character is text
