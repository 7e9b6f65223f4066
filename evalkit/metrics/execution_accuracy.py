"""Spider execution accuracy with the official test-suite semantics (taoyds/test-suite-sql-eval ``exec_eval.py``).

A prediction scores 1 when running it gives the same *denotation* as the gold query on the example's
database. "Same" is the official ``result_eq``:

* both results empty: equal (whatever their columns);
* otherwise the row counts and column counts must agree, and some order of the predicted columns must
  make the two results equal as **multisets** of rows (duplicates count; never Python ``set()``);
* when the gold query orders its rows, the rows must also come in the same order;
* values compare with Python ``==`` (``1 == 1.0``; ``'2014' != 2014``; no float tolerance), after the
  official per-row quick reject, which sorts each row's values by ``str(value) + str(type(value))``.

Before running, both queries get the official rewrites: ``> =``/``< =``/``! =`` joined, ``YEAR(CURDATE())``
replaced by 2020, and every DISTINCT keyword removed (``keep_distinct=True`` keeps them, like the official
``--keep_distinct``). Where we differ from the official code (row order decided by the *outermost* ORDER BY,
one database instead of a test suite, ...) docs/deviations.md says so ("Spider execution accuracy").

Model output is untrusted: :func:`extract_sql` pulls the first statement out of the raw text and the
query runs in :class:`evalkit.sandbox.Sandbox`. Every case ends in one :class:`Outcome`; nothing raises
for any model text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from deepeval.test_case import LLMTestCase

from evalkit.data.hardness import SQLParseError, spider_hardness
from evalkit.data.spider import database_path
from evalkit.errors import ConfigError, DataError
from evalkit.metrics.exact_set import exact_set_match
from evalkit.metrics.sql_text import extract_sql, gold_orders_rows, official_rewrite
from evalkit.metrics.measured import Measurement, MeasuredMetric
from evalkit.sandbox import ExecResult, Sandbox, default_sandbox

Row = tuple[Any, ...]


class Outcome(str, Enum):
    """Why a case scored what it did. Only ``MATCH`` scores 1."""

    MATCH = "match"
    MISMATCH = "mismatch"
    SYNTAX_ERROR = "syntax_error"
    EXECUTION_ERROR = "execution_error"
    TIMEOUT = "timeout"
    RESOURCE_LIMIT = "resource_limit"
    EMPTY_OUTPUT = "empty_output"
    GOLD_ERROR = "gold_error"


# --------------------------------------------------------------------------------------- comparison


def _unordered(row: Row) -> Row:
    return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))


def _column_orders(gold: Sequence[Row], pred: Sequence[Row], order_matters: bool) -> Iterator[tuple[int, ...]]:
    """Every assignment of predicted columns to gold columns that could make the results equal.

    A gold column can only come from a predicted column holding the same values (the same sequence when
    order matters, the same multiset otherwise); predicted columns with identical contents are
    interchangeable, so only one of each group is tried. This prunes harder than the official sampling
    of 20 rows but never drops an assignment that could succeed, so the verdict is the same.
    """
    gold_columns = list(zip(*gold))
    pred_columns = list(zip(*pred))
    content: Any = (lambda column: column) if order_matters else Counter
    pred_contents = [content(column) for column in pred_columns]
    candidates = [[j for j, held in enumerate(pred_contents) if held == content(target)] for target in gold_columns]
    first_of_group: dict[tuple[Any, ...], int] = {}
    group = [first_of_group.setdefault(column, j) for j, column in enumerate(pred_columns)]
    used = [False] * len(pred_columns)
    chosen: list[int] = []

    def assign(i: int) -> Iterator[tuple[int, ...]]:
        if i == len(gold_columns):
            yield tuple(chosen)
            return
        tried: set[int] = set()
        for j in candidates[i]:
            if used[j] or group[j] in tried:
                continue
            tried.add(group[j])
            used[j] = True
            chosen.append(j)
            yield from assign(i + 1)
            chosen.pop()
            used[j] = False

    return assign(0)


def results_equal(gold: Sequence[Row], pred: Sequence[Row], order_matters: bool) -> bool:
    """The official ``result_eq(gold, pred, order_matters)``: bag semantics, column order free."""
    if not gold and not pred:
        return True
    if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
        return False
    gold_unordered = [_unordered(row) for row in gold]
    pred_unordered = [_unordered(row) for row in pred]
    if order_matters and gold_unordered != pred_unordered:
        return False
    if not order_matters and set(gold_unordered) != set(pred_unordered):
        return False
    expected: Any = list(gold) if order_matters else Counter(gold)
    for order in _column_orders(gold, pred, order_matters):
        permuted = [tuple(row[j] for j in order) for row in pred]
        if (permuted if order_matters else Counter(permuted)) == expected:
            return True
    return False


_SHOW_ROWS = 3
_SHOW_CHARS = 120


def _show(rows: Sequence[Row]) -> str:
    shown = [repr(row) if len(repr(row)) <= _SHOW_CHARS else repr(row)[: _SHOW_CHARS] + "...)" for row in rows[:_SHOW_ROWS]]
    return ", ".join(shown) + (f" (+{len(rows) - _SHOW_ROWS} more)" if len(rows) > _SHOW_ROWS else "")


def describe_difference(gold: Sequence[Row], pred: Sequence[Row], order_matters: bool) -> str:
    """Why two results are not equal, with the first differing rows (truncated)."""
    if gold and pred and len(gold[0]) != len(pred[0]):
        return f"gold returns {len(gold[0])} columns, the prediction {len(pred[0])}: gold [{_show(gold)}] vs predicted [{_show(pred)}]"
    counts = f"gold returns {len(gold)} rows, the prediction {len(pred)}; " if len(gold) != len(pred) else ""
    gold_unordered = [_unordered(row) for row in gold]
    pred_unordered = [_unordered(row) for row in pred]
    if order_matters:
        for index, (expected, got) in enumerate(zip(gold_unordered, pred_unordered)):
            if expected != got:
                return f"{counts}row {index} differs (gold orders its rows): gold {gold[index]!r:.{_SHOW_CHARS}} vs predicted {pred[index]!r:.{_SHOW_CHARS}}"
    missing = list((Counter(gold_unordered) - Counter(pred_unordered)).elements())
    extra = list((Counter(pred_unordered) - Counter(gold_unordered)).elements())
    if missing or extra:
        return f"{counts}rows missing from the prediction: [{_show(missing)}]; unexpected rows: [{_show(extra)}]"
    return "every row holds the right values, but no single column order makes the results equal" + (" in order" if order_matters else "")


# ------------------------------------------------------------------------------------------ scoring


def _preview(rows: Sequence[Row], limit: int = 5) -> list[list[Any]]:
    """First rows as JSON-safe values (long text cut, blobs as hex) for reports."""

    def safe(value: Any) -> Any:
        if isinstance(value, bytes):
            return f"x'{value[:32].hex()}'" + ("..." if len(value) > 32 else "")
        if isinstance(value, str) and len(value) > 100:
            return value[:100] + "..."
        return value

    return [[safe(value) for value in row] for row in rows[:limit]]


@dataclass
class ExecutionResult:
    """Everything about one scored case; ``to_dict()`` is one JSON line of the per-example report."""

    outcome: Outcome
    reason: str
    raw_output: str
    extracted_sql: str
    gold_sql: str
    db_path: str
    keep_distinct: bool = False
    order_matters: bool | None = None
    gold_row_count: int | None = None
    pred_row_count: int | None = None
    gold_rows: list[list[Any]] = field(default_factory=list)
    pred_rows: list[list[Any]] = field(default_factory=list)
    gold_seconds: float | None = None
    pred_seconds: float | None = None
    hardness: str | None = None
    exact_set_match: bool | None = None

    @property
    def score(self) -> float:
        return 1.0 if self.outcome is Outcome.MATCH else 0.0

    def to_dict(self, max_text: int = 10_000) -> dict[str, Any]:
        """JSON-safe dict; raw and extracted text are cut at ``max_text`` characters (a runaway
        generation can be megabytes)."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["score"] = self.score
        for key in ("raw_output", "extracted_sql"):
            if len(data[key]) > max_text:
                data[key] = data[key][:max_text] + f"... [{len(data[key]) - max_text} more characters]"
        return data


def _signals(extracted: str, gold_sql: str, max_chars: int) -> tuple[str | None, bool | None]:
    """Gold hardness and exact-set match, for analysis only; None where they cannot be computed. Text
    longer than the sandbox runs (``max_chars``) is not parsed either: sqlglot takes seconds on megabytes
    of model prose that the sandbox refuses at once."""
    try:
        hardness: str | None = spider_hardness(gold_sql)
    except (SQLParseError, RecursionError):
        hardness = None
    if len(extracted) > max_chars:
        return hardness, None
    try:
        exact = exact_set_match(extracted, gold_sql) if extracted else False
    except (SQLParseError, RecursionError):
        exact = None
    return hardness, exact


def score_execution(
    raw_output: str,
    gold_sql: str,
    db_path: str | Path,
    *,
    keep_distinct: bool = False,
    sandbox: Sandbox | None = None,
    signals: bool = True,
) -> ExecutionResult:
    """Score one model output against one gold query on one database; never raises for any output."""
    sandbox = sandbox or default_sandbox()
    raw_output = raw_output if isinstance(raw_output, str) else ""
    extracted = extract_sql(raw_output)
    case: dict[str, Any] = dict(raw_output=raw_output, extracted_sql=extracted, gold_sql=gold_sql, db_path=str(db_path), keep_distinct=keep_distinct)
    if signals:
        case["hardness"], case["exact_set_match"] = _signals(extracted, gold_sql, sandbox.limits.max_sql_chars)
    gold: ExecResult = sandbox.run(db_path, official_rewrite(gold_sql, keep_distinct))
    if not gold.ok:
        return ExecutionResult(
            Outcome.GOLD_ERROR,
            f"the gold query failed with {gold.status.value} ({gold.message}); this case says nothing about the model. "
            "Fix: check the gold SQL and the database file.",
            gold_seconds=gold.elapsed_s,
            **case,
        )
    case.update(gold_row_count=len(gold.rows), gold_rows=_preview(gold.rows), gold_seconds=gold.elapsed_s)
    if not extracted:
        shown = raw_output.strip()[:80]
        return ExecutionResult(Outcome.EMPTY_OUTPUT, f"no SQL in the model output ({shown!r})" if shown else "the model output is empty", **case)
    pred = sandbox.run(db_path, official_rewrite(extracted, keep_distinct) if len(extracted) <= sandbox.limits.max_sql_chars else extracted)
    case["pred_seconds"] = pred.elapsed_s
    if not pred.ok:
        return ExecutionResult(Outcome(pred.status.value), pred.message, **case)
    order_matters = gold_orders_rows(gold_sql)
    case.update(order_matters=order_matters, pred_row_count=len(pred.rows), pred_rows=_preview(pred.rows))
    if results_equal(gold.rows, pred.rows, order_matters):
        ordered = ", in order" if order_matters and len(gold.rows) > 1 else ""
        return ExecutionResult(Outcome.MATCH, f"same result as the gold query ({len(gold.rows)} rows{ordered})", **case)
    return ExecutionResult(Outcome.MISMATCH, describe_difference(gold.rows, pred.rows, order_matters), **case)


# ---------------------------------------------------------------------------------- DeepEval metric


class ExecutionAccuracy(MeasuredMetric):
    """DeepEval metric: 1 when the model's SQL returns the gold query's result, else 0 (threshold 1.0).

    The test case carries the model's raw text in ``actual_output``, the gold SQL in ``expected_output``
    and the database in ``metadata``: ``{"db_path": ...}`` or ``{"db_id": ...}`` (looked up under the
    Spider data folder). After ``measure`` the full :class:`ExecutionResult` is on ``metric.result``
    (outcome, extracted SQL, rows) for per-example reports. Measured once per test case
    (:mod:`evalkit.metrics.measured`).
    """

    def __init__(
        self,
        threshold: float = 1.0,
        keep_distinct: bool = False,
        sandbox: Sandbox | None = None,
        signals: bool = True,
        measurement: Measurement | None = None,
    ) -> None:
        super().__init__(threshold, measurement)
        self.keep_distinct = keep_distinct
        self.sandbox = sandbox
        self.signals = signals

    @property
    def result(self) -> ExecutionResult | None:
        return self.detail

    @staticmethod
    def _database(test_case: LLMTestCase) -> Path:
        metadata = test_case.metadata or {}
        if metadata.get("db_path"):
            path = Path(metadata["db_path"])
        elif metadata.get("db_id"):
            path = database_path(str(metadata["db_id"])) or Path(f"database/{metadata['db_id']}/{metadata['db_id']}.sqlite")
        else:
            raise ConfigError(
                "ExecutionAccuracy: the test case names no database. "
                'Fix: LLMTestCase(..., metadata={"db_id": example.db_id, "db_path": str(example.db_path)}).'
            )
        if not path.is_file():
            raise DataError(
                f"ExecutionAccuracy: database file not found: {path}. "
                "Fix: skip examples whose SpiderExample.skip_reason is set, or fetch the Spider databases."
            )
        return path

    def compute(self, test_case: LLMTestCase) -> tuple[float, str, ExecutionResult]:
        if not test_case.expected_output:
            raise ConfigError("ExecutionAccuracy: the test case has no expected_output. Fix: pass the gold SQL as expected_output.")
        result = score_execution(
            test_case.actual_output or "",
            test_case.expected_output,
            self._database(test_case),
            keep_distinct=self.keep_distinct,
            sandbox=self.sandbox,
            signals=self.signals,
        )
        return result.score, f"{result.outcome.value}: {result.reason}", result

    @property
    def __name__(self) -> str:
        return "Execution Accuracy"
