"""Score Spider predictions made by any tool, with the same metric and sandbox as the test suite.

    python -m evalkit.spider_score --gold dev_gold.sql --pred pred.sql --db spider/database [--keep-distinct] [--out scores.jsonl]

File formats are the official evaluator's: the gold file has one ``SQL<TAB>db_id`` line per example; the
prediction file has one SQL per line, in the same order (text after a tab is ignored, as the official
script does). An empty prediction line is an empty prediction (scored ``empty_output``), so both files
must have the same number of lines. Lines end at ``\n`` only (a ``\r`` before it is dropped): Unicode line
separators such as U+2028 can occur inside model output and must not shift every later prediction onto
the wrong gold query. Files are UTF-8 (a byte-order mark is ignored); other bytes, empty files, a
``--timeout`` that is not a positive number of seconds and an ``--out`` folder that does not exist are
usage errors (exit 2). Prints execution accuracy overall and by Spider hardness, and the
count of each outcome. An example whose database file is missing is reported as skipped, not scored 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from evalkit.data.files import decode_utf8
from evalkit.data.spider import check_database
from evalkit.errors import DataError
from evalkit.metrics.execution_accuracy import ExecutionResult, Outcome, score_execution
from evalkit.sandbox import Limits, Sandbox

LEVELS = ("easy", "medium", "hard", "extra")


@dataclass(frozen=True)
class Pair:
    index: int
    gold_sql: str
    db_id: str
    prediction: str


def _lines(path: Path, what: str) -> list[str]:
    """The file's lines, split at "\n" only, each without one trailing "\r"; the final newline ends the
    last line rather than starting an empty one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the {what} file {path}: {exc.strerror}. Fix: pass an existing file.") from exc
    text = decode_utf8(data, path)
    if not text:
        raise DataError(f"{path} is empty. Fix: pass the {what} file with one line per example.")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_pairs(gold_file: Path, pred_file: Path) -> list[Pair]:
    """Pair the gold lines with the prediction lines; a malformed file raises a DataError naming the line."""
    gold_lines = _lines(gold_file, "gold")
    while gold_lines and not gold_lines[-1].strip():  # blank lines after the last example are no examples
        gold_lines.pop()
    pred_lines = _lines(pred_file, "prediction")
    pairs = []
    for number, line in enumerate(gold_lines, start=1):
        sql, tab, db_id = line.strip().rpartition("\t")
        if not tab or not sql.strip() or not db_id.strip():
            raise DataError(
                f"{gold_file}, line {number}: expected 'SQL<TAB>db_id', got {line[:80]!r}. "
                "Fix: use the official gold format (e.g. Spider's dev_gold.sql)."
            )
        pairs.append((sql.strip(), db_id.strip()))
    if len(pred_lines) != len(pairs):
        raise DataError(
            f"{pred_file} has {len(pred_lines)} lines but {gold_file} has {len(pairs)}. "
            "Fix: write one prediction per gold line, in the same order (an empty line for no prediction)."
        )
    return [Pair(i, sql, db_id, pred.strip().split("\t")[0]) for i, ((sql, db_id), pred) in enumerate(zip(pairs, pred_lines))]


def format_report(results: list[ExecutionResult], skipped: Counter[str]) -> str:
    """The official evaluator's count / execution table by hardness, then the outcome counts."""
    by_level: dict[str, list[float]] = {level: [] for level in (*LEVELS, "all")}
    for result in results:
        if result.outcome is Outcome.GOLD_ERROR:
            continue
        if result.hardness in LEVELS:
            by_level[result.hardness].append(result.score)
        by_level["all"].append(result.score)
    columns = (*LEVELS, "all")
    lines = [
        f"{'':<12}" + "".join(f"{name:>10}" for name in columns),
        f"{'count':<12}" + "".join(f"{len(by_level[name]):>10}" for name in columns),
        f"{'execution':<12}"
        + "".join(f"{sum(by_level[name]) / len(by_level[name]):>10.3f}" if by_level[name] else f"{'-':>10}" for name in columns),
    ]
    outcomes = Counter(result.outcome.value for result in results)
    lines.append("outcomes: " + ", ".join(f"{outcome.value} {outcomes[outcome.value]}" for outcome in Outcome))
    if outcomes[Outcome.GOLD_ERROR.value]:
        lines.append(f"{outcomes[Outcome.GOLD_ERROR.value]} gold queries failed and are left out of the accuracy (see --out)")
    if skipped:
        lines.append(f"skipped {sum(skipped.values())} (database file missing: " + ", ".join(f"{db} x{n}" for db, n in sorted(skipped.items())) + ")")
    return "\n".join(lines)


def _seconds(text: str) -> float:
    """--timeout: a finite number of seconds above 0 (0, a negative value or nan would fail every gold query)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds > 0 (e.g. 5)")
    return value


def _db_path(folder: Path, db_id: str) -> Path:
    return folder / db_id / f"{db_id}.sqlite"


def _open_out(path: Path) -> TextIO:
    """Open --out before any query runs, so a bad path costs nothing."""
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"--out: cannot write {path} ({exc.strerror}). Fix: pass a writable file path.") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalkit.spider_score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gold", type=Path, required=True, help="gold file, one 'SQL<TAB>db_id' per line")
    parser.add_argument("--pred", type=Path, required=True, help="predictions, one SQL per line in gold order")
    parser.add_argument("--db", type=Path, required=True, help="database folder holding <db_id>/<db_id>.sqlite")
    parser.add_argument("--keep-distinct", action="store_true", help="keep DISTINCT when running both queries (official flag)")
    parser.add_argument("--out", type=Path, help="write one JSON line per pair (index, db_id, outcome, score, reason, ...)")
    parser.add_argument("--timeout", type=_seconds, default=Limits.timeout_s, help="seconds per query (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        pairs = read_pairs(args.gold, args.pred)
        if not args.db.is_dir():
            raise DataError(f"database folder not found: {args.db}. Fix: pass the folder holding <db_id>/<db_id>.sqlite.")
        for db_id in sorted({pair.db_id for pair in pairs}):  # a 0-byte file would fail every gold query
            if _db_path(args.db, db_id).is_file():
                check_database(_db_path(args.db, db_id))
        if args.out and not args.out.parent.is_dir():
            raise DataError(f"--out: the folder {args.out.parent} does not exist. Fix: create it, or write the "
                            "scores elsewhere.")
        out = _open_out(args.out) if args.out else None
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results: list[ExecutionResult] = []
    skipped: Counter[str] = Counter()
    try:
        with Sandbox(Limits(timeout_s=args.timeout)) as sandbox:
            for pair in pairs:
                db_path = _db_path(args.db, pair.db_id)
                if not db_path.is_file():
                    skipped[pair.db_id] += 1
                    record = {"index": pair.index, "db_id": pair.db_id, "outcome": "skipped", "score": None,
                              "reason": f"database file missing: {db_path}"}
                else:
                    result = score_execution(pair.prediction, pair.gold_sql, db_path, keep_distinct=args.keep_distinct, sandbox=sandbox)
                    results.append(result)
                    record = {"index": pair.index, "db_id": pair.db_id, **result.to_dict()}
                if out:
                    out.write(json.dumps(record, ensure_ascii=False, default=repr) + "\n")
    finally:
        if out:
            out.close()
    print(format_report(results, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
