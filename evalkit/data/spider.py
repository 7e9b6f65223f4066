"""Spider 1.0 (Yu et al., 2018) from the release files: ``dev.json``, ``tables.json``,
``database/<db_id>/<db_id>.sqlite`` and the train JSONs.

Train comes in two formats. The original ``spider/train_spider.json`` / ``train_others.json`` (fields
``question``, ``query``, ``db_id``) is used when present. Otherwise ``spider_syn/train_spider.json``
(Spider-Syn, Gan et al. 2021) stands in: its ``SpiderQuestion`` field is the original question and
``query`` the original gold query (32 of 7000 differ cosmetically from ``train_gold.sql``).

An example whose database file is missing (here: ``wta_1``, 62 dev questions) keeps ``db_path=None``
and a ``skip_reason``: callers report it as skipped, never as a score of 0 and never silently dropped.
A database file that is present but cannot be one (0 bytes, no SQLite header, no tables) is a
:class:`DataError` at load time: SQLite opens a 0-byte file as an empty database, and a run would
otherwise generate SQL against an empty schema and report every gold query as failing.
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evalkit.data.files import FETCH_HINT, read_json, require_file, sha256_files
from evalkit.errors import DataError
from evalkit.paths import data_dir as resolve_data_dir

Split = Literal["dev", "train", "train_spider", "train_others"]
SchemaStyle = Literal["create", "compact"]
SCHEMA_STYLES: tuple[SchemaStyle, ...] = ("create", "compact")
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class SpiderExample:
    """One Spider question with its gold query and the database it runs on."""

    split: str
    index: int
    db_id: str
    question: str
    query: str
    db_path: Path | None
    source: str

    @property
    def id(self) -> str:
        """Stable id used in test ids and caches, e.g. ``dev0042``."""
        return f"{self.split}{self.index:04d}"

    @property
    def skip_reason(self) -> str | None:
        """Why this example cannot be executed, or None when its database is present."""
        if self.db_path is None:
            return f"database file missing: database/{self.db_id}/{self.db_id}.sqlite (not in this copy of Spider)"
        return None

    @property
    def hardness(self) -> str:
        """Official Spider hardness of the gold query: easy, medium, hard or extra."""
        from evalkit.data.hardness import spider_hardness

        return spider_hardness(self.query)

    def schema(self, sample_rows: int = 0, style: SchemaStyle = "create") -> str:
        """The prompt rendering of this example's database (see :func:`render_schema`)."""
        if self.db_path is None:
            raise DataError(f"{self.id}: {self.skip_reason}")
        return render_schema(self.db_path, sample_rows, style)


def spider_root(data_dir: str | Path | None = None) -> Path:
    root = resolve_data_dir(data_dir) / "spider"
    if not root.is_dir():
        raise DataError(f"Spider folder not found: {root}. Fix: {FETCH_HINT}.")
    return root


def database_path(db_id: str, data_dir: str | Path | None = None) -> Path | None:
    """Path of ``database/<db_id>/<db_id>.sqlite``, or None when the file is absent; a file that is no
    usable database raises :class:`DataError` (:func:`check_database`)."""
    path = spider_root(data_dir) / "database" / db_id / f"{db_id}.sqlite"
    if not path.is_file():
        return None
    check_database(path)
    return path


def check_database(path: Path) -> None:
    """Raise :class:`DataError` naming the file and the fix when it is empty, not SQLite, or has no table."""
    stat = path.stat()
    problem = _database_problem(path.resolve(), stat.st_mtime_ns, stat.st_size)
    if problem:
        raise DataError(f"{path} {problem}. Fix: restore it from the Spider release (check the copy with "
                        f"`python -m evalkit.data verify`, or fetch it again: {FETCH_HINT}).")


@functools.lru_cache(maxsize=1024)
def _database_problem(path: Path, _mtime_ns: int, size: int) -> str | None:
    """Why the file cannot be a Spider database, or None (cached per file version: loaders call it often)."""
    if size == 0:
        return "is an empty file (0 bytes), not a database"
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            return "is not a readable SQLite database (no SQLite header)"
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"is not a readable SQLite database ({exc})"
    return None if tables else "has no tables"


@functools.cache
def _table_db_ids(tables_path: Path) -> frozenset[str]:
    entries = read_json(tables_path, "Spider tables.json")
    try:
        return frozenset(entry["db_id"] for entry in entries)
    except (TypeError, KeyError) as exc:
        raise DataError(f"{tables_path}: every entry needs a 'db_id'. Fix: restore the original tables.json.") from exc


def _train_sources(root: Path, split: Split) -> list[tuple[Path, str]]:
    """(file, format) pairs that make up a train split, original files preferred."""
    sources: list[tuple[Path, str]] = []
    if split in ("train", "train_spider"):
        original = root / "train_spider.json"
        syn = root.parent / "spider_syn" / "train_spider.json"
        if original.is_file():
            sources.append((original, "spider"))
        elif syn.is_file():
            sources.append((syn, "spider_syn"))
        else:
            raise DataError(
                f"No Spider train file: neither {original} nor {syn} exists. Fix: {FETCH_HINT}."
            )
    if split in ("train", "train_others"):
        others = root / "train_others.json"
        if others.is_file():
            sources.append((others, "spider"))
        elif split == "train_others":
            raise DataError(f"Spider train_others.json not found: {others}. Fix: copy it from the Spider release.")
    return sources


def _field(record: Any, path: Path, row: int, *names: str) -> str:
    for name in names:
        if isinstance(record, dict) and isinstance(record.get(name), str):
            return record[name]
    raise DataError(
        f"{path}, example {row}: missing text field {' or '.join(repr(n) for n in names)}. "
        "Fix: restore the original Spider file."
    )


def load_spider(split: Split = "dev", data_dir: str | Path | None = None) -> list[SpiderExample]:
    """Load a Spider split; examples keep their file order and 0-based ``index``.

    ``train`` is ``train_spider`` followed by ``train_others`` when that file exists.
    """
    root = spider_root(data_dir)
    tables = require_file(root / "tables.json", "Spider tables.json")
    known = _table_db_ids(tables)
    files = [(root / "dev.json", "spider")] if split == "dev" else _train_sources(root, split)
    examples: list[SpiderExample] = []
    for path, fmt in files:
        records = read_json(path, f"Spider {path.name}")
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of examples. Fix: restore the original Spider file.")
        question_fields = ("question",) if fmt == "spider" else ("SpiderQuestion", "question")
        for row, record in enumerate(records):
            db_id = _field(record, path, row, "db_id")
            if db_id not in known:
                raise DataError(
                    f"{path}, example {row}: db_id {db_id!r} is not in {tables}. "
                    "Fix: use the tables.json from the same Spider release."
                )
            examples.append(
                SpiderExample(
                    split="dev" if split == "dev" else "train",
                    index=len(examples),
                    db_id=db_id,
                    question=_field(record, path, row, *question_fields),
                    query=_field(record, path, row, "query"),
                    db_path=database_path(db_id, data_dir),
                    source=path.name if fmt == "spider" else f"spider_syn/{path.name}",
                )
            )
    return examples


def connect_readonly(db_path: Path) -> sqlite3.Connection:
    """Open a database read-only and immutable; a corrupt file raises a DataError naming it."""
    require_file(db_path, "Spider database")
    check_database(db_path)
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    conn.text_factory = lambda b: b.decode(errors="ignore")  # as the official evaluator does
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DataError(
            f"{db_path} is not a readable SQLite database ({exc}). "
            "Fix: restore it from the Spider release (check it with `sha256sum -c SHA256SUMS`)."
        ) from exc
    return conn


@functools.lru_cache(maxsize=256)
def render_schema(db_path: Path, sample_rows: int = 0, style: SchemaStyle = "create") -> str:
    """The database as the prompt shows it, in one of two styles.

    ``create``: its ``CREATE TABLE`` statements (with primary and foreign keys), as stored in it.
    ``compact``: one ``table(column, column, ...)`` line per table, then one line of foreign keys
    (``a.x = b.y``); about a fifth of the tokens, so a small model trains and answers faster on CPU.

    With ``sample_rows > 0`` each table is followed by a comment holding its first rows, in the style of
    Rajkumar et al. (2022): models then see values such as 'United States' rather than guessing 'usa'.
    """
    if style not in SCHEMA_STYLES:
        raise DataError(f"schema style {style!r}: use one of {', '.join(SCHEMA_STYLES)}.")
    conn = connect_readonly(db_path)
    try:
        tables = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
        parts, keys = [], []
        for name, ddl in tables:
            if style == "create":
                text = (ddl or "").strip().rstrip(";") + ";"
            else:
                columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')]
                text = f"{name}({', '.join(columns)})"
                keys += [f"{name}.{row[3]} = {row[2]}.{row[4] or row[3]}"
                         for row in conn.execute(f'PRAGMA foreign_key_list("{name}")')]
            if sample_rows > 0:
                text += "\n" + _sample_rows_comment(conn, name, sample_rows)
            parts.append(text)
        if style == "create":
            return "\n\n".join(parts)
        return "\n".join(parts + ([f"Foreign keys: {', '.join(keys)}"] if keys else []))
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{db_path}: cannot read its schema ({exc}). Fix: restore the database file.") from exc
    finally:
        conn.close()


def _sample_rows_comment(conn: sqlite3.Connection, table: str, rows: int) -> str:
    cursor = conn.execute(f'SELECT * FROM "{table}" LIMIT {int(rows)}')
    header = " ".join(column[0] for column in cursor.description)
    values = "\n".join(" ".join(str(value) for value in row) for row in cursor.fetchall())
    return f"/*\n{rows} example rows:\nSELECT * FROM {table} LIMIT {rows};\n{header}\n{values}\n*/"


def checksum(split: Split = "dev", data_dir: str | Path | None = None) -> str:
    """sha256 over the split's JSON files and tables.json, for reports and baselines."""
    root = spider_root(data_dir)
    files = [root / "dev.json"] if split == "dev" else [path for path, _ in _train_sources(root, split)]
    return sha256_files([*files, root / "tables.json"])
