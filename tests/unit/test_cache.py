"""The on-disk result cache: round trips, keys, concurrent writer processes, corrupt and foreign files."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
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
