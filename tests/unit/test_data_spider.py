"""Spider loader on the real release files, and its errors on corrupted copies of them."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from evalkit.data import fetch, spider
from evalkit.errors import DataError


def test_dev_counts_and_missing_database_is_a_skip_reason(data_dir: Path) -> None:
    dev = spider.load_spider("dev", data_dir)
    assert len(dev) == 1034
    missing = [e for e in dev if e.db_path is None]
    assert len(missing) == 62 and {e.db_id for e in missing} == {"wta_1"}
    assert all("wta_1.sqlite" in e.skip_reason for e in missing)
    assert dev[42].id == "dev0042" and dev[0].db_id == "concert_singer" and dev[0].skip_reason is None
    assert Counter(e.db_id for e in dev)["world_1"] == 120


def test_every_executable_dev_gold_query_runs(data_dir: Path) -> None:
    failures = []
    connections: dict[Path, object] = {}
    for example in spider.load_spider("dev", data_dir):
        if example.db_path is None:
            continue
        conn = connections.setdefault(example.db_path, spider.connect_readonly(example.db_path))
        try:
            conn.execute(example.query).fetchall()
        except Exception as exc:  # noqa: BLE001 - collect every failure for the message
            failures.append((example.id, str(exc)))
    assert sum(1 for _ in connections) == 19
    assert failures == []


def test_train_falls_back_to_spider_syn_original_questions(data_dir: Path) -> None:
    train = spider.load_spider("train", data_dir)
    assert len(train) == 7000
    assert train[0].question == "How many heads of the departments are older than 56 ?"
    assert train[0].source == "spider_syn/train_spider.json"
    assert {e.db_id for e in train if e.db_path is None} == {"baseball_1", "soccer_1"}


@pytest.fixture
def spider_copy(data_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the Spider JSON files; databases are linked, not copied (43 MB)."""
    root = tmp_path / "spider"
    root.mkdir()
    for name in ("dev.json", "tables.json"):
        shutil.copy(data_dir / "spider" / name, root / name)
    (root / "database").symlink_to(data_dir / "spider" / "database")
    shutil.copytree(data_dir / "spider_syn", tmp_path / "spider_syn")
    return tmp_path


def test_original_train_format_is_preferred(spider_copy: Path) -> None:
    records = [{"db_id": "concert_singer", "question": "How many singers?", "query": "SELECT count(*) FROM singer"}]
    (spider_copy / "spider/train_spider.json").write_text(json.dumps(records))
    (spider_copy / "spider/train_others.json").write_text(json.dumps(records * 2))
    train = spider.load_spider("train", spider_copy)
    assert [e.source for e in train] == ["train_spider.json", "train_others.json", "train_others.json"]
    assert [e.index for e in train] == [0, 1, 2]
    assert len(spider.load_spider("train_others", spider_copy)) == 2


def test_malformed_json_names_line_and_fix(spider_copy: Path) -> None:
    path = spider_copy / "spider/dev.json"
    path.write_text(path.read_text()[:5000])
    with pytest.raises(DataError, match=r"dev\.json is not valid JSON.*line \d+, column \d+.*Fix"):
        spider.load_spider("dev", spider_copy)


def test_db_id_missing_from_tables_json(spider_copy: Path) -> None:
    path = spider_copy / "spider/tables.json"
    tables = [t for t in json.loads(path.read_text()) if t["db_id"] != "pets_1"]
    path.write_text(json.dumps(tables))
    with pytest.raises(DataError, match=r"example \d+: db_id 'pets_1' is not in .*tables\.json"):
        spider.load_spider("dev", spider_copy)


def test_missing_field_and_missing_folder(spider_copy: Path, tmp_path: Path) -> None:
    path = spider_copy / "spider/dev.json"
    records = json.loads(path.read_text())
    del records[7]["query"]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"example 7: missing text field 'query'"):
        spider.load_spider("dev", spider_copy)
    with pytest.raises(DataError, match="Spider folder not found.*Fix"):
        spider.load_spider("dev", tmp_path / "nowhere")


def test_corrupt_sqlite_names_the_file(tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "pets_1.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match=r"pets_1\.sqlite is not a readable SQLite database.*Fix"):
        spider.render_schema(bad)
    truncated = tmp_path / "car_1.sqlite"
    truncated.write_bytes((data_dir / "spider/database/car_1/car_1.sqlite").read_bytes()[:3000])
    with pytest.raises(DataError, match=r"car_1\.sqlite"):
        spider.render_schema(truncated)


def test_schema_rendering_has_keys_and_sample_rows(data_dir: Path) -> None:
    example = spider.load_spider("dev", data_dir)[0]
    schema = example.schema()
    assert schema.count("CREATE TABLE") == 4
    assert 'PRIMARY KEY ("Singer_ID")' in schema and 'FOREIGN KEY ("Stadium_ID") REFERENCES "stadium"' in schema
    with_rows = example.schema(sample_rows=3)
    assert "3 example rows:\nSELECT * FROM singer LIMIT 3;" in with_rows
    assert "Netherlands" in with_rows  # a real value from the singer table


def test_compact_schema_is_one_line_per_table_and_the_foreign_keys(data_dir: Path) -> None:
    example = spider.load_spider("dev", data_dir)[0]
    assert example.schema(style="compact").splitlines() == [
        "stadium(Stadium_ID, Location, Name, Capacity, Highest, Lowest, Average)",
        "singer(Singer_ID, Name, Country, Song_Name, Song_release_year, Age, Is_male)",
        "concert(concert_ID, concert_Name, Theme, Stadium_ID, Year)",
        "singer_in_concert(concert_ID, Singer_ID)",
        "Foreign keys: concert.Stadium_ID = stadium.Stadium_ID, singer_in_concert.Singer_ID = singer.Singer_ID, "
        "singer_in_concert.concert_ID = concert.concert_ID",
    ]
    assert "Netherlands" in example.schema(sample_rows=3, style="compact")
    with pytest.raises(DataError, match="schema style 'short'"):
        example.schema(style="short")  # type: ignore[arg-type]


@pytest.fixture
def broken_database(spider_copy: Path, data_dir: Path, request: pytest.FixtureRequest) -> Path:
    """A copy whose database/ links every real database folder except concert_singer, which holds a bad file."""
    database = spider_copy / "spider" / "database"
    database.unlink()
    database.mkdir()
    for folder in (data_dir / "spider" / "database").iterdir():
        if folder.name != "concert_singer":
            (database / folder.name).symlink_to(folder)
    (database / "concert_singer").mkdir()
    bad = database / "concert_singer" / "concert_singer.sqlite"
    if request.param == "empty":
        bad.write_bytes(b"")
    elif request.param == "no tables":
        sqlite3.connect(bad).execute("PRAGMA user_version = 1").close()
    else:
        bad.write_text("CREATE TABLE singer (id INTEGER);\n")  # the schema as text, not a database
    return bad


@pytest.mark.parametrize(("broken_database", "problem"), [
    ("empty", "is an empty file"), ("no tables", "has no tables"), ("text", "is not a readable SQLite database (no SQLite header)"),
], indirect=["broken_database"])
def test_unusable_database_file_is_a_data_error_at_load_time(broken_database: Path, problem: str) -> None:
    """A 0-byte file was taken for an empty database: a run generated SQL against an empty schema and
    reported every example as gold_error."""
    root = broken_database.parents[3]
    for load in (lambda: spider.load_spider("dev", root), lambda: spider.connect_readonly(broken_database)):
        with pytest.raises(DataError, match=re.escape(problem)) as caught:
            load()
        assert str(broken_database) in str(caught.value) and "Fix: restore it" in str(caught.value)
    report = fetch.verify(root)
    assert not report.ok and any(problem in p for p in report.problems)
