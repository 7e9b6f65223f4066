"""Run untrusted SQL (model output) against a Spider database without letting it do harm.

Every query gets a typed :class:`ExecResult`; no exception escapes :meth:`Sandbox.run`. The layers, each
covering what the one before cannot:

1. **Statement gate.** Only one statement whose first keyword is SELECT, WITH or VALUES is run. SQLite
   runs ``VACUUM INTO 'file'`` even on a read-only connection (it writes a new file), so this is checked
   before SQLite sees the text.
2. **Read-only, immutable connection** (``mode=ro&immutable=1``): the database file cannot be written
   and is never locked.
3. **Authorizer** (``sqlite3_set_authorizer``): only SELECT, column reads, recursive CTEs and function
   calls are allowed. ATTACH/DETACH, every write, temp tables/views/triggers, transactions, PRAGMA (also
   the ``pragma_*`` table functions) and ``load_extension``/``fts3_tokenizer`` are denied; the statement
   fails with ``denied: ...``. Table-valued functions (``json_each``, ``dbstat``, ``pragma_*``: virtual
   tables) are denied too; SQLite authorises them as an internal "UPDATE sqlite_master", so the message
   names the function found in the query instead. ``temp_store=MEMORY`` keeps SQLite's own sort spills off the disk.
4. **Limits.** A progress handler stops the query at the wall-clock budget (``timeout``); SQLite's
   length limits cap one string/blob and the SQL text, and the fetch loop caps rows and bytes
   (``resource_limit``).
5. **Worker process** (``isolation=True``, the default). A query that blocks inside one SQLite call (the
   progress handler only runs between VM steps), a segfault or an out-of-memory kill would take the
   test session down with it. The worker is one long-lived process per :class:`Sandbox`: the parent kills
   and restarts it after a hard deadline (budget + grace) or a crash. Inside the worker SQLite's heap
   and the address space are capped too (process-wide settings the parent must not take on).
   ``benchmarks/bench_execution.py`` measures what the worker costs.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from enum import Enum
from pathlib import Path
from typing import Any

from evalkit.data.spider import connect_readonly
from evalkit.errors import EvalkitError


class ExecStatus(str, Enum):
    """How one query ended."""

    OK = "ok"
    SYNTAX_ERROR = "syntax_error"
    EXECUTION_ERROR = "execution_error"
    TIMEOUT = "timeout"
    RESOURCE_LIMIT = "resource_limit"


@dataclass(frozen=True)
class Limits:
    """Per-query budgets. The defaults sit far above what any Spider gold query needs (the slowest dev
    gold runs in well under 0.1 s and returns at most a few thousand rows)."""

    timeout_s: float = 5.0
    max_rows: int = 100_000
    max_bytes: int = 64 << 20  # estimated size of the fetched rows
    max_value_bytes: int = 16 << 20  # one string or blob (SQLITE_LIMIT_LENGTH)
    max_sql_chars: int = 100_000
    memory_mb: int = 512  # SQLite heap inside the worker process (isolation only)


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one query: the rows on success, SQLite's (or the sandbox's) message otherwise."""

    status: ExecStatus
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    message: str = ""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is ExecStatus.OK


# Functions that reach outside the database or hand out raw pointers (fts3_tokenizer is compiled in on
# Debian's libsqlite3). readfile/writefile/edit exist only in the sqlite3 shell, listed in case a build
# registers them.
DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"})
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for name in (
        "ATTACH DETACH INSERT UPDATE DELETE PRAGMA TRANSACTION SAVEPOINT ANALYZE REINDEX ALTER_TABLE "
        "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER CREATE_TEMP_VIEW "
        "CREATE_TRIGGER CREATE_VIEW CREATE_VTABLE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX DROP_TEMP_TABLE "
        "DROP_TEMP_TRIGGER DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW DROP_VTABLE FUNCTION"
    ).split()
}
_READ_KEYWORDS = frozenset({"select", "with", "values"})
# Every other keyword a SQLite statement can start with (https://sqlite.org/lang.html).
_OTHER_STATEMENT_KEYWORDS = frozenset(
    "alter analyze attach begin commit create delete detach drop end explain insert pragma reindex release "
    "replace rollback savepoint update vacuum".split()
)
# Whitespace, comments and opening parentheses before the first keyword.
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z)|\()*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")
_PROGRESS_STEPS = 1000  # SQLite VM instructions between two deadline checks (a few microseconds)
_FETCH_BATCH = 512
_RESOURCE_MESSAGES = (
    "string or blob too big",
    "query string is too large",
    "out of memory",
    "too many terms in compound select",
    "expression tree is too large",
    "parser stack overflow",
    "too many columns",
    "too many arguments",
)
_SYNTAX_MESSAGES = ("syntax error", "incomplete input", "unrecognized token", "null character")


_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})
_VIRTUAL_TABLE = "a virtual table"  # what the authorizer sees of a table-valued function (see _virtual_table)


class _Guard:
    """Per-connection state read by SQLite's callbacks: the current deadline and what was denied, and the
    connection's virtual-table modules (to name a denied table-valued function)."""

    __slots__ = ("deadline", "timed_out", "denied", "modules")

    def __init__(self, modules: frozenset[str] = frozenset()) -> None:
        self.deadline = float("inf")
        self.timed_out = False
        self.denied: str | None = None
        self.modules = modules

    def progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return 1  # non-zero interrupts the statement
        return 0

    def authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action in _ALLOWED_ACTIONS and not (action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in _SCHEMA_TABLES:
            # No statement that reaches SQLite writes (the gate runs first): this is SQLite registering an
            # eponymous virtual table, i.e. a table-valued function.
            self.denied = self.denied or _VIRTUAL_TABLE
            return sqlite3.SQLITE_DENY
        detail = arg2 if action == sqlite3.SQLITE_FUNCTION else arg1
        self.denied = self.denied or f"{_ACTION_NAMES.get(action, f'action {action}')}" + (f" {detail}" if detail else "")
        return sqlite3.SQLITE_DENY


def _virtual_table(sql: str, modules: frozenset[str]) -> str:
    """The table-valued function a denied query uses, by name (the authorizer is not told it)."""
    names = [re.escape(m) for m in sorted(modules)] + [r"pragma_\w+"]
    found = re.search(r"\b(" + "|".join(names) + r")\b", sql, re.IGNORECASE)
    return f"table-valued function {found.group(1).lower()}" if found else "a table-valued function"



class _Connections:
    """Open sandboxed connections, one per database, reused across queries (opening costs more than a
    typical Spider query). Reuse is safe: the authorizer lets no statement leave state behind."""

    def __init__(self, limits: Limits, capacity: int = 64) -> None:
        self.limits = limits
        self.capacity = capacity
        self._open: OrderedDict[str, tuple[sqlite3.Connection, _Guard]] = OrderedDict()

    def get(self, db_path: Path) -> tuple[sqlite3.Connection, _Guard]:
        key = str(db_path)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        conn = connect_readonly(db_path)
        conn.isolation_level = None  # no implicit BEGIN
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.limits.max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * self.limits.max_sql_chars)  # UTF-8 bytes
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        try:
            modules = frozenset(row[0].lower() for row in conn.execute("PRAGMA module_list"))
        except sqlite3.DatabaseError:  # a build without introspection pragmas: the message is less specific
            modules = frozenset()
        guard = _Guard(modules)
        conn.set_authorizer(guard.authorize)
        conn.set_progress_handler(guard.progress, _PROGRESS_STEPS)
        self._open[key] = (conn, guard)
        if len(self._open) > self.capacity:
            self._open.popitem(last=False)[1][0].close()
        return conn, guard

    def close(self) -> None:
        for conn, _ in self._open.values():
            conn.close()
        self._open.clear()


def _gate(sql: str, limits: Limits) -> ExecResult | None:
    """Reject what must never reach SQLite; None when the text may run."""
    if len(sql) > limits.max_sql_chars:
        return ExecResult(ExecStatus.RESOURCE_LIMIT, message=f"SQL text of {len(sql):,} characters exceeds max_sql_chars={limits.max_sql_chars:,}")
    rest = sql[_LEADING_NOISE.match(sql).end():]
    word = _FIRST_WORD.match(rest)
    if word is None:
        if rest.strip():
            return ExecResult(ExecStatus.SYNTAX_ERROR, message=f"not a SQL statement: {rest[:40]!r}")
        return ExecResult(ExecStatus.SYNTAX_ERROR, message="no SQL statement (empty text)")
    keyword = word.group().lower()
    if keyword in _OTHER_STATEMENT_KEYWORDS:
        return ExecResult(ExecStatus.EXECUTION_ERROR, message=f"denied: only SELECT/WITH/VALUES queries run here, not {keyword.upper()}")
    if keyword not in _READ_KEYWORDS:
        return ExecResult(ExecStatus.SYNTAX_ERROR, message=f'near "{word.group()}": syntax error (no SQL statement starts with it)')
    return None


def _row_bytes(row: tuple[Any, ...]) -> int:
    return sum(len(value) if isinstance(value, (str, bytes)) else 8 for value in row)


def _classify(exc: BaseException, guard: _Guard, sql: str) -> tuple[ExecStatus, str]:
    message = str(exc) or type(exc).__name__
    lowered = message.lower()
    if guard.timed_out:
        return ExecStatus.TIMEOUT, "interrupted at the wall-clock budget"
    if guard.denied == _VIRTUAL_TABLE:
        return (ExecStatus.EXECUTION_ERROR,
                f"denied: {_virtual_table(sql, guard.modules)} (a virtual table) is not allowed (read-only evaluation)")
    if guard.denied:
        return ExecStatus.EXECUTION_ERROR, f"denied: {guard.denied} is not allowed (read-only evaluation)"
    if isinstance(exc, MemoryError):
        return ExecStatus.RESOURCE_LIMIT, "out of memory (in the worker: its memory_mb cap)"
    if any(text in lowered for text in _RESOURCE_MESSAGES):
        return ExecStatus.RESOURCE_LIMIT, message
    if isinstance(exc, UnicodeError):
        return ExecStatus.SYNTAX_ERROR, f"SQL text is not valid UTF-8 ({message})"
    if any(text in lowered for text in _SYNTAX_MESSAGES):
        return ExecStatus.SYNTAX_ERROR, message
    if "one statement at a time" in lowered:
        return ExecStatus.EXECUTION_ERROR, "denied: several statements in one query"
    return ExecStatus.EXECUTION_ERROR, message


def execute(db_path: Path, sql: str, limits: Limits, connections: _Connections) -> ExecResult:
    """Run one query in this process under the gate, authorizer and limits (no crash isolation)."""
    start = time.monotonic()
    try:
        rejected = _gate(sql, limits)
        if rejected is not None:
            return rejected
        conn, guard = connections.get(db_path)
    except EvalkitError as exc:  # missing or corrupt database file
        return ExecResult(ExecStatus.EXECUTION_ERROR, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - untrusted input: every failure becomes a typed result
        return ExecResult(ExecStatus.EXECUTION_ERROR, message=f"{type(exc).__name__}: {exc}")
    guard.deadline, guard.timed_out, guard.denied = start + limits.timeout_s, False, None
    cursor = None
    try:
        cursor = conn.execute(sql)
        rows: list[tuple[Any, ...]] = []
        size = widest = 0
        batch_size = 1
        while batch := cursor.fetchmany(batch_size):
            rows.extend(batch)
            row_sizes = [_row_bytes(row) for row in batch]
            size += sum(row_sizes)
            widest = max(widest, *row_sizes)
            # fetch as many rows as still fit the byte budget, so one batch cannot blow through it
            batch_size = max(1, min(_FETCH_BATCH, (limits.max_bytes - size) // max(widest, 1)))
            if len(rows) > limits.max_rows or size > limits.max_bytes:
                return ExecResult(
                    ExecStatus.RESOURCE_LIMIT,
                    message=f"result exceeds max_rows={limits.max_rows:,} or max_bytes={limits.max_bytes:,} "
                    f"(stopped after {len(rows):,} rows, ~{size:,} bytes)",
                    elapsed_s=time.monotonic() - start,
                )
            if time.monotonic() > guard.deadline:  # Python-side fetching also counts against the budget
                guard.timed_out = True
                raise sqlite3.OperationalError("interrupted")
        columns = tuple(column[0] for column in cursor.description or ())
        return ExecResult(ExecStatus.OK, rows=rows, columns=columns, elapsed_s=time.monotonic() - start)
    except Exception as exc:  # noqa: BLE001 - untrusted input; MemoryError and RecursionError included
        status, message = _classify(exc, guard, sql)
        return ExecResult(status, message=message, elapsed_s=time.monotonic() - start)
    finally:
        guard.deadline = float("inf")
        if cursor is not None:
            cursor.close()


def _cap_worker_memory(limits: Limits) -> None:
    """Inside the worker only: cap SQLite's heap (clean "out of memory" errors) and, as a backstop for
    Python-side allocations, the address space. Both are process-wide, hence never in the parent."""
    probe = sqlite3.connect(":memory:")
    probe.execute(f"PRAGMA hard_heap_limit = {limits.memory_mb << 20}")
    probe.close()
    try:
        import resource

        with open("/proc/self/status") as status:
            vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        cap = (vm_kb << 10) + 2 * (limits.memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux: the heap limit still holds
        pass


def _serve(fd: int, limits: Limits) -> None:
    """Worker loop on the socket ``fd``: receive (db_path, sql), send back an ExecResult, until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _cap_worker_memory(limits)
    channel = Connection(fd)
    connections = _Connections(limits)
    channel.send("ready")  # start-up (imports) must not eat into the first query's budget
    while True:
        try:
            db_path, sql = channel.recv()
        except (EOFError, OSError):
            return
        channel.send(execute(Path(db_path), sql, limits, connections))


class Sandbox:
    """Runs untrusted queries; ``isolation=True`` puts them in a worker process (see module docstring).

    Thread-safe (one query at a time). Use as a context manager or call :meth:`close`; the worker is a
    child process that exits when its socket closes (also when this interpreter dies).
    """

    def __init__(self, limits: Limits | None = None, *, isolation: bool = True, grace_s: float = 2.0) -> None:
        """``grace_s``: how long past the budget the worker may stay silent before it is killed."""
        self.limits = limits or Limits()
        self.isolation = isolation
        self.hard_timeout_s = self.limits.timeout_s + grace_s
        self.restarts = 0
        self._lock = threading.Lock()
        self._local = _Connections(self.limits) if not isolation else None
        self._process: Any = None
        self._channel: Any = None

    @property
    def worker_pid(self) -> int | None:
        """Process id of the running worker (None in-process or before the first query)."""
        return self._process.pid if self._process is not None else None

    def run(self, db_path: str | Path, sql: str) -> ExecResult:
        """Execute ``sql`` on the database at ``db_path``; always returns, never raises for any text."""
        path = Path(db_path)
        if not isinstance(sql, str):
            return ExecResult(ExecStatus.SYNTAX_ERROR, message=f"SQL must be text, got {type(sql).__name__}")
        with self._lock:
            if self._local is not None:
                return execute(path, sql, self.limits, self._local)
            return self._run_isolated(path, sql)

    def _run_isolated(self, path: Path, sql: str) -> ExecResult:
        start = time.monotonic()
        if self._process is not None and self._process.poll() is not None:
            self._restart()
        if self._process is None:
            failure = self._start_worker()
            if failure:
                return ExecResult(ExecStatus.EXECUTION_ERROR, message=failure)
        try:
            self._channel.send((str(path), sql))
            if self._channel.poll(self.hard_timeout_s):
                return self._channel.recv()
            self._restart()
            return ExecResult(
                ExecStatus.TIMEOUT,
                message=f"no answer within {self.hard_timeout_s:.1f} s (blocked inside SQLite); worker killed and restarted",
                elapsed_s=time.monotonic() - start,
            )
        except (EOFError, OSError, BrokenPipeError) as exc:
            code = self._process.poll() if self._process is not None else None
            self._restart()
            return ExecResult(
                ExecStatus.EXECUTION_ERROR,
                message=f"sandbox worker died while running the query (exit code {code}; {type(exc).__name__}); restarted",
                elapsed_s=time.monotonic() - start,
            )

    def _restart(self) -> None:
        """Kill a hung or dead worker; the next query starts a fresh one."""
        self._stop_worker(kill=True)
        self.restarts += 1

    def _start_worker(self) -> str | None:
        """A fresh interpreter running :func:`_serve` on one end of a socket pair.

        Not ``multiprocessing``: its spawn mode re-imports the caller's ``__main__`` (scripts without a
        ``__main__`` guard would recurse) and fork would copy a parent that may hold torch and threads.
        """
        parent, child = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH"))))}
        with child:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_COMMAND, str(child.fileno()), json.dumps(asdict(self.limits))],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._channel = Connection(parent.detach())
        try:
            if self._channel.poll(_WORKER_START_S) and self._channel.recv() == "ready":
                return None
        except (EOFError, OSError):
            pass
        code = self._process.poll()
        self._restart()
        return f"the sandbox worker did not start within {_WORKER_START_S:.0f} s (exit code {code}); see its stderr"

    def _stop_worker(self, *, kill: bool) -> None:
        if self._process is None:
            return
        if kill:
            self._process.kill()
        self._channel.close()  # the worker exits on EOF
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
        self._channel = None

    def close(self) -> None:
        """Stop the worker (or close the in-process connections)."""
        with self._lock:
            if self._local is not None:
                self._local.close()
            self._stop_worker(kill=False)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # so the worker imports this very evalkit
_WORKER_START_S = 60.0
_WORKER_COMMAND = "import json, sys, evalkit.sandbox as s; s._serve(int(sys.argv[1]), s.Limits(**json.loads(sys.argv[2])))"
_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide isolated sandbox with default limits, started on first use, stopped at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
            atexit.register(_default.close)
        return _default
