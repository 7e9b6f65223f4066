"""A crash-safe on-disk store of model results (generations and log-likelihoods), in SQLite WAL mode.

Why SQLite in WAL mode: every batch's results are committed in one transaction the moment the batch
finishes, so a process killed at any point (SIGKILL, OOM killer, a cancelled CI job) loses at most the
batch it was computing, and a rerun reads the rest back. WAL lets several pytest-xdist workers read while
one writes; writers queue on SQLite's own lock (``busy_timeout``), so nobody sees "database is locked".
With ``synchronous=NORMAL`` a process crash never loses a committed batch; only a power loss can drop
the last few (never corrupting the file).

Keys are opaque sha256 hashes made by :func:`result_key` from everything that decides the result: the
engine version, the kind of request, the model key (weights + adapter fingerprint, dtype, backend) and the
request itself (prompt, decoding parameters). A result can therefore never be served to another model,
adapter, prompt or setting.

A file that is not a SQLite database, or fails SQLite's integrity check, is set aside (renamed
``<name>.corrupt-<time>``) with a warning and a fresh cache is started: it only holds recomputable
results. A valid SQLite file that is not ours (another program's database, an older schema) is never
touched: it raises :class:`~evalkit.errors.CacheError` that says how to fix it.

Why :meth:`ResultCache.check`: a cache path that cannot be used (a folder, a path under a regular file,
a read-only folder or file) must stop the run before hours of inference, not after the first batch was
computed. If storing a batch fails anyway (the disk fills up mid-run), the computed results are still
returned and a warning says they were not stored: a cache may cost a recomputation, never a result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from evalkit.errors import CacheError, DataError
from evalkit.paths import cache_dir, folder_problem

SCHEMA_NAME = "evalkit-results"
SCHEMA_VERSION = "1"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 120_000
_LOOKUP_CHUNK = 500  # stay far below SQLite's limit on bound parameters


def default_cache_path() -> Path:
    """``<cache dir>/results.sqlite`` (``TRADEOFF_CACHE_DIR`` or ``datasets_cache/``)."""
    return cache_dir() / "results.sqlite"


def result_key(engine_version: str, kind: str, model_key: str, request: Mapping[str, Any]) -> str:
    """The cache key: a hash over everything that determines one result. A request whose text is not valid
    Unicode (a lone surrogate, which JSON's ``"\\ud800"`` decodes to) raises :class:`DataError` naming it: no
    tokenizer could encode it either, and a bare UnicodeEncodeError mid-run names neither the text nor the fix."""
    blob = json.dumps([engine_version, kind, model_key, request], sort_keys=True, ensure_ascii=False)
    try:
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
    except UnicodeEncodeError as exc:
        around = blob[max(0, exc.start - 40):exc.end + 40].encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise DataError(f"A {kind} request holds a lone surrogate (\\u{ord(blob[exc.start]):04x}), which is not text and "
                        f"cannot be sent to a model: ...{around}... Fix: correct the data it came from (a --suite file "
                        "is checked line by line when the run starts).") from None


class ResultCache:
    """Results keyed by :func:`result_key`, written per batch, shared safely between processes.

    ``ResultCache()`` uses :func:`default_cache_path`. The connection opens lazily and is reopened in a
    forked child, so one object can be handed to worker processes.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser().resolve() if path is not None else default_cache_path()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ public API

    def check(self) -> None:
        """Raise :class:`CacheError` now, before any computing, if the cache cannot be read and written:
        the path is a folder or lies under a regular file, the folder or the file is read-only, or the file
        is another program's database or an older schema. Opens (and, if new, creates) the cache."""
        self._check_path()
        with self._lock:
            self._connection()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that are present."""
        found: dict[str, Any] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = list(keys[start:start + _LOOKUP_CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._execute(conn, f"SELECT key, value FROM results WHERE key IN ({marks})", chunk)
                for key, value in rows:
                    found[key] = self._decode(key, value)
        return found

    def put_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, kind: str, model_key: str) -> None:
        """Store results in one transaction (all of them, or none if the process dies meanwhile)."""
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        if not pairs:
            return
        now = time.time()
        rows = [(key, kind, model_key, json.dumps(value, ensure_ascii=False), now) for key, value in pairs]
        with self._lock:
            conn = self._connection()
            try:
                with self._transaction(conn):
                    conn.executemany(
                        "INSERT OR REPLACE INTO results (key, kind, model, value, created) VALUES (?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.Error as exc:
                raise CacheError(f"Result cache {self.path}: could not store {len(rows)} results ({exc}). "
                                 f"Fix: {self._fix}") from exc

    def __len__(self) -> int:
        with self._lock:
            return int(self._execute(self._connection(), "SELECT count(*) FROM results", ())[0][0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultCache({str(self.path)!r})"

    # ------------------------------------------------------------------------------------- internals

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    @property
    def _fix(self) -> str:
        return (f"make {self.path.parent} and the cache file writable, or pass another folder "
                "(--results-cache, TRADEOFF_CACHE_DIR, ResultCache(path)).")

    def _check_path(self) -> None:
        """The folder exists (created if need be) and the folder and the file can be written, checked by
        trying (permission bits do not tell: root, ACLs, read-only mounts)."""
        if self.path.is_dir():
            raise CacheError(f"Result cache {self.path} is a folder, not a file. Fix: pass the folder that should "
                             "hold results.sqlite as --results-cache / TRADEOFF_CACHE_DIR, or a file path to ResultCache.")
        problem = folder_problem(self.path.parent)  # the lock, WAL and new files go there
        try:
            if problem is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists():
                    open(self.path, "r+b").close()
        except OSError as exc:
            problem = f"{self.path} cannot be written ({exc.strerror})"
        if problem:
            raise CacheError(f"Result cache {self.path}: {problem}. Fix: {self._fix}")

    def _open(self) -> sqlite3.Connection:
        """Open, validate and (if new) initialise the file, under an inter-process lock so that two
        workers never both set aside or both create it."""
        self._check_path()
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            problem = self._corruption()
            if problem:
                self._set_aside(problem)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._check_or_init(conn)  # before WAL: a foreign file must stay byte-for-byte untouched
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except BaseException:
                conn.close()
                raise
            return conn

    def _corruption(self) -> str | None:
        """Why the existing file cannot be a usable SQLite database, or None."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with self.path.open("rb") as handle:
            if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                return "it is not a SQLite database"
        try:  # as_uri() escapes '%', '#' and '?', which a hand-built file: URI would misread
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:  # cannot open or lock it: not a verdict on the file's content
            raise CacheError(f"Result cache {self.path} cannot be opened ({exc}). Fix: {self._fix}") from None
        except sqlite3.DatabaseError as exc:  # not a database, or malformed
            return f"SQLite cannot read it ({exc})"
        return None if verdict == "ok" else f"SQLite's integrity check failed ({verdict})"

    def _set_aside(self, problem: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):  # a stale log must not be replayed into the fresh file
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + suffix))
        warnings.warn(
            f"Result cache {self.path} was unusable ({problem}); moved it to {aside.name} and started an empty "
            "cache. Results will be recomputed. Delete the moved file once you no longer need it.",
            RuntimeWarning,
            stacklevel=4,
        )

    def _check_or_init(self, conn: sqlite3.Connection) -> None:
        with self._transaction(conn):
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("schema", SCHEMA_NAME), ("version", SCHEMA_VERSION)])
                conn.execute("CREATE TABLE results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, "
                             "value TEXT NOT NULL, created REAL NOT NULL)")
                return
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall()) if "meta" in tables else {}
        if meta.get("schema") != SCHEMA_NAME:
            raise CacheError(
                f"{self.path} is a SQLite database but not a tradeoff result cache (tables: {', '.join(sorted(tables))}). "
                "It was left untouched. Fix: pass another cache path (ResultCache(path) / TRADEOFF_CACHE_DIR), "
                "or move that file away."
            )
        if meta.get("version") != SCHEMA_VERSION:
            raise CacheError(
                f"{self.path} is a tradeoff result cache of schema version {meta.get('version')!r}; this version "
                f"reads {SCHEMA_VERSION!r}. Fix: delete the file (results are recomputed) or use another cache path."
            )

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue instead of failing
        half-way through with SQLITE_BUSY on lock upgrade."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after some errors (SQLITE_FULL)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _execute(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"Result cache {self.path} failed while reading ({exc}). "
                "Fix: delete the file (results are recomputed) or pass another cache path."
            ) from exc

    def _decode(self, key: str, value: str) -> Any:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise CacheError(
                f"Result cache {self.path}: the entry {key[:16]}… is not valid JSON ({exc}); the file was modified "
                "outside tradeoff. Fix: delete the file (results are recomputed)."
            ) from exc
